//! The Terraform provider is generated from the proto: a field added to a copy of the proto shows
//! up in the generated schema and conversions, and the committed docs match the generated ones.

use std::path::Path;
use std::process::Command;

use orgtrail::terraform::codegen::{self, Kind, Mode, Schema};

/// Compiles `dir/orgtrail/v1/*.proto` into a descriptor set with comments, as build.rs does.
fn descriptor_set(dir: &Path) -> Vec<u8> {
    let out = dir.join("set.bin");
    let protos: Vec<String> = std::fs::read_dir(dir.join("orgtrail/v1"))
        .unwrap()
        .map(|e| format!("orgtrail/v1/{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    let status = Command::new(protoc_bin_vendored::protoc_bin_path().unwrap())
        .current_dir(dir)
        .arg("--include_imports")
        .arg("--include_source_info")
        .arg("-I.")
        .arg(format!("-I{}", protoc_bin_vendored::include_path().unwrap().display()))
        .arg(format!("--descriptor_set_out={}", out.display()))
        .args(&protos)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(out).unwrap()
}

fn copy_protos(to: &Path) {
    let from = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto/orgtrail/v1");
    std::fs::create_dir_all(to.join("orgtrail/v1")).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join("orgtrail/v1").join(entry.file_name())).unwrap();
    }
}

fn insert_after(path: &Path, anchor: &str, text: &str) {
    let source = std::fs::read_to_string(path).unwrap();
    let at =
        source.find(anchor).unwrap_or_else(|| panic!("{anchor} not in {}", path.display())) + anchor.len();
    std::fs::write(path, format!("{}{text}{}", &source[..at], &source[at..])).unwrap();
}

fn trail(schemas: &[Schema]) -> &Schema {
    schemas.iter().find(|s| s.name == "orgtrail_trail").unwrap()
}

#[test]
fn the_built_provider_is_what_the_generator_makes_of_the_proto() {
    let dir = tempfile::tempdir().unwrap();
    copy_protos(dir.path());
    let from_copy = codegen::schemas(&descriptor_set(dir.path())).unwrap();
    assert_eq!(from_copy, orgtrail::terraform::generated::schemas());
}

#[test]
fn a_field_added_to_trail_appears_in_the_schema_and_the_conversions() {
    let dir = tempfile::tempdir().unwrap();
    copy_protos(dir.path());
    let trail_proto = dir.path().join("orgtrail/v1/trail.proto");
    insert_after(
        &trail_proto,
        "int32 delivery_interval_seconds = 20;",
        "\n  // The cost centre the trail's storage is billed to.\n  string cost_centre = 31;",
    );
    insert_after(
        &trail_proto,
        "optional int32 delivery_interval_seconds = 15;",
        "\n  // Cost centre of the new trail.\n  string cost_centre = 16;",
    );
    insert_after(
        &trail_proto,
        "optional int32 delivery_interval_seconds = 12;",
        "\n  // New cost centre.\n  optional string cost_centre = 13;",
    );
    // And one only the server sets, marked sensitive by annotation.
    insert_after(
        &trail_proto,
        "string cost_centre = 31;",
        "\n  // A secret the server derives.\n  // tf: sensitive\n  string billing_secret = 32;",
    );
    let set = descriptor_set(dir.path());
    let schemas = codegen::schemas(&set).unwrap();
    let added = trail(&schemas)
        .attrs
        .iter()
        .find(|a| a.name == "cost_centre")
        .expect("cost_centre in orgtrail_trail");
    assert_eq!(added.description, "The cost centre the trail's storage is billed to.");
    assert_eq!(added.kind, Kind::String);
    assert_eq!(added.mode, Mode::Optional, "in the create request without presence: optional, default empty");
    assert!(!added.force_new, "in the update request: changed in place");
    let secret = trail(&schemas).attrs.iter().find(|a| a.name == "billing_secret").unwrap();
    assert_eq!(secret.mode, Mode::Computed);
    assert!(secret.sensitive);

    // The conversions carry it both ways, with no hand edit.
    let source = codegen::generate(&set).unwrap();
    assert!(
        source.contains(r#"o.insert("cost_centre".into(), self.cost_centre.to_tf(nested));"#),
        "Trail → Terraform"
    );
    assert!(
        source.contains(r#"cost_centre: scalar_from_tf::<String>(v, "cost_centre")?.unwrap_or_default(),"#)
    );
    assert!(source.contains(
        r#"cost_centre: if changed(prior, v, "cost_centre") { scalar_from_tf::<String>(v, "cost_centre")? } else { None },"#
    ));
    // The built provider (from the unmodified proto) does not have it.
    assert!(!trail(&orgtrail::terraform::generated::schemas()).attrs.iter().any(|a| a.name == "cost_centre"));
}

#[test]
fn an_unknown_annotation_is_refused_with_the_field_named() {
    let dir = tempfile::tempdir().unwrap();
    copy_protos(dir.path());
    insert_after(
        &dir.path().join("orgtrail/v1/trail.proto"),
        "// tf: required\n  string s3_bucket_name = 5;",
        "",
    );
    let source = std::fs::read_to_string(dir.path().join("orgtrail/v1/trail.proto")).unwrap();
    std::fs::write(
        dir.path().join("orgtrail/v1/trail.proto"),
        source.replace("// tf: required\n  string s3_bucket_name", "// tf: requird\n  string s3_bucket_name"),
    )
    .unwrap();
    let err = codegen::schemas(&descriptor_set(dir.path())).unwrap_err().to_string();
    assert!(err.contains("orgtrail.v1.Trail.s3_bucket_name") && err.contains("requird"), "{err}");
}

#[test]
fn the_committed_docs_are_the_generated_ones() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/terraform");
    let pages = orgtrail::terraform::docs::pages(
        &orgtrail::terraform::generated::schemas(),
        &orgtrail::terraform::provider::provider_attrs(),
    );
    for (name, content) in pages {
        let committed = std::fs::read_to_string(docs.join(&name)).unwrap_or_default();
        assert!(
            committed == content,
            "docs/terraform/{name} is stale: run `cargo run --bin terraform-provider-orgtrail -- docs docs/terraform`"
        );
    }
}
