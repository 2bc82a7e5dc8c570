//! The tfplugin6 `Provider` service: Terraform's calls mapped onto the generated schemas, the
//! generic planning in `plan` and the RPCs in `resources`.

use std::collections::HashMap;
use std::path::PathBuf;

use tokio::sync::RwLock;
use tonic::{Request, Response, Status};

use super::codegen::{Attr, Kind, Mode, Nesting, Schema, SpecKind};
use super::convert::TfError;
use super::resources::{self, Failure};
use super::tfplugin6 as tf;
use super::value::{self, Value};
use crate::client::{Clients, Target, connect, describe_status};

/// The provider's own configuration block.
pub fn provider_attrs() -> Vec<Attr> {
    let attr = |name: &str, description: &str, sensitive: bool| Attr {
        name: name.into(),
        description: description.into(),
        kind: Kind::String,
        mode: Mode::Optional,
        sensitive,
        force_new: false,
        stable: false,
        write_only: false,
        default: None,
        presence: true,
    };
    vec![
        attr(
            "endpoint",
            "The control plane's gRPC endpoint, e.g. `http://127.0.0.1:50051` or `https://orgtrail.example:443`. \
             Default: the environment variable `ORGTRAIL_ENDPOINT`.",
            false,
        ),
        attr("token", "An API token (admin for most resources). Default: `ORGTRAIL_TOKEN`.", true),
        attr(
            "ca_cert",
            "Path of a PEM file with the CA certificate that signed the endpoint's TLS certificate (https \
             endpoints; the system roots are used too). Default: `ORGTRAIL_CA_CERT`.",
            false,
        ),
    ]
}

pub struct OrgtrailProvider {
    schemas: Vec<Schema>,
    /// Connected clients, or why there are none (reported when a resource needs them, so that a
    /// configuration without orgtrail resources validates and plans without credentials).
    clients: RwLock<Result<Clients, String>>,
}

impl Default for OrgtrailProvider {
    fn default() -> Self {
        let unconfigured = "Terraform called the provider before configuring it.".to_string();
        Self { schemas: super::generated::schemas(), clients: RwLock::new(Err(unconfigured)) }
    }
}

fn diagnostic(
    summary: impl Into<String>,
    detail: impl Into<String>,
    attribute: Option<&str>,
) -> tf::Diagnostic {
    tf::Diagnostic {
        severity: tf::diagnostic::Severity::Error as i32,
        summary: summary.into(),
        detail: detail.into(),
        attribute: attribute.map(|name| tf::AttributePath {
            steps: vec![tf::attribute_path::Step {
                selector: Some(tf::attribute_path::step::Selector::AttributeName(name.to_string())),
            }],
        }),
    }
}

fn invalid(e: &TfError) -> tf::Diagnostic {
    diagnostic(
        format!("Invalid value for {}", e.path.join(".")),
        e.to_string(),
        e.path.first().map(String::as_str),
    )
}

impl OrgtrailProvider {
    fn schema(&self, type_name: &str, kind: SpecKind) -> Result<&Schema, Status> {
        self.schemas.iter().find(|s| s.name == type_name && s.kind == kind).ok_or_else(|| {
            Status::invalid_argument(format!("type_name: no {kind:?} {type_name:?} in this provider"))
        })
    }

    async fn clients(&self) -> Result<Clients, tf::Diagnostic> {
        self.clients
            .read()
            .await
            .clone()
            .map_err(|why| diagnostic("orgtrail provider not configured", why, None))
    }

    /// A failure as a diagnostic; an InvalidArgument naming an attribute points at it.
    fn failed(schema: &Schema, failure: Failure) -> tf::Diagnostic {
        match failure {
            Failure::Invalid(e) => invalid(&e),
            Failure::Rpc(call, status) => {
                let field = status.message().split([':', ' ', '.', '[']).next().unwrap_or("");
                let attribute = (status.code() == tonic::Code::InvalidArgument)
                    .then(|| schema.attrs.iter().find(|a| a.name == field).map(|a| a.name.as_str()))
                    .flatten();
                diagnostic(format!("orgtrail {call} failed"), describe_status(&status), attribute)
            }
        }
    }
}

fn decode(dynamic: Option<&tf::DynamicValue>, attrs: &[Attr]) -> Result<Value, Status> {
    let Some(dynamic) = dynamic else { return Ok(Value::Null) };
    let decoded = if !dynamic.msgpack.is_empty() {
        value::from_msgpack(&dynamic.msgpack, attrs)
    } else if !dynamic.json.is_empty() {
        serde_json::from_slice(&dynamic.json)
            .map_err(|e| value::DecodeError(format!("bad JSON: {e}")))
            .and_then(|json| value::from_json(&json, attrs))
    } else {
        Ok(Value::Null)
    };
    decoded.map_err(|e| Status::invalid_argument(e.to_string()))
}

fn encode(value: &Value, attrs: &[Attr]) -> Option<tf::DynamicValue> {
    let conformed = conform(value, attrs);
    Some(tf::DynamicValue { msgpack: value::to_msgpack(&conformed), json: Vec::new() })
}

/// Keeps exactly the schema's attributes (conversions also render fields a schema skips).
fn conform(value: &Value, attrs: &[Attr]) -> Value {
    let Value::Object(_) = value else { return value.clone() };
    Value::Object(
        attrs
            .iter()
            .map(|a| {
                let v = value.get(&a.name);
                let v = match (&a.kind, v) {
                    (Kind::Nested(_, inner), Value::Object(_)) => conform(v, inner),
                    (Kind::Nested(_, inner), Value::Set(items)) => {
                        Value::Set(items.iter().map(|i| conform(i, inner)).collect())
                    }
                    (Kind::Nested(_, inner), Value::List(items)) => {
                        Value::List(items.iter().map(|i| conform(i, inner)).collect())
                    }
                    _ => v.clone(),
                };
                (a.name.clone(), v)
            })
            .collect(),
    )
}

fn private_of(bytes: &[u8], attrs: &[Attr]) -> Option<Value> {
    let json: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    value::from_json(&json, attrs).ok()
}

fn private_bytes(server: &Value, attrs: &[Attr]) -> Vec<u8> {
    serde_json::to_vec(&value::to_json(&conform(server, attrs))).unwrap_or_default()
}

fn to_schema_attr(attr: &Attr, top: bool) -> tf::schema::Attribute {
    // A top-level optional attribute that takes a default is also "computed": the plan sets it.
    let fills_default = top && attr.mode == Mode::Optional && (!attr.presence || attr.default.is_some());
    let mut out = tf::schema::Attribute {
        name: attr.name.clone(),
        description: attr.description.clone(),
        description_kind: tf::StringKind::Markdown as i32,
        required: attr.mode == Mode::Required,
        optional: matches!(attr.mode, Mode::Optional | Mode::OptionalComputed),
        computed: matches!(attr.mode, Mode::OptionalComputed | Mode::Computed) || fills_default,
        sensitive: attr.sensitive,
        ..Default::default()
    };
    match &attr.kind {
        Kind::Nested(nesting, attrs) => {
            let nesting = match nesting {
                Nesting::Single => tf::schema::object::NestingMode::Single,
                Nesting::List => tf::schema::object::NestingMode::List,
                Nesting::Set => tf::schema::object::NestingMode::Set,
            };
            #[allow(deprecated)]
            let object = tf::schema::Object {
                attributes: attrs.iter().map(|a| to_schema_attr(a, false)).collect(),
                nesting: nesting as i32,
                ..Default::default()
            };
            out.nested_type = Some(object);
        }
        kind => out.r#type = value::type_json(kind).to_string().into_bytes(),
    }
    out
}

fn to_schema(description: &str, attrs: &[Attr]) -> tf::Schema {
    tf::Schema {
        version: 0,
        block: Some(tf::schema::Block {
            version: 0,
            attributes: attrs.iter().map(|a| to_schema_attr(a, true)).collect(),
            block_types: Vec::new(),
            description: description.to_string(),
            description_kind: tf::StringKind::Markdown as i32,
            deprecated: false,
        }),
    }
}

fn capabilities() -> Option<tf::ServerCapabilities> {
    Some(tf::ServerCapabilities {
        plan_destroy: true,
        get_provider_schema_optional: false,
        move_resource_state: false,
    })
}

fn env_or(config: &Value, name: &str, variable: &str) -> Option<String> {
    match config.get(name) {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => std::env::var(variable).ok().filter(|v| !v.is_empty()),
    }
}

#[tonic::async_trait]
impl tf::provider_server::Provider for OrgtrailProvider {
    async fn get_metadata(
        &self,
        _: Request<tf::get_metadata::Request>,
    ) -> Result<Response<tf::get_metadata::Response>, Status> {
        let of = |kind: SpecKind| self.schemas.iter().filter(move |s| s.kind == kind).map(|s| s.name.clone());
        Ok(Response::new(tf::get_metadata::Response {
            server_capabilities: capabilities(),
            diagnostics: Vec::new(),
            data_sources: of(SpecKind::DataSource)
                .map(|type_name| tf::get_metadata::DataSourceMetadata { type_name })
                .collect(),
            resources: of(SpecKind::Resource)
                .map(|type_name| tf::get_metadata::ResourceMetadata { type_name })
                .collect(),
            functions: Vec::new(),
        }))
    }

    async fn get_provider_schema(
        &self,
        _: Request<tf::get_provider_schema::Request>,
    ) -> Result<Response<tf::get_provider_schema::Response>, Status> {
        let of = |kind: SpecKind| -> HashMap<String, tf::Schema> {
            self.schemas
                .iter()
                .filter(|s| s.kind == kind)
                .map(|s| (s.name.clone(), to_schema(&s.description, &s.attrs)))
                .collect()
        };
        Ok(Response::new(tf::get_provider_schema::Response {
            provider: Some(to_schema(
                "orgtrail: CloudTrail-compatible organization trails.",
                &provider_attrs(),
            )),
            resource_schemas: of(SpecKind::Resource),
            data_source_schemas: of(SpecKind::DataSource),
            functions: HashMap::new(),
            diagnostics: Vec::new(),
            provider_meta: None,
            server_capabilities: capabilities(),
        }))
    }

    async fn validate_provider_config(
        &self,
        request: Request<tf::validate_provider_config::Request>,
    ) -> Result<Response<tf::validate_provider_config::Response>, Status> {
        decode(request.get_ref().config.as_ref(), &provider_attrs())?;
        Ok(Response::new(tf::validate_provider_config::Response { diagnostics: Vec::new() }))
    }

    async fn validate_resource_config(
        &self,
        request: Request<tf::validate_resource_config::Request>,
    ) -> Result<Response<tf::validate_resource_config::Response>, Status> {
        let request = request.into_inner();
        let schema = self.schema(&request.type_name, SpecKind::Resource)?;
        let config = decode(request.config.as_ref(), &schema.attrs)?;
        let mut diagnostics = Vec::new();
        if let Some(resource) = resources::resource(&request.type_name)
            && let Err(e) = resource.validate(&config)
        {
            diagnostics.push(invalid(&e));
        }
        Ok(Response::new(tf::validate_resource_config::Response { diagnostics }))
    }

    async fn validate_data_resource_config(
        &self,
        request: Request<tf::validate_data_resource_config::Request>,
    ) -> Result<Response<tf::validate_data_resource_config::Response>, Status> {
        let request = request.into_inner();
        let schema = self.schema(&request.type_name, SpecKind::DataSource)?;
        decode(request.config.as_ref(), &schema.attrs)?;
        Ok(Response::new(tf::validate_data_resource_config::Response { diagnostics: Vec::new() }))
    }

    async fn upgrade_resource_state(
        &self,
        request: Request<tf::upgrade_resource_state::Request>,
    ) -> Result<Response<tf::upgrade_resource_state::Response>, Status> {
        let request = request.into_inner();
        let schema = self.schema(&request.type_name, SpecKind::Resource)?;
        let json = request.raw_state.map(|raw| raw.json).unwrap_or_default();
        let state = if json.is_empty() {
            Value::Null
        } else {
            let json: serde_json::Value = serde_json::from_slice(&json)
                .map_err(|e| Status::invalid_argument(format!("raw_state: {e}")))?;
            // Attributes a newer schema added are null; ones it dropped are ignored.
            value::from_json(&json, &schema.attrs).map_err(|e| Status::invalid_argument(e.to_string()))?
        };
        Ok(Response::new(tf::upgrade_resource_state::Response {
            upgraded_state: encode(&state, &schema.attrs),
            diagnostics: Vec::new(),
        }))
    }

    async fn configure_provider(
        &self,
        request: Request<tf::configure_provider::Request>,
    ) -> Result<Response<tf::configure_provider::Response>, Status> {
        let config = decode(request.get_ref().config.as_ref(), &provider_attrs())?;
        let endpoint = env_or(&config, "endpoint", "ORGTRAIL_ENDPOINT");
        let token = env_or(&config, "token", "ORGTRAIL_TOKEN");
        let (Some(endpoint), Some(token)) = (endpoint, token) else {
            let detail =
                "Set `endpoint` and `token` in the provider block or ORGTRAIL_ENDPOINT and ORGTRAIL_TOKEN.";
            let diagnostics = vec![diagnostic("Missing orgtrail endpoint or token", detail, None)];
            return Ok(Response::new(tf::configure_provider::Response { diagnostics }));
        };
        let ca_cert = env_or(&config, "ca_cert", "ORGTRAIL_CA_CERT").map(PathBuf::from);
        let mut diagnostics = Vec::new();
        match connect(&Target { endpoint, token, ca_cert }).await {
            Ok(clients) => *self.clients.write().await = Ok(clients),
            Err(e) => {
                diagnostics.push(diagnostic("Cannot connect to orgtrail", format!("{e:#}"), Some("endpoint")))
            }
        }
        Ok(Response::new(tf::configure_provider::Response { diagnostics }))
    }

    async fn read_resource(
        &self,
        request: Request<tf::read_resource::Request>,
    ) -> Result<Response<tf::read_resource::Response>, Status> {
        let request = request.into_inner();
        let schema = self.schema(&request.type_name, SpecKind::Resource)?;
        let attrs = &schema.attrs;
        let prior = decode(request.current_state.as_ref(), attrs)?;
        let respond = |state: &Value, private: Vec<u8>, diagnostics| {
            Ok(Response::new(tf::read_resource::Response {
                new_state: encode(state, attrs),
                diagnostics,
                private,
            }))
        };
        let (Some(resource), Some(id)) = (resources::resource(&request.type_name), prior.get("id").as_str())
        else {
            return respond(&prior, request.private, Vec::new());
        };
        let mut clients = match self.clients().await {
            Ok(c) => c,
            Err(d) => return respond(&prior, request.private, vec![d]),
        };
        match resource.read(&mut clients, id).await {
            Ok(None) => respond(&Value::Null, Vec::new(), Vec::new()),
            Ok(Some(server)) => {
                let private = private_of(&request.private, attrs);
                let state = super::plan::refreshed(attrs, &prior, private.as_ref(), &server);
                respond(&state, private_bytes(&server, attrs), Vec::new())
            }
            Err(failure) => respond(&prior, request.private, vec![Self::failed(schema, failure)]),
        }
    }

    async fn plan_resource_change(
        &self,
        request: Request<tf::plan_resource_change::Request>,
    ) -> Result<Response<tf::plan_resource_change::Response>, Status> {
        let request = request.into_inner();
        let schema = self.schema(&request.type_name, SpecKind::Resource)?;
        let attrs = &schema.attrs;
        let prior = decode(request.prior_state.as_ref(), attrs)?;
        let config = decode(request.config.as_ref(), attrs)?;
        let proposed = decode(request.proposed_new_state.as_ref(), attrs)?;
        if proposed.is_null() {
            // Destroy.
            return Ok(Response::new(tf::plan_resource_change::Response {
                planned_state: request.proposed_new_state,
                planned_private: request.prior_private,
                ..Default::default()
            }));
        }
        let planned = super::plan::plan(attrs, &prior, &config, &proposed);
        let requires_replace = planned
            .requires_replace
            .iter()
            .map(|name| tf::AttributePath {
                steps: vec![tf::attribute_path::Step {
                    selector: Some(tf::attribute_path::step::Selector::AttributeName(name.clone())),
                }],
            })
            .collect();
        Ok(Response::new(tf::plan_resource_change::Response {
            planned_state: encode(&planned.state, attrs),
            requires_replace,
            planned_private: request.prior_private,
            diagnostics: Vec::new(),
            legacy_type_system: false,
        }))
    }

    async fn apply_resource_change(
        &self,
        request: Request<tf::apply_resource_change::Request>,
    ) -> Result<Response<tf::apply_resource_change::Response>, Status> {
        let request = request.into_inner();
        let schema = self.schema(&request.type_name, SpecKind::Resource)?;
        let attrs = &schema.attrs;
        let prior = decode(request.prior_state.as_ref(), attrs)?;
        let planned = decode(request.planned_state.as_ref(), attrs)?;
        let resource = resources::resource(&request.type_name).ok_or_else(|| {
            Status::invalid_argument(format!("type_name: unknown resource {}", request.type_name))
        })?;
        let fail = |state: &Value, private: Vec<u8>, diagnostic| {
            Ok(Response::new(tf::apply_resource_change::Response {
                new_state: encode(state, attrs),
                private,
                diagnostics: vec![diagnostic],
                legacy_type_system: false,
            }))
        };
        let mut clients = match self.clients().await {
            Ok(c) => c,
            Err(d) => return fail(&prior, request.planned_private, d),
        };
        let prior_id = prior.get("id").as_str().map(str::to_string);
        if planned.is_null() {
            let Some(id) = prior_id else {
                return fail(&Value::Null, Vec::new(), invalid(&TfError::new("id", "missing")));
            };
            return match resource.delete(&mut clients, &id).await {
                Ok(()) => Ok(Response::new(tf::apply_resource_change::Response {
                    new_state: encode(&Value::Null, attrs),
                    ..Default::default()
                })),
                Err(failure) => fail(&prior, request.planned_private, Self::failed(schema, failure)),
            };
        }
        let (id, extras) = match &prior_id {
            None => match resource.create(&mut clients, &planned).await {
                Ok(created) => created,
                Err(failure) => return fail(&Value::Null, Vec::new(), Self::failed(schema, failure)),
            },
            Some(id) => match resource.update(&mut clients, id, &prior, &planned).await {
                Ok(()) => (id.clone(), Value::Null),
                // The prior state stays: what changed before the failure shows up at the next refresh.
                Err(failure) => return fail(&prior, request.planned_private, Self::failed(schema, failure)),
            },
        };
        let server = match resource.read(&mut clients, &id).await {
            Ok(Some(server)) => server,
            Ok(None) => {
                let failure = Failure::Rpc("read after apply", Status::not_found(format!("{id} vanished")));
                return fail(&Value::Null, Vec::new(), Self::failed(schema, failure));
            }
            Err(failure) => return fail(&prior, request.planned_private, Self::failed(schema, failure)),
        };
        let mut with_extras = server.clone();
        if let Value::Object(extra) = &extras {
            for (k, v) in extra {
                with_extras.set(k, v.clone());
            }
        }
        let state = super::plan::applied(attrs, &planned, &with_extras);
        Ok(Response::new(tf::apply_resource_change::Response {
            new_state: encode(&state, attrs),
            private: private_bytes(&server, attrs),
            diagnostics: Vec::new(),
            legacy_type_system: false,
        }))
    }

    async fn import_resource_state(
        &self,
        request: Request<tf::import_resource_state::Request>,
    ) -> Result<Response<tf::import_resource_state::Response>, Status> {
        let request = request.into_inner();
        let schema = self.schema(&request.type_name, SpecKind::Resource)?;
        let resource = resources::resource(&request.type_name).ok_or_else(|| {
            Status::invalid_argument(format!("type_name: unknown resource {}", request.type_name))
        })?;
        let fail = |diagnostic| {
            Ok(Response::new(tf::import_resource_state::Response {
                imported_resources: Vec::new(),
                diagnostics: vec![diagnostic],
            }))
        };
        let mut clients = match self.clients().await {
            Ok(c) => c,
            Err(d) => return fail(d),
        };
        match resource.read(&mut clients, &request.id).await {
            Ok(Some(server)) => Ok(Response::new(tf::import_resource_state::Response {
                imported_resources: vec![tf::import_resource_state::ImportedResource {
                    type_name: request.type_name.clone(),
                    state: encode(&server, &schema.attrs),
                    private: private_bytes(&server, &schema.attrs),
                }],
                diagnostics: Vec::new(),
            })),
            Ok(None) => fail(diagnostic(
                "Cannot import a resource that does not exist",
                format!("orgtrail has no {} {:?}.", request.type_name, request.id),
                None,
            )),
            Err(failure) => fail(Self::failed(schema, failure)),
        }
    }

    async fn move_resource_state(
        &self,
        _: Request<tf::move_resource_state::Request>,
    ) -> Result<Response<tf::move_resource_state::Response>, Status> {
        Err(Status::unimplemented("orgtrail resources cannot be moved from other resource types"))
    }

    async fn read_data_source(
        &self,
        request: Request<tf::read_data_source::Request>,
    ) -> Result<Response<tf::read_data_source::Response>, Status> {
        let request = request.into_inner();
        let schema = self.schema(&request.type_name, SpecKind::DataSource)?;
        let config = decode(request.config.as_ref(), &schema.attrs)?;
        let source = resources::data_source(&request.type_name).ok_or_else(|| {
            Status::invalid_argument(format!("type_name: unknown data source {}", request.type_name))
        })?;
        let result = match self.clients().await {
            Ok(mut clients) => source.read(&mut clients, &config).await.map_err(|f| Self::failed(schema, f)),
            Err(d) => Err(d),
        };
        Ok(Response::new(match result {
            Ok(state) => tf::read_data_source::Response {
                state: encode(&state, &schema.attrs),
                diagnostics: Vec::new(),
            },
            Err(d) => tf::read_data_source::Response { state: None, diagnostics: vec![d] },
        }))
    }

    async fn get_functions(
        &self,
        _: Request<tf::get_functions::Request>,
    ) -> Result<Response<tf::get_functions::Response>, Status> {
        Ok(Response::new(tf::get_functions::Response { functions: HashMap::new(), diagnostics: Vec::new() }))
    }

    async fn call_function(
        &self,
        _: Request<tf::call_function::Request>,
    ) -> Result<Response<tf::call_function::Response>, Status> {
        Err(Status::unimplemented("orgtrail has no provider functions"))
    }

    async fn stop_provider(
        &self,
        _: Request<tf::stop_provider::Request>,
    ) -> Result<Response<tf::stop_provider::Response>, Status> {
        Ok(Response::new(tf::stop_provider::Response { error: String::new() }))
    }
}
