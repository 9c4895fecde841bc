//! Node-to-node transport: openraft's messages over mutual TLS. Both ends present their node
//! certificate and accept only certificates endorsed by the service identity, so a node the
//! service did not endorse cannot talk to the others.
//!
//! One TLS connection per openraft client (openraft calls each client's methods one at a time),
//! opened on first use and again after any failure. A message is a frame: `length: u32 BE`,
//! `kind: u8`, CBOR body; the answer is a frame of the same shape holding
//! `Result<response, RaftError>`. Frames above [`FRAME_BYTES_MAX`] are refused at both ends.
//!
//! The same channel carries client requests a backup forwards to the primary: opaque bytes
//! (the node crate encodes them) answered by the [`ForwardHandler`] the node installed. They use
//! their own pooled connections ([`Forwarder`]), never openraft's.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::types::TypeConfig;

/// The largest frame either end accepts: openraft sends at most 300 entries per append, and a
/// transaction is bounded by the request body limit.
pub const FRAME_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Connections a node accepts from peers at once (openraft's and forwarded requests'); more
/// wait in the accept queue.
const PEER_CONNECTIONS_MAX: usize = 256;
/// A peer connection with no message for this long is closed (heartbeats keep live ones busy).
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

const APPEND: u8 = 1;
const VOTE: u8 = 2;
const SNAPSHOT: u8 = 3;
const FORWARD: u8 = 4;

/// Forwarded requests a node has in flight to the primary at once; more wait for a slot.
const FORWARDS_IN_FLIGHT_MAX: usize = 32;
/// A pooled forwarding connection unused for this long is dropped rather than reused, well
/// before the receiving end's [`IDLE_TIMEOUT`] could close it under a request.
const FORWARD_IDLE_REUSE: Duration = Duration::from_secs(10);

/// Answers a request a backup forwarded (its bytes in, the answer's bytes out).
pub type ForwardHandler = Arc<dyn Fn(Vec<u8>) -> Pin<Box<dyn Future<Output = Vec<u8>> + Send>> + Send + Sync>;
/// Where the node installs its [`ForwardHandler`] once it can answer forwarded requests.
pub(crate) type ForwardSlot = Arc<OnceLock<ForwardHandler>>;

/// This node's TLS identity and the service certificate its peers must be endorsed by.
#[derive(Clone)]
pub struct PeerTls {
    pub client: Arc<rustls::ClientConfig>,
    pub server: Arc<rustls::ServerConfig>,
}

impl PeerTls {
    pub fn new(service_cert_pem: &str, node_cert_pem: &str, node_key_pem: &str) -> Result<PeerTls, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let service = CertificateDer::from_pem_slice(service_cert_pem.as_bytes()).map_err(|e| format!("service certificate: {e}"))?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(service).map_err(|e| format!("service certificate: {e}"))?;
        let roots = Arc::new(roots);
        let chain = vec![CertificateDer::from_pem_slice(node_cert_pem.as_bytes()).map_err(|e| format!("node certificate: {e}"))?];
        let key = || PrivateKeyDer::from_pem_slice(node_key_pem.as_bytes()).map_err(|e| format!("node key: {e}"));
        let client = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(chain.clone(), key()?)
            .map_err(|e| format!("node TLS client: {e}"))?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| format!("node TLS verifier: {e}"))?;
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key()?)
            .map_err(|e| format!("node TLS server: {e}"))?;
        Ok(PeerTls { client: Arc::new(client), server: Arc::new(server) })
    }
}

async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, kind: u8, body: &impl Serialize) -> std::io::Result<()> {
    let mut bytes = vec![0u8; 5];
    ciborium::into_writer(body, &mut bytes).map_err(std::io::Error::other)?;
    let len = bytes.len() - 4;
    if len > FRAME_BYTES_MAX {
        return Err(std::io::Error::other(format!("a {len}-byte message is above the {FRAME_BYTES_MAX}-byte frame limit")));
    }
    bytes[..4].copy_from_slice(&(len as u32).to_be_bytes());
    bytes[4] = kind;
    w.write_all(&bytes).await?;
    w.flush().await
}

async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    r.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len == 0 || len > FRAME_BYTES_MAX {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("frame of {len} bytes")));
    }
    let mut body = vec![0u8; len - 1];
    r.read_exact(&mut body).await?;
    Ok((head[4], body))
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> std::io::Result<T> {
    ciborium::from_reader(body).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()))
}

/// Answers peers' Raft messages and forwarded requests until `stop` turns true.
pub(crate) async fn serve(
    raft: Raft<TypeConfig>,
    listener: TcpListener,
    tls: PeerTls,
    forward: ForwardSlot,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(tls.server);
    let slots = Arc::new(tokio::sync::Semaphore::new(PEER_CONNECTIONS_MAX));
    // Accepted connections close too: a peer must not keep talking to a stopped Raft (in one
    // process, a node restarted on the same address would never hear from it).
    let stopped = |mut stop: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let shutdown = stopped(stop.clone());
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => return,
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => { tracing::warn!("node-to-node accept: {e}"); continue }
            },
        };
        let (acceptor, raft, forward, stop) = (acceptor.clone(), raft.clone(), forward.clone(), stop.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tcp.set_nodelay(true);
            let stream = match tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return tracing::warn!("node-to-node TLS from {peer} refused: {e}"),
                Err(_) => return tracing::warn!("node-to-node TLS from {peer}: handshake timed out"),
            };
            tokio::select! {
                r = answer(raft, forward, stream) => if let Err(e) = r {
                    tracing::debug!("node-to-node connection from {peer} closed: {e}");
                },
                _ = stopped(stop) => {}
            }
        });
    }
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(raft: Raft<TypeConfig>, forward: ForwardSlot, mut stream: S) -> std::io::Result<()> {
    loop {
        let (kind, body) = match tokio::time::timeout(IDLE_TIMEOUT, read_frame(&mut stream)).await {
            Ok(frame) => frame?,
            Err(_) => return Ok(()),
        };
        match kind {
            APPEND => write_frame(&mut stream, kind, &raft.append_entries(decode(&body)?).await).await?,
            VOTE => write_frame(&mut stream, kind, &raft.vote(decode(&body)?).await).await?,
            SNAPSHOT => write_frame(&mut stream, kind, &raft.install_snapshot(decode(&body)?).await).await?,
            FORWARD => {
                let request: serde_bytes::ByteBuf = decode(&body)?;
                let answer: Result<serde_bytes::ByteBuf, String> = match forward.get() {
                    Some(handler) => Ok(serde_bytes::ByteBuf::from(handler(request.into_vec()).await)),
                    None => Err("this node does not answer forwarded requests yet (it is starting)".into()),
                };
                write_frame(&mut stream, kind, &answer).await?
            }
            other => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("unknown message kind {other}"))),
        }
    }
}

/// Makes a [`Peer`] for each node openraft talks to.
pub struct Peers {
    pub tls: PeerTls,
}

impl RaftNetworkFactory<TypeConfig> for Peers {
    type Network = Peer;
    async fn new_client(&mut self, target: u64, node: &BasicNode) -> Peer {
        Peer { target, address: node.addr.clone(), connector: TlsConnector::from(self.tls.client.clone()), stream: None }
    }
}

pub struct Peer {
    target: u64,
    address: String,
    connector: TlsConnector,
    stream: Option<TlsStream<TcpStream>>,
}

/// Why a call failed: the peer could not be reached, or the exchange broke.
enum Failure {
    Unreachable(std::io::Error),
    Network(std::io::Error),
}

async fn connect(connector: &TlsConnector, address: &str) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, format!("connecting to {address}")))??;
    let _ = tcp.set_nodelay(true);
    // Node certificates name the node's host; the address's host is what we check.
    let host = address.rsplit_once(':').map_or(address, |(h, _)| h).trim_matches(['[', ']']);
    let name = ServerName::try_from(host.to_owned()).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, format!("TLS with {address}")))?
}

impl Peer {
    async fn call<Req: Serialize, Resp: DeserializeOwned>(&mut self, kind: u8, req: &Req, ttl: Duration) -> Result<Resp, Failure> {
        if self.stream.is_none() {
            self.stream = Some(connect(&self.connector, &self.address).await.map_err(Failure::Unreachable)?);
        }
        let stream = self.stream.as_mut().expect("connected above");
        let exchange = async {
            write_frame(stream, kind, req).await?;
            let (got, body) = read_frame(stream).await?;
            if got != kind {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("answer of kind {got} to a message of kind {kind}"),
                ));
            }
            decode::<Resp>(&body)
        };
        let outcome = match tokio::time::timeout(ttl, exchange).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, format!("no answer from {} in {ttl:?}", self.address))),
        };
        outcome.map_err(|e| {
            // The connection's state is unknown after a failure: start afresh next time.
            self.stream = None;
            Failure::Network(e)
        })
    }

    async fn rpc<Req: Serialize, Resp: DeserializeOwned, E: std::error::Error + DeserializeOwned>(
        &mut self,
        kind: u8,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<u64, BasicNode, RaftError<u64, E>>> {
        match self.call::<Req, Result<Resp, RaftError<u64, E>>>(kind, req, option.hard_ttl()).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(remote)) => Err(RPCError::RemoteError(RemoteError::new(self.target, remote))),
            Err(Failure::Unreachable(e)) => Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(Failure::Network(e)) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.rpc(APPEND, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>> {
        self.rpc(SNAPSHOT, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.rpc(VOTE, &rpc, &option).await
    }
}

/// Why a forwarded request got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// No primary is known (an election is under way); nothing was sent.
    #[error("no primary is known at the moment (an election may be under way); retry shortly")]
    NoPrimary,
    /// This node is the primary: there is nowhere to forward to.
    #[error("this node is the primary")]
    IsPrimary,
    /// The primary could not be reached or did not take the request; it was not executed.
    #[error("the primary at {0} cannot take the request: {1}")]
    Unreachable(String, String),
    /// The request was sent but no answer came back: it may or may not have been executed.
    #[error("the primary at {0} did not answer ({1}); the request may or may not have been executed")]
    NoAnswer(String, String),
}

/// Sends forwarded requests to the primary over pooled node-to-node connections: one request
/// per connection at a time, at most [`FORWARDS_IN_FLIGHT_MAX`] at once. A request is sent once
/// and never retried after it left (the primary may have executed it), so a failure after
/// sending is reported as [`ForwardError::NoAnswer`].
pub(crate) struct Forwarder {
    connector: TlsConnector,
    idle: Mutex<Vec<(String, Instant, TlsStream<TcpStream>)>>,
    in_flight: tokio::sync::Semaphore,
}

impl Forwarder {
    pub(crate) fn new(tls: &PeerTls) -> Forwarder {
        Forwarder {
            connector: TlsConnector::from(tls.client.clone()),
            idle: Mutex::new(Vec::new()),
            in_flight: tokio::sync::Semaphore::new(FORWARDS_IN_FLIGHT_MAX),
        }
    }

    fn pooled(&self, address: &str) -> Option<TlsStream<TcpStream>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|(_, since, _)| since.elapsed() < FORWARD_IDLE_REUSE);
        let at = idle.iter().rposition(|(a, _, _)| a == address)?;
        Some(idle.swap_remove(at).2)
    }

    pub(crate) async fn call(&self, address: &str, request: Vec<u8>, timeout: Duration) -> Result<Vec<u8>, ForwardError> {
        let _slot = self.in_flight.acquire().await.map_err(|e| ForwardError::Unreachable(address.into(), e.to_string()))?;
        let mut stream = match self.pooled(address) {
            Some(s) => s,
            None => connect(&self.connector, address).await.map_err(|e| ForwardError::Unreachable(address.into(), e.to_string()))?,
        };
        let exchange = async {
            write_frame(&mut stream, FORWARD, &serde_bytes::Bytes::new(&request)).await?;
            let (kind, body) = read_frame(&mut stream).await?;
            if kind != FORWARD {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("answer of kind {kind} to a forwarded request")));
            }
            decode::<Result<serde_bytes::ByteBuf, String>>(&body)
        };
        let failed = match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer in {timeout:?}")),
        };
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let answer = match failed {
            Ok(answer) => answer,
            Err(why) => {
                // The other pooled connections to that node are likely broken too (it restarted).
                idle.retain(|(a, _, _)| a != address);
                return Err(ForwardError::NoAnswer(address.into(), why));
            }
        };
        if idle.len() < FORWARDS_IN_FLIGHT_MAX {
            idle.push((address.to_owned(), Instant::now(), stream));
        }
        drop(idle);
        answer.map(serde_bytes::ByteBuf::into_vec).map_err(|e| ForwardError::Unreachable(address.into(), e))
    }
}
