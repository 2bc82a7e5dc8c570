//! Generates the Terraform provider's schemas and value conversions from the proto descriptors.
//!
//! Used twice: by `build.rs` (the provider is compiled from its output, so a field added to a proto
//! message reaches Terraform without a hand edit) and by the generation test (on a modified copy of
//! the protos). It depends only on `std` and `prost-types` for that reason.
//!
//! What a resource is made of is declared once in [`SPECS`]; how each attribute behaves comes from
//! the proto: the field's comment is its description, and a comment line `tf: flag, flag` overrides
//! what is inferred. Inference: a field of the create request or of an update request is
//! configurable; configurable but in no update request means force-new; a create field with explicit
//! presence (`optional`) has a server default (optional + computed); anything else is computed.
//! Flags: required, optional, computed, sensitive, force_new, stable (a computed value that never
//! changes once known), write_only (never returned by the server), skip, list (a repeated field
//! kept in order instead of as a set).

// One path for both compilations of this file (the crate's and build.rs's `#[path]` one).
#[path = "codegen/emit.rs"]
mod emit;
#[path = "codegen/specs.rs"]
mod specs;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

pub use emit::generate;
pub use specs::SPECS;

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};

/// A resource or data source and the messages it is made of (full names without the leading dot).
pub struct Spec {
    /// Terraform type name.
    pub name: &'static str,
    /// Resource or data source.
    pub kind: SpecKind,
    /// One-paragraph description of the resource for its schema and docs.
    pub description: &'static str,
    /// Messages whose fields form the state, in order; a field whose type is an earlier state message
    /// is flattened into it rather than repeated.
    pub state: &'static [&'static str],
    /// The create request (resources) or the read request (data sources: its fields are the inputs).
    pub create: &'static str,
    /// Requests that change an existing resource.
    pub update: &'static [&'static str],
    /// The attribute naming the resource for every RPC (its `id` is derived from it); force-new.
    pub identity: &'static str,
    /// The attribute the `id` copies: what import takes and every RPC is called with.
    pub id_from: &'static str,
    /// Attributes that no message holds, defined here: (name, description, default).
    pub extra: &'static [(&'static str, &'static str, &'static str)],
}

/// Whether a [`Spec`] is a managed resource or a data source.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SpecKind {
    Resource,
    DataSource,
}

/// How Terraform may set an attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Required,
    /// Optional; when left out, the field's zero value ("" / false / 0 / empty).
    Optional,
    /// Optional; when left out, the server's default (known after apply, then kept).
    OptionalComputed,
    Computed,
}

/// The value type of an attribute.
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Bool,
    Number,
    String,
    List(Box<Kind>),
    Set(Box<Kind>),
    Map(Box<Kind>),
    /// A nested object, one (`Single`), a list or a set of them.
    Nested(Nesting, Vec<Attr>),
}

/// How nested objects are grouped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nesting {
    Single,
    List,
    Set,
}

/// One attribute of a generated schema.
#[derive(Clone, Debug, PartialEq)]
pub struct Attr {
    pub name: String,
    pub description: String,
    pub kind: Kind,
    pub mode: Mode,
    pub sensitive: bool,
    pub force_new: bool,
    pub stable: bool,
    pub write_only: bool,
    /// The default of an extra attribute ("true" / "false"), if any.
    pub default: Option<String>,
    /// Whether the field tells unset from its zero value (proto3 `optional`, oneof, message): then a
    /// left-out optional attribute stays null instead of taking the zero value.
    pub presence: bool,
}

/// A generated resource or data source schema.
#[derive(Clone, Debug, PartialEq)]
pub struct Schema {
    pub name: String,
    pub kind: SpecKind,
    pub description: String,
    pub attrs: Vec<Attr>,
}

impl std::fmt::Debug for SpecKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SpecKind::Resource => "Resource",
            SpecKind::DataSource => "DataSource",
        })
    }
}

/// A generation failure: a spec names a message the descriptors lack, an unknown flag, ...
#[derive(Debug)]
pub struct CodegenError(pub String);

impl std::fmt::Display for CodegenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CodegenError {}

fn fail<T>(message: String) -> Result<T, CodegenError> {
    Err(CodegenError(message))
}

/// A message with its comments, indexed by full name.
struct Message<'a> {
    descriptor: &'a DescriptorProto,
    /// Field name → (comment text, flags).
    comments: BTreeMap<String, (String, BTreeSet<String>)>,
    package: String,
}

struct Catalog<'a> {
    messages: BTreeMap<String, Message<'a>>,
    enums: BTreeMap<String, Vec<String>>,
}

const FLAGS: &[&str] =
    &["required", "optional", "computed", "sensitive", "force_new", "stable", "write_only", "skip", "list"];

/// Splits a leading comment into its description and its `tf:` flags.
fn parse_comment(comment: &str, at: &str) -> Result<(String, BTreeSet<String>), CodegenError> {
    let mut text = Vec::new();
    let mut flags = BTreeSet::new();
    for line in comment.lines() {
        let line = line.trim();
        if let Some(list) = line.strip_prefix("tf:") {
            for flag in list.split(',').map(str::trim).filter(|f| !f.is_empty()) {
                if !FLAGS.contains(&flag) {
                    return fail(format!("{at}: unknown tf flag {flag:?} (known: {})", FLAGS.join(", ")));
                }
                flags.insert(flag.to_string());
            }
        } else {
            text.push(line);
        }
    }
    Ok((text.join(" ").trim().to_string(), flags))
}

impl<'a> Catalog<'a> {
    fn new(set: &'a FileDescriptorSet) -> Result<Self, CodegenError> {
        let mut messages = BTreeMap::new();
        let mut enums = BTreeMap::new();
        for file in &set.file {
            let package = file.package().to_string();
            let mut comments: BTreeMap<(usize, usize), String> = BTreeMap::new();
            if let Some(info) = &file.source_code_info {
                for location in &info.location {
                    // [4, message, 2, field]: a field of a top-level message.
                    if let [4, message, 2, field] = location.path[..] {
                        comments.insert(
                            (message as usize, field as usize),
                            location.leading_comments().to_string(),
                        );
                    }
                }
            }
            for (m, descriptor) in file.message_type.iter().enumerate() {
                let full = format!("{package}.{}", descriptor.name());
                let mut fields = BTreeMap::new();
                for (f, field) in descriptor.field.iter().enumerate() {
                    let comment = comments.get(&(m, f)).map(String::as_str).unwrap_or("");
                    let at = format!("{full}.{}", field.name());
                    fields.insert(field.name().to_string(), parse_comment(comment, &at)?);
                }
                messages.insert(full, Message { descriptor, comments: fields, package: package.clone() });
            }
            for e in &file.enum_type {
                let values = e.value.iter().map(|v| v.name().to_string()).collect();
                enums.insert(format!("{package}.{}", e.name()), values);
            }
        }
        Ok(Self { messages, enums })
    }

    fn message(&self, name: &str) -> Result<&Message<'a>, CodegenError> {
        match self.messages.get(name.trim_start_matches('.')) {
            Some(m) => Ok(m),
            None => fail(format!("the proto descriptors have no message {name}")),
        }
    }
}

fn is_repeated(field: &FieldDescriptorProto) -> bool {
    field.label() == Label::Repeated
}

/// Whether the field is a member of a real (not proto3-optional) oneof.
fn in_oneof(field: &FieldDescriptorProto) -> bool {
    field.oneof_index.is_some() && !field.proto3_optional()
}

/// Whether unset differs from the zero value on the wire.
fn has_presence(field: &FieldDescriptorProto) -> bool {
    field.proto3_optional() || in_oneof(field) || (field.r#type() == Type::Message && !is_repeated(field))
}

const TIMESTAMP: &str = ".google.protobuf.Timestamp";

/// A message made of exactly a string `key` and a string `value` (a tag): a map in Terraform.
fn is_key_value(catalog: &Catalog, type_name: &str) -> bool {
    let Ok(m) = catalog.message(type_name) else { return false };
    let names: Vec<&str> = m.descriptor.field.iter().map(|f| f.name()).collect();
    names == ["key", "value"] && m.descriptor.field.iter().all(|f| f.r#type() == Type::String)
}

/// A message wrapping one repeated field (an update's "set to this list, maybe empty").
fn wrapped_list(catalog: &Catalog, type_name: &str) -> Option<String> {
    let m = catalog.message(type_name).ok()?;
    match &m.descriptor.field[..] {
        [only] if is_repeated(only) && only.r#type() != Type::Message => Some(only.name().to_string()),
        _ => None,
    }
}

fn scalar_kind(field: &FieldDescriptorProto) -> Kind {
    match field.r#type() {
        Type::Bool => Kind::Bool,
        Type::String | Type::Bytes | Type::Enum => Kind::String,
        _ => Kind::Number,
    }
}

/// The Terraform kind of a field; nested attributes inherit `computed` from their parent.
fn field_kind(
    catalog: &Catalog,
    field: &FieldDescriptorProto,
    flags: &BTreeSet<String>,
    computed: bool,
    depth: usize,
) -> Result<Kind, CodegenError> {
    if depth > 8 {
        return fail(format!("{}: messages nest too deep for Terraform", field.name()));
    }
    let ordered = flags.contains("list");
    if field.r#type() == Type::Message && field.type_name() != TIMESTAMP {
        if is_repeated(field) && is_key_value(catalog, field.type_name()) {
            return Ok(Kind::Map(Box::new(Kind::String)));
        }
        let attrs = nested_attrs(catalog, field.type_name(), computed, depth + 1)?;
        let nesting = match (is_repeated(field), ordered) {
            (false, _) => Nesting::Single,
            (true, true) => Nesting::List,
            (true, false) => Nesting::Set,
        };
        return Ok(Kind::Nested(nesting, attrs));
    }
    let scalar = if field.type_name() == TIMESTAMP { Kind::String } else { scalar_kind(field) };
    Ok(match (is_repeated(field), ordered) {
        (false, _) => scalar,
        (true, true) => Kind::List(Box::new(scalar)),
        (true, false) => Kind::Set(Box::new(scalar)),
    })
}

fn describe(catalog: &Catalog, field: &FieldDescriptorProto, comment: &str) -> String {
    let mut text = comment.to_string();
    if field.r#type() == Type::Enum
        && let Some(values) = catalog.enums.get(field.type_name().trim_start_matches('.'))
    {
        let values: Vec<&str> =
            values.iter().map(String::as_str).filter(|v| !v.ends_with("_UNSPECIFIED")).collect();
        let _ = write!(text, " One of: {}.", values.join(", "));
    }
    if field.type_name() == TIMESTAMP {
        text.push_str(" (RFC 3339)");
    }
    text
}

fn nested_attrs(
    catalog: &Catalog,
    type_name: &str,
    computed: bool,
    depth: usize,
) -> Result<Vec<Attr>, CodegenError> {
    let message = catalog.message(type_name)?;
    let mut attrs = Vec::new();
    for field in &message.descriptor.field {
        let (comment, flags) = &message.comments[field.name()];
        if flags.contains("skip") {
            continue;
        }
        let mode = if computed || flags.contains("computed") {
            Mode::Computed
        } else if flags.contains("required") {
            Mode::Required
        } else {
            Mode::Optional
        };
        attrs.push(Attr {
            name: field.name().to_string(),
            description: describe(catalog, field, comment),
            kind: field_kind(catalog, field, flags, mode == Mode::Computed, depth)?,
            mode,
            sensitive: flags.contains("sensitive"),
            force_new: false,
            stable: false,
            write_only: flags.contains("write_only"),
            default: None,
            presence: has_presence(field),
        });
    }
    Ok(attrs)
}

/// The fields that make up a spec's state, by name, with the message each comes from.
fn state_fields<'c>(
    catalog: &'c Catalog,
    spec: &Spec,
) -> Result<Vec<(&'c FieldDescriptorProto, &'c Message<'c>)>, CodegenError> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let states: Vec<String> = spec.state.iter().map(|s| format!(".{s}")).collect();
    for name in spec.state {
        let message = catalog.message(name)?;
        for field in &message.descriptor.field {
            if states.iter().any(|s| s == field.type_name()) || !seen.insert(field.name().to_string()) {
                continue;
            }
            out.push((field, message));
        }
    }
    Ok(out)
}

fn request_field<'c>(catalog: &'c Catalog, request: &str, name: &str) -> Option<&'c FieldDescriptorProto> {
    catalog.message(request).ok()?.descriptor.field.iter().find(|f| f.name() == name)
}

/// Builds the schema of one spec.
fn schema(catalog: &Catalog, spec: &Spec) -> Result<Schema, CodegenError> {
    let mut attrs = Vec::new();
    let resource = spec.kind == SpecKind::Resource;
    let create = catalog.message(spec.create)?;
    let skipped =
        |message: &Message, field: &FieldDescriptorProto| message.comments[field.name()].1.contains("skip");
    let mut names = BTreeSet::new();
    if !resource {
        for field in &create.descriptor.field {
            if skipped(create, field) {
                continue;
            }
            let (comment, flags) = &create.comments[field.name()];
            names.insert(field.name().to_string());
            attrs.push(Attr {
                name: field.name().to_string(),
                description: describe(catalog, field, comment),
                kind: field_kind(catalog, field, flags, false, 0)?,
                mode: if flags.contains("required") { Mode::Required } else { Mode::Optional },
                sensitive: flags.contains("sensitive"),
                force_new: false,
                stable: false,
                write_only: false,
                default: None,
                presence: has_presence(field),
            });
        }
    }
    for (field, message) in state_fields(catalog, spec)? {
        let (comment, flags) = &message.comments[field.name()];
        if flags.contains("skip") || names.contains(field.name()) {
            continue;
        }
        names.insert(field.name().to_string());
        let in_create = request_field(catalog, spec.create, field.name());
        let in_update = spec.update.iter().any(|u| request_field(catalog, u, field.name()).is_some());
        let identity = field.name() == spec.identity;
        let configurable = resource && (in_create.is_some() || in_update);
        // A server default applies when the create request can leave the field unset (or lacks it).
        let defaulted = in_create.is_none_or(has_presence);
        let inferred = if !configurable {
            Mode::Computed
        } else if identity {
            Mode::Required
        } else if defaulted {
            Mode::OptionalComputed
        } else {
            Mode::Optional
        };
        let mode = match (flags.contains("required"), flags.contains("optional"), flags.contains("computed"))
        {
            (true, _, _) => Mode::Required,
            (false, true, true) => Mode::OptionalComputed,
            (false, true, false) => Mode::Optional,
            (false, false, true) => Mode::Computed,
            (false, false, false) => inferred,
        };
        let force_new = flags.contains("force_new") || (mode != Mode::Computed && (identity || !in_update));
        attrs.push(Attr {
            name: field.name().to_string(),
            description: describe(catalog, field, comment),
            kind: field_kind(catalog, field, flags, mode == Mode::Computed, 0)?,
            mode,
            sensitive: flags.contains("sensitive"),
            force_new: resource && force_new,
            stable: identity || flags.contains("stable"),
            write_only: flags.contains("write_only"),
            default: None,
            presence: has_presence(field),
        });
    }
    if resource {
        // Create-only inputs the state messages lack: kept as configured.
        for field in &create.descriptor.field {
            if names.contains(field.name()) || skipped(create, field) {
                continue;
            }
            let (comment, flags) = &create.comments[field.name()];
            names.insert(field.name().to_string());
            attrs.push(Attr {
                name: field.name().to_string(),
                description: describe(catalog, field, comment),
                kind: field_kind(catalog, field, flags, false, 0)?,
                mode: if flags.contains("required") { Mode::Required } else { Mode::Optional },
                sensitive: flags.contains("sensitive"),
                force_new: true,
                stable: false,
                write_only: true,
                default: None,
                presence: has_presence(field),
            });
        }
    }
    for (name, description, default) in spec.extra {
        attrs.push(Attr {
            name: name.to_string(),
            description: description.to_string(),
            kind: Kind::Bool,
            mode: Mode::Optional,
            sensitive: false,
            force_new: false,
            stable: false,
            write_only: false,
            default: Some(default.to_string()),
            presence: false,
        });
    }
    if !spec.id_from.is_empty() && spec.id_from != "id" {
        attrs.push(Attr {
            name: "id".to_string(),
            description: format!("Same as `{}`.", spec.id_from),
            kind: Kind::String,
            mode: Mode::Computed,
            sensitive: false,
            force_new: false,
            stable: true,
            write_only: false,
            default: None,
            presence: false,
        });
    }
    Ok(Schema {
        name: spec.name.to_string(),
        kind: spec.kind,
        description: spec.description.to_string(),
        attrs,
    })
}

/// The schemas of every spec, from an encoded descriptor set (with source info).
pub fn schemas(descriptor_set: &[u8]) -> Result<Vec<Schema>, CodegenError> {
    let set: FileDescriptorSet = prost::Message::decode(descriptor_set)
        .map_err(|e| CodegenError(format!("cannot decode the descriptor set: {e}")))?;
    let catalog = Catalog::new(&set)?;
    SPECS.iter().map(|spec| schema(&catalog, spec)).collect()
}
