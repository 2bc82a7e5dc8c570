//! Sigma conformance against an independent oracle: pySigma's SQLite backend
//! (tests/support/sigma_oracle.py) converts every shared SigmaHQ CloudTrail rule and runs it over the
//! shared real records loaded into SQLite; our loader and matcher must load the same rules (or
//! reject them for a feature the oracle lacks too) and select exactly the same records, plus one
//! positive record per rule built from the rule's own detection.

use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use orgtrail::features::alerts::rules::{Definition, Event};
use serde_json::Value;

fn data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data").join(path)
}

fn oracle(rules: &Path, records: &Path) -> Value {
    let python = std::env::var("ORGTRAIL_TEST_PYTHON").expect(
        "ORGTRAIL_TEST_PYTHON names a python with pysigma and pysigma-backend-sqlite (run scripts/test)",
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/sigma_oracle.py");
    let output = std::process::Command::new(python).arg(script).arg(rules).arg(records).output().unwrap();
    assert!(output.status.success(), "the oracle failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn records(path: &Path) -> Vec<Event> {
    let file = std::fs::File::open(path).unwrap();
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(file));
    reader.lines().map(|line| Event::parse(&line.unwrap()).unwrap()).collect()
}

/// Rules we reject although the oracle converts them, with the documented reason. Keep it short.
const DOCUMENTED_UNSUPPORTED: &[(&str, &str)] = &[];

#[test]
fn every_shared_sigma_rule_selects_the_same_records_as_the_pysigma_sqlite_oracle() {
    let rules_dir = data("rules/sigma_aws_cloudtrail/rules");
    let records_path = data("cloudtrail/records.jsonl.gz");
    let oracle = oracle(&rules_dir, &records_path);
    let events = records(&records_path);
    assert_eq!(oracle["records"].as_u64(), Some(events.len() as u64));

    let mut files: Vec<PathBuf> = std::fs::read_dir(&rules_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    let (mut loaded, mut rejected, mut mismatches, mut selected_total) = (0, Vec::new(), Vec::new(), 0);
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let expected = &oracle["rules"][&name];
        let yaml = std::fs::read_to_string(file).unwrap();
        let matcher = match Definition::SigmaYaml(yaml).compile() {
            Ok(matcher) => matcher,
            Err(error) => {
                let documented =
                    DOCUMENTED_UNSUPPORTED.iter().any(|(f, why)| *f == name && error.message.contains(why));
                if expected["status"] != "rejected" && !documented {
                    mismatches.push(format!("{name}: we reject ({error}) but the oracle converts it"));
                }
                rejected.push(format!("{name}: {error}"));
                continue;
            }
        };
        if expected["status"] != "converted" {
            mismatches.push(format!("{name}: we load it but the oracle rejects it ({})", expected["reason"]));
            continue;
        }
        loaded += 1;
        let ours: BTreeSet<u64> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| matcher.matches(e))
            .map(|(i, _)| i as u64 + 1)
            .collect();
        let theirs: BTreeSet<u64> =
            expected["matches"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        selected_total += theirs.len();
        if ours != theirs {
            mismatches.push(format!(
                "{name}: only ours {:?}, only the oracle's {:?}",
                ours.difference(&theirs).collect::<Vec<_>>(),
                theirs.difference(&ours).collect::<Vec<_>>()
            ));
        }
        match &expected["positive"] {
            Value::Null => {
                mismatches.push(format!("{name}: no positive record could be built from the rule"))
            }
            positive => {
                if !matcher.matches(&Event::new(positive.clone())) {
                    mismatches.push(format!("{name}: we do not select the positive record {positive}"));
                }
            }
        }
    }
    println!(
        "sigma conformance: {} rules, {loaded} loaded, {} rejected, {} shared records, {selected_total} selections, \
         {} mismatches",
        files.len(),
        rejected.len(),
        events.len(),
        mismatches.len()
    );
    for line in &rejected {
        println!("rejected: {line}");
    }
    println!("case-colliding columns in the oracle's table: {}", oracle["column_collisions"]);
    assert!(selected_total > 0, "the oracle selected nothing: the comparison would be empty");
    assert!(mismatches.is_empty(), "mismatches with the oracle:\n{}", mismatches.join("\n"));
}
