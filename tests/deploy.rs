//! The deploy artefacts (deploy/), checked without a Docker engine, a cluster or AWS: hadolint on the
//! Dockerfile, kubernetes-validate (bundled schemas, strict) on the manifests, the compose file parsed
//! and its settings loaded by orgtrail's own config loader, and the AWS example's policy module run by
//! real Terraform, its collector documents compared with what `orgtrail bootstrap` creates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use orgtrail::integrations::aws::iam_policy::{RolePlan, same_policy};
use serde_json::{Value, json};

/// The Kubernetes version the manifests are validated against (schemas bundled with the tool).
const KUBERNETES_VERSION: &str = "1.33.0";
/// The image's nonroot user (distroless `nonroot`).
const IMAGE_UID: &str = "65532";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn tool(variable: &str) -> String {
    std::env::var(variable).unwrap_or_else(|_| {
        panic!("{variable} is not set: run the suite with scripts/test, which installs it")
    })
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs a tool in its own temporary HOME and working directory, so no user or repository config
/// (e.g. a stray .hadolint.yaml) changes its verdict.
fn run(program: &str, args: &[&str], home: &Path) -> Output {
    Command::new(program)
        .args(args)
        .current_dir(home)
        .env("HOME", home)
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// YAML documents as JSON, parsed by the test venv's PyYAML (the crate has no YAML parser).
fn yaml_documents(path: &Path) -> Vec<Value> {
    let home = tempfile::tempdir().unwrap();
    let script = "import json, sys, yaml\n\
                  print(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))";
    let output = run(&tool("ORGTRAIL_TEST_PYTHON"), &["-c", script, path.to_str().unwrap()], home.path());
    assert!(output.status.success(), "{} does not parse: {}", path.display(), text(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn dockerfile_passes_hadolint_and_runs_as_nonroot() {
    let hadolint = tool("ORGTRAIL_TEST_HADOLINT");
    let home = tempfile::tempdir().unwrap();
    let dockerfile = deploy_dir().join("Dockerfile");
    // Default threshold, no ignores: any finding (error, warning, info, style) fails.
    let output = run(&hadolint, &["--no-color", dockerfile.to_str().unwrap()], home.path());
    assert!(output.status.success() && output.stdout.is_empty(), "hadolint: {}", text(&output));

    // The linter is live: the classic mistakes are reported.
    let bad = home.path().join("Dockerfile.bad");
    std::fs::write(&bad, "FROM debian\nRUN apt-get update && apt-get install curl\n").unwrap();
    let output = run(&hadolint, &["--no-color", bad.to_str().unwrap()], home.path());
    let report = text(&output);
    assert!(!output.status.success() && report.contains("DL3006") && report.contains("DL3015"), "{report}");

    let body = std::fs::read_to_string(&dockerfile).unwrap();
    for needle in [
        "cargo build --release --locked --bin orgtrail --bin terraform-provider-orgtrail",
        "FROM gcr.io/distroless/cc-debian12:nonroot",
        "USER 65532:65532",
        "ENTRYPOINT [\"orgtrail\"]",
        "EXPOSE 50051 50052 9464",
    ] {
        assert!(body.contains(needle), "the Dockerfile lacks {needle:?}");
    }
    let ignored =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".dockerignore")).unwrap();
    for entry in ["target/", ".venv*", ".git"] {
        assert!(ignored.lines().any(|line| line.trim() == entry), ".dockerignore lacks {entry}");
    }
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir().join("k8s"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn kubernetes_manifests_validate_against_the_api_schemas() {
    let validate = tool("ORGTRAIL_TEST_KUBERNETES_VALIDATE");
    let home = tempfile::tempdir().unwrap();
    let files = manifests();
    assert!(files.len() >= 4, "{files:?}");
    for file in &files {
        let output =
            run(&validate, &["--strict", "-k", KUBERNETES_VERSION, file.to_str().unwrap()], home.path());
        assert!(output.status.success(), "{}: {}", file.display(), text(&output));
        assert!(!text(&output).contains("WARN"), "{}: {}", file.display(), text(&output));
    }
    // Strict validation is live: an unknown field (a misspelt probe) is rejected.
    let bad = home.path().join("bad.yaml");
    let control_plane = std::fs::read_to_string(deploy_dir().join("k8s/control-plane.yaml")).unwrap();
    std::fs::write(&bad, control_plane.replacen("readinessProbe:", "readinesProbe:", 1)).unwrap();
    let output = run(&validate, &["--strict", "-k", KUBERNETES_VERSION, bad.to_str().unwrap()], home.path());
    assert!(!output.status.success(), "a misspelt field passed: {}", text(&output));
}

#[test]
fn kubernetes_manifests_describe_the_deployment() {
    let mut resources: BTreeMap<(String, String), Value> = BTreeMap::new();
    for file in manifests() {
        for document in yaml_documents(&file) {
            let key = (
                document["kind"].as_str().unwrap().to_owned(),
                document["metadata"]["name"].as_str().unwrap().to_owned(),
            );
            assert!(document["metadata"].get("namespace").is_none(), "{key:?} names a namespace");
            resources.insert(key, document);
        }
    }
    let get = |kind: &str, name: &str| {
        resources.get(&(kind.to_owned(), name.to_owned())).unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    let control_plane = get("Deployment", "orgtrail-control-plane");
    assert_eq!(control_plane["spec"]["replicas"], 2);
    let container = &control_plane["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["args"], json!(["serve"]));
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        assert_eq!(container[probe]["grpc"]["port"], 50051, "{probe}");
    }
    let service = get("Service", "orgtrail-control-plane");
    assert_eq!(service["spec"]["selector"], control_plane["spec"]["selector"]["matchLabels"]);
    assert_eq!(service["spec"]["ports"][0]["port"], 50051);

    let worker = get("Deployment", "orgtrail-worker");
    let container = &worker["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["args"], json!(["worker"]));
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/metrics");
    let hpa = get("HorizontalPodAutoscaler", "orgtrail-worker");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "orgtrail-worker");
    assert!(container["resources"]["requests"]["cpu"].is_string(), "the HPA needs CPU requests");

    let job = get("Job", "orgtrail-migrate");
    assert_eq!(job["spec"]["template"]["spec"]["containers"][0]["args"], json!(["migrate"]));

    // Every pod: non-root, read-only root filesystem, no privilege escalation, bounded memory, and
    // its settings from the ConfigMap and Secret below.
    for pod in [control_plane, worker, job].map(|r| &r["spec"]["template"]["spec"]) {
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
        assert_eq!(pod["securityContext"]["runAsUser"], IMAGE_UID.parse::<u32>().unwrap());
        for container in pod["containers"].as_array().unwrap() {
            assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
            assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
            assert!(container["resources"]["limits"]["memory"].is_string());
            let sources: Vec<&str> = container["envFrom"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|s| s["configMapRef"]["name"].as_str().or(s["secretRef"]["name"].as_str()))
                .collect();
            assert_eq!(sources, ["orgtrail", "orgtrail"]);
        }
    }
    let mut settings = string_map(&get("ConfigMap", "orgtrail")["data"]);
    settings.extend(string_map(&get("Secret", "orgtrail")["stringData"]));
    settings.insert("ORGTRAIL_CLOUDTRAIL_LISTEN".into(), "0.0.0.0:50052".into());
    settings.insert("ORGTRAIL_MASTER_KEY".into(), ZERO_KEY.into());
    assert_config_accepts(&settings);
}

/// A syntactically valid master key, standing in for the Secret's placeholder.
const ZERO_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, value)| (name.clone(), value.as_str().unwrap_or_else(|| panic!("{name}")).to_owned()))
        .collect()
}

/// The environment a deployment gives `serve`/`worker`, loaded by orgtrail's own config loader: every
/// ORGTRAIL_* name is a real setting (the file is read with deny_unknown_fields) and every value
/// has the setting's type. Variables only the CLI reads are left out.
fn assert_config_accepts(environment: &BTreeMap<String, String>) {
    let dir = tempfile::tempdir().unwrap();
    let mut toml = String::new();
    for (name, value) in environment {
        let field = match name.as_str() {
            "DATABASE_URL" => "database_url".to_owned(),
            "ORGTRAIL_TOKEN" => continue,
            _ => name
                .strip_prefix("ORGTRAIL_")
                .unwrap_or_else(|| panic!("{name} is not an orgtrail setting"))
                .to_lowercase(),
        };
        // As figment reads the environment: booleans and numbers bare, the rest strings.
        let literal = if value == "true" || value == "false" || value.parse::<f64>().is_ok() {
            value.clone()
        } else {
            format!("{value:?}")
        };
        toml.push_str(&format!("{field} = {literal}\n"));
    }
    let path = dir.path().join("orgtrail.toml");
    std::fs::write(&path, &toml).unwrap();
    let config = orgtrail::node::config::Config::load(Some(&path)).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    config.worker_settings().unwrap_or_else(|e| panic!("{e}\n{toml}"));
    assert_eq!(config.grpc_listen.to_string(), "0.0.0.0:50051", "{toml}");
    assert_eq!(config.metrics_listen.map(|a| a.port()), Some(9464), "{toml}");
}

#[test]
fn compose_runs_two_control_planes_and_two_workers_as_nonroot() {
    let compose = yaml_documents(&deploy_dir().join("docker-compose.yml")).remove(0);
    let services = compose["services"].as_object().unwrap();
    let command =
        |name: &str| services[name]["command"].as_array().map(|c| c[0].as_str().unwrap().to_owned());
    let with_command = |verb: &str| -> Vec<&String> {
        services.keys().filter(|name| command(name).as_deref() == Some(verb)).collect()
    };
    assert_eq!(with_command("serve").len(), 2, "{services:?}");
    assert_eq!(with_command("worker").len(), 2, "{services:?}");
    assert_eq!(with_command("migrate"), ["migrate"]);
    assert_eq!(with_command("s3-server"), ["s3"]);
    assert!(services["postgres"]["image"].as_str().unwrap().starts_with("postgres:"));
    assert!(services["postgres"]["healthcheck"]["test"].is_array());
    assert_eq!(services["migrate"]["depends_on"]["postgres"]["condition"], "service_healthy");

    let orgtrail: Vec<(&String, &Value)> = services
        .iter()
        .filter(|(_, service)| service["image"].as_str().is_some_and(|image| image.starts_with("orgtrail")))
        .collect();
    assert_eq!(orgtrail.len(), 6, "{services:?}");
    for (name, service) in orgtrail {
        // Non-root even if the image were swapped: compose states the user itself.
        let user = service["user"].as_str().unwrap_or_else(|| panic!("{name} has no user"));
        let uid = user.split(':').next().unwrap();
        assert!(uid != "0" && uid != "root", "{name} runs as {user}");
        assert_eq!(uid, IMAGE_UID, "{name}");
        assert_eq!(service["read_only"], true, "{name}");
        let verb = command(name).unwrap();
        if verb == "serve" || verb == "worker" {
            assert_eq!(
                service["depends_on"]["migrate"]["condition"], "service_completed_successfully",
                "{name}"
            );
            let mut environment = string_map(&service["environment"]);
            environment.insert("ORGTRAIL_GRPC_LISTEN".into(), "0.0.0.0:50051".into());
            environment.insert("ORGTRAIL_METRICS_LISTEN".into(), "0.0.0.0:9464".into());
            assert_config_accepts(&environment);
        }
    }
}

/// Real Terraform in a throwaway HOME, data dir and CLI config: nothing is read from or written to
/// the user's setup, and no registry is contacted.
struct Terraform {
    root: tempfile::TempDir,
}

impl Terraform {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        for dir in ["home", "data", "module"] {
            std::fs::create_dir(root.path().join(dir)).unwrap();
        }
        std::fs::write(root.path().join("terraformrc"), "").unwrap();
        Self { root }
    }

    fn run(&self, dir: &Path, args: &[&str]) -> Output {
        let mut command = Command::new(tool("ORGTRAIL_TEST_TERRAFORM"));
        for (name, _) in std::env::vars() {
            if name.starts_with("TF_") {
                command.env_remove(name);
            }
        }
        command
            .args(args)
            .current_dir(dir)
            .env("HOME", self.root.path().join("home"))
            .env("TF_CLI_CONFIG_FILE", self.root.path().join("terraformrc"))
            .env("TF_DATA_DIR", self.root.path().join("data"))
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1")
            .output()
            .unwrap()
    }

    fn expect(&self, dir: &Path, args: &[&str]) -> String {
        let output = self.run(dir, args);
        assert!(output.status.success(), "terraform {}: {}", args.join(" "), text(&output));
        String::from_utf8(output.stdout).unwrap()
    }
}

/// The policies module applied with these variables: its outputs, each a parsed JSON document.
fn render_policies(terraform: &Terraform, variables: &[(&str, &str)]) -> BTreeMap<String, Value> {
    let module = terraform.root.path().join("module");
    std::fs::copy(deploy_dir().join("aws/policies/main.tf"), module.join("main.tf")).unwrap();
    let _ = std::fs::remove_file(module.join("terraform.tfstate"));
    terraform.expect(&module, &["init", "-input=false", "-no-color"]);
    terraform.expect(&module, &["validate", "-no-color"]);
    let mut args =
        vec!["apply".to_owned(), "-auto-approve".into(), "-input=false".into(), "-no-color".into()];
    for (name, value) in variables {
        args.push("-var".into());
        args.push(format!("{name}={value}"));
    }
    terraform.expect(&module, &args.iter().map(String::as_str).collect::<Vec<_>>());
    let outputs: Value = serde_json::from_str(&terraform.expect(&module, &["output", "-json"])).unwrap();
    outputs
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, output)| {
            (name.clone(), serde_json::from_str(output["value"].as_str().unwrap()).unwrap())
        })
        .collect()
}

fn statement<'a>(policy: &'a Value, sid: &str) -> &'a Value {
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Sid"] == sid)
        .unwrap_or_else(|| panic!("no statement {sid} in {policy:#}"))
}

#[test]
fn aws_example_renders_cloudtrail_style_bucket_policy_and_bootstraps_collector_documents() {
    let terraform = Terraform::new();
    // Formatting parses every file, including the root modules that need the AWS provider.
    terraform.expect(&deploy_dir().join("aws"), &["fmt", "-check", "-recursive", "-no-color"]);

    let trails = r#"["arn:aws:cloudtrail:us-east-1:111111111111:trail/org","arn:aws:cloudtrail:eu-west-1:222222222222:trail/own"]"#;
    let outputs = render_policies(
        &terraform,
        &[
            ("bucket_name", "central-logs"),
            ("organization_id", "o-a1b2c3d4e5"),
            ("account_ids", r#"["222222222222"]"#),
            ("trail_arns", trails),
            ("writer_role_arn", "arn:aws:iam::111111111111:role/orgtrail-worker"),
            ("member_account_id", "333333333333"),
            ("aggregator_principal_arn", "arn:aws:iam::111111111111:role/orgtrail-worker"),
            ("external_id", "ext-7f3a"),
            ("member_trail_bucket", "member-trail"),
            ("member_trail_prefix", "/audit/"),
        ],
    );
    let trail_arns: Value = serde_json::from_str(trails).unwrap();
    let bucket = &outputs["bucket_policy"];
    let acl = statement(bucket, "AWSCloudTrailAclCheck");
    assert_eq!(acl["Principal"], json!({"Service": "cloudtrail.amazonaws.com"}));
    assert_eq!(acl["Action"], "s3:GetBucketAcl");
    assert_eq!(acl["Resource"], "arn:aws:s3:::central-logs");
    assert_eq!(acl["Condition"], json!({"StringEquals": {"aws:SourceArn": trail_arns}}));
    let write = statement(bucket, "AWSCloudTrailWrite");
    assert_eq!(write["Principal"], json!({"Service": "cloudtrail.amazonaws.com"}));
    assert_eq!(write["Action"], "s3:PutObject");
    assert_eq!(
        write["Resource"],
        json!([
            "arn:aws:s3:::central-logs/AWSLogs/o-a1b2c3d4e5/*",
            "arn:aws:s3:::central-logs/AWSLogs/222222222222/*"
        ])
    );
    assert_eq!(
        write["Condition"],
        json!({"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control", "aws:SourceArn": trail_arns}})
    );
    let workers = statement(bucket, "OrgtrailWorkersWrite");
    assert_eq!(workers["Principal"], json!({"AWS": "arn:aws:iam::111111111111:role/orgtrail-worker"}));
    assert_eq!(statement(bucket, "DenyInsecureTransport")["Effect"], "Deny");
    assert_eq!(
        statement(&outputs["writer_policy"], "WriteTrailFiles")["Resource"],
        "arn:aws:s3:::central-logs/*"
    );

    // The collector role's documents are exactly what `orgtrail bootstrap` would create.
    let mut plan = RolePlan {
        partition: "aws".into(),
        account_id: "333333333333".into(),
        role_name: "orgtrail-collector".into(),
        aggregator_principal: "arn:aws:iam::111111111111:role/orgtrail-worker".into(),
        external_id: "ext-7f3a".into(),
        lookup_events: true,
        trail_bucket: Some("member-trail".into()),
        trail_prefix: "audit".into(),
    };
    assert!(
        same_policy(&outputs["collector_trust_policy"], &plan.trust_policy()),
        "{:#}\n{:#}",
        outputs["collector_trust_policy"],
        plan.trust_policy()
    );
    assert!(
        same_policy(&outputs["collector_policy"], &plan.inline_policy()),
        "{:#}\n{:#}",
        outputs["collector_policy"],
        plan.inline_policy()
    );

    // LookupEvents only, in another partition: still the bootstrap's documents.
    let outputs = render_policies(
        &terraform,
        &[
            ("partition", "aws-us-gov"),
            ("bucket_name", "central-logs"),
            ("organization_id", "o-a1b2c3d4e5"),
            ("trail_arns", "[]"),
            ("writer_role_arn", "arn:aws-us-gov:iam::111111111111:role/orgtrail-worker"),
            ("member_account_id", "333333333333"),
            ("aggregator_principal_arn", "arn:aws-us-gov:iam::111111111111:role/orgtrail-worker"),
            ("external_id", "ext-7f3a"),
        ],
    );
    plan.partition = "aws-us-gov".into();
    plan.aggregator_principal = "arn:aws-us-gov:iam::111111111111:role/orgtrail-worker".into();
    plan.trail_bucket = None;
    assert!(same_policy(&outputs["collector_trust_policy"], &plan.trust_policy()));
    assert!(
        same_policy(&outputs["collector_policy"], &plan.inline_policy()),
        "{:#}\n{:#}",
        outputs["collector_policy"],
        plan.inline_policy()
    );
}
