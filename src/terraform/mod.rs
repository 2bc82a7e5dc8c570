//! The Terraform provider (`terraform-provider-orgtrail`): Terraform's plugin protocol 6 served on
//! our tonic, with schemas and conversions generated from the proto at build time (`codegen`).

pub mod codegen;
pub mod convert;
pub mod docs;
pub mod generated;
pub mod plan;
pub mod plugin;
pub mod provider;
pub mod resources;
pub mod value;

/// Terraform's plugin protocol, version 6.5 (vendored in proto/tfplugin6).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod tfplugin6 {
    tonic::include_proto!("tfplugin6");
}

/// go-plugin's own services (controller, stdio, broker).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod goplugin {
    tonic::include_proto!("plugin");
}
