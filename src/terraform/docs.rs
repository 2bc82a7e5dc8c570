//! `docs/terraform/`: one Markdown page per resource and data source, rendered from the same
//! generated schemas (and so from the proto comments) the provider serves.

use std::fmt::Write as _;
use std::path::Path;

use super::codegen::{Attr, Kind, Mode, Nesting, Schema, SpecKind};

fn type_name(kind: &Kind) -> String {
    match kind {
        Kind::Bool => "bool".into(),
        Kind::Number => "number".into(),
        Kind::String => "string".into(),
        Kind::List(k) => format!("list({})", type_name(k)),
        Kind::Set(k) => format!("set({})", type_name(k)),
        Kind::Map(k) => format!("map({})", type_name(k)),
        Kind::Nested(Nesting::Single, _) => "object".into(),
        Kind::Nested(Nesting::List, _) => "list(object)".into(),
        Kind::Nested(Nesting::Set, _) => "set(object)".into(),
    }
}

fn notes(attr: &Attr, top: bool) -> String {
    let mut notes = Vec::new();
    match (attr.mode, top) {
        (Mode::Optional, true) if attr.default.is_some() => {
            notes.push(format!("default `{}`", attr.default.as_deref().unwrap_or_default()))
        }
        (Mode::Optional, true) if !attr.presence => notes.push("default: empty".to_string()),
        (Mode::OptionalComputed, _) => notes.push("default: the server's".to_string()),
        _ => {}
    }
    if attr.force_new {
        notes.push("changing it replaces the resource".into());
    }
    if attr.sensitive {
        notes.push("sensitive".into());
    }
    if attr.write_only {
        notes.push("never read back".into());
    }
    if notes.is_empty() { String::new() } else { format!(" ({})", notes.join("; ")) }
}

fn render_attrs(out: &mut String, attrs: &[Attr], top: bool, nested: &mut Vec<(String, Vec<Attr>)>) {
    for attr in attrs {
        let anchor = match &attr.kind {
            Kind::Nested(_, inner) => {
                nested.push((attr.name.clone(), inner.clone()));
                format!(" — see [{0}](#nested-{0})", attr.name)
            }
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "- `{}` ({}){} {}{}",
            attr.name,
            type_name(&attr.kind),
            notes(attr, top),
            attr.description,
            anchor
        );
    }
}

fn section(
    out: &mut String,
    title: &str,
    attrs: Vec<Attr>,
    top: bool,
    nested: &mut Vec<(String, Vec<Attr>)>,
) {
    if attrs.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n### {title}\n");
    render_attrs(out, &attrs, top, nested);
}

/// The Markdown page of one schema.
pub fn render(schema: &Schema) -> String {
    let kind = match schema.kind {
        SpecKind::Resource => "Resource",
        SpecKind::DataSource => "Data source",
    };
    let mut out = format!(
        "<!-- Generated from the proto comments by `terraform-provider-orgtrail docs`. -->\n# {kind}: {}\n\n{}\n",
        schema.name, schema.description
    );
    let by_mode =
        |modes: &[Mode]| schema.attrs.iter().filter(|a| modes.contains(&a.mode)).cloned().collect::<Vec<_>>();
    let mut nested = Vec::new();
    section(&mut out, "Required", by_mode(&[Mode::Required]), true, &mut nested);
    section(&mut out, "Optional", by_mode(&[Mode::Optional, Mode::OptionalComputed]), true, &mut nested);
    section(&mut out, "Read-only", by_mode(&[Mode::Computed]), true, &mut nested);
    while !nested.is_empty() {
        let (name, attrs) = nested.remove(0);
        let _ = writeln!(out, "\n<a id=\"nested-{name}\"></a>\n### Nested schema for `{name}`\n");
        let mut deeper = Vec::new();
        render_attrs(&mut out, &attrs, false, &mut deeper);
        nested.extend(deeper);
    }
    out
}

/// The index page: the provider block and the list of pages.
pub fn render_index(schemas: &[Schema], provider: &[Attr]) -> String {
    let mut out = String::from(
        "<!-- Generated from the proto comments by `terraform-provider-orgtrail docs`. -->\n# The orgtrail Terraform provider\n\n\
         Source address `orgtrail/orgtrail`. The provider is generated from orgtrail's proto definitions: every \
         attribute is a proto field of the same name, described by the field's comment.\n\n\
         ```hcl\nterraform {\n  required_providers {\n    orgtrail = { source = \"orgtrail/orgtrail\" }\n  }\n}\n\n\
         provider \"orgtrail\" {\n  endpoint = \"http://127.0.0.1:50051\"\n  token    = var.orgtrail_token\n}\n```\n\n## Provider configuration\n\n",
    );
    render_attrs(&mut out, provider, false, &mut Vec::new());
    for (kind, title) in [(SpecKind::Resource, "Resources"), (SpecKind::DataSource, "Data sources")] {
        let _ = writeln!(out, "\n## {title}\n");
        for schema in schemas.iter().filter(|s| s.kind == kind) {
            let _ = writeln!(out, "- [{0}]({0}.md)", schema.name);
        }
    }
    out
}

/// Every page: (file name, content).
pub fn pages(schemas: &[Schema], provider: &[Attr]) -> Vec<(String, String)> {
    let mut pages = vec![("index.md".to_string(), render_index(schemas, provider))];
    pages.extend(schemas.iter().map(|s| (format!("{}.md", s.name), render(s))));
    pages
}

/// Writes the pages into `dir`.
pub fn write(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let schemas = super::generated::schemas();
    for (name, content) in pages(&schemas, &super::provider::provider_attrs()) {
        std::fs::write(dir.join(name), content)?;
    }
    Ok(())
}
