//! QUIC links with mutual TLS from a per-site CA.
//!
//! The agent runs a [`Server`], each instance a [`Client`]. Both present a
//! leaf certificate issued by the site's [`SiteCa`] and refuse peers whose
//! certificate does not chain to it (or who present none). A connection
//! carries one bidirectional stream of frames ([`tandem_core::wire`]),
//! opened by the instance, whose first frame is `Hello`: a [`Link`], read
//! with a [`FrameReader`] and written with a [`FrameWriter`], typed by
//! direction ([`AgentLink`], [`InstanceLink`]). A bad frame, or one going
//! the wrong way, closes its connection and is counted in [`NetStats`]; it
//! never panics.

mod bench;
mod ca;
mod endpoint;
mod framed;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;

pub use bench::{raw_quinn_records_per_sec, BenchError, RawQuinnRun};
pub use ca::{CaError, Identity, SiteCa, SiteTrust};
pub use endpoint::{Client, EndpointError, PendingLink, Server, TransportOptions};
pub use framed::{AgentLink, FrameReader, FrameWriter, InstanceLink, Link, LinkError};

/// ALPN protocol id of tandem links.
pub const ALPN: &[u8] = b"tandem/1";

/// Application close code: the peer sent a frame that failed validation.
pub const CLOSE_BAD_FRAME: u32 = 1;
/// Application close code: orderly shutdown.
pub const CLOSE_DONE: u32 = 0;

/// Counters of one endpoint and its links. Shared, cheap to read.
#[derive(Debug, Default)]
pub struct NetStats {
    accepted: AtomicU64,
    refused: AtomicU64,
    bad_frames: AtomicU64,
}

impl NetStats {
    /// Connections whose handshake (mutual TLS) completed.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections refused or failed during the handshake: no certificate,
    /// a certificate from another CA, wrong ALPN, a peer that went away.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Frames that failed validation; each closed its connection.
    pub fn bad_frames(&self) -> u64 {
        self.bad_frames.load(Ordering::Relaxed)
    }

    /// Counts a connection refused after its handshake: a site peer whose
    /// certificate is not for the colour it claims.
    pub fn refuse(&self) {
        NetStats::count(&self.refused);
    }

    /// Counts a well-formed frame refused where it came: a frame before
    /// the hello, or one going the wrong way.
    pub fn bad_frame(&self) {
        NetStats::count(&self.bad_frames);
    }

    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// True when the peer of `connection` presented a certificate issued for
/// `name` (the agent names each instance's certificate after its colour).
/// The handshake already checked that it chains to the site CA.
pub fn peer_is(connection: &quinn::Connection, name: &str) -> bool {
    let Some(identity) = connection.peer_identity() else {
        return false;
    };
    let Ok(certs) = identity.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>() else {
        return false;
    };
    let Some(leaf) = certs.first() else {
        return false;
    };
    let Ok(name) = rustls::pki_types::ServerName::try_from(name) else {
        return false;
    };
    webpki::EndEntityCert::try_from(leaf)
        .and_then(|cert| cert.verify_is_valid_for_subject_name(&name))
        .is_ok()
}

fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
