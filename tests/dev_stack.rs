//! The README's run command and tour: `orgtrail dev` starts everything with no setup, the admin CLI
//! finds it through ./.orgtrail/dev.json, bad input exits non-zero with one line, state survives
//! a restart, and the aws CLI reaches the CloudTrail-compatible API and S3 with one key pair.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use orgtrail::dev::DevInfo;

const BIN: &str = env!("CARGO_BIN_EXE_orgtrail");

fn start_dev(dir: &Path) -> Child {
    let _ = std::fs::remove_file(dir.join(".orgtrail/dev.json"));
    Command::new(BIN)
        .current_dir(dir)
        .args(["dev", "--grpc-listen", "127.0.0.1:0", "--s3-listen", "127.0.0.1:0"])
        .env_remove("ORGTRAIL_ENDPOINT")
        .env_remove("ORGTRAIL_TOKEN")
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("orgtrail dev starts")
}

fn wait_for_info(dir: &Path, child: &mut Child) -> DevInfo {
    let path = dir.join(".orgtrail/dev.json");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(text) = std::fs::read_to_string(&path)
            && let Ok(info) = serde_json::from_str(&text)
        {
            return info;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("orgtrail dev exited early: {status}");
        }
        assert!(Instant::now() < deadline, "dev.json did not appear");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop(mut child: Child) {
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "orgtrail dev exited with {status}");
            return;
        }
        assert!(Instant::now() < deadline, "orgtrail dev did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cli(dir: &Path, args: &[&str]) -> Output {
    common::orgtrail_cli(dir, args)
}

fn ok(output: Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn dev_stack_runs_the_readme_tour_and_keeps_state_across_restarts() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path();
    // The embedded Postgres runs as the postgres system user when we are root: let it in.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut child = start_dev(dir);
    let info = wait_for_info(dir, &mut child);
    assert!(info.grpc_endpoint.starts_with("http://127.0.0.1:"));
    assert!(info.organization_id.starts_with("o-"));
    assert!(info.admin_token.starts_with("otk_"));

    let created = ok(cli(
        dir,
        &[
            "trails",
            "create",
            "--name",
            "org-trail",
            "--s3-bucket-name",
            &info.bucket,
            "--is-organization-trail",
        ],
    ));
    assert!(
        created.contains(&format!(
            "arn:aws:cloudtrail:us-east-1:{}:trail/org-trail",
            info.management_account_id
        ))
    );
    let status = ok(cli(dir, &["trails", "status", "org-trail"]));
    assert!(status.contains("is_logging"), "{status}");
    ok(cli(dir, &["trails", "start-logging", "org-trail"]));
    let json: serde_json::Value =
        serde_json::from_str(&ok(cli(dir, &["--output", "json", "trails", "status", "org-trail"]))).unwrap();
    assert_eq!(json["is_logging"], true);

    let bad = cli(dir, &["trails", "create", "--name", "x", "--s3-bucket-name", &info.bucket]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("error: InvalidArgument: name:"), "{stderr}");

    // The bucket exists in the in-process S3 store (real S3 protocol, SigV4-checked).
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let s3 = orgtrail::dev::s3_client(
            &info.s3_endpoint,
            &info.s3_access_key_id,
            &info.s3_secret_access_key,
            &info.region,
        )
        .await;
        s3.head_bucket().bucket(&info.bucket).send().await.expect("dev bucket exists");
        s3.put_object().bucket(&info.bucket).key("probe").body(b"{}".to_vec().into()).send().await.unwrap();
        let wrong =
            orgtrail::dev::s3_client(&info.s3_endpoint, &info.s3_access_key_id, "wrong-secret", &info.region)
                .await;
        assert!(wrong.list_objects_v2().bucket(&info.bucket).send().await.is_err(), "S3 checks signatures");
    });

    // The CloudTrail-compatible API and S3 answer the same key pair (validate-logs signs both with it).
    assert_eq!(info.cloudtrail_access_key_id, info.admin_access_key_id);
    let aws = common::AwsCli::new((
        info.cloudtrail_access_key_id.clone(),
        info.cloudtrail_secret_access_key.clone(),
    ));
    let trails =
        aws.run(&[], &["cloudtrail", "--endpoint-url", &info.cloudtrail_endpoint, "describe-trails"]);
    assert_eq!(trails["trailList"][0]["Name"], "org-trail", "{trails}");
    let objects = aws.run(
        &[("AWS_ENDPOINT_URL_S3", &info.s3_endpoint)],
        &["s3api", "list-objects", "--bucket", &info.bucket],
    );
    assert_eq!(objects["Contents"][0]["Key"], "probe", "{objects}");

    stop(child);
    let mut child = start_dev(dir);
    let again = wait_for_info(dir, &mut child);
    assert_eq!(again.admin_token, info.admin_token, "the admin token survives a restart");
    assert_eq!(again.organization_id, info.organization_id);
    let listed = ok(cli(dir, &["trails", "list"]));
    assert!(listed.contains("org-trail"), "{listed}");
    assert_eq!(again.cloudtrail_access_key_id, info.cloudtrail_access_key_id);
    stop(child);

    // State from before the CloudTrail-compatible API: an admin token without an access key pair.
    let secrets_path = dir.join(".orgtrail/secrets.json");
    let mut secrets: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&secrets_path).unwrap()).unwrap();
    let object = secrets.as_object_mut().unwrap();
    object.remove("admin_access_key_id");
    object.remove("admin_secret_access_key");
    std::fs::write(&secrets_path, serde_json::to_string_pretty(&secrets).unwrap()).unwrap();
    let mut child = start_dev(dir);
    let upgraded = wait_for_info(dir, &mut child);
    assert!(upgraded.cloudtrail_access_key_id.starts_with("AKOT"), "a new admin key pair");
    let aws = common::AwsCli::new((upgraded.cloudtrail_access_key_id, upgraded.cloudtrail_secret_access_key));
    let trails =
        aws.run(&[], &["cloudtrail", "--endpoint-url", &upgraded.cloudtrail_endpoint, "describe-trails"]);
    assert_eq!(trails["trailList"][0]["Name"], "org-trail", "{trails}");
    stop(child);
}

#[test]
fn admin_cli_without_a_server_says_how_to_get_one() {
    let temp = tempfile::tempdir().unwrap();
    let output = cli(temp.path(), &["trails", "list"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("orgtrail dev"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1);
}

#[test]
fn dev_without_postgres_binaries_names_the_install_command() {
    let temp = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .current_dir(temp.path())
        .args(["dev", "--grpc-listen", "127.0.0.1:0", "--s3-listen", "127.0.0.1:0"])
        .env("ORGTRAIL_PG_BIN", temp.path().join("no-postgres-here"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("apt-get install -y postgresql"), "{stderr}");
    assert_eq!(stderr.trim().lines().filter(|l| l.starts_with("error:")).count(), 1, "{stderr}");
}
