//! A CloudTrail `LookupEvents` test double (moto has none): AWS JSON 1.1 over HTTP on 127.0.0.1.
//! It serves the events given per (account, region) newest first with NextToken pagination,
//! honours StartTime/EndTime, answers `ThrottlingException` when an (account, region) is called
//! more than 2 times within one second, `AccessDeniedException` for denied accounts, and logs
//! every request so tests measure the rate from the log. The account of a request is that of its
//! signing credential: the access key (from moto's STS AssumeRole) is resolved with moto's
//! GetCallerIdentity (moto does not check signatures, only which key is used).

#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::{Value, json};

/// AWS's limit, per account and region.
pub const LIMIT_PER_SECOND: usize = 2;

#[derive(Debug, Clone)]
pub struct Request {
    pub at: Instant,
    pub account: String,
    pub region: String,
    pub start: f64,
    pub end: f64,
    pub token: Option<String>,
    /// `ok`, `throttled` or `denied`.
    pub outcome: &'static str,
}

#[derive(Debug, Clone)]
struct Event {
    time: i64,
    id: String,
    name: String,
    source: String,
    record: String,
}

#[derive(Default)]
struct State {
    events: HashMap<(String, String), Vec<Event>>,
    denied: HashSet<String>,
    recent: HashMap<(String, String), VecDeque<Instant>>,
    log: Vec<Request>,
    keys: HashMap<String, String>,
}

pub struct LookupDouble {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
}

impl LookupDouble {
    /// Serves on a free port; `sts_config` reaches moto (to tell which account a key is).
    pub async fn start(sts_config: aws_config::SdkConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let state = shared.clone();
                let sts_config = sts_config.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        let sts_config = sts_config.clone();
                        async move { Ok::<_, Infallible>(handle(state, sts_config, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { endpoint, state }
    }

    /// Adds records to the event history of (account, region).
    pub fn add_records(&self, account: &str, region: &str, records: &[String]) {
        let mut state = self.state.lock().unwrap();
        let events = state.events.entry((account.to_owned(), region.to_owned())).or_default();
        for record in records {
            let value: Value = serde_json::from_str(record).unwrap();
            let time = chrono::DateTime::parse_from_rfc3339(value["eventTime"].as_str().unwrap()).unwrap();
            events.push(Event {
                time: time.timestamp(),
                id: value["eventID"].as_str().unwrap_or_default().to_owned(),
                name: value["eventName"].as_str().unwrap_or_default().to_owned(),
                source: value["eventSource"].as_str().unwrap_or_default().to_owned(),
                record: record.clone(),
            });
        }
        // Newest first, as CloudTrail answers.
        events.sort_by(|a, b| b.time.cmp(&a.time).then(a.id.cmp(&b.id)));
    }

    pub fn deny(&self, account: &str) {
        self.state.lock().unwrap().denied.insert(account.to_owned());
    }

    pub fn log(&self) -> Vec<Request> {
        self.state.lock().unwrap().log.clone()
    }
}

fn reply(status: u16, body: Value) -> hyper::Response<Full<Bytes>> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn error(type_: &str, message: &str) -> hyper::Response<Full<Bytes>> {
    reply(400, json!({"__type": type_, "message": message}))
}

/// (access key id, region) of `Authorization: AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/cloudtrail/aws4_request, ...`.
fn credential(headers: &hyper::HeaderMap) -> Option<(String, String)> {
    let authorization = headers.get("authorization")?.to_str().ok()?;
    let scope = authorization.split("Credential=").nth(1)?.split(',').next()?;
    let mut parts = scope.split('/');
    let key = parts.next()?.to_owned();
    let _date = parts.next()?;
    Some((key, parts.next()?.to_owned()))
}

async fn account_of(state: &Mutex<State>, sts_config: &aws_config::SdkConfig, key: &str) -> Option<String> {
    if let Some(found) = state.lock().unwrap().keys.get(key) {
        return Some(found.clone());
    }
    let config = sts_config
        .to_builder()
        .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
            aws_sdk_s3::config::Credentials::new(key, "unchecked", None, None, "double"),
        ))
        .build();
    let identity = aws_sdk_sts::Client::new(&config).get_caller_identity().send().await.ok()?;
    let account = identity.account()?.to_owned();
    state.lock().unwrap().keys.insert(key.to_owned(), account.clone());
    Some(account)
}

async fn handle(
    state: Arc<Mutex<State>>,
    sts_config: aws_config::SdkConfig,
    request: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let target = request.headers().get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
    // The full target name, or the short one current SDKs send.
    if !target.ends_with("CloudTrail_20131101.LookupEvents") {
        return error("UnknownOperationException", target);
    }
    let Some((key, region)) = credential(request.headers()) else {
        return error("MissingAuthenticationTokenException", "no credential");
    };
    let Some(account) = account_of(&state, &sts_config, &key).await else {
        return error("UnrecognizedClientException", "unknown access key");
    };
    let Ok(body) = request.into_body().collect().await else {
        return error("SerializationException", "body");
    };
    let Ok(input) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
        return error("SerializationException", "not JSON");
    };
    let start = input["StartTime"].as_f64().unwrap_or(0.0);
    let end = input["EndTime"].as_f64().unwrap_or(f64::MAX);
    let page_size = input["MaxResults"].as_u64().unwrap_or(50).clamp(1, 50) as usize;
    let token = input["NextToken"].as_str().map(str::to_owned);

    let mut guard = state.lock().unwrap();
    let state = &mut *guard;
    let now = Instant::now();
    let recent = state.recent.entry((account.clone(), region.clone())).or_default();
    while recent.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
        recent.pop_front();
    }
    recent.push_back(now);
    let outcome = if state.denied.contains(&account) {
        "denied"
    } else if recent.len() > LIMIT_PER_SECOND {
        "throttled"
    } else {
        "ok"
    };
    state.log.push(Request {
        at: now,
        account: account.clone(),
        region: region.clone(),
        start,
        end,
        token: token.clone(),
        outcome,
    });
    match outcome {
        "denied" => {
            return error("AccessDeniedException", "not authorized to perform cloudtrail:LookupEvents");
        }
        "throttled" => return error("ThrottlingException", "Rate exceeded"),
        _ => {}
    }
    let offset: usize = match token.as_deref().map(str::parse) {
        None => 0,
        Some(Ok(offset)) => offset,
        Some(Err(_)) => return error("InvalidNextTokenException", "bad token"),
    };
    let matching: Vec<&Event> = state
        .events
        .get(&(account, region))
        .map(|events| events.iter().filter(|e| (e.time as f64) >= start && (e.time as f64) <= end).collect())
        .unwrap_or_default();
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(page_size)
        .map(|e| {
            json!({
                "EventId": e.id, "EventName": e.name, "ReadOnly": "false", "EventTime": e.time as f64,
                "EventSource": e.source, "Username": "alice", "Resources": [], "CloudTrailEvent": e.record,
            })
        })
        .collect();
    let mut output = json!({ "Events": page });
    if offset + page_size < matching.len() {
        output["NextToken"] = json!((offset + page_size).to_string());
    }
    reply(200, output)
}
