//! The CloudTrail-compatible HTTP API: AWS JSON 1.1 over HTTP/1.1, signed with SigV4 by a token's
//! access key pair, so the aws CLI and the AWS SDKs (and `aws cloudtrail validate-logs`) can talk
//! to orgtrail.
//!
//! A request goes: `X-Amz-Target` → operation ([`dispatch`]), body (capped), signature
//! ([`sigv4`]) → caller and region, then the action, which calls the gRPC service implementation
//! on the caller's behalf. Errors become AWS errors in one place ([`error`]).

mod cloudtrail;
mod dispatch;
mod error;
mod organizations;
mod protocol;
mod selectors;
mod server;
mod shapes;
mod sigv4;
mod tags;
mod trails;

use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use crate::control::api::Ctx;
use dispatch::{Call, Services};
use error::AwsError;
pub use server::serve;

/// How the API answers, beyond what the services decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Trails per ListTrails page and resources per ListTags page. CloudTrail's paginators have
    /// no page-size parameter for these, so the server picks; a client follows `NextToken`.
    pub list_page_size: i32,
}

impl Default for Settings {
    fn default() -> Self {
        Self { list_page_size: DEFAULT_LIST_PAGE_SIZE }
    }
}

/// ListTrails and ListTags page size unless configured (`cloudtrail_list_page_size`).
pub const DEFAULT_LIST_PAGE_SIZE: i32 = 50;

/// What every request needs: the context (for key lookups), the services actions call, and
/// the settings.
struct App {
    ctx: Ctx,
    services: Services,
    settings: Settings,
}

impl App {
    fn new(ctx: Ctx, settings: Settings) -> Self {
        let services = Services::new(&ctx);
        Self { ctx, services, settings }
    }

    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let started = Instant::now();
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut operation = "";
        let result = self.answer(request, &mut operation).await;
        let elapsed_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(output) => {
                tracing::debug!(operation, request_id, elapsed_ms, "cloudtrail api request");
                protocol::ok(&output, &request_id)
            }
            Err(error) => {
                if error.status.is_server_error() {
                    tracing::warn!(operation, request_id, elapsed_ms, code = error.code, message = %error.message, "cloudtrail api request failed");
                } else {
                    tracing::info!(operation, request_id, elapsed_ms, code = error.code, message = %error.message, "cloudtrail api request refused");
                }
                protocol::error(&error, &request_id)
            }
        }
    }

    /// Routes, authenticates and runs one request. `operation` is set once the target is known
    /// (for the log line).
    async fn answer(
        &self,
        request: Request<Incoming>,
        operation_name: &mut &'static str,
    ) -> Result<serde_json::Value, AwsError> {
        let (parts, body) = request.into_parts();
        if parts.method != Method::POST || parts.uri.path() != "/" {
            return Err(AwsError::unknown_operation(format!(
                "{} {} is not an operation: send POST / with an X-Amz-Target header",
                parts.method,
                parts.uri.path()
            )));
        }
        let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let operation = dispatch::lookup(target)
            .ok_or_else(|| AwsError::unknown_operation(format!("unknown operation {target:?}")))?;
        *operation_name = operation.name;
        let body = read_body(&parts.headers, body).await?;
        let signer =
            sigv4::verify(&self.ctx, &parts, &body, operation.service.signing_name(), chrono::Utc::now())
                .await?;
        let call = Call {
            services: &self.services,
            settings: &self.settings,
            caller: signer.caller,
            region: signer.region,
            not_found: operation.not_found,
        };
        (operation.handler)(&call, &body).await
    }
}

/// The whole body, refused early when it announces or reaches more than the cap.
async fn read_body(headers: &http::HeaderMap, body: Incoming) -> Result<Bytes, AwsError> {
    let announced = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|length| length > protocol::MAX_BODY_BYTES as u64) {
        return Err(AwsError::too_large(protocol::MAX_BODY_BYTES));
    }
    match Limited::new(body, protocol::MAX_BODY_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(AwsError::too_large(protocol::MAX_BODY_BYTES))
        }
        Err(error) => Err(AwsError::serialization(format!("cannot read the request body: {error}"))),
    }
}
