//! The gRPC control plane: one file per service, authentication in a layer, errors mapped once.

pub mod account;
pub mod auth;
pub mod convert;
pub mod enrollment;
pub mod error;
pub mod event;
pub mod ingest;
pub mod key;
pub mod organization;
pub mod rule;
pub mod token;
pub mod trail;

use std::net::SocketAddr;
use std::sync::Arc;

use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::model::Region;
use crate::proto::v1::account_service_server::AccountServiceServer;
use crate::proto::v1::event_service_server::EventServiceServer;
use crate::proto::v1::ingest_service_server::IngestServiceServer;
use crate::proto::v1::key_service_server::KeyServiceServer;
use crate::proto::v1::organization_service_server::OrganizationServiceServer;
use crate::proto::v1::rule_service_server::RuleServiceServer;
use crate::proto::v1::token_service_server::TokenServiceServer;
use crate::proto::v1::trail_service_server::TrailServiceServer;
use crate::secrets::MasterKey;

/// What every service needs.
#[derive(Clone)]
pub struct Ctx {
    pub pool: PgPool,
    /// Home region of trails created without one.
    pub default_region: Region,
    /// Encrypts access-key secrets; None: tokens cannot carry access keys.
    pub master_key: Option<Arc<MasterKey>>,
    /// Where accepted events are staged.
    pub staging: Arc<dyn crate::pipeline::staging::Staging>,
    /// AWS configuration for Organizations sync; None: SyncAccounts fails naming what to set.
    pub aws: Option<Arc<crate::integrations::aws::sdk::AwsSettings>>,
    /// The AWS principal (ARN) orgtrail's collectors run as, which enrolled member roles trust;
    /// None: the organization's management account root.
    pub aggregator_principal_arn: Option<String>,
}

/// PEM files for serving gRPC over TLS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// Selects aws-lc-rs as the process's TLS crypto provider. Both rustls providers are compiled in
/// (the AWS SDK pulls in ring), so rustls cannot pick one itself; calling this more than once is fine.
pub use crate::tls::ensure_crypto_provider;

/// Serves the control plane on `listener` until `shutdown` resolves, then drains in-flight calls.
pub async fn serve(
    ctx: Ctx,
    listener: TcpListener,
    tls: Option<TlsFiles>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<TrailServiceServer<trail::TrailApi>>().await;
    health_reporter.set_serving::<AccountServiceServer<account::AccountApi>>().await;
    health_reporter.set_serving::<OrganizationServiceServer<organization::OrganizationApi>>().await;
    health_reporter.set_serving::<TokenServiceServer<token::TokenApi>>().await;
    health_reporter.set_serving::<IngestServiceServer<ingest::IngestApi>>().await;
    health_reporter.set_serving::<KeyServiceServer<key::KeyApi>>().await;
    health_reporter.set_serving::<RuleServiceServer<rule::RuleApi>>().await;
    health_reporter.set_serving::<EventServiceServer<event::EventApi>>().await;

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    // grpcurl 1.8 and other older clients only speak v1alpha.
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let auth = Arc::new(auth::Authenticator::new(ctx.pool.clone()));
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        ensure_crypto_provider();
        builder = builder
            .tls_config(ServerTlsConfig::new().identity(Identity::from_pem(tls.cert_pem, tls.key_pem)))?;
    }
    builder
        .layer(auth::AuthLayer::new(auth))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(OrganizationServiceServer::new(organization::OrganizationApi::new(ctx.clone())))
        .add_service(AccountServiceServer::new(account::AccountApi::new(ctx.clone())))
        .add_service(TrailServiceServer::new(trail::TrailApi::new(ctx.clone())))
        .add_service(TokenServiceServer::new(token::TokenApi::new(ctx.clone())))
        .add_service(IngestServiceServer::new(ingest::IngestApi::new(ctx.clone())))
        .add_service(EventServiceServer::new(event::EventApi::new(ctx.clone())))
        .add_service(KeyServiceServer::new(key::KeyApi::new(ctx.clone())))
        .add_service(RuleServiceServer::new(rule::RuleApi::new(ctx)))
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await?;
    Ok(())
}

/// Accepted connections with Nagle's algorithm off: a gRPC answer is several small writes
/// (headers, message, trailers), and a client's delayed ACK would hold each call ~40 ms.
fn incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        // A socket that refuses is still served, only slower.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    })
}

/// Binds a listener, with a clear error naming the address.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))
}
