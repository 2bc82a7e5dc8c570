//! `terraform-provider-orgtrail`: the orgtrail Terraform provider. Terraform runs it (go-plugin);
//! run by hand it explains that and exits non-zero. `terraform-provider-orgtrail docs DIR` writes
//! the generated documentation pages.

use std::process::ExitCode;

use orgtrail::terraform::{docs, plugin, provider::OrgtrailProvider};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [command, dir] if command == "docs" => {
            docs::write(std::path::Path::new(dir)).map_err(anyhow::Error::from)
        }
        [] => {
            init_tracing();
            plugin::serve(OrgtrailProvider::default()).await
        }
        _ => Err(anyhow::anyhow!(
            "usage: terraform-provider-orgtrail [docs DIR] (Terraform runs it without arguments)"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("terraform-provider-orgtrail: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, which Terraform shows in its own log (TF_LOG); stdout carries only the
/// go-plugin handshake. The filter is ORGTRAIL_LOG, else Terraform's TF_LOG_PROVIDER level (TRACE,
/// DEBUG, ...; JSON means TRACE to Terraform) for orgtrail's own events (the transport crates' debug
/// events are frame by frame).
fn init_tracing() {
    let terraform_level = std::env::var("TF_LOG_PROVIDER").ok().map(|level| {
        let level =
            if level.eq_ignore_ascii_case("json") { "trace".to_owned() } else { level.to_lowercase() };
        format!("warn,orgtrail={level}")
    });
    let filter = std::env::var("ORGTRAIL_LOG")
        .ok()
        .into_iter()
        .chain(terraform_level)
        .find_map(|value| tracing_subscriber::EnvFilter::try_new(value).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}
