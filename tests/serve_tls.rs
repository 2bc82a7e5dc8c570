//! `orgtrail serve` in production mode: configuration from the environment, gRPC over TLS, the CLI
//! trusting a private CA, and a clean exit on SIGTERM.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use orgtrail::store::tokens::Role;

const BIN: &str = env!("CARGO_BIN_EXE_orgtrail");

#[sqlx::test(migrations = "./migrations")]
async fn serve_speaks_tls_and_stops_cleanly_on_sigterm(pool: sqlx::PgPool) {
    let dir = tempfile::tempdir().unwrap();
    // A private CA and a server certificate it signs, for localhost.
    let script = r#"
        set -e
        openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-ca -keyout ca.key -out ca.pem
        openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout key.pem -out server.csr
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > ext.cnf
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile ext.cnf -out cert.pem
    "#;
    let made = Command::new("sh")
        .args(["-c", script])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl makes test certificates");
    assert!(made.success());
    let (ca, cert, key) =
        (dir.path().join("ca.pem"), dir.path().join("cert.pem"), dir.path().join("key.pem"));

    let token = {
        let api = common::start(pool.clone()).await;
        api.token(Role::Auditor, None).await
    };
    let database_url = {
        let options = pool.connect_options();
        format!(
            "postgres://{}@{}:{}/{}",
            options.get_username(),
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("postgres")
        )
    };
    let port = orgtrail::dev::postgres::free_port().unwrap();
    let mut serve = Command::new(BIN)
        .arg("serve")
        .env("DATABASE_URL", &database_url)
        .env("ORGTRAIL_GRPC_LISTEN", format!("127.0.0.1:{port}"))
        .env("ORGTRAIL_TLS_CERT_PATH", &cert)
        .env("ORGTRAIL_TLS_KEY_PATH", &key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(20));
    }

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

    // SAFETY: signalling our own child.
    unsafe { libc::kill(serve.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = serve.try_wait().unwrap() {
            assert!(status.success(), "serve exits cleanly on SIGTERM: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "serve ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}
