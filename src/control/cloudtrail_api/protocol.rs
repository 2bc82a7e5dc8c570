//! The AWS JSON 1.1 protocol: `POST /` with a JSON body in, a JSON body or an error out, and
//! timestamps as epoch seconds (JSON numbers) both ways.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use super::error::AwsError;

/// The content type of requests and responses.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Largest request body accepted; the actions served take a few names or times.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Parses an operation's input. botocore sends `{}` for no parameters; an empty body means the same.
pub fn input<T: DeserializeOwned>(body: &[u8]) -> Result<T, AwsError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { body };
    serde_json::from_slice(body).map_err(|e| AwsError::serialization(format!("invalid request body: {e}")))
}

/// A successful response.
pub fn ok(body: &serde_json::Value, request_id: &str) -> Response<Full<Bytes>> {
    respond(StatusCode::OK, body.to_string(), request_id)
}

/// An error response in the shape botocore parses.
pub fn error(error: &AwsError, request_id: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({"__type": error.code, "message": error.message});
    respond(error.status, body.to_string(), request_id)
}

fn respond(status: StatusCode, body: String, request_id: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    // botocore reports it as ResponseMetadata.RequestId; the server log carries the same id.
    if let Ok(value) = HeaderValue::from_str(request_id) {
        headers.insert("x-amzn-requestid", value);
    }
    response
}

/// A response object under construction. It leaves out what AWS leaves out: optional strings
/// that are empty and times that are unset.
#[derive(Debug, Default)]
pub struct Object(serde_json::Map<String, serde_json::Value>);

impl Object {
    pub fn new() -> Self {
        Self::default()
    }

    /// A member that is always present.
    pub fn value(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.0.insert(key.to_owned(), value.into());
        self
    }

    /// An optional string: left out when empty.
    pub fn text(self, key: &str, value: &str) -> Self {
        if value.is_empty() { self } else { self.value(key, value) }
    }

    /// An optional list of strings: left out when empty.
    pub fn list(self, key: &str, values: &[String]) -> Self {
        if values.is_empty() { self } else { self.value(key, values.to_vec()) }
    }

    /// An optional time in epoch seconds: left out when unset.
    pub fn time(self, key: &str, value: Option<EpochSeconds>) -> Self {
        match value {
            Some(time) => self.value(key, time.seconds()),
            None => self,
        }
    }

    pub fn build(self) -> serde_json::Value {
        serde_json::Value::Object(self.0)
    }
}

/// A point in time as AWS JSON protocols carry it: seconds since the epoch, a JSON number.
/// botocore sends integers (or floats with milliseconds); AWS answers with milliseconds
/// (`1446834998.695`), as [`Object::time`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochSeconds(DateTime<Utc>);

impl EpochSeconds {
    /// A proto time; None when unset (or out of range, which the services never produce).
    pub fn from_proto(timestamp: Option<&pbjson_types::Timestamp>) -> Option<Self> {
        timestamp.and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)).map(Self)
    }

    /// Seconds with millisecond precision. Integer milliseconds are divided once, so the number
    /// prints as its shortest decimal form (`1446834998.695`).
    pub fn seconds(self) -> f64 {
        self.0.timestamp_millis() as f64 / 1000.0
    }

    pub fn to_timestamp(self) -> pbjson_types::Timestamp {
        self.0.into()
    }

    /// The deprecated string form of GetTrailStatus (`TimeLoggingStarted`, ...): `2015-11-06T18:36:38Z`.
    pub fn to_iso8601(self) -> String {
        self.0.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    }
}

impl<'de> Deserialize<'de> for EpochSeconds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let seconds = f64::deserialize(deserializer)?;
        // 1970 to the end of 9999: no trail or key has a time outside that.
        const LIMIT: f64 = 253_402_300_799.0;
        if !seconds.is_finite() || !(0.0..=LIMIT).contains(&seconds) {
            return Err(serde::de::Error::custom(format!("{seconds} is not a time in epoch seconds")));
        }
        // Millisecond precision, as AWS keeps times; finer digits of a float are noise.
        DateTime::from_timestamp_millis((seconds * 1000.0).round() as i64)
            .map(Self)
            .ok_or_else(|| serde::de::Error::custom(format!("{seconds} is not a time in epoch seconds")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_seconds_accept_integers_and_floats_and_print_milliseconds() {
        let integer: EpochSeconds = serde_json::from_str("1446834998").unwrap();
        let float: EpochSeconds = serde_json::from_str("1446834998.695").unwrap();
        assert_eq!((integer.to_timestamp().seconds, integer.to_timestamp().nanos), (1_446_834_998, 0));
        assert_eq!((float.to_timestamp().seconds, float.to_timestamp().nanos), (1_446_834_998, 695_000_000));
        assert_eq!(serde_json::Value::from(float.seconds()).to_string(), "1446834998.695");
        assert_eq!(serde_json::Value::from(integer.seconds()).to_string(), "1446834998.0");
        assert_eq!(float.to_iso8601(), "2015-11-06T18:36:38Z");
        assert!(serde_json::from_str::<EpochSeconds>("\"2015-11-06\"").is_err());
        assert!(serde_json::from_str::<EpochSeconds>("1e300").is_err());
    }

    #[test]
    fn objects_leave_out_empty_strings_and_unset_times() {
        let time =
            EpochSeconds::from_proto(Some(&pbjson_types::Timestamp { seconds: 1, nanos: 500_000_000 }));
        let object = Object::new()
            .value("IsLogging", false)
            .text("Empty", "")
            .text("Name", "t")
            .time("Unset", None)
            .time("At", time)
            .build();
        assert_eq!(object.to_string(), r#"{"IsLogging":false,"Name":"t","At":1.5}"#);
    }

    #[test]
    fn empty_bodies_are_empty_objects_and_bad_json_is_a_serialization_error() {
        #[derive(Deserialize)]
        struct Input {
            #[serde(rename = "Name")]
            name: Option<String>,
        }
        assert_eq!(input::<Input>(b"").unwrap().name, None);
        assert_eq!(input::<Input>(br#"{"Name":"t"}"#).unwrap().name.as_deref(), Some("t"));
        assert_eq!(input::<Input>(b"{").err().map(|e| e.code), Some("SerializationException"));
        assert_eq!(input::<Input>(br#"{"Name":5}"#).err().map(|e| e.code), Some("SerializationException"));
    }
}
