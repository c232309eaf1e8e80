//! TLS to the broker: rustls with its ring provider (no aws-lc-rs), the
//! broker's CA from a PEM file, and an optional client certificate.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The files of a TLS connection, as the graph file names them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificates of the CAs the broker's certificate must chain to.
    pub ca: PathBuf,
    /// PEM client certificate chain and its private key, for brokers that
    /// ask for one.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Builds the client configuration; the error names the file at fault.
pub fn client_config(files: &TlsFiles) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(&files.ca)? {
        roots.add(cert).map_err(|e| {
            format!(
                "`{}`: a CA certificate is not usable: {e}",
                files.ca.display()
            )
        })?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots);
    let config = match &files.client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = certs(cert)?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                format!("`{}`: no PEM private key could be read: {e}", key.display())
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                format!(
                    "`{}`: the client certificate and key do not go together: {e}",
                    cert.display()
                )
            })?
        }
    };
    Ok(Arc::new(config))
}

/// Every certificate in a PEM file; at least one.
fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("`{}`: cannot read PEM certificates: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("`{}` holds no PEM certificate", path.display()));
    }
    Ok(certs)
}
