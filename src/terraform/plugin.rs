//! go-plugin's server side, as Terraform launches a provider: the environment checks, AutoMTLS (a
//! fresh server certificate, Terraform's client certificate pinned), the handshake line on stdout,
//! and go-plugin's own services beside the provider (health, controller, stdio, broker).
//! Knows nothing about what the provider serves.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use futures::StreamExt;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::codegen::BoxStream;
use tonic::transport::Server;
use tonic::{Request, Response, Status, Streaming};

use super::goplugin;
use super::goplugin::grpc_broker_server::{GrpcBroker, GrpcBrokerServer};
use super::goplugin::grpc_controller_server::{GrpcController, GrpcControllerServer};
use super::goplugin::grpc_stdio_server::{GrpcStdio, GrpcStdioServer};
use super::tfplugin6::provider_server::{Provider, ProviderServer};

/// Terraform's go-plugin handshake cookie (`plugin.Handshake` in Terraform): proves Terraform
/// launched us, not a person at a shell.
const MAGIC_COOKIE_KEY: &str = "TF_PLUGIN_MAGIC_COOKIE";
const MAGIC_COOKIE_VALUE: &str = "d602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2";
/// go-plugin's own protocol version: the first field of the handshake line.
const CORE_PROTOCOL_VERSION: u32 = 1;
/// The Terraform plugin protocol major version served (tfplugin6).
const PROTOCOL_VERSION: &str = "6";
/// go-plugin's health checks ask for this service name.
const HEALTH_SERVICE: &str = "plugin";
/// A connection that never finishes its TLS handshake is dropped after this.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// After a stop, open calls get this long: go-plugin kills a plugin 2 s after asking it to stop.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);

/// Why the binary refuses to start when Terraform did not launch it.
#[derive(Debug, thiserror::Error)]
#[error(
    "this binary is a Terraform provider plugin: Terraform runs it for configurations that use the \
     provider; it is not meant to be run directly"
)]
pub struct NotLaunchedByTerraform;

/// Serves `provider` to the Terraform process that launched this one, until Terraform calls
/// GRPCController.Shutdown or the process gets SIGTERM. Prints go-plugin's handshake line on stdout
/// (nothing else may go there). Fails with [`NotLaunchedByTerraform`] without Terraform's cookie.
pub async fn serve<P: Provider>(provider: P) -> anyhow::Result<()> {
    let launch = Launch::from_env(|name| std::env::var(name).ok())?;
    let tls = launch.client_cert.map(tls_acceptor).transpose()?;
    let listener = bind(launch.ports).await?;
    let address = listener.local_addr().context("terraform plugin: listener address")?;

    let (stop, stopping) = watch::channel(false);
    let stop = Arc::new(stop);
    stop_on_sigterm(stop.clone())?;
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter.set_service_status(HEALTH_SERVICE, tonic_health::ServingStatus::Serving).await;

    let router = Server::builder()
        .trace_fn(|request| {
            tracing::debug!(rpc = %request.uri().path(), "terraform plugin: call");
            tracing::debug_span!("terraform_plugin.call", rpc = %request.uri().path())
        })
        .add_service(health)
        .add_service(GrpcControllerServer::new(Controller { stop }))
        .add_service(GrpcStdioServer::new(Stdio { stopping: stopping.clone() }))
        .add_service(GrpcBrokerServer::new(Broker { stopping: stopping.clone() }))
        .add_service(ProviderServer::new(provider));

    match tls {
        Some((acceptor, server_cert)) => {
            tracing::debug!(%address, tls = true, "terraform plugin: serving");
            announce(&handshake_line(address, Some(&server_cert)))?;
            let incoming = tls_incoming(listener, acceptor);
            let serving = router.serve_with_incoming_shutdown(incoming, stopped(stopping.clone()));
            drain_bounded(serving, stopping).await
        }
        None => {
            tracing::warn!(%address, tls = false, "terraform plugin: no PLUGIN_CLIENT_CERT, serving without TLS");
            announce(&handshake_line(address, None))?;
            let incoming = tcp_incoming(listener);
            let serving = router.serve_with_incoming_shutdown(incoming, stopped(stopping.clone()));
            drain_bounded(serving, stopping).await
        }
    }
}

/// What Terraform (go-plugin's client) tells the plugin through the environment.
#[derive(Debug)]
struct Launch {
    /// `PLUGIN_MIN_PORT`..=`PLUGIN_MAX_PORT`; `None`: any free port.
    ports: Option<(u16, u16)>,
    /// Terraform's client certificate (`PLUGIN_CLIENT_CERT`, PEM): AutoMTLS when present.
    client_cert: Option<CertificateDer<'static>>,
}

impl Launch {
    fn from_env(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        if var(MAGIC_COOKIE_KEY).as_deref() != Some(MAGIC_COOKIE_VALUE) {
            return Err(NotLaunchedByTerraform.into());
        }
        let offered = var("PLUGIN_PROTOCOL_VERSIONS").unwrap_or_default();
        if !offered.split(',').any(|version| version.trim() == PROTOCOL_VERSION) {
            bail!(
                "PLUGIN_PROTOCOL_VERSIONS: Terraform offers plugin protocol versions {offered:?}; this \
                 provider speaks only {PROTOCOL_VERSION} (Terraform 1.0 or later)"
            );
        }
        let port = |name: &str| -> anyhow::Result<u16> {
            match var(name).filter(|value| !value.is_empty()) {
                None => Ok(0),
                Some(value) => value.parse().with_context(|| format!("{name}: not a port: {value:?}")),
            }
        };
        let (min, max) = (port("PLUGIN_MIN_PORT")?, port("PLUGIN_MAX_PORT")?);
        let ports = match (min, max) {
            (0, _) => None,
            (min, max) if min <= max => Some((min, max)),
            (min, max) => bail!("PLUGIN_MIN_PORT {min} is above PLUGIN_MAX_PORT {max}"),
        };
        let client_cert = match var("PLUGIN_CLIENT_CERT").filter(|pem| !pem.trim().is_empty()) {
            None => None,
            Some(pem) => Some(
                CertificateDer::from_pem_slice(pem.as_bytes())
                    .context("PLUGIN_CLIENT_CERT: not a PEM certificate")?,
            ),
        };
        Ok(Self { ports, client_cert })
    }
}

/// go-plugin's handshake line: core version, app protocol version, network, address, protocol and,
/// under AutoMTLS, the server certificate's DER in unpadded standard base64 (the client pins it).
fn handshake_line(address: SocketAddr, server_cert: Option<&CertificateDer<'_>>) -> String {
    let mut line = format!("{CORE_PROTOCOL_VERSION}|{PROTOCOL_VERSION}|tcp|{address}|grpc");
    if let Some(cert) = server_cert {
        line.push('|');
        line.push_str(&STANDARD_NO_PAD.encode(cert));
    }
    line
}

fn announce(line: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}").and_then(|()| stdout.flush()).context("terraform plugin: handshake on stdout")
}

/// The first free port of go-plugin's range, as go-plugin's own servers pick one.
async fn bind(ports: Option<(u16, u16)>) -> anyhow::Result<TcpListener> {
    let Some((min, max)) = ports else {
        return TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("terraform plugin: listen on 127.0.0.1");
    };
    for port in min..=max {
        if let Ok(listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await {
            return Ok(listener);
        }
    }
    bail!("no free port on 127.0.0.1 between PLUGIN_MIN_PORT {min} and PLUGIN_MAX_PORT {max}")
}

/// TLS that admits only Terraform's own client certificate, with a fresh self-signed server
/// certificate (announced in the handshake line, which is how Terraform pins it).
fn tls_acceptor(
    client_cert: CertificateDer<'static>,
) -> anyhow::Result<(TlsAcceptor, CertificateDer<'static>)> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        PinnedClientCert { pinned: client_cert, algorithms: provider.signature_verification_algorithms };
    let (server_cert, server_key) = self_signed_certificate()?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(vec![server_cert.clone()], server_key)
        .context("terraform plugin: tls configuration")?;
    // grpc-go clients refuse servers that do not negotiate h2.
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(config)), server_cert))
}

/// What go-plugin makes for itself: ECDSA, SAN "localhost" (the name its client checks), usable
/// for both ends of TLS.
fn self_signed_certificate() -> anyhow::Result<(CertificateDer<'static>, PrivateKeyDer<'static>)> {
    use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
    params.distinguished_name.push(DnType::CommonName, "localhost");
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages =
        vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.self_signed(&key)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    Ok((cert.der().clone(), key))
}

/// Requires a client certificate and accepts exactly the one Terraform handed us. A chain check
/// would not do: go-plugin's client certificate is self-signed with CA:TRUE, which webpki refuses
/// as an end entity. The handshake signatures are still verified against that certificate's key.
#[derive(Debug)]
struct PinnedClientCert {
    pinned: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PinnedClientCert {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if end_entity.as_ref() != self.pinned.as_ref() {
            return Err(rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure));
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, signature, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, signature, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        // Includes ECDSA P-521/SHA-512, the key go-plugin's client certificate has.
        self.algorithms.supported_schemes()
    }
}

/// Completed TLS handshakes, each done on its own task (a slow or failed one holds up no other and
/// never stops the server).
fn tls_incoming(
    listener: TcpListener,
    acceptor: TlsAcceptor,
) -> ReceiverStream<std::io::Result<TlsStream<TcpStream>>> {
    let (ready, incoming) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let socket = tokio::select! {
                // The server is gone.
                () = ready.closed() => return,
                accepted = listener.accept() => match accepted {
                    Ok((socket, _)) => socket,
                    Err(error) => {
                        // Out of file descriptors and the like: wait instead of spinning.
                        tracing::warn!(%error, "terraform plugin: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            // gRPC answers are several small writes; Nagle plus delayed ACKs would stall each call.
            let _ = socket.set_nodelay(true);
            let (ready, acceptor) = (ready.clone(), acceptor.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                    Ok(Ok(stream)) => {
                        let _ = ready.send(Ok(stream)).await;
                    }
                    Ok(Err(error)) => tracing::warn!(%error, "terraform plugin: tls handshake failed"),
                    Err(_) => tracing::warn!("terraform plugin: tls handshake timed out"),
                }
            });
        }
    });
    ReceiverStream::new(incoming)
}

fn tcp_incoming(listener: TcpListener) -> impl futures::Stream<Item = std::io::Result<TcpStream>> {
    TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    })
}

/// Resolves once a stop was asked for.
async fn stopped(mut stopping: watch::Receiver<bool>) {
    // An error means every sender is gone: nothing can ask any more, so stop too.
    let _ = stopping.wait_for(|stop| *stop).await;
}

/// Runs the server to its end, but no longer than [`DRAIN_LIMIT`] past a stop: Terraform closes
/// its connection after Shutdown anyway, and kills a plugin that lingers.
async fn drain_bounded(
    serving: impl Future<Output = Result<(), tonic::transport::Error>>,
    stopping: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    tokio::pin!(serving);
    tokio::select! {
        served = &mut serving => return served.context("terraform plugin: grpc server"),
        () = stopped(stopping) => {}
    }
    match tokio::time::timeout(DRAIN_LIMIT, serving).await {
        Ok(served) => served.context("terraform plugin: grpc server"),
        Err(_) => {
            tracing::debug!("terraform plugin: calls still open after the stop; exiting anyway");
            Ok(())
        }
    }
}

/// SIGTERM stops the server. SIGINT is ignored, as go-plugin's own servers do: Ctrl-C reaches the
/// whole process group, and Terraform handles it itself (StopProvider, then waits for in-flight
/// calls to finish and save state), which a plugin dying on it would break.
fn stop_on_sigterm(stop: Arc<watch::Sender<bool>>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("terraform plugin: SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("terraform plugin: SIGINT handler")?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = terminate.recv() => {
                    tracing::info!("terraform plugin: SIGTERM, stopping");
                    stop.send_replace(true);
                    return;
                }
                _ = interrupt.recv() => tracing::debug!("terraform plugin: SIGINT ignored, Terraform stops providers itself"),
            }
        }
    });
    Ok(())
}

/// GRPCController: Terraform's way of stopping a plugin (then it closes the connection).
struct Controller {
    stop: Arc<watch::Sender<bool>>,
}

#[tonic::async_trait]
impl GrpcController for Controller {
    async fn shutdown(&self, _: Request<goplugin::Empty>) -> Result<Response<goplugin::Empty>, Status> {
        tracing::debug!("terraform plugin: shutdown requested");
        self.stop.send_replace(true);
        Ok(Response::new(goplugin::Empty {}))
    }
}

/// GRPCStdio: go-plugin mirrors a plugin's stdout/stderr through it; ours go straight to the
/// process's pipes, so the stream stays open and silent until the stop.
struct Stdio {
    stopping: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl GrpcStdio for Stdio {
    async fn stream_stdio(&self, _: Request<()>) -> Result<Response<BoxStream<goplugin::StdioData>>, Status> {
        Ok(Response::new(silent_until_stopped(self.stopping.clone())))
    }
}

/// GRPCBroker: go-plugin opens it on every connection; providers never broker further connections,
/// so what the client sends is read and dropped, and nothing is sent back.
struct Broker {
    stopping: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl GrpcBroker for Broker {
    async fn start_stream(
        &self,
        request: Request<Streaming<goplugin::ConnInfo>>,
    ) -> Result<Response<BoxStream<goplugin::ConnInfo>>, Status> {
        let mut inbound = request.into_inner();
        tokio::spawn(async move {
            while let Ok(Some(info)) = inbound.message().await {
                tracing::debug!(service_id = info.service_id, "terraform plugin: broker message ignored");
            }
        });
        Ok(Response::new(silent_until_stopped(self.stopping.clone())))
    }
}

fn silent_until_stopped<T: Send + 'static>(stopping: watch::Receiver<bool>) -> BoxStream<T> {
    Box::pin(futures::stream::once(stopped(stopping)).filter_map(|()| std::future::ready(None)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn launch(vars: &[(&str, &str)]) -> anyhow::Result<Launch> {
        let vars: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Launch::from_env(|name| vars.get(name).cloned())
    }

    const COOKIE: (&str, &str) = (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE);

    #[test]
    fn refuses_to_start_without_terraforms_cookie() {
        let error = launch(&[("PLUGIN_PROTOCOL_VERSIONS", "5,6")]).unwrap_err();
        assert!(error.is::<NotLaunchedByTerraform>(), "{error:#}");
        let error = launch(&[(MAGIC_COOKIE_KEY, "wrong"), ("PLUGIN_PROTOCOL_VERSIONS", "6")]).unwrap_err();
        assert!(error.is::<NotLaunchedByTerraform>(), "{error:#}");
    }

    #[test]
    fn requires_protocol_6_among_the_offered_versions() {
        assert!(launch(&[COOKIE, ("PLUGIN_PROTOCOL_VERSIONS", "5,6")]).is_ok());
        let error = launch(&[COOKIE, ("PLUGIN_PROTOCOL_VERSIONS", "5")]).unwrap_err();
        assert!(format!("{error:#}").starts_with("PLUGIN_PROTOCOL_VERSIONS:"), "{error:#}");
        assert!(launch(&[COOKIE]).is_err());
    }

    #[test]
    fn reads_the_port_range_and_client_certificate() {
        let (cert, _) = self_signed_certificate().unwrap();
        let pem = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            base64::engine::general_purpose::STANDARD.encode(&cert)
        );
        let launched = launch(&[
            COOKIE,
            ("PLUGIN_PROTOCOL_VERSIONS", "6"),
            ("PLUGIN_MIN_PORT", "10000"),
            ("PLUGIN_MAX_PORT", "25000"),
            ("PLUGIN_CLIENT_CERT", &pem),
        ])
        .unwrap();
        assert_eq!(launched.ports, Some((10000, 25000)));
        assert_eq!(launched.client_cert.as_ref(), Some(&cert));

        let plain = launch(&[COOKIE, ("PLUGIN_PROTOCOL_VERSIONS", "6"), ("PLUGIN_CLIENT_CERT", "")]).unwrap();
        assert_eq!((plain.ports, plain.client_cert), (None, None));
        assert!(launch(&[COOKIE, ("PLUGIN_PROTOCOL_VERSIONS", "6"), ("PLUGIN_MIN_PORT", "x")]).is_err());
    }

    #[test]
    fn handshake_line_carries_the_certificate_unpadded() {
        let address: SocketAddr = "127.0.0.1:10001".parse().unwrap();
        assert_eq!(handshake_line(address, None), "1|6|tcp|127.0.0.1:10001|grpc");
        let cert = CertificateDer::from(vec![1u8, 2, 3, 4]);
        assert_eq!(handshake_line(address, Some(&cert)), "1|6|tcp|127.0.0.1:10001|grpc|AQIDBA");
    }

    /// A client certificate like go-plugin's: self-signed, CA:TRUE, ECDSA P-521.
    fn go_plugin_client_certificate() -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        use rcgen::{
            BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
        };
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyCertSign];
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ClientAuth, ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.self_signed(&key).unwrap();
        (cert.der().clone(), PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())))
    }

    /// Handshakes with the plugin's TLS as a client presenting `client` (or nothing); the server's
    /// outcome is what counts.
    async fn handshake(
        pinned: CertificateDer<'static>,
        client: Option<(CertificateDer<'static>, PrivateKeyDer<'static>)>,
    ) -> std::io::Result<()> {
        let (acceptor, server_cert) = tls_acceptor(pinned).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(server_cert).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match client {
            Some((cert, key)) => builder.with_client_auth_cert(vec![cert], key).unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.unwrap();
            let stream = acceptor.accept(socket).await?;
            assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
            Ok::<_, std::io::Error>(())
        });
        let socket = TcpStream::connect(address).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        // TLS 1.3: the client finishes before the server has judged its certificate.
        let client = connector.connect(name, socket).await.map(|_| ());
        let served = server.await.unwrap();
        served.and(client)
    }

    #[tokio::test]
    async fn admits_exactly_the_pinned_client_certificate() {
        let (terraform_cert, terraform_key) = go_plugin_client_certificate();
        let (other_cert, other_key) = go_plugin_client_certificate();
        handshake(terraform_cert.clone(), Some((terraform_cert.clone(), terraform_key))).await.unwrap();
        assert!(handshake(terraform_cert.clone(), Some((other_cert, other_key))).await.is_err());
        assert!(handshake(terraform_cert, None).await.is_err());
    }
}
