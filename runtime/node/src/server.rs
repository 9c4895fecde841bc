//! HTTPS: rustls with optional client certificates (they identify callers; the service
//! certificate is what clients trust), hyper HTTP/1.1 with keep-alive, and connection limits.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::admission::{AddressSlots, Handshakes};
use crate::config::Limits;
use crate::identity::NodeIdentity;
use crate::node::Node;

/// Accepts any well-formed client certificate: TLS proves the client holds its key; which
/// certificates mean something (users, members) is decided per endpoint by its policies.
#[derive(Debug)]
struct CallerCertificates {
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for CallerCertificates {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        consort_crypto::ParsedCert::from_der(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The certificate the node presents, which governance may re-issue (CCF's
/// `set_node_certificate_validity`): each handshake gets the current one.
#[derive(Debug)]
pub struct ServedCert {
    key: Arc<dyn rustls::sign::SigningKey>,
    current: std::sync::RwLock<(String, Arc<rustls::sign::CertifiedKey>)>,
}

impl ServedCert {
    pub fn new(identity: &NodeIdentity) -> Result<ServedCert, String> {
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let key_der = PrivateKeyDer::from_pem_slice(identity.node_key.to_pem().as_bytes()).map_err(|e| format!("node key: {e}"))?;
        let key = provider.key_provider.load_private_key(key_der).map_err(|e| format!("node key: {e}"))?;
        let certified = Self::certified(&key, &identity.node_cert_pem)?;
        Ok(ServedCert { key, current: std::sync::RwLock::new((identity.node_cert_pem.clone(), certified)) })
    }

    fn certified(key: &Arc<dyn rustls::sign::SigningKey>, pem: &str) -> Result<Arc<rustls::sign::CertifiedKey>, String> {
        let cert = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| format!("node certificate: {e}"))?;
        Ok(Arc::new(rustls::sign::CertifiedKey::new(vec![cert], key.clone())))
    }

    /// The certificate presented now (PEM).
    pub fn pem(&self) -> String {
        self.current.read().unwrap_or_else(|p| p.into_inner()).0.clone()
    }

    /// Presents `pem` from the next handshake on; it must certify this node's key.
    pub fn replace(&self, pem: &str) -> Result<(), String> {
        let parsed = consort_crypto::ParsedCert::from_pem(pem).map_err(|e| e.to_string())?;
        let ours = self.pem();
        let current = consort_crypto::ParsedCert::from_pem(&ours).map_err(|e| e.to_string())?;
        if parsed.public_key_der != current.public_key_der {
            return Err("the certificate is not for this node's key".into());
        }
        let certified = Self::certified(&self.key, pem)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = (pem.to_owned(), certified);
        Ok(())
    }
}

impl rustls::server::ResolvesServerCert for ServedCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|p| p.into_inner()).1.clone())
    }
}

fn tls_config(cert: Arc<ServedCert>) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(Arc::new(CallerCertificates { provider }))
        .with_cert_resolver(cert);
    Ok(Arc::new(config))
}

/// The connections of a server that stopped accepting: [`Drain::finish`] lets each answer the
/// request it is serving, then closes it.
pub struct Drain {
    stop: tokio::sync::watch::Sender<bool>,
    connections: Arc<tokio::sync::Semaphore>,
    max: usize,
}

impl Drain {
    /// Asks every connection to close after its current request and waits (at most `wait`)
    /// until they have.
    pub async fn finish(self, wait: Duration) {
        let _ = self.stop.send(true);
        let all = u32::try_from(self.max).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(wait, self.connections.acquire_many(all)).await;
    }
}

/// Serves until `shutdown`; then stops accepting and returns the connections still open.
pub async fn serve(node: Arc<Node>, listener: TcpListener, shutdown: impl std::future::Future<Output = ()>) -> Result<Drain, String> {
    let tls = tls_config(node.served_cert.clone())?;
    let limits = node.config.limits.clone();
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.connections_max));
    let handshakes = Arc::new(Handshakes::default());
    let addresses = AddressSlots::new(limits.connections_per_address_max);
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let drain = Drain { stop, connections: connections.clone(), max: limits.connections_max };
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(drain),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Past the hard cap a connection is closed at once (CCF's max_open_sessions_hard), and
        // so is one from an address that holds its share of the slots already.
        let Some(address_slot) = addresses.take(peer.ip()) else {
            drop(tcp);
            continue;
        };
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            drop(tcp);
            continue;
        };
        // So is one for which no handshake slot can be freed (see `Handshakes`).
        let Some((id, evicted)) = handshakes.begin(limits.handshakes_max, std::time::Instant::now()) else {
            drop(tcp);
            continue;
        };
        // Past the soft cap it gets one 503 (CCF's max_open_sessions_soft).
        let over_soft = limits.connections_max - connections.available_permits() > limits.connections_soft_max;
        let _ = tcp.set_nodelay(true);
        let (tls, node, limits, handshakes) = (tls.clone(), node.clone(), limits.clone(), handshakes.clone());
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let _permits = (permit, address_slot);
            // The deadline covers the whole handshake: bytes that trickle in do not extend it.
            let deadline = tokio::time::Instant::now() + Duration::from_millis(limits.tls_handshake_timeout_ms);
            let handshake = async {
                let start = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
                handshakes.hello(id);
                start.into_stream(tls).await
            };
            let handshake = tokio::select! {
                h = tokio::time::timeout_at(deadline, handshake) => h,
                _ = evicted => return tracing::debug!("TLS handshake evicted by newer connections"),
            };
            handshakes.end(id);
            let tls = match handshake {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return tracing::debug!("TLS handshake failed: {e}"),
                Err(_) => return tracing::debug!("TLS handshake timed out"),
            };
            let peer_cert: Option<Arc<crate::auth::PeerCert>> =
                tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| Arc::new(crate::auth::PeerCert::new(c.to_vec())));
            let session = Arc::new(crate::call::Session::default());
            let service = service_fn(move |req| {
                let (node, peer_cert, session) = (node.clone(), peer_cert.clone(), session.clone());
                async move {
                    if over_soft {
                        return Ok::<_, Infallible>(too_many_sessions());
                    }
                    let (started, actor) = (std::time::Instant::now(), crate::call::actor_of(req.uri().path()).0);
                    let reply = crate::routes::handle(&node, req, peer_cert.as_deref(), &session).await;
                    node.metrics.answered(actor, reply.status(), started.elapsed());
                    Ok(reply)
                }
            });
            let connection = http1::Builder::new()
                .keep_alive(!over_soft)
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
                .max_headers(limits.request_headers_max)
                .serve_connection(TokioIo::new(tls), service);
            tokio::pin!(connection);
            // When the node stops, the request being served is answered, then the connection closes.
            let stopped = async move {
                loop {
                    if *stopping.borrow_and_update() {
                        return;
                    }
                    if stopping.changed().await.is_err() {
                        return std::future::pending().await;
                    }
                }
            };
            let result = tokio::select! {
                r = connection.as_mut() => r,
                () = stopped => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(e) = result {
                tracing::debug!("connection ended: {e}");
            }
        });
    }
}

/// The one answer of a connection past the soft cap.
fn too_many_sessions() -> crate::reply::Reply {
    let mut r = crate::reply::error(
        hyper::StatusCode::SERVICE_UNAVAILABLE,
        "SessionCapExceeded",
        "Service is currently busy and cannot accept new sessions; retry shortly",
    );
    r.headers_mut().insert(hyper::header::CONNECTION, hyper::header::HeaderValue::from_static("close"));
    r
}

/// What a stand-in server answers to a request, by method and path.
pub type StandInReply = Arc<dyn Fn(&hyper::Method, &str) -> crate::reply::Reply + Send + Sync>;

/// Runs `work` (a node's start before it can serve, such as a recovery reading the previous
/// ledger) while answering clients on `listener` with `reply(method, path)`: one request per
/// connection, so that no client keeps talking to this stand-in once the node serves.
pub async fn answer_while<T>(
    listener: &TcpListener,
    identity: &NodeIdentity,
    limits: &Limits,
    reply: StandInReply,
    work: impl std::future::Future<Output = T>,
) -> Result<T, String> {
    let acceptor = TlsAcceptor::from(tls_config(Arc::new(ServedCert::new(identity)?))?);
    let connections = Arc::new(tokio::sync::Semaphore::new(limits.connections_max));
    let (handshake_ms, header_ms) = (limits.tls_handshake_timeout_ms, limits.header_read_timeout_ms);
    tokio::pin!(work);
    loop {
        let permit = tokio::select! {
            done = &mut work => return Ok(done),
            p = connections.clone().acquire_owned() => p.map_err(|e| e.to_string())?,
        };
        let tcp = tokio::select! {
            done = &mut work => return Ok(done),
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(_) => continue,
            },
        };
        let (acceptor, reply) = (acceptor.clone(), reply.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_millis(handshake_ms), acceptor.accept(tcp)).await else { return };
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let r = reply(req.method(), req.uri().path());
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = http1::Builder::new()
                .keep_alive(false)
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_millis(header_ms))
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}
