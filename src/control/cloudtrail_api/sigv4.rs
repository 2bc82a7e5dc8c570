//! SigV4 verification: the request is rebuilt in canonical form from exactly the headers the client
//! signed, and signed again with the secret of the token that owns the access key.

use std::time::SystemTime;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};
use http::HeaderMap;
use http::request::Parts;

use super::error::AwsError;
use crate::control::api::Ctx;
use crate::control::api::auth::Caller;
use crate::model::Region;
use crate::store::tokens;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far the client's clock may be from ours, as AWS allows.
const MAX_CLOCK_SKEW: TimeDelta = TimeDelta::minutes(15);
const AMZ_DATE_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// Who signed a request, and where: the credential scope's region is the caller's current region.
#[derive(Debug, Clone)]
pub struct Signer {
    pub caller: Caller,
    pub region: Region,
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Authorization {
    access_key_id: String,
    /// `YYYYMMDD` of the credential scope.
    scope_date: String,
    scope_region: String,
    scope_service: String,
    signed_headers: Vec<String>,
    signature: String,
}

impl Authorization {
    fn scope(&self) -> String {
        format!("{}/{}/{}/aws4_request", self.scope_date, self.scope_region, self.scope_service)
    }
}

/// Verifies the request's signature for `service` (the signing name, e.g. `cloudtrail`) and
/// returns the signer. `now` is the server's clock.
pub async fn verify(
    ctx: &Ctx,
    parts: &Parts,
    body: &[u8],
    service: &str,
    now: DateTime<Utc>,
) -> Result<Signer, AwsError> {
    let Some(header) = parts.headers.get(http::header::AUTHORIZATION) else {
        return Err(AwsError::missing_authentication_token(
            "Missing Authentication Token: sign requests with SigV4 (an Authorization header)",
        ));
    };
    let header = header
        .to_str()
        .map_err(|_| AwsError::incomplete_signature("the Authorization header is not ASCII text"))?;
    let authorization = parse_authorization(header)?;
    let amz_date = request_time(&parts.headers)?;
    check_scope(&authorization, &amz_date, service, now)?;
    let region = Region::parse("credential scope", &authorization.scope_region).map_err(|_| {
        AwsError::invalid_signature(format!(
            "Credential should be scoped to a valid region, not {:?}",
            authorization.scope_region
        ))
    })?;
    let payload_hash = payload_hash(&parts.headers, body)?;
    let canonical = canonical_request(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query(),
        &parts.headers,
        &authorization.signed_headers,
        &payload_hash,
    )?;

    let found = tokens::find_active_by_access_key(&ctx.pool, &authorization.access_key_id)
        .await
        .map_err(|e| AwsError::from_status(&tonic::Status::from(e), "UnrecognizedClientException"))?;
    let Some((token, sealed_secret)) = found else {
        return Err(AwsError::unrecognized_client(
            "The security token included in the request is invalid (unknown, expired or revoked access key)",
        ));
    };
    let master_key = ctx
        .master_key
        .as_ref()
        .ok_or_else(|| AwsError::internal("the server has no master_key, so it cannot verify access keys"))?;
    let secret = master_key.decrypt(&sealed_secret).map_err(|e| {
        tracing::error!(error = %e, access_key_id = %authorization.access_key_id, "cannot decrypt an access key secret");
        AwsError::internal("internal error; see the server log")
    })?;
    let secret = String::from_utf8(secret).map_err(|_| AwsError::internal("a stored secret is not text"))?;

    let expected = signature(
        &secret,
        &authorization,
        &string_to_sign(&amz_date.format, &authorization.scope(), &canonical),
    )?;
    if verify_slices_are_equal(expected.as_bytes(), authorization.signature.as_bytes()).is_err() {
        return Err(AwsError::invalid_signature(
            "The request signature we calculated does not match the signature you provided. \
             Check your AWS Secret Access Key and signing method.",
        ));
    }
    Ok(Signer { caller: Caller::from_token(&token), region })
}

/// `AWS4-HMAC-SHA256 Credential=AKID/DATE/REGION/SERVICE/aws4_request, SignedHeaders=a;b, Signature=hex`.
fn parse_authorization(value: &str) -> Result<Authorization, AwsError> {
    let (algorithm, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if algorithm != ALGORITHM {
        return Err(AwsError::incomplete_signature(format!(
            "Unsupported AWS 'algorithm': {algorithm:?} (only {ALGORITHM} is)"
        )));
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for component in rest.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let (key, value) = component.split_once('=').ok_or_else(|| {
            AwsError::incomplete_signature(format!(
                "Authorization component {component:?} is not a key=value pair"
            ))
        })?;
        match key {
            "Credential" => credential = Some(value),
            "SignedHeaders" => signed_headers = Some(value),
            "Signature" => signature = Some(value),
            _ => {}
        }
    }
    let missing = |what: &str| {
        AwsError::incomplete_signature(format!("Authorization header requires '{what}' parameter"))
    };
    let credential = credential.ok_or_else(|| missing("Credential"))?;
    let signed_headers = signed_headers.ok_or_else(|| missing("SignedHeaders"))?;
    let signature = signature.ok_or_else(|| missing("Signature"))?;

    let parts: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, "aws4_request"] = parts.as_slice() else {
        return Err(AwsError::incomplete_signature(format!(
            "Credential must be ACCESS_KEY_ID/YYYYMMDD/REGION/SERVICE/aws4_request, got {credential:?}"
        )));
    };
    if access_key_id.is_empty() || date.is_empty() || region.is_empty() || service.is_empty() {
        return Err(AwsError::incomplete_signature(format!("Credential {credential:?} has an empty part")));
    }
    let signed_headers: Vec<String> = signed_headers.split(';').map(str::to_owned).collect();
    if signed_headers.iter().any(|h| h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase())) {
        return Err(AwsError::incomplete_signature(
            "SignedHeaders must be lowercase header names separated by ';'",
        ));
    }
    if !signed_headers.iter().any(|h| h == "host") {
        return Err(AwsError::incomplete_signature(
            "'Host' must be a 'SignedHeader' in the AWS Authorization",
        ));
    }
    Ok(Authorization {
        access_key_id: (*access_key_id).to_owned(),
        scope_date: (*date).to_owned(),
        scope_region: (*region).to_owned(),
        scope_service: (*service).to_owned(),
        signed_headers,
        signature: signature.to_owned(),
    })
}

/// The X-Amz-Date header, as sent and parsed.
struct AmzDate {
    format: String,
    time: DateTime<Utc>,
}

fn request_time(headers: &HeaderMap) -> Result<AmzDate, AwsError> {
    let value = headers.get("x-amz-date").and_then(|v| v.to_str().ok()).ok_or_else(|| {
        AwsError::incomplete_signature("Authorization header requires existence of a 'X-Amz-Date' header")
    })?;
    let time = NaiveDateTime::parse_from_str(value, AMZ_DATE_FORMAT).map_err(|_| {
        AwsError::incomplete_signature(format!("X-Amz-Date must be YYYYMMDD'T'HHMMSS'Z', got {value:?}"))
    })?;
    Ok(AmzDate { format: value.to_owned(), time: time.and_utc() })
}

/// The scope must name this service and the request's date, and the request must be recent.
fn check_scope(
    authorization: &Authorization,
    amz_date: &AmzDate,
    service: &str,
    now: DateTime<Utc>,
) -> Result<(), AwsError> {
    if authorization.scope_service != service {
        return Err(AwsError::invalid_signature(format!(
            "Credential should be scoped to correct service: '{service}', not '{}'",
            authorization.scope_service
        )));
    }
    if !amz_date.format.starts_with(&authorization.scope_date) || authorization.scope_date.len() != 8 {
        return Err(AwsError::invalid_signature(format!(
            "Date in Credential scope does not match YYYYMMDD from X-Amz-Date: {} vs {}",
            authorization.scope_date, amz_date.format
        )));
    }
    let skew = (now - amz_date.time).abs();
    if skew > MAX_CLOCK_SKEW {
        return Err(AwsError::invalid_signature(format!(
            "Signature expired or not yet valid: the request time {} is {} minutes from the server time {} \
             (more than 15 minutes of clock skew)",
            amz_date.format,
            skew.num_minutes(),
            now.format(AMZ_DATE_FORMAT)
        )));
    }
    Ok(())
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, bytes))
}

/// The hex SHA-256 of the body. A client may send it as `x-amz-content-sha256`; it must then match.
fn payload_hash(headers: &HeaderMap, body: &[u8]) -> Result<String, AwsError> {
    let computed = sha256_hex(body);
    if let Some(sent) = headers.get("x-amz-content-sha256")
        && sent.as_bytes() != computed.as_bytes()
    {
        return Err(AwsError::invalid_signature(
            "x-amz-content-sha256 does not match the SHA-256 of the request body",
        ));
    }
    Ok(computed)
}

/// The canonical request, built from the headers the client says it signed, in its order.
fn canonical_request(
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    signed_headers: &[String],
    payload_hash: &str,
) -> Result<String, AwsError> {
    let mut canonical_headers = String::new();
    for name in signed_headers {
        let values: Vec<String> = headers
            .get_all(name.as_str())
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes()).split_ascii_whitespace().collect::<Vec<_>>().join(" ")
            })
            .collect();
        if values.is_empty() {
            return Err(AwsError::invalid_signature(format!(
                "the signed header {name:?} is not in the request"
            )));
        }
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(&values.join(","));
        canonical_headers.push('\n');
    }
    Ok(format!(
        "{method}\n{}\n{}\n{canonical_headers}\n{}\n{payload_hash}",
        canonical_uri(path),
        canonical_query(query.unwrap_or_default()),
        signed_headers.join(";"),
    ))
}

/// Services other than S3 encode the (already encoded) path once more, keeping '/'.
fn canonical_uri(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    if out.is_empty() { "/".to_owned() } else { out }
}

/// Parameters sorted by name, then value, as sent (clients send them encoded the canonical way).
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(&str, &str)> =
        query.split('&').filter(|p| !p.is_empty()).map(|p| p.split_once('=').unwrap_or((p, ""))).collect();
    pairs.sort_unstable();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// The signature the client should have sent, from its secret and scope.
fn signature(secret: &str, authorization: &Authorization, string_to_sign: &str) -> Result<String, AwsError> {
    let date = NaiveDate::parse_from_str(&authorization.scope_date, "%Y%m%d").map_err(|_| {
        AwsError::invalid_signature(format!(
            "the credential scope date {:?} is not a date",
            authorization.scope_date
        ))
    })?;
    let midnight: SystemTime = date.and_time(NaiveTime::MIN).and_utc().into();
    let key = aws_sigv4::sign::v4::generate_signing_key(
        secret,
        midnight,
        &authorization.scope_region,
        &authorization.scope_service,
    );
    Ok(aws_sigv4::sign::v4::calculate_signature(key, string_to_sign.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The secret of the AWS SigV4 test suite (aws-signing-test-suite/v4).
    const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn suite_signature(request: http::Request<&[u8]>, authorization: &str) -> (String, String) {
        let authorization = parse_authorization(authorization).unwrap();
        let (parts, body) = request.into_parts();
        let amz_date = request_time(&parts.headers).unwrap();
        let hash = match parts.headers.get("x-amz-content-sha256") {
            Some(_) => payload_hash(&parts.headers, body).unwrap(),
            None => sha256_hex(body),
        };
        let canonical = canonical_request(
            parts.method.as_str(),
            parts.uri.path(),
            parts.uri.query(),
            &parts.headers,
            &authorization.signed_headers,
            &hash,
        )
        .unwrap();
        let sts = string_to_sign(&amz_date.format, &authorization.scope(), &canonical);
        (signature(SUITE_SECRET, &authorization, &sts).unwrap(), authorization.signature)
    }

    #[test]
    fn signatures_match_the_aws_test_suite() {
        // post-x-www-form-urlencoded: a signed body hash header.
        let request = http::Request::post("/")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("host", "example.amazonaws.com")
            .header("content-length", "13")
            .header("x-amz-date", "20150830T123600Z")
            .header(
                "x-amz-content-sha256",
                "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
            )
            .body(b"Param1=value1".as_slice())
            .unwrap();
        let (expected, sent) = suite_signature(
            request,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=content-length;content-type;host;x-amz-content-sha256;x-amz-date, \
             Signature=d3875051da38690788ef43de4db0d8f280229d82040bfac253562e56c3f20e0b",
        );
        assert_eq!(expected, sent);

        // get-header-value-trim: values are trimmed and inner runs of spaces collapsed.
        let request = http::Request::get("/")
            .header("host", "example.amazonaws.com")
            .header("my-header1", " value1")
            .header("my-header2", " \"a   b   c\"")
            .header("x-amz-date", "20150830T123600Z")
            .body(b"".as_slice())
            .unwrap();
        let (expected, sent) = suite_signature(
            request,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;my-header1;my-header2;x-amz-date, \
             Signature=acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
        );
        assert_eq!(expected, sent);

        // get-vanilla-query-order-key-case: query parameters sorted.
        let request = http::Request::get("/?Param2=value2&Param1=value1")
            .header("host", "example.amazonaws.com")
            .header("x-amz-date", "20150830T123600Z")
            .body(b"".as_slice())
            .unwrap();
        let (expected, sent) = suite_signature(
            request,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        );
        assert_eq!(expected, sent);
    }

    #[test]
    fn garbled_authorization_headers_are_incomplete_signatures() {
        for header in [
            "AWS4-HMAC-SHA1 Credential=a/20150830/us-east-1/service/aws4_request, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=a/20150830/us-east-1/service, SignedHeaders=host, Signature=00",
            "AWS4-HMAC-SHA256 Credential=a/20150830/us-east-1/service/aws4_request, SignedHeaders=x-amz-date, Signature=00",
            "AWS4-HMAC-SHA256 garbage",
            "",
        ] {
            let error = parse_authorization(header).unwrap_err();
            assert_eq!(error.code, "IncompleteSignatureException", "{header}");
        }
    }

    #[test]
    fn scope_must_name_the_service_and_date_and_the_clock_must_agree() {
        let authorization = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/cloudtrail/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=00",
        )
        .unwrap();
        let at = |value: &str| AmzDate {
            format: value.to_owned(),
            time: NaiveDateTime::parse_from_str(value, AMZ_DATE_FORMAT).unwrap().and_utc(),
        };
        let now = at("20150830T123600Z").time;
        assert!(check_scope(&authorization, &at("20150830T123600Z"), "cloudtrail", now).is_ok());
        let wrong_service = check_scope(&authorization, &at("20150830T123600Z"), "organizations", now);
        assert_eq!(wrong_service.unwrap_err().code, "InvalidSignatureException");
        let wrong_date = check_scope(&authorization, &at("20150831T000100Z"), "cloudtrail", now);
        assert_eq!(wrong_date.unwrap_err().code, "InvalidSignatureException");
        let skewed = check_scope(&authorization, &at("20150830T120000Z"), "cloudtrail", now).unwrap_err();
        assert_eq!(skewed.code, "InvalidSignatureException");
        assert!(skewed.message.contains("clock skew"), "{}", skewed.message);
    }
}
