//! Server (agent) and client (instance) QUIC endpoints with mutual TLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use tandem_core::wire::MAX_FRAME_LEN;
use thiserror::Error;

use super::ca::{Identity, SiteTrust};
use super::framed::{AgentLink, InstanceLink, Link, LinkError};
use super::{crypto_provider, NetStats, ALPN};

/// Why an endpoint could not be set up.
#[derive(Debug, Error)]
pub enum EndpointError {
    /// The TLS configuration was refused (a key that does not match its
    /// certificate, an unusable trust root).
    #[error("invalid TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built from the trust roots.
    #[error("invalid site trust roots: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    /// The TLS configuration cannot carry QUIC.
    #[error("TLS configuration unusable for QUIC: {0}")]
    Quic(String),
    /// The UDP socket could not be bound (address in use, no permission),
    /// or no tokio runtime is running.
    #[error("cannot bind UDP {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Bytes a link's receiver buffers unread, at most (QUIC flow control):
/// tens of milliseconds of a saturated loopback link, far more than its
/// round trip, so a larger window only holds more memory.
pub const STREAM_WINDOW: u32 = 2 << 20;
/// Bytes a link's sender keeps unacknowledged, at most.
pub const SEND_WINDOW: u32 = 4 << 20;

/// Transport settings shared by both ends.
#[derive(Clone, Copy, Debug)]
pub struct TransportOptions {
    /// A connection with no packets for this long is closed. Heartbeat
    /// frames keep a healthy link busy; this only reaps dead peers.
    pub idle_timeout: Duration,
    /// Frames longer than this (after the length prefix) close the link.
    pub max_frame_len: usize,
    /// UDP payload size to use from the start, for a path known to carry it
    /// (loopback: see [`TransportOptions::for_peer`]); `None`: QUIC's 1200
    /// bytes, then path MTU discovery up to 1452.
    pub mtu: Option<u16>,
}

impl Default for TransportOptions {
    fn default() -> TransportOptions {
        TransportOptions {
            idle_timeout: Duration::from_secs(60),
            max_frame_len: MAX_FRAME_LEN,
            mtu: None,
        }
    }
}

impl TransportOptions {
    /// Payload size on loopback: far fewer packets (and per-packet crypto
    /// and syscalls) than QUIC's defaults, for links between processes of
    /// one gateway. Loopback's MTU is 64 KiB.
    pub const LOOPBACK_MTU: u16 = 4096;

    /// The defaults, with [`TransportOptions::LOOPBACK_MTU`] when `addr`
    /// (the agent's) is a loopback address.
    pub fn for_peer(addr: std::net::SocketAddr) -> TransportOptions {
        TransportOptions {
            mtu: addr.ip().is_loopback().then_some(Self::LOOPBACK_MTU),
            ..TransportOptions::default()
        }
    }

    fn transport(&self, peer_streams: u32) -> Arc<TransportConfig> {
        let mut t = TransportConfig::default();
        // Durations past QUIC's limit fall back to the limit itself.
        let idle = IdleTimeout::try_from(self.idle_timeout)
            .unwrap_or_else(|_| IdleTimeout::from(VarInt::MAX));
        t.max_idle_timeout(Some(idle));
        t.max_concurrent_bidi_streams(VarInt::from_u32(peer_streams));
        t.max_concurrent_uni_streams(VarInt::from_u32(0));
        // Flow control bounds what a link buffers, both ways, whatever the
        // load: at most STREAM_WINDOW unread at the receiver and SEND_WINDOW
        // unacknowledged at the sender (docs/ha.md, "Memory").
        t.stream_receive_window(VarInt::from_u32(STREAM_WINDOW));
        t.receive_window(VarInt::from_u32(STREAM_WINDOW));
        t.send_window(u64::from(SEND_WINDOW));
        if let Some(mtu) = self.mtu {
            let mut discovery = quinn::MtuDiscoveryConfig::default();
            discovery.upper_bound(mtu);
            t.mtu_discovery_config(Some(discovery));
        }
        Arc::new(t)
    }
}

/// What a link's UDP socket may hold unread: the kernel's default (about
/// 200 KiB) overflows on loopback while a peer's thread is busy, and each
/// datagram dropped costs a retransmission and halves QUIC's congestion
/// window. The kernel caps it at `net.core.rmem_max`.
const UDP_RECEIVE_BUFFER: libc::c_int = 4 << 20;

/// Asks for [`UDP_RECEIVE_BUFFER`] bytes of receive buffer; what the kernel
/// allows is what there is (a smaller buffer only costs speed).
fn enlarge_receive_buffer(socket: &std::net::UdpSocket) {
    use std::os::fd::AsRawFd as _;
    let size = UDP_RECEIVE_BUFFER;
    // SAFETY: a valid socket descriptor, and a pointer to an int of the
    // length given, for the length of the call.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            std::ptr::from_ref(&size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        tracing::debug!(
            "cannot enlarge a UDP receive buffer: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// A quinn endpoint on `addr` that accepts datagrams of `mtu` bytes.
fn endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
    mtu: Option<u16>,
) -> std::io::Result<quinn::Endpoint> {
    let mut config = quinn::EndpointConfig::default();
    if let Some(mtu) = mtu {
        config
            .max_udp_payload_size(mtu)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    let socket = std::net::UdpSocket::bind(addr)?;
    enlarge_receive_buffer(&socket);
    let runtime = quinn::default_runtime()
        .ok_or_else(|| std::io::Error::other("no tokio runtime is running"))?;
    quinn::Endpoint::new(config, server, socket, runtime)
}

/// The agent's endpoint: accepts instances presenting a site certificate.
#[derive(Debug)]
pub struct Server {
    endpoint: quinn::Endpoint,
    stats: Arc<NetStats>,
    max_frame_len: usize,
}

impl Server {
    /// Binds `addr` (port 0 picks one). Must be called within a tokio runtime.
    pub fn bind(
        addr: SocketAddr,
        identity: &Identity,
        trust: &SiteTrust,
        options: TransportOptions,
    ) -> Result<Server, EndpointError> {
        let provider = crypto_provider();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            trust.roots.clone(),
            provider.clone(),
        )
        .build()?;
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(identity.certs.clone(), identity.key.clone_key())?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let quic =
            QuicServerConfig::try_from(tls).map_err(|e| EndpointError::Quic(e.to_string()))?;
        let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
        // An instance opens exactly one stream.
        config.transport_config(options.transport(1));
        let endpoint = endpoint(addr, Some(config), options.mtu)
            .map_err(|source| EndpointError::Bind { addr, source })?;
        Ok(Server {
            endpoint,
            stats: Arc::new(NetStats::default()),
            max_frame_len: options.max_frame_len,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// Counters of this endpoint and every link it accepted.
    pub fn stats(&self) -> &Arc<NetStats> {
        &self.stats
    }

    /// The next connection attempt; `None` once the endpoint is closed.
    /// Run [`PendingLink::establish`] in its own task, so one slow peer
    /// does not hold up the others.
    pub async fn accept(&self) -> Option<PendingLink> {
        let incoming = self.endpoint.accept().await?;
        Some(PendingLink {
            incoming,
            stats: self.stats.clone(),
            max_frame_len: self.max_frame_len,
        })
    }

    /// Closes every connection and stops accepting.
    pub fn close(&self) {
        self.endpoint
            .close(VarInt::from_u32(super::CLOSE_DONE), b"agent closing");
    }
}

/// A connection attempt not yet authenticated.
#[derive(Debug)]
pub struct PendingLink {
    incoming: quinn::Incoming,
    stats: Arc<NetStats>,
    max_frame_len: usize,
}

impl PendingLink {
    /// Completes the handshake (mutual TLS) and accepts the instance's
    /// stream, which appears when the instance sends its first frame.
    pub async fn establish(self) -> Result<AgentLink, LinkError> {
        let connection = match self.incoming.await {
            Ok(c) => c,
            Err(e) => {
                NetStats::count(&self.stats.refused);
                return Err(LinkError::Handshake(e));
            }
        };
        NetStats::count(&self.stats.accepted);
        let (send, recv) = connection
            .accept_bi()
            .await
            .map_err(LinkError::Connection)?;
        Ok(Link::new(
            connection,
            send,
            recv,
            self.stats,
            self.max_frame_len,
        ))
    }
}

/// An instance's endpoint: connects to the agent with a site certificate.
#[derive(Debug)]
pub struct Client {
    endpoint: quinn::Endpoint,
    config: quinn::ClientConfig,
    stats: Arc<NetStats>,
    max_frame_len: usize,
}

impl Client {
    /// Binds `bind` (usually `0.0.0.0:0` or `[::]:0`) and presents `identity`.
    /// Must be called within a tokio runtime.
    pub fn new(
        bind: SocketAddr,
        identity: &Identity,
        trust: &SiteTrust,
        options: TransportOptions,
    ) -> Result<Client, EndpointError> {
        Client::build(bind, Some(identity), trust, options)
    }

    /// A client that presents no certificate. The agent refuses it; this
    /// exists so that tests can show it does.
    pub fn anonymous(
        bind: SocketAddr,
        trust: &SiteTrust,
        options: TransportOptions,
    ) -> Result<Client, EndpointError> {
        Client::build(bind, None, trust, options)
    }

    fn build(
        bind: SocketAddr,
        identity: Option<&Identity>,
        trust: &SiteTrust,
        options: TransportOptions,
    ) -> Result<Client, EndpointError> {
        let builder = rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(trust.roots.clone());
        let mut tls = match identity {
            Some(id) => builder.with_client_auth_cert(id.certs.clone(), id.key.clone_key())?,
            None => builder.with_no_client_auth(),
        };
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let quic =
            QuicClientConfig::try_from(tls).map_err(|e| EndpointError::Quic(e.to_string()))?;
        let mut config = quinn::ClientConfig::new(Arc::new(quic));
        // The agent opens no streams toward an instance.
        config.transport_config(options.transport(0));
        let endpoint = endpoint(bind, None, options.mtu)
            .map_err(|source| EndpointError::Bind { addr: bind, source })?;
        Ok(Client {
            endpoint,
            config,
            stats: Arc::new(NetStats::default()),
            max_frame_len: options.max_frame_len,
        })
    }

    /// Counters of this endpoint and its links.
    pub fn stats(&self) -> &Arc<NetStats> {
        &self.stats
    }

    /// Connects to the agent at `addr`, whose certificate must name
    /// `server_name`, and opens the link's stream. The agent sees the link
    /// once the first frame (`Hello`) is sent.
    pub async fn connect(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> Result<InstanceLink, LinkError> {
        let connecting = self
            .endpoint
            .connect_with(self.config.clone(), addr, server_name)
            .map_err(LinkError::Connect)?;
        let connection = match connecting.await {
            Ok(c) => c,
            Err(e) => {
                NetStats::count(&self.stats.refused);
                return Err(LinkError::Handshake(e));
            }
        };
        NetStats::count(&self.stats.accepted);
        let (send, recv) = connection.open_bi().await.map_err(LinkError::Connection)?;
        Ok(Link::new(
            connection,
            send,
            recv,
            self.stats.clone(),
            self.max_frame_len,
        ))
    }

    /// Closes every connection of this client.
    pub fn close(&self) {
        self.endpoint
            .close(VarInt::from_u32(super::CLOSE_DONE), b"instance closing");
    }

    /// Waits until every connection is closed and the peer was told.
    pub async fn wait_idle(&self) {
        self.endpoint.wait_idle().await;
    }
}
