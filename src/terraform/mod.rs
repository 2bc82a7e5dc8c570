//! The Terraform provider `terraform-provider-orgtrail`: Terraform's plugin protocol 6 served over
//! go-plugin ([`plugin`]).

pub mod empty_provider;
pub mod plugin;

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
