//! A provider with no resources, only an optional `endpoint` setting: exercises the plugin
//! transport ([`super::plugin`]) until the real provider replaces it.

use tonic::{Request, Response, Status};

use super::tfplugin6::provider_server::Provider;
use super::tfplugin6::{
    Schema, ServerCapabilities, configure_provider, get_metadata, get_provider_schema, schema,
    validate_provider_config,
};

/// Answers the schema, metadata, validate and configure calls; everything else is Unimplemented.
#[derive(Debug, Default)]
pub struct EmptyProvider;

fn capabilities() -> ServerCapabilities {
    ServerCapabilities { plan_destroy: true, ..Default::default() }
}

#[tonic::async_trait]
impl Provider for EmptyProvider {
    async fn get_metadata(
        &self,
        _: Request<get_metadata::Request>,
    ) -> Result<Response<get_metadata::Response>, Status> {
        Ok(Response::new(get_metadata::Response {
            server_capabilities: Some(capabilities()),
            ..Default::default()
        }))
    }

    async fn get_provider_schema(
        &self,
        _: Request<get_provider_schema::Request>,
    ) -> Result<Response<get_provider_schema::Response>, Status> {
        let endpoint = schema::Attribute {
            name: "endpoint".to_owned(),
            // A cty type in its JSON form.
            r#type: br#""string""#.to_vec(),
            description: "Address of the orgtrail server.".to_owned(),
            optional: true,
            ..Default::default()
        };
        let provider = Schema {
            version: 0,
            block: Some(schema::Block { attributes: vec![endpoint], ..Default::default() }),
        };
        Ok(Response::new(get_provider_schema::Response {
            provider: Some(provider),
            server_capabilities: Some(capabilities()),
            ..Default::default()
        }))
    }

    async fn validate_provider_config(
        &self,
        _: Request<validate_provider_config::Request>,
    ) -> Result<Response<validate_provider_config::Response>, Status> {
        Ok(Response::new(validate_provider_config::Response::default()))
    }

    async fn configure_provider(
        &self,
        _: Request<configure_provider::Request>,
    ) -> Result<Response<configure_provider::Response>, Status> {
        Ok(Response::new(configure_provider::Response::default()))
    }
}
