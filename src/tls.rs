//! TLS: every rustls user in the process (gRPC, the CloudTrail-compatible API, webhooks, the
//! client) shares one crypto provider, aws-lc-rs.

/// Installs aws-lc-rs as the process's rustls crypto provider (once; later calls do nothing).
pub fn ensure_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
