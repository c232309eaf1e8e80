//! The per-site certificate authority: created on first start, kept in the
//! state directory, the only root every link on the site trusts.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use thiserror::Error;

use super::crypto_provider;

/// Common name of every site CA certificate. Leaves are signed with this
/// issuer name, so it must never change for an existing site.
const CA_COMMON_NAME: &str = "tandem site CA";

/// Why the site CA could not be created, loaded or used.
#[derive(Debug, Error)]
pub enum CaError {
    /// A file or directory could not be read or written.
    #[error("cannot {action} `{path}`: {source}")]
    Io {
        /// What was being done ("read", "create", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Only one of the two CA files exists.
    #[error("found `{present}` but not `{missing}`: restore `{missing}` from a backup, or remove `{present}` to create a new site CA (every certificate issued so far will stop working)")]
    HalfPresent {
        /// The file that exists.
        present: PathBuf,
        /// The file that does not.
        missing: PathBuf,
    },
    /// A CA file does not hold what it should.
    #[error("`{path}` is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key does not belong to the certificate.
    #[error("`{key}` is not the key of `{cert}`: certificates it signs do not chain to it")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The key file can be read by other users.
    #[error("`{path}` is readable by other users (mode {mode:o}); run `chmod 600` on it")]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A name is not usable as a certificate subject (a DNS name is needed).
    #[error("`{name}` is not a valid certificate name (use a DNS-style name like `agent` or `instance-blue`): {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A PEM certificate or key given by the caller could not be parsed.
    #[error("invalid {what}: {reason}")]
    InvalidPem {
        /// "certificate" or "private key".
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// Key generation or signing failed.
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
}

/// A certificate chain and its private key: what one side presents.
#[derive(Debug)]
pub struct Identity {
    pub(crate) certs: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
}

impl Identity {
    /// An identity from PEM text (as returned by [`SiteCa::issue_leaf`]).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Identity, CaError> {
        let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CaError::InvalidPem {
                what: "certificate",
                reason: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(CaError::InvalidPem {
                what: "certificate",
                reason: "no certificate in the PEM text".into(),
            });
        }
        let key =
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| CaError::InvalidPem {
                what: "private key",
                reason: e.to_string(),
            })?;
        Ok(Identity { certs, key })
    }
}

impl Clone for Identity {
    fn clone(&self) -> Identity {
        Identity {
            certs: self.certs.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// The roots a side accepts peers from: the site CA certificate.
#[derive(Clone, Debug)]
pub struct SiteTrust {
    pub(crate) roots: Arc<RootCertStore>,
}

impl SiteTrust {
    /// Trust from the site CA certificate in PEM.
    pub fn from_pem(ca_cert_pem: &str) -> Result<SiteTrust, CaError> {
        let der = CertificateDer::from_pem_slice(ca_cert_pem.as_bytes()).map_err(|e| {
            CaError::InvalidPem {
                what: "certificate",
                reason: e.to_string(),
            }
        })?;
        SiteTrust::from_der(der).map_err(|reason| CaError::InvalidPem {
            what: "certificate",
            reason,
        })
    }

    fn from_der(der: CertificateDer<'static>) -> Result<SiteTrust, String> {
        let mut roots = RootCertStore::empty();
        roots.add(der).map_err(|e| e.to_string())?;
        Ok(SiteTrust {
            roots: Arc::new(roots),
        })
    }
}

/// The site certificate authority. Issues the leaf certificates the agent
/// and the instances present to each other.
pub struct SiteCa {
    cert_pem: String,
    /// The CA certificate as rcgen needs it to sign (same name and key as
    /// `cert_pem`; rebuilt when loaded).
    issuer: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for SiteCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteCa").finish_non_exhaustive()
    }
}

impl SiteCa {
    /// File name of the CA certificate in the state directory.
    pub const CERT_FILE: &'static str = "site-ca.pem";
    /// File name of the CA private key in the state directory (mode 0600).
    pub const KEY_FILE: &'static str = "site-ca.key";

    /// A new CA kept in memory only (tests, benches).
    pub fn generate() -> Result<SiteCa, CaError> {
        let key = KeyPair::generate()?;
        let issuer = ca_params().self_signed(&key)?;
        Ok(SiteCa {
            cert_pem: issuer.pem(),
            issuer,
            key,
        })
    }

    /// Loads the CA from `dir`, or creates it there if neither file exists.
    pub fn open_or_create(dir: &Path) -> Result<SiteCa, CaError> {
        let cert = dir.join(Self::CERT_FILE);
        let key = dir.join(Self::KEY_FILE);
        match (exists(&cert)?, exists(&key)?) {
            (true, true) => SiteCa::load(dir),
            (false, false) => SiteCa::create(dir),
            (true, false) => Err(CaError::HalfPresent {
                present: cert,
                missing: key,
            }),
            (false, true) => Err(CaError::HalfPresent {
                present: key,
                missing: cert,
            }),
        }
    }

    /// Creates a new CA and writes it to `dir` (key file mode 0600). Refuses
    /// to overwrite existing files.
    pub fn create(dir: &Path) -> Result<SiteCa, CaError> {
        crate::private::create_dir(dir).map_err(|source| CaError::Io {
            action: "create directory",
            path: dir.to_path_buf(),
            source,
        })?;
        let ca = SiteCa::generate()?;
        let key_path = dir.join(Self::KEY_FILE);
        let cert_path = dir.join(Self::CERT_FILE);
        // The key first: a crash in between leaves a key without a
        // certificate, which `open_or_create` reports instead of replacing.
        write_new(&key_path, ca.key.serialize_pem().as_bytes(), 0o600)?;
        write_new(&cert_path, ca.cert_pem.as_bytes(), 0o600)?;
        sync_dir(dir);
        Ok(ca)
    }

    /// Loads the CA written by [`SiteCa::create`] from `dir`.
    pub fn load(dir: &Path) -> Result<SiteCa, CaError> {
        let cert_path = dir.join(Self::CERT_FILE);
        let key_path = dir.join(Self::KEY_FILE);
        let cert_pem = read_text(&cert_path)?;
        let cert_der =
            CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| CaError::Corrupt {
                path: cert_path.clone(),
                reason: format!("no PEM certificate ({e})"),
            })?;
        check_key_mode(&key_path)?;
        let key_pem = read_text(&key_path)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| CaError::Corrupt {
            path: key_path.clone(),
            reason: format!("no PEM private key ({e})"),
        })?;
        let trust = SiteTrust::from_der(cert_der).map_err(|reason| CaError::Corrupt {
            path: cert_path.clone(),
            reason,
        })?;
        let issuer = ca_params().self_signed(&key)?;
        let ca = SiteCa {
            cert_pem,
            issuer,
            key,
        };
        // The key must sign for the certificate on disk: issue a probe leaf
        // and verify it against that certificate, as a peer would.
        if !ca.verifies_against(&trust)? {
            return Err(CaError::KeyMismatch {
                cert: cert_path,
                key: key_path,
            });
        }
        Ok(ca)
    }

    /// The CA certificate in PEM, to hand to instances.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The trust roots for this site.
    pub fn trust(&self) -> Result<SiteTrust, CaError> {
        SiteTrust::from_pem(&self.cert_pem)
    }

    /// Issues a leaf certificate for `name` (the agent, or an instance),
    /// valid as both TLS server and client. Returns `(cert_pem, key_pem)`.
    pub fn issue_leaf(&self, name: &str) -> Result<(String, String), CaError> {
        let mut params =
            CertificateParams::new(vec![name.to_string()]).map_err(|e| CaError::InvalidName {
                name: name.to_string(),
                reason: e.to_string(),
            })?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer, &self.key)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// [`SiteCa::issue_leaf`] as an [`Identity`] ready for an endpoint.
    pub fn issue_identity(&self, name: &str) -> Result<Identity, CaError> {
        let (cert, key) = self.issue_leaf(name)?;
        Identity::from_pem(&cert, &key)
    }

    fn verifies_against(&self, trust: &SiteTrust) -> Result<bool, CaError> {
        let probe = self.issue_identity("probe")?;
        let Some(leaf) = probe.certs.first() else {
            return Ok(false);
        };
        let Ok(verifier) =
            WebPkiClientVerifier::builder_with_provider(trust.roots.clone(), crypto_provider())
                .build()
        else {
            return Ok(false);
        };
        Ok(verifier
            .verify_client_cert(leaf, &[], UnixTime::now())
            .is_ok())
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn exists(path: &Path) -> Result<bool, CaError> {
    path.try_exists().map_err(|source| CaError::Io {
        action: "look for",
        path: path.to_path_buf(),
        source,
    })
}

fn read_text(path: &Path) -> Result<String, CaError> {
    let bytes = fs::read(path).map_err(|source| CaError::Io {
        action: "read",
        path: path.to_path_buf(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|_| CaError::Corrupt {
        path: path.to_path_buf(),
        reason: "not UTF-8 PEM text".into(),
    })
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), CaError> {
    let io_err = |source| CaError::Io {
        action: "write",
        path: path.to_path_buf(),
        source,
    };
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file: File = options.open(path).map_err(io_err)?;
    file.write_all(contents).map_err(io_err)?;
    file.sync_all().map_err(io_err)
}

fn sync_dir(dir: &Path) {
    // Best effort: makes the new names durable where directories can be synced.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn check_key_mode(path: &Path) -> Result<(), CaError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = fs::metadata(path).map_err(|source| CaError::Io {
            action: "read",
            path: path.to_path_buf(),
            source,
        })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(CaError::KeyPermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
