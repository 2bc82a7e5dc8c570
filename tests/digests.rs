//! The digest writer through the whole stack: real ingest, worker, S3 protocol and signing keys;
//! every digest read back from the bucket and checked the way `aws cloudtrail validate-logs` does.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::*;
use orgtrail::client::Clients;
use orgtrail::features::integrity::digest::{self, Digest};
use orgtrail::proto::v1 as pb;
use sqlx::PgPool;

const PERIOD: Duration = Duration::from_secs(2);
const BUCKET: &str = "central-bucket";

/// A digest object as stored.
#[derive(Debug, Clone)]
struct Stored {
    key: String,
    json: Vec<u8>,
    digest: Digest,
    signature: String,
    algorithm: String,
}

fn gunzip_one_member(key: &str, body: &[u8]) -> Vec<u8> {
    let mut decoder = flate2::bufread::GzDecoder::new(body);
    let mut out = Vec::new();
    decoder.read_to_end(&mut out).unwrap_or_else(|e| panic!("{key}: not gzip: {e}"));
    let mut rest = Vec::new();
    decoder.into_inner().read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{key}: bytes after the first gzip member");
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

async fn keys_with(s3: &aws_sdk_s3::Client, bucket: &str, part: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = s3.list_objects_v2().bucket(bucket).set_continuation_token(token).send().await.unwrap();
        keys.extend(
            page.contents().iter().filter_map(|o| o.key()).filter(|k| k.contains(part)).map(str::to_owned),
        );
        if page.is_truncated() != Some(true) {
            return keys;
        }
        token = page.next_continuation_token().map(str::to_owned);
    }
}

async fn stored_digests(s3: &aws_sdk_s3::Client, bucket: &str) -> Vec<Stored> {
    let mut out = Vec::new();
    for key in keys_with(s3, bucket, "/CloudTrail-Digest/").await {
        let object = s3.get_object().bucket(bucket).key(&key).send().await.unwrap();
        let metadata = object.metadata().cloned().unwrap_or_default();
        let body = object.body.collect().await.unwrap().into_bytes();
        let json = gunzip_one_member(&key, &body);
        let digest: Digest = serde_json::from_slice(&json).unwrap_or_else(|e| panic!("{key}: {e}"));
        out.push(Stored {
            key,
            json,
            digest,
            signature: metadata.get("signature").cloned().unwrap_or_default(),
            algorithm: metadata.get("signature-algorithm").cloned().unwrap_or_default(),
        });
    }
    out
}

/// Digests per (account, region), oldest first.
fn chains(digests: &[Stored]) -> BTreeMap<(String, String), Vec<Stored>> {
    let mut chains: BTreeMap<(String, String), Vec<Stored>> = BTreeMap::new();
    for stored in digests {
        let region =
            stored.key.split("/CloudTrail-Digest/").nth(1).unwrap().split('/').next().unwrap().to_owned();
        chains.entry((stored.digest.aws_account_id.clone(), region)).or_default().push(stored.clone());
    }
    for chain in chains.values_mut() {
        chain.sort_by(|a, b| a.digest.digest_end_time.cmp(&b.digest.digest_end_time));
    }
    chains
}

/// Every public key of the region ever valid, by fingerprint.
async fn public_keys(admin: &mut Clients, region: &str) -> HashMap<String, Vec<u8>> {
    let response = admin
        .keys
        .list_public_keys(pb::ListPublicKeysRequest {
            region: region.into(),
            start_time: Some(pbjson_types::Timestamp { seconds: 0, nanos: 0 }),
            end_time: None,
        })
        .await
        .unwrap()
        .into_inner();
    response.public_key_list.into_iter().map(|k| (k.fingerprint, k.value)).collect()
}

fn time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}")).with_timezone(&Utc)
}

/// Checks one chain as validate-logs would, plus our window rules; returns the log keys listed.
fn check_chain(chain: &[Stored], keys: &HashMap<String, Vec<u8>>, bucket: &str) -> Vec<String> {
    let mut listed = Vec::new();
    for (i, stored) in chain.iter().enumerate() {
        let d = &stored.digest;
        assert_eq!(d.digest_s3_object, stored.key, "digestS3Object is where it is stored");
        assert_eq!(d.digest_s3_bucket, bucket);
        assert_eq!(stored.algorithm, "SHA256withRSA");
        let key = keys
            .get(&d.digest_public_key_fingerprint)
            .unwrap_or_else(|| panic!("{}: unknown key", stored.key));
        digest::verify(&stored.json, &stored.signature, key)
            .unwrap_or_else(|e| panic!("{}: {e}", stored.key));
        let end = time(&d.digest_end_time);
        assert_eq!(end.timestamp() % PERIOD.as_secs() as i64, 0, "{}: ends on a period boundary", stored.key);
        assert!(
            stored.key.ends_with(&format!("_{}.json.gz", end.format("%Y%m%dT%H%M%SZ"))),
            "{}",
            stored.key
        );
        if i == 0 {
            assert_eq!(d.previous_digest_s3_object, None, "a chain begins with a starting digest");
            assert_eq!(d.previous_digest_signature, None);
            assert_eq!(d.previous_digest_hash_value, None);
        } else {
            let previous = &chain[i - 1];
            assert_eq!(d.digest_start_time, previous.digest.digest_end_time, "{}: windows touch", stored.key);
            assert_eq!(d.previous_digest_s3_object.as_deref(), Some(previous.key.as_str()));
            assert_eq!(d.previous_digest_s3_bucket.as_deref(), Some(bucket));
            assert_eq!(d.previous_digest_hash_value, Some(sha256_hex(&previous.json)));
            assert_eq!(d.previous_digest_hash_algorithm.as_deref(), Some("SHA-256"));
            assert_eq!(d.previous_digest_signature.as_deref(), Some(previous.signature.as_str()));
        }
        if d.log_files.is_empty() {
            assert_eq!((d.newest_event_time.as_ref(), d.oldest_event_time.as_ref()), (None, None));
        }
        listed.extend(d.log_files.iter().map(|f| f.s3_object.clone()));
    }
    listed
}

async fn wait_until<F, Fut>(what: &str, within: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn events(account: &str, region: &str, prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| event(account, region, "ec2.amazonaws.com", "RunInstances", &format!("{prefix}-{i}")))
        .collect()
}

/// The log objects of (account, region) with the SHA-256 of their uncompressed bytes.
async fn log_hashes(s3: &aws_sdk_s3::Client, bucket: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for key in keys_with(s3, bucket, "/CloudTrail/").await {
        let body =
            s3.get_object().bucket(bucket).key(&key).send().await.unwrap().body.collect().await.unwrap();
        out.insert(key.clone(), sha256_hex(&gunzip_one_member(&key, &body.into_bytes())));
    }
    out
}

/// An account trail of `account` with validation on, single-region, logging; returns the admin.
async fn validating_account_trail(stack: &Stack, name: &str, account: &str) -> (Clients, pb::Trail) {
    stack.create_bucket("member-bucket").await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    let mut request = account_trail(name, account);
    request.log_file_validation_enabled = true;
    request.is_multi_region_trail = Some(false);
    let trail = logging_trail(&mut admin, request).await;
    (admin, trail)
}

/// The (account, us-east-1) chain in "member-bucket", oldest first.
async fn member_chain(s3: aws_sdk_s3::Client, account: &'static str) -> Vec<Stored> {
    chains(&stored_digests(&s3, "member-bucket").await)
        .remove(&(account.to_owned(), "us-east-1".to_owned()))
        .unwrap_or_default()
}

#[sqlx::test]
async fn an_organization_trail_gets_one_signed_chain_per_account_and_region(pool: PgPool) {
    let stack = stack_with_digest_period(pool.clone(), PERIOD).await;
    stack.create_bucket(BUCKET).await;
    let mut admin = stack.api.admin().await;
    org_with_members(&mut admin).await;
    let mut request = org_trail("org-trail");
    request.log_file_validation_enabled = true;
    let trail = logging_trail(&mut admin, request).await;
    let mut member = stack.api.member(MEMBER_A).await;

    // Traffic across several digest windows, in two regions.
    for round in 0..3 {
        put(&mut member, &events(MEMBER_A, "us-east-1", &format!("use1-{round}"), 5)).await;
        put(&mut member, &events(MEMBER_A, "eu-west-1", &format!("euw1-{round}"), 3)).await;
        tokio::time::sleep(PERIOD).await;
    }
    stack.wait_for_records(BUCKET, 24).await;

    // Until every delivered file is listed, and one more (empty) window has passed.
    let s3 = stack.s3_client.clone();
    wait_until("digests listing every log file", Duration::from_secs(60), || {
        let s3 = s3.clone();
        async move {
            let logs = log_hashes(&s3, BUCKET).await;
            let digests = stored_digests(&s3, BUCKET).await;
            let listed: Vec<&str> = digests
                .iter()
                .flat_map(|d| d.digest.log_files.iter().map(|f| f.s3_object.as_str()))
                .collect();
            let chain_a = chains(&digests).get(&(MEMBER_A.to_owned(), "us-east-1".to_owned())).cloned();
            logs.keys().all(|k| listed.contains(&k.as_str()))
                && chain_a.is_some_and(|c| c.last().is_some_and(|d| d.digest.log_files.is_empty()))
        }
    })
    .await;

    let digests = stored_digests(&s3, BUCKET).await;
    let logs = log_hashes(&s3, BUCKET).await;
    let keys = public_keys(&mut admin, "us-east-1").await;
    let mut keys_eu = public_keys(&mut admin, "eu-west-1").await;
    keys_eu.extend(keys);
    let chains = chains(&digests);
    // Every account of the organization, in both of its regions, even without events.
    for account in [MANAGEMENT, MEMBER_A, MEMBER_B] {
        for region in ["us-east-1", "eu-west-1"] {
            let chain = chains.get(&(account.to_owned(), region.to_owned()));
            assert!(chain.is_some_and(|c| c.len() >= 2), "no chain for {account} {region}");
        }
    }
    let mut listed_total = Vec::new();
    for ((account, region), chain) in &chains {
        assert!(
            chain[0].key.starts_with(&format!("AWSLogs/o-testorg1234/{account}/CloudTrail-Digest/{region}/"))
        );
        assert!(chain[0].key.contains(&format!("{account}_CloudTrail-Digest_{region}_org-trail_us-east-1_")));
        let listed = check_chain(chain, &keys_eu, BUCKET);
        for key in &listed {
            assert!(
                key.contains(&format!("/{account}/CloudTrail/{region}/")),
                "{key} listed in the wrong chain"
            );
        }
        listed_total.extend(listed);
    }
    // Each delivered file exactly once, with the hash of its uncompressed bytes.
    let mut sorted = listed_total.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), listed_total.len(), "a file is listed twice");
    let mut delivered: Vec<String> = logs.keys().cloned().collect();
    delivered.sort();
    assert_eq!(sorted, delivered);
    for d in &digests {
        for file in &d.digest.log_files {
            assert_eq!(file.hash_value, logs[&file.s3_object], "{}", file.s3_object);
            assert_eq!(file.hash_algorithm, "SHA-256");
        }
    }
    // The database's record of digests and the bucket agree: nothing written twice or lost.
    let recorded = orgtrail::features::integrity::chains::delivered_digests(&pool).await.unwrap();
    let mut recorded_keys: Vec<String> =
        recorded.iter().filter(|r| r.delivered_at.is_some()).map(|r| r.object_key.clone()).collect();
    recorded_keys.sort();
    let mut bucket_keys: Vec<String> = digests.iter().map(|d| d.key.clone()).collect();
    bucket_keys.sort();
    assert!(bucket_keys.iter().all(|k| recorded_keys.contains(k)));
    let status = admin
        .trails
        .get_trail_status(pb::GetTrailStatusRequest { name: trail.trail_arn.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(status.latest_digest_delivery_time.is_some());
    assert_eq!(status.latest_digest_delivery_error, "");
}

#[sqlx::test]
async fn switching_validation_off_ends_the_chain_and_on_again_starts_a_new_one(pool: PgPool) {
    let stack = stack_with_digest_period(pool.clone(), PERIOD).await;
    let (mut admin, trail) = validating_account_trail(&stack, "own-trail", MEMBER_A).await;
    let mut member = stack.api.member(MEMBER_A).await;
    let s3 = stack.s3_client.clone();
    let chain_len = |s3: aws_sdk_s3::Client| async move { member_chain(s3, MEMBER_A).await.len() };

    put(&mut member, &events(MEMBER_A, "us-east-1", "before", 3)).await;
    stack.wait_for_records("member-bucket", 3).await;
    wait_until("two digests", Duration::from_secs(30), || {
        let s3 = s3.clone();
        async move { chain_len(s3).await >= 2 }
    })
    .await;

    let set_validation = |on: bool| pb::UpdateTrailRequest {
        name: trail.trail_arn.clone(),
        log_file_validation_enabled: Some(on),
        ..Default::default()
    };
    admin.trails.update_trail(set_validation(false)).await.unwrap();
    // The chain is closed by one final digest, sealed first and then PUT: wait for both.
    wait_until("the chain to close", Duration::from_secs(30), || {
        let pool = pool.clone();
        async move {
            let closed =
                sqlx::query_scalar::<_, bool>("SELECT closed FROM digest_chains WHERE account_id = $1")
                    .bind(MEMBER_A)
                    .fetch_optional(&pool)
                    .await
                    .unwrap()
                    == Some(true);
            let pending: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pending_digests").fetch_one(&pool).await.unwrap();
            closed && pending == 0
        }
    })
    .await;
    let closed_len = chain_len(s3.clone()).await;

    // Files delivered while validation is off are in no digest.
    put(&mut member, &events(MEMBER_A, "us-east-1", "while-off", 2)).await;
    stack.wait_for_records("member-bucket", 5).await;
    let off_keys: Vec<String> = stack
        .objects("member-bucket")
        .await
        .into_iter()
        .filter(|o| o.event_ids().iter().any(|id| id.starts_with("while-off")))
        .map(|o| o.key)
        .collect();
    tokio::time::sleep(PERIOD * 2).await;
    assert_eq!(chain_len(s3.clone()).await, closed_len, "no digests while validation is off");

    admin.trails.update_trail(set_validation(true)).await.unwrap();
    put(&mut member, &events(MEMBER_A, "us-east-1", "after", 2)).await;
    wait_until("a new chain", Duration::from_secs(30), || {
        let s3 = s3.clone();
        async move { chain_len(s3).await >= closed_len + 2 }
    })
    .await;

    let digests = stored_digests(&s3, "member-bucket").await;
    let chain = chains(&digests).remove(&(MEMBER_A.to_owned(), "us-east-1".to_owned())).unwrap();
    let keys = public_keys(&mut admin, "us-east-1").await;
    let (old, new) = chain.split_at(closed_len);
    check_chain(old, &keys, "member-bucket");
    let listed = check_chain(new, &keys, "member-bucket");
    assert!(new[0].digest.previous_digest_s3_object.is_none(), "re-enabling starts with a starting digest");
    assert!(
        time(&new[0].digest.digest_start_time) > time(&old.last().unwrap().digest.digest_end_time),
        "the chains leave a gap"
    );
    let all_listed: Vec<String> =
        digests.iter().flat_map(|d| d.digest.log_files.iter().map(|f| f.s3_object.clone())).collect();
    for key in &off_keys {
        assert!(!all_listed.contains(key), "{key} was delivered while validation was off");
    }
    assert!(listed.iter().all(|k| !off_keys.contains(k)));
}

#[sqlx::test]
async fn a_key_rotation_mid_chain_keeps_the_chain_valid(pool: PgPool) {
    let stack = stack_with_digest_period(pool.clone(), PERIOD).await;
    let (mut admin, _) = validating_account_trail(&stack, "rotating", MEMBER_B).await;
    let s3 = stack.s3_client.clone();
    let chain = |s3: aws_sdk_s3::Client| member_chain(s3, MEMBER_B);
    wait_until("two digests", Duration::from_secs(30), || {
        let s3 = s3.clone();
        async move { chain(s3).await.len() >= 2 }
    })
    .await;
    let rotated = admin
        .keys
        .rotate_signing_key(pb::RotateSigningKeyRequest { region: "us-east-1".into() })
        .await
        .unwrap()
        .into_inner();
    wait_until("digests signed with the new key", Duration::from_secs(30), || {
        let s3 = s3.clone();
        let fingerprint = rotated.fingerprint.clone();
        async move {
            chain(s3).await.iter().filter(|d| d.digest.digest_public_key_fingerprint == fingerprint).count()
                >= 2
        }
    })
    .await;
    let chain = chain(s3).await;
    let keys = public_keys(&mut admin, "us-east-1").await;
    assert!(keys.len() >= 2, "the old key stays listed");
    let fingerprints: std::collections::BTreeSet<&str> =
        chain.iter().map(|d| d.digest.digest_public_key_fingerprint.as_str()).collect();
    assert!(fingerprints.len() >= 2, "the chain spans both keys");
    check_chain(&chain, &keys, "member-bucket");
}

#[sqlx::test]
async fn a_file_committed_after_its_window_was_sealed_goes_into_the_next_digest(pool: PgPool) {
    let stack = stack_with_digest_period(pool.clone(), PERIOD).await;
    let (_admin, trail) = validating_account_trail(&stack, "late", MEMBER_A).await;
    let s3 = stack.s3_client.clone();
    let chain = |s3: aws_sdk_s3::Client| member_chain(s3, MEMBER_A);
    wait_until("a digest", Duration::from_secs(30), || {
        let s3 = s3.clone();
        async move { !chain(s3).await.is_empty() }
    })
    .await;
    // A file recorded as delivered inside the first (already sealed) window, as a commit that
    // raced the seal would be.
    let started: DateTime<Utc> =
        sqlx::query_scalar("SELECT chain_started_at FROM digest_chains").fetch_one(&pool).await.unwrap();
    let shard: i64 = sqlx::query_scalar(
        "INSERT INTO shards (account_id, region, source) VALUES ($1, 'us-east-1', 'late-test') RETURNING id",
    )
    .bind(MEMBER_A)
    .fetch_one(&pool)
    .await
    .unwrap();
    let late_key = "AWSLogs/222222222222/CloudTrail/us-east-1/2026/11/24/222222222222_CloudTrail_us-east-1_20261124T0000Z_latelatelatelate.json.gz";
    sqlx::query(
        "INSERT INTO delivered_files (trail_id, trail_arn, shard_id, account_id, region, from_seq, to_seq, bucket,
             object_key, sha256, content_sha256, size_bytes, record_count, oldest_event_time, newest_event_time,
             delivered_at)
         VALUES (NULL, $1, $2, $3, 'us-east-1', 1, 1, 'member-bucket', $4, '\\x00', '\\x01', 1, 1, $5, $5, $5)",
    )
    .bind(&trail.trail_arn)
    .bind(shard)
    .bind(MEMBER_A)
    .bind(late_key)
    .bind(started)
    .execute(&pool)
    .await
    .unwrap();
    let sealed_before = chain(s3.clone()).await.len();
    wait_until("the late file in a digest", Duration::from_secs(30), || {
        let s3 = s3.clone();
        async move { chain(s3).await.iter().any(|d| d.digest.log_files.iter().any(|f| f.s3_object == late_key)) }
    })
    .await;
    let chain = chain(s3).await;
    let position =
        chain.iter().position(|d| d.digest.log_files.iter().any(|f| f.s3_object == late_key)).unwrap();
    assert!(position >= sealed_before.saturating_sub(1) && position > 0, "listed by a later digest");
    assert!(time(&chain[position].digest.digest_start_time) > started, "not its own window's digest");
}

#[sqlx::test]
async fn keys_rotate_on_schedule_and_chains_validate_across(pool: PgPool) {
    let stack = stack_with_settings(pool.clone(), |settings| {
        settings.digest_period = PERIOD;
        settings.signing_key_rotation = Some(Duration::from_secs(3));
    })
    .await;
    let (mut admin, _) = validating_account_trail(&stack, "scheduled", MEMBER_A).await;
    let s3 = stack.s3_client.clone();
    let chain = |s3: aws_sdk_s3::Client| member_chain(s3, MEMBER_A);
    wait_until("digests under three keys", Duration::from_secs(40), || {
        let s3 = s3.clone();
        async move {
            let chain = chain(s3).await;
            chain
                .iter()
                .map(|d| d.digest.digest_public_key_fingerprint.clone())
                .collect::<std::collections::BTreeSet<_>>()
                .len()
                >= 3
        }
    })
    .await;
    let keys = public_keys(&mut admin, "us-east-1").await;
    check_chain(&chain(s3).await, &keys, "member-bucket");
}
