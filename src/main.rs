//! The `orgtrail` binary: see `orgtrail --help`.

fn main() -> std::process::ExitCode {
    orgtrail::cli::main()
}
