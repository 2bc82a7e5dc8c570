//! The Terraform provider (`terraform-provider-orgtrail`): Terraform's plugin protocol 6 served over
//! go-plugin ([`plugin`]) on our tonic, with schemas and conversions generated from the proto at
//! build time ([`codegen`]).

pub mod codegen;
pub mod convert;
pub mod docs;
pub mod generated;
pub mod plan;
pub mod plugin;
pub mod provider;
pub mod resources;
pub mod value;

/// Terraform's plugin protocol 6.5 (generated from `proto/tfplugin6/`, see build.rs).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod tfplugin6 {
    tonic::include_proto!("tfplugin6");
}

/// go-plugin's own services: controller (shutdown), stdio and broker (generated, see build.rs).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod goplugin {
    tonic::include_proto!("plugin");
}
