//! The IAM documents of a member's collector role (trust policy and least-privilege inline policy)
//! and their semantic comparison: IAM returns documents URL-encoded, reordered and with single
//! values unwrapped, so text equality would rewrite policies that already say the same thing.

use serde_json::{Map, Value, json};

/// Name of the inline policy on the collector role.
pub const INLINE_POLICY_NAME: &str = "orgtrail-collector";
/// Default name of the collector role.
pub const DEFAULT_ROLE_NAME: &str = "orgtrail-collector";

/// What the member's role must allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolePlan {
    /// `aws`, `aws-cn`, `aws-us-gov`: the partition of the member's account.
    pub partition: String,
    pub account_id: String,
    pub role_name: String,
    pub aggregator_principal: String,
    pub external_id: String,
    pub lookup_events: bool,
    /// The member's CloudTrail bucket orgtrail reads; None: not read.
    pub trail_bucket: Option<String>,
    /// Key prefix before `AWSLogs/`, without slashes at either end; empty: none.
    pub trail_prefix: String,
}

impl RolePlan {
    pub fn role_arn(&self) -> String {
        format!("arn:{}:iam::{}:role/{}", self.partition, self.account_id, self.role_name)
    }

    /// Only the aggregator principal may assume the role, and only with this enrollment's
    /// ExternalId (the confused-deputy guard).
    pub fn trust_policy(&self) -> Value {
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "OrgtrailCollector",
                "Effect": "Allow",
                "Principal": {"AWS": self.aggregator_principal},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": self.external_id}}
            }]
        })
    }

    /// `P/AWSLogs/ACCOUNT/` (or `AWSLogs/ACCOUNT/` without a prefix): where CloudTrail writes this
    /// account's files in the bucket, and all the role may read there.
    pub fn trail_key_prefix(&self) -> String {
        let prefix = self.trail_prefix.trim_matches('/');
        if prefix.is_empty() {
            format!("AWSLogs/{}/", self.account_id)
        } else {
            format!("{prefix}/AWSLogs/{}/", self.account_id)
        }
    }

    /// Least privilege: LookupEvents when pulled that way, and read of the account's own trail
    /// files (objects under its prefix; listing only below that prefix) when a bucket is given.
    pub fn inline_policy(&self) -> Value {
        let mut statements = Vec::new();
        if self.lookup_events {
            statements.push(json!({
                "Sid": "LookupEvents",
                "Effect": "Allow",
                "Action": "cloudtrail:LookupEvents",
                "Resource": "*"
            }));
        }
        if let Some(bucket) = &self.trail_bucket {
            let key_prefix = self.trail_key_prefix();
            statements.push(json!({
                "Sid": "ReadTrailObjects",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": format!("arn:{}:s3:::{bucket}/{key_prefix}*", self.partition)
            }));
            statements.push(json!({
                "Sid": "ListTrailPrefix",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": format!("arn:{}:s3:::{bucket}", self.partition),
                "Condition": {"StringLike": {"s3:prefix": format!("{key_prefix}*")}}
            }));
        }
        json!({"Version": "2012-10-17", "Statement": statements})
    }
}

/// Decodes a policy document as IAM returns it: URL-encoded JSON (RFC 3986 percent-encoding),
/// or plain JSON from stores that do not encode.
pub fn parse_document(text: &str) -> Option<Value> {
    if let Ok(value) = serde_json::from_str(text) {
        return Some(value);
    }
    serde_json::from_str(&percent_decode(text)?).ok()
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Whether two policy documents grant the same: equal after [`normalize`].
pub fn same_policy(a: &Value, b: &Value) -> bool {
    normalize(a) == normalize(b)
}

/// IAM's equivalences made explicit: `Statement` and every value list may be a single value or a
/// list, and list order does not matter.
pub fn normalize(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            // Keys in sorted order: maps keep insertion order (serde_json's preserve_order), and
            // lists are sorted by their text, which must not depend on the order keys came in.
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by_key(|(key, _)| *key);
            for (key, inner) in entries {
                let inner = match key.as_str() {
                    "Statement" => as_sorted_list(inner),
                    // Condition and Principal maps stay maps; their leaves become lists.
                    _ if inner.is_object() => normalize(inner),
                    "Version" | "Sid" | "Effect" | "Id" => inner.clone(),
                    _ => as_sorted_list(inner),
                };
                out.insert(key.clone(), inner);
            }
            Value::Object(out)
        }
        other => as_sorted_list(other),
    }
}

fn as_sorted_list(value: &Value) -> Value {
    let mut items: Vec<Value> = match value {
        Value::Array(items) => items.iter().map(normalize_item).collect(),
        single => vec![normalize_item(single)],
    };
    items.sort_by_key(|item| item.to_string());
    Value::Array(items)
}

fn normalize_item(value: &Value) -> Value {
    match value {
        Value::Object(_) => normalize(value),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> RolePlan {
        RolePlan {
            partition: "aws".into(),
            account_id: "222222222222".into(),
            role_name: DEFAULT_ROLE_NAME.into(),
            aggregator_principal: "arn:aws:iam::111111111111:root".into(),
            external_id: "orgtrail-abc".into(),
            lookup_events: true,
            trail_bucket: Some("member-trail".into()),
            trail_prefix: "/org/".into(),
        }
    }

    #[test]
    fn inline_policy_reads_only_the_accounts_trail_prefix() {
        let policy = plan().inline_policy();
        let statements = policy["Statement"].as_array().unwrap();
        assert_eq!(statements.len(), 3);
        assert_eq!(statements[0]["Action"], "cloudtrail:LookupEvents");
        assert_eq!(statements[1]["Resource"], "arn:aws:s3:::member-trail/org/AWSLogs/222222222222/*");
        assert_eq!(statements[2]["Resource"], "arn:aws:s3:::member-trail");
        assert_eq!(statements[2]["Condition"]["StringLike"]["s3:prefix"], "org/AWSLogs/222222222222/*");
        let lookup_only = RolePlan { trail_bucket: None, ..plan() }.inline_policy();
        assert_eq!(lookup_only["Statement"].as_array().unwrap().len(), 1);
        let no_prefix = RolePlan { trail_prefix: String::new(), lookup_events: false, ..plan() };
        assert_eq!(
            no_prefix.inline_policy()["Statement"][0]["Resource"],
            "arn:aws:s3:::member-trail/AWSLogs/222222222222/*"
        );
    }

    #[test]
    fn url_encoded_reordered_documents_compare_equal() {
        let ours = plan().trust_policy();
        // As IAM returns it: URL-encoded, Statement not a list, the action in a list.
        let theirs = "%7B%22Statement%22%3A%7B%22Action%22%3A%5B%22sts%3AAssumeRole%22%5D%2C%22Condition%22%3A%7B%22StringEquals%22%3A%7B%22sts%3AExternalId%22%3A%22orgtrail-abc%22%7D%7D%2C%22Effect%22%3A%22Allow%22%2C%22Principal%22%3A%7B%22AWS%22%3A%22arn%3Aaws%3Aiam%3A%3A111111111111%3Aroot%22%7D%2C%22Sid%22%3A%22OrgtrailCollector%22%7D%2C%22Version%22%3A%222012-10-17%22%7D";
        let parsed = parse_document(theirs).unwrap();
        assert!(same_policy(&ours, &parsed));
        let other = RolePlan { external_id: "orgtrail-other".into(), ..plan() }.trust_policy();
        assert!(!same_policy(&other, &parsed));
    }

    #[test]
    fn statements_with_keys_in_another_order_compare_equal() {
        let ours = plan().inline_policy();
        // As Terraform's jsonencode writes it: keys sorted, so each statement's text differs.
        let theirs: Value = serde_json::from_str(&format!(
            r#"{{"Statement":[{}],"Version":"2012-10-17"}}"#,
            ours["Statement"]
                .as_array()
                .unwrap()
                .iter()
                .map(|statement| {
                    let mut keys: Vec<_> = statement.as_object().unwrap().iter().collect();
                    keys.sort_by_key(|(key, _)| *key);
                    let fields: Vec<String> = keys.iter().map(|(k, v)| format!("{k:?}:{v}")).collect();
                    format!("{{{}}}", fields.join(","))
                })
                .collect::<Vec<_>>()
                .join(",")
        ))
        .unwrap();
        assert_ne!(ours.to_string(), theirs.to_string());
        assert!(same_policy(&ours, &theirs));
    }
}
