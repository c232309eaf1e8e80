//! Keys and signatures: ed25519 (ed25519-dalek, verified with
//! `verify_strict`), over the statement's bytes exactly (a bundle's
//! manifest, or a revocation), prefixed with a domain string so that a
//! signature on one kind of statement never counts for another.
//!
//! Key files are one line of text each:
//!
//! ```text
//! tandem-ed25519-public 3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c [comment]
//! tandem-ed25519-secret 9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60 [comment]
//! ```
//!
//! (the 32-byte public key and the 32-byte secret seed, in lowercase hex).
//! A key's id is the first 8 bytes of its public key, in hex.

use std::fmt;

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::hex;

/// The archive entry that holds the signatures (always the second).
pub const SIGNATURES_ENTRY: &str = "SIGNATURES.toml";
/// Largest signatures entry.
pub const MAX_SIGNATURES_BYTES: u64 = 64 << 10;
/// Most signatures one statement carries.
pub const MAX_SIGNATURES: usize = 64;

const PUBLIC_TAG: &str = "tandem-ed25519-public";
const SECRET_TAG: &str = "tandem-ed25519-secret";

/// What a signature is about: its bytes are prefixed with the kind's domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Statement {
    /// A bundle's manifest.
    Manifest,
    /// A revocation.
    Revocation,
}

impl Statement {
    fn domain(self) -> &'static [u8] {
        match self {
            Statement::Manifest => b"tandem bundle manifest v1\0",
            Statement::Revocation => b"tandem bundle revocation v1\0",
        }
    }

    /// `bytes`, as signed: the domain, then the bytes.
    pub fn message(self, bytes: &[u8]) -> Vec<u8> {
        let mut message = self.domain().to_vec();
        message.extend_from_slice(bytes);
        message
    }
}

/// A public key that may be trusted for a track.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id())
    }
}

/// A short, printable key id: the first 8 bytes of the public key, in hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId([u8; 8]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl PublicKey {
    /// The key from its 32 bytes, if they are a point on the curve.
    pub fn from_bytes(bytes: &[u8; 32]) -> Option<PublicKey> {
        VerifyingKey::from_bytes(bytes).ok().map(PublicKey)
    }

    /// Its 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Its id.
    pub fn id(&self) -> KeyId {
        let mut id = [0u8; 8];
        id.copy_from_slice(self.0.as_bytes().get(..8).unwrap_or(&[0; 8]));
        KeyId(id)
    }

    /// Parses a public key file's text.
    pub fn parse(text: &str) -> Result<PublicKey, KeyError> {
        let bytes = key_line(text, PUBLIC_TAG)?;
        PublicKey::from_bytes(&bytes).ok_or(KeyError::NotOnCurve)
    }

    /// The text of its file.
    pub fn to_text(&self, comment: &str) -> String {
        format!(
            "{PUBLIC_TAG} {} {comment}\n",
            hex::encode(self.0.as_bytes())
        )
    }

    /// True when `signature` is this key's, by `verify_strict`, over `statement`'s `bytes`.
    pub fn verifies(&self, statement: Statement, bytes: &[u8], signature: &[u8; 64]) -> bool {
        let signature = Signature::from_bytes(signature);
        self.0
            .verify_strict(&statement.message(bytes), &signature)
            .is_ok()
    }
}

/// A secret signing key.
pub struct SecretKey(SigningKey);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey(public {})", self.public().id())
    }
}

impl SecretKey {
    /// The key of a 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> SecretKey {
        SecretKey(SigningKey::from_bytes(seed))
    }

    /// A new key from the kernel's random source.
    pub fn generate() -> std::io::Result<SecretKey> {
        let mut seed = [0u8; 32];
        let mut filled = 0;
        while filled < seed.len() {
            let rest = seed.get_mut(filled..).unwrap_or_default();
            // SAFETY: getrandom writes at most `rest.len()` bytes into `rest`.
            let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() != std::io::ErrorKind::Interrupted {
                    return Err(e);
                }
                continue;
            }
            filled += n.unsigned_abs();
        }
        Ok(SecretKey::from_seed(&seed))
    }

    /// Its public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Parses a secret key file's text.
    pub fn parse(text: &str) -> Result<SecretKey, KeyError> {
        Ok(SecretKey::from_seed(&key_line(text, SECRET_TAG)?))
    }

    /// The text of its file.
    pub fn to_text(&self, comment: &str) -> String {
        format!(
            "{SECRET_TAG} {} {comment}\n",
            hex::encode(self.0.as_bytes())
        )
    }

    /// Signs `statement`'s `bytes`.
    pub fn sign(&self, statement: Statement, bytes: &[u8]) -> SignatureEntry {
        let signature = self.0.sign(&statement.message(bytes));
        SignatureEntry {
            key: self.public().to_bytes(),
            signature: signature.to_bytes(),
        }
    }
}

/// Why a key file's text is not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// It is the other kind of key file, or no key file at all.
    #[error("it is not a {expected} key file (a line `{expected} <64 hex digits>`)")]
    NotAKey {
        /// The tag the line should start with.
        expected: &'static str,
    },
    /// The secret key file given where a public key is expected.
    #[error("it is a secret key; give the `.pub` file")]
    Secret,
    /// The hex is not 32 bytes.
    #[error("its key is not 64 lowercase hex digits")]
    BadHex,
    /// The 32 bytes are not a public key.
    #[error("its key is not a valid ed25519 public key")]
    NotOnCurve,
}

fn key_line(text: &str, tag: &'static str) -> Result<[u8; 32], KeyError> {
    let mut words = text.split_whitespace();
    match words.next() {
        Some(t) if t == tag => {}
        Some(SECRET_TAG) => return Err(KeyError::Secret),
        _ => return Err(KeyError::NotAKey { expected: tag }),
    }
    words
        .next()
        .and_then(hex::decode_array::<32>)
        .ok_or(KeyError::BadHex)
}

/// One signature: the key that made it and its 64 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignatureEntry {
    /// The signer's public key, as given (not yet checked to be a key).
    pub key: [u8; 32],
    /// The signature.
    pub signature: [u8; 64],
}

impl SignatureEntry {
    /// The signer's key id (of the bytes as given).
    pub fn key_id(&self) -> KeyId {
        let mut id = [0u8; 8];
        id.copy_from_slice(self.key.get(..8).unwrap_or(&[0; 8]));
        KeyId(id)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignatures {
    #[serde(default)]
    signatures: Vec<RawSignature>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignature {
    key: String,
    signature: String,
}

/// Why a signatures entry cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignaturesError {
    /// Not the entry's TOML.
    #[error("the signatures entry is not valid: {0}")]
    Syntax(String),
    /// A key or signature that is not hex of its length.
    #[error("signature {index} is not valid: its key must be 64 and its signature 128 lowercase hex digits")]
    Hex {
        /// Its position, from 1.
        index: usize,
    },
    /// Too many.
    #[error("the bundle carries {0} signatures; at most {MAX_SIGNATURES} are read")]
    TooMany(usize),
}

/// Parses a signatures entry.
pub fn parse_signatures(bytes: &[u8]) -> Result<Vec<SignatureEntry>, SignaturesError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| SignaturesError::Syntax("it is not UTF-8 text".into()))?;
    let raw: RawSignatures =
        toml::from_str(text).map_err(|e| SignaturesError::Syntax(e.message().trim_end().into()))?;
    if raw.signatures.len() > MAX_SIGNATURES {
        return Err(SignaturesError::TooMany(raw.signatures.len()));
    }
    raw.signatures
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Ok(SignatureEntry {
                key: hex::decode_array(&s.key).ok_or(SignaturesError::Hex { index: i + 1 })?,
                signature: hex::decode_array(&s.signature)
                    .ok_or(SignaturesError::Hex { index: i + 1 })?,
            })
        })
        .collect()
}

/// The bytes of a signatures entry.
pub fn signatures_to_bytes(signatures: &[SignatureEntry]) -> Vec<u8> {
    let raw = RawSignatures {
        signatures: signatures
            .iter()
            .map(|s| RawSignature {
                key: hex::encode(&s.key),
                signature: hex::encode(&s.signature),
            })
            .collect(),
    };
    toml::to_string(&raw).unwrap_or_default().into_bytes()
}

/// `signatures` with `new` added, replacing an earlier one by the same key.
pub fn add_signature(signatures: &[SignatureEntry], new: SignatureEntry) -> Vec<SignatureEntry> {
    let mut out: Vec<SignatureEntry> = signatures
        .iter()
        .filter(|s| s.key != new.key)
        .copied()
        .collect();
    out.push(new);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_read_back_and_sign_what_they_sign_only() {
        let secret = SecretKey::from_seed(&[9; 32]);
        let public = PublicKey::parse(&secret.public().to_text("ops")).unwrap();
        assert_eq!(public, secret.public());
        let again = SecretKey::parse(&secret.to_text("")).unwrap();
        assert_eq!(again.public(), public);
        let s = secret.sign(Statement::Manifest, b"abc");
        assert!(public.verifies(Statement::Manifest, b"abc", &s.signature));
        assert!(!public.verifies(Statement::Manifest, b"abd", &s.signature));
        assert!(!public.verifies(Statement::Revocation, b"abc", &s.signature));
        let entries = parse_signatures(&signatures_to_bytes(&[s])).unwrap();
        assert_eq!(entries, vec![s]);
        assert_eq!(parse_signatures(b"").unwrap(), vec![]);
    }

    #[test]
    fn key_files_are_told_apart() {
        let secret = SecretKey::from_seed(&[1; 32]);
        assert_eq!(
            PublicKey::parse(&secret.to_text(""))
                .unwrap_err()
                .to_string(),
            "it is a secret key; give the `.pub` file"
        );
        assert_eq!(
            SecretKey::parse("hello").unwrap_err().to_string(),
            "it is not a tandem-ed25519-secret key file (a line `tandem-ed25519-secret <64 hex digits>`)"
        );
        assert_eq!(
            PublicKey::parse("tandem-ed25519-public 00").unwrap_err(),
            KeyError::BadHex
        );
    }

    #[test]
    fn generated_keys_differ() {
        let a = SecretKey::generate().unwrap();
        let b = SecretKey::generate().unwrap();
        assert_ne!(a.public(), b.public());
    }
}
