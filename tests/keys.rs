//! Digest signing keys as CloudTrail's ListPublicKeys publishes them.

mod common;

use base64::Engine;
use common::*;
use orgtrail::proto::v1 as pb;
use sqlx::PgPool;

fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    hex::encode(md5::Md5::digest(bytes))
}

#[sqlx::test(migrations = "./migrations")]
async fn public_keys_are_pkcs1_with_md5_fingerprints_and_rotation_keeps_old_ones(pool: PgPool) {
    let api = start(pool).await;
    let mut admin = api.admin().await;
    let before = pbjson_types::Timestamp { seconds: chrono::Utc::now().timestamp() - 5, nanos: 0 };
    let none = admin.keys.list_public_keys(pb::ListPublicKeysRequest::default()).await.unwrap().into_inner();
    assert!(none.public_key_list.is_empty(), "no key before the region's first digest or rotation");
    admin.keys.rotate_signing_key(pb::RotateSigningKeyRequest::default()).await.unwrap();
    let current =
        admin.keys.list_public_keys(pb::ListPublicKeysRequest::default()).await.unwrap().into_inner();
    assert_eq!(current.public_key_list.len(), 1, "the region's first key");
    let first = &current.public_key_list[0];
    assert!(
        base64::engine::general_purpose::STANDARD.encode(&first.value).starts_with("MIIBCgKCAQEA"),
        "PKCS#1 RSA-2048"
    );
    assert_eq!(first.fingerprint, md5_hex(&first.value));
    assert_eq!(first.region, "us-east-1");
    assert!(first.validity_end_time.is_none());

    let again = admin.keys.list_public_keys(pb::ListPublicKeysRequest::default()).await.unwrap().into_inner();
    assert_eq!(again.public_key_list[0].fingerprint, first.fingerprint, "stable until rotated");

    let rotated =
        admin.keys.rotate_signing_key(pb::RotateSigningKeyRequest::default()).await.unwrap().into_inner();
    assert_ne!(rotated.fingerprint, first.fingerprint);
    let all = admin
        .keys
        .list_public_keys(pb::ListPublicKeysRequest {
            region: String::new(),
            start_time: Some(before),
            end_time: None,
        })
        .await
        .unwrap()
        .into_inner();
    let fingerprints: Vec<&str> = all.public_key_list.iter().map(|k| k.fingerprint.as_str()).collect();
    assert_eq!(fingerprints, vec![rotated.fingerprint.as_str(), first.fingerprint.as_str()], "newest first");
    assert!(all.public_key_list[1].validity_end_time.is_some(), "the old key's validity ended");

    let backwards = admin
        .keys
        .list_public_keys(pb::ListPublicKeysRequest {
            region: String::new(),
            start_time: Some(pbjson_types::Timestamp { seconds: 2_000_000_000, nanos: 0 }),
            end_time: Some(pbjson_types::Timestamp { seconds: 1_000_000_000, nanos: 0 }),
        })
        .await;
    assert_eq!(code(backwards), tonic::Code::InvalidArgument);
    let bad_region = admin
        .keys
        .list_public_keys(pb::ListPublicKeysRequest { region: "Not A Region".into(), ..Default::default() })
        .await;
    assert_eq!(code(bad_region), tonic::Code::InvalidArgument);
}
