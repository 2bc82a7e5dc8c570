//! The built-in packs against Panther's labelled CloudTrail test events
//! (`../shared/data/rules/panther_aws_cloudtrail/test_events.jsonl.gz`): where a Panther rule covers
//! the same thing as a pack rule, the pack rule fires on Panther's positive events and not on its
//! negative ones. The CIS filters have no errorCode term (they count attempts too), so for CIS
//! overlaps a negative that differs only by carrying an errorCode is listed, not asserted.

use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use orgtrail::features::alerts::rules::{Event, LoadedRule, Target, packs};
use serde_json::Value;

/// (Panther rule file stem, pack rule name).
const OVERLAPS: &[(&str, &str)] = &[
    ("aws_cloudtrail_stopped", "trail-tampering/stop-logging"),
    ("aws_cloudtrail_attempt_to_leave_org", "trail-tampering/leave-organization"),
    ("aws_iam_policy_modified", "cis-aws-foundations-4/4.4"),
    ("aws_kms_cmk_loss", "cis-aws-foundations-4/4.7"),
    ("aws_ec2_security_group_modified", "cis-aws-foundations-4/4.10"),
    ("aws_ec2_route_table_modified", "cis-aws-foundations-4/4.13"),
    ("aws_ec2_vpc_modified", "cis-aws-foundations-4/4.14"),
];

fn pack_rules() -> Vec<LoadedRule> {
    let target = Arc::new(Target::Log);
    packs::PACKS
        .iter()
        .flat_map(|p| orgtrail::features::alerts::rules::pack_rules(p, target.clone()))
        .collect()
}

#[test]
fn pack_rules_agree_with_panther_tests_where_they_overlap() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/rules/panther_aws_cloudtrail/test_events.jsonl.gz");
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()));
    let tests: Vec<Value> = reader.lines().map(|l| serde_json::from_str(&l.unwrap()).unwrap()).collect();
    let rules = pack_rules();
    let (mut checked, mut listed, mut failures) = (0, Vec::new(), Vec::new());
    for (panther, ours) in OVERLAPS {
        let rule =
            rules.iter().find(|r| r.info.name == *ours).unwrap_or_else(|| panic!("no pack rule {ours}"));
        let cases: Vec<&Value> = tests
            .iter()
            .filter(|t| t["rule_file"].as_str().is_some_and(|f| f.ends_with(&format!("{panther}.yml"))))
            .collect();
        assert!(!cases.is_empty(), "no Panther tests for {panther}");
        for case in cases {
            let expected = case["expected_result"].as_bool().unwrap();
            let fired = rule.matches(&Event::new(case["log"].clone()));
            let name = case["test_name"].as_str().unwrap_or_default();
            if !expected
                && fired
                && ours.starts_with("cis-")
                && case["log"].get("errorCode").is_some_and(|e| !e.is_null())
            {
                listed.push(format!(
                    "{ours} on {panther} / {name:?}: a failed attempt, which the CIS filter counts"
                ));
                continue;
            }
            checked += 1;
            if fired != expected {
                failures.push(format!("{ours} on {panther} / {name:?}: expected {expected}, fired {fired}"));
            }
        }
    }
    println!("panther overlaps: {} rule pairs, {checked} test events checked", OVERLAPS.len());
    for line in &listed {
        println!("not asserted: {line}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
