//! `orgtrail serve` in production mode: configuration from the environment, gRPC over TLS, the CLI
//! trusting a private CA, and a clean exit on SIGTERM.

mod common;

use std::process::{Command, Stdio};

use orgtrail::store::tokens::Role;

const BIN: &str = env!("CARGO_BIN_EXE_orgtrail");

#[sqlx::test(migrations = "./migrations")]
async fn serve_speaks_tls_and_stops_cleanly_on_sigterm(pool: sqlx::PgPool) {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = common::test_certificates(dir.path());

    let token = {
        let api = common::start(pool.clone()).await;
        api.token(Role::Auditor, None).await
    };
    let database_url = common::database_url(&pool);
    let port = orgtrail::dev::postgres::free_port().unwrap();
    let serve = Command::new(BIN)
        .arg("serve")
        .env("DATABASE_URL", &database_url)
        .env("ORGTRAIL_GRPC_LISTEN", format!("127.0.0.1:{port}"))
        .env("ORGTRAIL_TLS_CERT_PATH", &cert)
        .env("ORGTRAIL_TLS_KEY_PATH", &key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    common::wait_for_port(port);

    let cli = |endpoint: &str, trust: bool| {
        let mut command = Command::new(BIN);
        command.args(["--endpoint", endpoint, "--token", &token]);
        if trust {
            command.arg("--ca-cert").arg(&ca);
        }
        command.args(["--output", "json", "tokens", "whoami"]).current_dir(dir.path()).output().unwrap()
    };
    let endpoint = format!("https://localhost:{port}");
    let trusted = cli(&endpoint, true);
    assert!(trusted.status.success(), "{}", String::from_utf8_lossy(&trusted.stderr));
    let whoami: serde_json::Value = serde_json::from_slice(&trusted.stdout).unwrap();
    assert_eq!(whoami[0]["role"], "ROLE_AUDITOR");
    let untrusted = cli(&endpoint, false);
    assert!(!untrusted.status.success(), "an unknown CA is refused");
    let plaintext = cli(&format!("http://127.0.0.1:{port}"), false);
    assert!(!plaintext.status.success(), "plaintext is refused by a TLS server");

    common::stop_cleanly(serve);
}
