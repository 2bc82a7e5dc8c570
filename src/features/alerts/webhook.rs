//! HTTPS webhook calls: a JSON POST signed with HMAC-SHA256 of the body under the target's
//! secret (`X-Orgtrail-Signature: sha256=<hex>`), trusting the system roots plus an optional CA
//! file.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The header carrying the body's signature.
pub const SIGNATURE_HEADER: &str = "x-orgtrail-signature";

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("cannot read the CA file {path}: {why}")]
    CaFile { path: String, why: String },
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

/// `sha256=<hex>` of HMAC-SHA256(secret, body).
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
    format!("sha256={}", hex::encode(aws_lc_rs::hmac::sign(&key, body).as_ref()))
}

#[derive(Clone)]
pub struct WebhookClient {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl WebhookClient {
    pub fn new(ca_file: Option<&Path>, timeout: Duration) -> Result<Self, WebhookError> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for cert in native.certs {
            // A system root rustls cannot parse is skipped, as browsers do.
            let _ = roots.add(cert);
        }
        if let Some(path) = ca_file {
            let ca_error = |why: String| WebhookError::CaFile { path: path.display().to_string(), why };
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| ca_error(e.to_string()))?
                .collect::<Result<_, _>>()
                .map_err(|e| ca_error(e.to_string()))?;
            if certs.is_empty() {
                return Err(ca_error("no certificate in it".into()));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| WebhookError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only()
            .enable_http1()
            .build();
        Ok(Self { client: Client::builder(TokioExecutor::new()).build(connector), timeout })
    }

    /// POSTs `body` signed under `secret`; Ok on a 2xx answer, else why not.
    pub async fn post(&self, url: &str, secret: &[u8], body: &str) -> Result<(), String> {
        let request = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, concat!("orgtrail/", env!("CARGO_PKG_VERSION")))
            .header(SIGNATURE_HEADER, signature(secret, body.as_bytes()))
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .map_err(|e| format!("invalid request: {e}"))?;
        let response = tokio::time::timeout(self.timeout, self.client.request(request))
            .await
            .map_err(|_| format!("no answer within {} s", self.timeout.as_secs_f64()))?
            .map_err(|e| crate::error_text::source_chain(&e))?;
        let status = response.status();
        if status.is_success() { Ok(()) } else { Err(format!("HTTP {status}")) }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signature_is_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            super::signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
