//! Compiles the gRPC API from `proto/` and derives its canonical JSON mapping (pbjson), which the
//! CLI uses for `--output json`. The descriptor set (with comments) is embedded for reflection.

use std::path::PathBuf;

#[allow(dead_code)]
#[path = "src/terraform/codegen.rs"]
mod codegen;

const PROTOS: &[&str] = &[
    "proto/orgtrail/v1/organization.proto",
    "proto/orgtrail/v1/account.proto",
    "proto/orgtrail/v1/trail.proto",
    "proto/orgtrail/v1/token.proto",
    "proto/orgtrail/v1/ingest.proto",
    "proto/orgtrail/v1/key.proto",
    "proto/orgtrail/v1/rule.proto",
    "proto/orgtrail/v1/event.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
        unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let descriptor_path = out.join("orgtrail_descriptor.bin");
    tonic_prost_build::configure()
        .file_descriptor_set_path(&descriptor_path)
        .compile_well_known_types(true)
        .extern_path(".google.protobuf", "::pbjson_types")
        .compile_protos(PROTOS, &["proto"])?;

    let descriptor_set = std::fs::read(&descriptor_path)?;
    pbjson_build::Builder::new()
        .register_descriptors(&descriptor_set)?
        // snake_case field names, as the API documents them; defaults printed, so `false` shows.
        .preserve_proto_field_names()
        .emit_fields()
        .build(&[".orgtrail"])?;

    // The Terraform provider's schemas and conversions, from the same descriptors (comments included).
    std::fs::write(out.join("terraform_generated.rs"), codegen::generate(&descriptor_set)?)?;
    compile_terraform_protocol()?;

    println!("cargo:rerun-if-changed=proto");
    println!("cargo:rerun-if-changed=src/terraform/codegen.rs");
    println!("cargo:rerun-if-changed=src/terraform/codegen");
    // sqlx::migrate! embeds the folder; a new migration must rebuild the crate.
    println!("cargo:rerun-if-changed=migrations");
    Ok(())
}

/// Terraform's plugin protocol and go-plugin's services (`proto/tfplugin6/`), server side only, for
/// `terraform-provider-orgtrail`. Kept out of the orgtrail step: no pbjson, default well-known types
/// (`google.protobuf.Empty` is `()`). Default stubs answer Unimplemented for RPCs a provider leaves out.
fn compile_terraform_protocol() -> Result<(), Box<dyn std::error::Error>> {
    tonic_prost_build::configure().build_client(false).generate_default_stubs(true).compile_protos(
        &["proto/tfplugin6/tfplugin6.5.proto", "proto/tfplugin6/plugin.proto"],
        &["proto/tfplugin6"],
    )?;
    Ok(())
}
