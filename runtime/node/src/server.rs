//! The HTTPS listener: TLS as `tls` configures it (client certificates optional: they identify
//! callers), hyper HTTP/1.1 with keep-alive, connection and handshake limits, each request
//! handed to the router, and a stop that lets the requests in flight be answered.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::admission::{AddressSlots, Handshakes};
use crate::context::Node;
use crate::tls::tls_config;

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
