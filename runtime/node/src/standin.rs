//! The stand-in server: what a node answers on its client address before it can serve (a
//! recovery node reading the previous ledger), one request per connection.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::config::Limits;
use crate::identity::NodeIdentity;
use crate::tls::{tls_config, ServedCert};

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
