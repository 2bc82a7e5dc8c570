//! Failpoints for the crash tests (the `fail` crate). They compile to nothing unless orgtrail is
//! built with the `failpoints` feature, which only the test suite turns on; a process built with it
//! reads `FAILPOINTS` at start, e.g. `FAILPOINTS="after-seal=return;delivery-pause=return(300)"`.

use std::time::Duration;

/// With `NAME=return` set: aborts the process here, as a SIGKILL would.
pub fn abort_at(name: &str) {
    let _ = name;
    fail::fail_point!(name, |_| {
        eprintln!("failpoint {name}: aborting");
        std::process::abort()
    });
}

/// With `NAME=return(MS)` set: waits MS milliseconds here (widening a window for crash tests).
pub async fn pause(name: &str) {
    if let Some(ms) = pause_ms(name) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

fn pause_ms(name: &str) -> Option<u64> {
    let _ = name;
    fail::fail_point!(name, |arg: Option<String>| arg.and_then(|ms| ms.parse().ok()));
    None
}

/// Reads `FAILPOINTS` (with the feature on); kept for the life of the process.
pub fn setup() -> Option<fail::FailScenario<'static>> {
    cfg!(feature = "failpoints").then(fail::FailScenario::setup)
}
