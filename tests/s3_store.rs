//! The in-process S3-compatible store over the real S3 protocol (aws-sdk-s3, SigV4): what the
//! pipeline and the aws CLI rely on.

use aws_sdk_s3::primitives::ByteStream;
use orgtrail::dev::s3::S3Server;

async fn server() -> (S3Server, aws_sdk_s3::Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(dir.path(), "127.0.0.1:0".parse().unwrap(), "key", "secret").await.unwrap();
    let client = orgtrail::dev::s3_client(&server.endpoint(), "key", "secret", "us-east-1").await;
    client.create_bucket().bucket("bkt").send().await.unwrap();
    (server, client, dir)
}

#[tokio::test]
async fn cloudtrail_length_keys_round_trip_with_their_attributes() {
    let (_server, s3, _dir) = server().await;
    let key = format!(
        "a-long-prefix/{}/AWSLogs/o-abcdefghijklmnopqrstuvwxyz012345/111122223333/CloudTrail-Digest/ap-southeast-2/2026/11/24/111122223333_CloudTrail-Digest_ap-southeast-2_{}_ap-southeast-2_20261124T040000Z.json.gz",
        "p".repeat(60),
        "t".repeat(120)
    );
    s3.put_object()
        .bucket("bkt")
        .key(&key)
        .content_type("application/json")
        .content_encoding("gzip")
        .metadata("signature", "abc123")
        .body(ByteStream::from_static(b"hello"))
        .send()
        .await
        .unwrap();
    let head = s3.head_object().bucket("bkt").key(&key).send().await.unwrap();
    assert_eq!(head.content_length(), Some(5));
    assert_eq!(head.metadata().unwrap()["signature"], "abc123");
    assert_eq!(head.content_encoding(), Some("gzip"));
    let got = s3.get_object().bucket("bkt").key(&key).send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), b"hello");
}

#[tokio::test]
async fn if_none_match_refuses_to_overwrite() {
    let (_server, s3, _dir) = server().await;
    let put = |body: &'static [u8]| {
        s3.put_object().bucket("bkt").key("k").if_none_match("*").body(ByteStream::from_static(body)).send()
    };
    put(b"first").await.unwrap();
    let error = put(b"second").await.unwrap_err();
    assert_eq!(error.raw_response().map(|r| r.status().as_u16()), Some(412));
    let got = s3.get_object().bucket("bkt").key("k").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), b"first");
}

#[tokio::test]
async fn missing_buckets_and_keys_are_reported_as_s3_does() {
    let (_server, s3, _dir) = server().await;
    let error =
        s3.put_object().bucket("nope").key("k").body(ByteStream::from_static(b"x")).send().await.unwrap_err();
    assert_eq!(aws_sdk_s3::error::ProvideErrorMetadata::code(&error), Some("NoSuchBucket"));
    let error = s3.get_object().bucket("bkt").key("missing").send().await.unwrap_err();
    assert!(error.into_service_error().is_no_such_key());
}

#[tokio::test]
async fn listing_pages_in_key_order_with_prefixes_and_delimiters() {
    let (_server, s3, _dir) = server().await;
    let keys = ["a/1", "a/2", "a/b/3", "c/4", "c/5", "d"];
    for key in keys {
        s3.put_object().bucket("bkt").key(key).body(ByteStream::from_static(b"x")).send().await.unwrap();
    }
    let mut seen = Vec::new();
    let mut token = None;
    loop {
        let page = s3
            .list_objects_v2()
            .bucket("bkt")
            .max_keys(2)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        seen.extend(page.contents().iter().map(|o| o.key().unwrap().to_owned()));
        if page.is_truncated() != Some(true) {
            break;
        }
        token = page.next_continuation_token().map(str::to_owned);
    }
    assert_eq!(seen, keys);
    let after = s3.list_objects_v2().bucket("bkt").start_after("a/b/3").send().await.unwrap();
    assert_eq!(
        after.contents().iter().map(|o| o.key().unwrap()).collect::<Vec<_>>(),
        vec!["c/4", "c/5", "d"]
    );
    let grouped = s3.list_objects_v2().bucket("bkt").prefix("a/").delimiter("/").send().await.unwrap();
    assert_eq!(grouped.contents().iter().map(|o| o.key().unwrap()).collect::<Vec<_>>(), vec!["a/1", "a/2"]);
    assert_eq!(
        grouped.common_prefixes().iter().map(|p| p.prefix().unwrap()).collect::<Vec<_>>(),
        vec!["a/b/"]
    );
    let v1 = s3.list_objects().bucket("bkt").prefix("c/").marker("c/4").send().await.unwrap();
    assert_eq!(v1.contents().iter().map(|o| o.key().unwrap()).collect::<Vec<_>>(), vec!["c/5"]);
}

#[tokio::test]
async fn sizes_etags_and_ranges_are_the_data_s_not_the_file_s() {
    let (_server, s3, _dir) = server().await;
    let body = b"0123456789";
    s3.put_object()
        .bucket("bkt")
        .key("k")
        .metadata("m", "v")
        .body(ByteStream::from_static(body))
        .send()
        .await
        .unwrap();
    let md5 = "781e5e245d69b566979b86e28d23f2c7";
    let listed = s3.list_objects_v2().bucket("bkt").send().await.unwrap();
    let object = &listed.contents()[0];
    assert_eq!(object.size(), Some(10));
    assert_eq!(object.e_tag(), Some(format!("\"{md5}\"").as_str()));
    let head = s3.head_object().bucket("bkt").key("k").send().await.unwrap();
    assert_eq!((head.content_length(), head.e_tag()), (Some(10), Some(format!("\"{md5}\"").as_str())));
    let range = s3.get_object().bucket("bkt").key("k").range("bytes=2-4").send().await.unwrap();
    assert_eq!(range.content_range(), Some("bytes 2-4/10"));
    assert_eq!(range.body.collect().await.unwrap().into_bytes().as_ref(), b"234");
}

#[tokio::test]
async fn objects_stored_by_earlier_versions_still_read_with_their_attributes() {
    let (_server, s3, dir) = server().await;
    // The earlier layout: the data alone, the attributes in a file under .meta.
    let data = dir.path().join("bkt/AWSLogs/f.json.gz");
    std::fs::create_dir_all(data.parent().unwrap()).unwrap();
    std::fs::write(&data, b"\x1f\x8bold").unwrap();
    let meta = dir.path().join(".meta/bkt/AWSLogs/f.json.gz.json");
    std::fs::create_dir_all(meta.parent().unwrap()).unwrap();
    std::fs::write(
        &meta,
        r#"{"e_tag":"abc","content_type":null,"content_encoding":"gzip","metadata":{"signature":"s"}}"#,
    )
    .unwrap();
    let head = s3.head_object().bucket("bkt").key("AWSLogs/f.json.gz").send().await.unwrap();
    assert_eq!((head.content_length(), head.e_tag()), (Some(5), Some("\"abc\"")));
    assert_eq!(head.metadata().unwrap()["signature"], "s");
    let got = s3.get_object().bucket("bkt").key("AWSLogs/f.json.gz").send().await.unwrap();
    assert_eq!(got.body.collect().await.unwrap().into_bytes().as_ref(), b"\x1f\x8bold");
    let listed = s3.list_objects_v2().bucket("bkt").send().await.unwrap();
    assert_eq!(listed.contents()[0].size(), Some(5));
    s3.delete_object().bucket("bkt").key("AWSLogs/f.json.gz").send().await.unwrap();
    assert!(!meta.exists());
}
