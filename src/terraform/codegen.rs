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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

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

/// Everything the provider exposes.
pub const SPECS: &[Spec] = &[
    Spec {
        name: "orgtrail_trail",
        kind: SpecKind::Resource,
        description: "A trail: delivers the events it selects, for the accounts and regions it covers, to an \
            S3 bucket in CloudTrail's layout. Import with the trail's name or ARN.",
        state: &[
            "orgtrail.v1.Trail",
            "orgtrail.v1.EventSelectorsResponse",
            "orgtrail.v1.InsightSelectorsResponse",
        ],
        create: "orgtrail.v1.CreateTrailRequest",
        update: &[
            "orgtrail.v1.UpdateTrailRequest",
            "orgtrail.v1.PutEventSelectorsRequest",
            "orgtrail.v1.PutInsightSelectorsRequest",
            "orgtrail.v1.AddTagsRequest",
        ],
        id_from: "trail_arn",
        identity: "name",
        extra: &[(
            "logging",
            "Whether the trail delivers events (StartLogging / StopLogging). Default: true.",
            "true",
        )],
    },
    Spec {
        name: "orgtrail_account",
        kind: SpecKind::Resource,
        description: "A member account of the organization. Destroying it deregisters the account (its \
            delivered data stays). Import with the 12-digit account id.",
        state: &["orgtrail.v1.Account"],
        create: "orgtrail.v1.RegisterAccountRequest",
        update: &["orgtrail.v1.UpdateAccountRequest"],
        id_from: "account_id",
        identity: "account_id",
        extra: &[],
    },
    Spec {
        name: "orgtrail_token",
        kind: SpecKind::Resource,
        description: "An API token. Its secret is known only at creation and kept in the state (sensitive); \
            destroying the resource revokes the token. Every change replaces it. Import with the token id \
            (the secret is then unknown).",
        state: &["orgtrail.v1.Token", "orgtrail.v1.CreateTokenResponse"],
        create: "orgtrail.v1.CreateTokenRequest",
        update: &[],
        id_from: "token_id",
        identity: "token_id",
        extra: &[],
    },
    Spec {
        name: "orgtrail_alert_rule",
        kind: SpecKind::Resource,
        description: "An alert rule: an EventBridge event pattern or a Sigma rule evaluated against every \
            event, with the target its alerts go to. Import with the rule's name.",
        state: &["orgtrail.v1.Rule"],
        create: "orgtrail.v1.CreateRuleRequest",
        update: &["orgtrail.v1.UpdateRuleRequest"],
        id_from: "name",
        identity: "name",
        extra: &[],
    },
    Spec {
        name: "orgtrail_organization",
        kind: SpecKind::DataSource,
        description: "The organization of this orgtrail deployment.",
        state: &["orgtrail.v1.Organization"],
        create: "orgtrail.v1.DescribeOrganizationRequest",
        update: &[],
        id_from: "id",
        identity: "id",
        extra: &[],
    },
    Spec {
        name: "orgtrail_accounts",
        kind: SpecKind::DataSource,
        description: "The member accounts visible to the provider's token, optionally only those in one state.",
        state: &["orgtrail.v1.ListAccountsResponse"],
        create: "orgtrail.v1.ListAccountsRequest",
        update: &[],
        id_from: "",
        identity: "",
        extra: &[],
    },
    Spec {
        name: "orgtrail_trail_status",
        kind: SpecKind::DataSource,
        description: "Whether a trail is logging and how its deliveries went.",
        state: &["orgtrail.v1.TrailStatus"],
        create: "orgtrail.v1.GetTrailStatusRequest",
        update: &[],
        id_from: "trail_arn",
        identity: "trail_arn",
        extra: &[],
    },
];

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

/// The generated Rust source: the schema tables and the conversions (see `src/terraform/generated.rs`).
pub fn generate(descriptor_set: &[u8]) -> Result<String, CodegenError> {
    let set: FileDescriptorSet = prost::Message::decode(descriptor_set)
        .map_err(|e| CodegenError(format!("cannot decode the descriptor set: {e}")))?;
    let catalog = Catalog::new(&set)?;
    let mut out = String::from("// @generated by src/terraform/codegen.rs from the proto descriptors.\n\n");
    out.push_str("pub fn schemas() -> Vec<Schema> {\n    vec![\n");
    for spec in SPECS {
        let schema = schema(&catalog, spec)?;
        let _ = writeln!(
            out,
            "        Schema {{ name: {:?}.into(), kind: SpecKind::{:?}, description: {:?}.into(), attrs: {} }},",
            schema.name,
            schema.kind,
            schema.description,
            attrs_source(&schema.attrs)
        );
    }
    out.push_str("    ]\n}\n\n");

    // Conversions for every message a spec reaches.
    let mut pending: Vec<String> = Vec::new();
    for spec in SPECS {
        pending.extend(spec.state.iter().map(|s| s.to_string()));
        pending.push(spec.create.to_string());
        pending.extend(spec.update.iter().map(|s| s.to_string()));
    }
    let mut done = BTreeSet::new();
    while let Some(name) = pending.pop() {
        if !done.insert(name.clone()) {
            continue;
        }
        let message = catalog.message(&name)?;
        for field in &message.descriptor.field {
            if field.r#type() == Type::Message && field.type_name() != TIMESTAMP {
                pending.push(field.type_name().trim_start_matches('.').to_string());
            }
        }
        let updates = SPECS.iter().any(|s| s.update.contains(&name.as_str()));
        out.push_str(&message_conversions(&catalog, &name, message, updates)?);
    }
    Ok(out)
}

fn kind_source(kind: &Kind) -> String {
    match kind {
        Kind::Bool => "Kind::Bool".into(),
        Kind::Number => "Kind::Number".into(),
        Kind::String => "Kind::String".into(),
        Kind::List(k) => format!("Kind::List(Box::new({}))", kind_source(k)),
        Kind::Set(k) => format!("Kind::Set(Box::new({}))", kind_source(k)),
        Kind::Map(k) => format!("Kind::Map(Box::new({}))", kind_source(k)),
        Kind::Nested(n, attrs) => format!("Kind::Nested(Nesting::{n:?}, {})", attrs_source(attrs)),
    }
}

fn attrs_source(attrs: &[Attr]) -> String {
    let mut out = String::from("vec![");
    for a in attrs {
        let _ = write!(
            out,
            "Attr {{ name: {:?}.into(), description: {:?}.into(), kind: {}, mode: Mode::{:?}, sensitive: {}, \
             force_new: {}, stable: {}, write_only: {}, default: {}, presence: {} }},",
            a.name,
            a.description,
            kind_source(&a.kind),
            a.mode,
            a.sensitive,
            a.force_new,
            a.stable,
            a.write_only,
            a.default.as_ref().map_or("None".to_string(), |d| format!("Some({d:?}.into())")),
            a.presence,
        );
    }
    out.push(']');
    out
}

/// prost's module name of a message's nested types (oneofs): snake case.
fn to_snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn to_camel(snake: &str) -> String {
    snake
        .split('_')
        .map(|part| {
            let mut chars = part.chars();
            match chars.next() {
                Some(c) => c.to_ascii_uppercase().to_string() + chars.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

/// `pb::Name` of a message or enum of our package (prost's naming).
fn rust_type(catalog: &Catalog, full: &str) -> String {
    let full = full.trim_start_matches('.');
    let package = catalog
        .messages
        .get(full)
        .map(|m| m.package.clone())
        .unwrap_or_else(|| full.rsplit_once('.').map(|(p, _)| p.to_string()).unwrap_or_default());
    let short = full.strip_prefix(&format!("{package}.")).unwrap_or(full);
    format!("pb::{}", to_camel(short))
}

fn rust_field(name: &str) -> String {
    match name {
        "type" => "r#type".into(),
        other => other.into(),
    }
}

/// Rust type of a scalar field.
fn scalar_type(field: &FieldDescriptorProto) -> &'static str {
    match field.r#type() {
        Type::Bool => "bool",
        Type::String => "String",
        Type::Int32 | Type::Sint32 | Type::Sfixed32 | Type::Enum => "i32",
        Type::Uint32 | Type::Fixed32 => "u32",
        Type::Int64 | Type::Sint64 | Type::Sfixed64 => "i64",
        Type::Uint64 | Type::Fixed64 => "u64",
        Type::Float => "f32",
        Type::Double => "f64",
        _ => "Vec<u8>",
    }
}

/// The `to_tf` and `from_tf` (and, for update requests, `from_change`) of one message.
fn message_conversions(
    catalog: &Catalog,
    full: &str,
    message: &Message,
    updates: bool,
) -> Result<String, CodegenError> {
    let ty = rust_type(catalog, full);
    let module = to_snake(full.rsplit('.').next().unwrap_or(full));
    let mut to = String::new();
    let mut from = String::new();
    let mut change = String::new();
    let mut oneofs: BTreeMap<i32, Vec<&FieldDescriptorProto>> = BTreeMap::new();
    for field in &message.descriptor.field {
        let name = field.name();
        let rf = rust_field(name);
        if in_oneof(field) {
            oneofs.entry(field.oneof_index()).or_default().push(field);
            continue;
        }
        let ordered = message.comments[name].1.contains("list");
        let enum_ty = (field.r#type() == Type::Enum).then(|| rust_type(catalog, field.type_name()));
        let message_ty = (field.r#type() == Type::Message).then(|| field.type_name().to_string());
        let (to_expr, from_expr) = match (&message_ty, &enum_ty, is_repeated(field)) {
            (Some(t), _, _) if t == TIMESTAMP => {
                (format!("timestamp_to_tf(self.{rf}.as_ref())"), format!("timestamp_from_tf(v, {name:?})?"))
            }
            (Some(t), _, true) if is_key_value(catalog, t) => {
                let kv = rust_type(catalog, t);
                (
                    format!("map_to_tf(self.{rf}.iter().map(|t| (t.key.clone(), t.value.clone())), nested)"),
                    format!(
                        "map_from_tf(v, {name:?})?.unwrap_or_default().into_iter().map(|(key, value)| {kv} {{ key, value }}).collect()"
                    ),
                )
            }
            (Some(t), _, true) => (
                format!("messages_to_tf(&self.{rf}, nested, {ordered})"),
                format!("messages_from_tf::<{}>(v, {name:?})?.unwrap_or_default()", rust_type(catalog, t)),
            ),
            (Some(t), _, false) => {
                let target = rust_type(catalog, t);
                // An update's wrapper of one list, filled from the list attribute of the same name.
                match wrapped_list(catalog, t) {
                    Some(inner) if updates => (
                        String::from("Value::Null"),
                        format!(
                            "list_from_tf::<String>(v, {name:?})?.map(|values| {target} {{ {}: values }})",
                            rust_field(&inner)
                        ),
                    ),
                    _ => (
                        format!("self.{rf}.as_ref().map_or(Value::Null, |m| m.to_tf(true))"),
                        format!("message_from_tf::<{target}>(v, {name:?})?"),
                    ),
                }
            }
            (None, Some(e), true) => (
                format!(
                    "enums_to_tf(&self.{rf}, |n| {e}::try_from(n).ok().map(|e| e.as_str_name()), nested, {ordered})"
                ),
                format!(
                    "enums_from_tf(v, {name:?}, |s| {e}::from_str_name(s).map(|e| e as i32))?.unwrap_or_default()"
                ),
            ),
            (None, Some(e), false) => {
                let to_expr = if field.proto3_optional() {
                    format!(
                        "self.{rf}.and_then(|n| {e}::try_from(n).ok()).map_or(Value::Null, |e| Value::String(e.as_str_name().into()))"
                    )
                } else {
                    format!(
                        "enum_to_tf(self.{rf}, |n| {e}::try_from(n).ok().map(|e| e.as_str_name()), nested)"
                    )
                };
                let from_expr =
                    format!("enum_from_tf(v, {name:?}, |s| {e}::from_str_name(s).map(|e| e as i32))?");
                let from_expr = if field.proto3_optional() {
                    from_expr
                } else {
                    format!("{from_expr}.unwrap_or_default()")
                };
                (to_expr, from_expr)
            }
            (None, None, true) => (
                format!("scalars_to_tf(&self.{rf}, nested, {ordered})"),
                format!("list_from_tf::<{}>(v, {name:?})?.unwrap_or_default()", scalar_type(field)),
            ),
            (None, None, false) => {
                let t = scalar_type(field);
                if field.proto3_optional() {
                    (
                        format!("self.{rf}.as_ref().map_or(Value::Null, |x| x.to_tf(false))"),
                        format!("scalar_from_tf::<{t}>(v, {name:?})?"),
                    )
                } else {
                    (
                        format!("self.{rf}.to_tf(nested)"),
                        format!("scalar_from_tf::<{t}>(v, {name:?})?.unwrap_or_default()"),
                    )
                }
            }
        };
        let _ = writeln!(to, "        o.insert({name:?}.into(), {to_expr});");
        let _ = writeln!(from, "            {rf}: {from_expr},");
        if updates {
            // Fields with presence are sent only when they changed; others (identity, whole lists) always.
            let expr = if has_presence(field) {
                format!("if changed(prior, v, {name:?}) {{ {from_expr} }} else {{ None }}")
            } else {
                from_expr.clone()
            };
            let _ = writeln!(change, "            {rf}: {expr},");
        }
    }
    for (index, members) in oneofs {
        let oneof = &message.descriptor.oneof_decl[index as usize];
        let of = rust_field(oneof.name());
        let variant_ty = format!("pb::{module}::{}", to_camel(oneof.name()));
        let mut from_expr = String::from("None");
        for field in members.iter().rev() {
            let name = field.name();
            let variant = to_camel(name);
            let t = scalar_type(field);
            let _ = writeln!(
                to,
                "        o.insert({name:?}.into(), match &self.{of} {{ Some({variant_ty}::{variant}(x)) => x.to_tf(false), _ => Value::Null }});"
            );
            from_expr = format!(
                "match scalar_from_tf::<{t}>(v, {name:?})? {{ Some(x) => Some({variant_ty}::{variant}(x)), None => {from_expr} }}"
            );
        }
        let _ = writeln!(from, "            {of}: {from_expr},");
        if updates {
            let names: Vec<String> =
                members.iter().map(|f| format!("changed(prior, v, {:?})", f.name())).collect();
            let _ = writeln!(
                change,
                "            {of}: if {} {{ {from_expr} }} else {{ None }},",
                names.join(" || ")
            );
        }
    }
    let mut out = String::new();
    let _ = writeln!(out, "impl TfMessage for {ty} {{");
    let _ = writeln!(
        out,
        "    #[allow(unused_variables, unused_mut)]\n    fn to_tf(&self, nested: bool) -> Value {{"
    );
    let _ = writeln!(
        out,
        "        let mut o = std::collections::BTreeMap::new();\n{to}        Value::Object(o)\n    }}"
    );
    let _ = writeln!(
        out,
        "    #[allow(unused_variables)]\n    fn from_tf(v: &Value) -> Result<Self, TfError> {{"
    );
    let _ = writeln!(
        out,
        "        #[allow(clippy::needless_update)]\n        Ok(Self {{\n{from}            ..Default::default()\n        }})\n    }}\n}}\n"
    );
    if updates {
        let _ = writeln!(out, "impl TfUpdate for {ty} {{");
        let _ = writeln!(
            out,
            "    #[allow(unused_variables)]\n    fn from_change(prior: &Value, v: &Value) -> Result<Self, TfError> {{"
        );
        let _ = writeln!(
            out,
            "        #[allow(clippy::needless_update)]\n        Ok(Self {{\n{change}            ..Default::default()\n        }})\n    }}\n}}\n"
        );
    }
    Ok(out)
}
