//! `terraform-provider-orgtrail`: the Terraform provider, run by Terraform (plugin protocol 6).
//! `terraform-provider-orgtrail docs DIR` writes the generated documentation pages instead.

use std::process::ExitCode;

use orgtrail::terraform::{docs, plugin, provider::OrgtrailProvider};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [command, dir] if command == "docs" => {
            docs::write(std::path::Path::new(dir)).map_err(anyhow::Error::from)
        }
        [] => plugin::serve(OrgtrailProvider::default()).await,
        _ => Err(anyhow::anyhow!(
            "usage: terraform-provider-orgtrail [docs DIR] (Terraform runs it without arguments)"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("terraform-provider-orgtrail: {e:#}");
            ExitCode::FAILURE
        }
    }
}
