//! The fleet link's QUIC endpoints: the controller listens, each agent
//! dials it. Both present a certificate from the controller's CA and
//! refuse peers without one (mutual TLS, TLS 1.3, ALPN [`ALPN`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};

use crate::net::{Identity, SiteTrust};

/// ALPN protocol id of the fleet link.
pub const ALPN: &[u8] = b"tandem-fleet/1";
/// The name on the controller's certificate, checked by agents.
pub const CONTROLLER_NAME: &str = "controller";
/// A connection silent this long is closed; keep-alives go at a third of it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn transport(streams: u32) -> Arc<TransportConfig> {
    let mut t = TransportConfig::default();
    t.max_idle_timeout(IdleTimeout::try_from(IDLE_TIMEOUT).ok());
    t.keep_alive_interval(Some(IDLE_TIMEOUT / 3));
    t.max_concurrent_bidi_streams(VarInt::from_u32(streams));
    t.max_concurrent_uni_streams(VarInt::from_u32(0));
    Arc::new(t)
}

/// The controller's endpoint on `addr`. Within a tokio runtime.
pub fn server(
    addr: SocketAddr,
    identity: &Identity,
    trust: &SiteTrust,
) -> Result<quinn::Endpoint, String> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        trust.roots.clone(),
        provider(),
    )
    .build()
    .map_err(|e| format!("the controller's CA cannot verify gateways: {e}"))?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.certs.clone(), identity.key.clone_key())
        .map_err(|e| format!("the controller's certificate: {e}"))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicServerConfig::try_from(tls).map_err(|e| e.to_string())?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    // An agent opens exactly one stream.
    config.transport_config(transport(1));
    quinn::Endpoint::server(config, addr).map_err(|e| format!("cannot listen on UDP {addr}: {e}"))
}

/// An agent's endpoint, and the configuration to dial its controller with.
pub fn client(
    controller: SocketAddr,
    identity: &Identity,
    trust: &SiteTrust,
) -> Result<(quinn::Endpoint, quinn::ClientConfig), String> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(trust.roots.clone())
        .with_client_auth_cert(identity.certs.clone(), identity.key.clone_key())
        .map_err(|e| format!("the gateway's certificate: {e}"))?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let quic = QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(transport(0));
    let bind: SocketAddr = if controller.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let endpoint =
        quinn::Endpoint::client(bind).map_err(|e| format!("cannot bind UDP {bind}: {e}"))?;
    Ok((endpoint, config))
}
