//! What `tandem bundle keygen|build|sign|verify|inspect|revoke` do; the
//! CLI (main.rs) parses the arguments, prints the text and exits 1 on `Err`.

use std::fmt::Write as _;
use std::fs::File;
use std::path::Path;

use super::archive::MAX_BUNDLE_BYTES;
use super::build::{self, BuildSpec};
use super::install::Gateway;
use super::manifest::Name;
use super::revocation::Revocation;
use super::sign::{PublicKey, SecretKey};
use super::time::UnixTime;
use super::trust::GatewayConfig;
use super::verify::{self, Contents};

/// Writes `DIR/NAME.key` (0600) and `DIR/NAME.pub`; refuses to overwrite.
pub fn keygen(name: &str, dir: &Path) -> Result<String, String> {
    let name = Name::parse(name)
        .ok_or_else(|| format!("`{name}` is not a key name; use a-z, 0-9, `.`, `_`, `-`"))?;
    let secret_path = dir.join(format!("{name}.key"));
    let public_path = dir.join(format!("{name}.pub"));
    for path in [&secret_path, &public_path] {
        if path.exists() {
            return Err(format!(
                "{} exists; keys are never overwritten (remove it, or choose another name)",
                path.display()
            ));
        }
    }
    let key = SecretKey::generate().map_err(|e| format!("no random bytes for a key: {e}"))?;
    {
        use std::io::Write as _;
        let mut file = crate::private::file_options()
            .write(true)
            .create_new(true)
            .open(&secret_path)
            .map_err(|e| format!("{}: {e}", secret_path.display()))?;
        file.write_all(key.to_text(name.as_str()).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| format!("{}: {e}", secret_path.display()))?;
    }
    std::fs::write(&public_path, key.public().to_text(name.as_str()))
        .map_err(|e| format!("{}: {e}", public_path.display()))?;
    Ok(format!(
        "key {}: secret {} (keep it off gateways), public {} (copy it to CONFIG/keys/TRACK/ on gateways)",
        key.public().id(),
        secret_path.display(),
        public_path.display()
    ))
}

fn read_text(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let mut text = String::new();
    File::open(path)
        .and_then(|f| f.take(64 << 10).read_to_string(&mut text))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(text)
}

/// Reads a secret key file.
pub fn read_secret(path: &Path) -> Result<SecretKey, String> {
    SecretKey::parse(&read_text(path)?).map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads a public key file.
pub fn read_public(path: &Path) -> Result<PublicKey, String> {
    PublicKey::parse(&read_text(path)?).map_err(|e| format!("{}: {e}", path.display()))
}

/// Builds an unsigned bundle into `out`.
pub fn build(spec: &BuildSpec, out: &Path) -> Result<String, String> {
    let (manifest, bytes) = build::build(spec).map_err(|e| e.to_string())?;
    build::write_file(out, &bytes).map_err(|e| e.to_string())?;
    let mut text = format!(
        "{}: {} (track {}, expires {}), {} payload(s), {} bytes; unsigned: sign it with `tandem bundle sign {} --key KEY`",
        out.display(),
        manifest.id(),
        manifest.track,
        manifest.expires,
        manifest.payloads.len(),
        bytes.len(),
        out.display()
    );
    if !manifest.kinds.is_empty() {
        let kinds: Vec<String> = manifest.kinds.iter().map(ToString::to_string).collect();
        let _ = write!(text, "\nkinds: {}", kinds.join(", "));
    }
    Ok(text)
}

/// Adds a signature to `file`.
pub fn sign(file: &Path, key: &Path) -> Result<String, String> {
    let secret = read_secret(key)?;
    let (contents, count) = build::sign_file(file, &secret).map_err(|e| e.to_string())?;
    Ok(format!(
        "{}: signed by key {} ({}; {count} signature(s) now)",
        file.display(),
        secret.public().id(),
        describe(&contents)
    ))
}

/// Writes a revocation of `name` `version`, signed by `key`.
pub fn revoke(revocation: &Revocation, key: &Path, out: &Path) -> Result<String, String> {
    let secret = read_secret(key)?;
    let bytes = build::revocation(revocation, &secret).map_err(|e| e.to_string())?;
    build::write_file(out, &bytes).map_err(|e| e.to_string())?;
    Ok(format!(
        "{}: revocation of {} {} on track {}, signed by key {}; `tandem install {}` on each gateway",
        out.display(),
        revocation.name,
        revocation.version,
        revocation.track,
        secret.public().id(),
        out.display()
    ))
}

fn describe(contents: &Contents) -> String {
    match contents {
        Contents::Bundle(m) => format!("bundle {} on track {}", m.id(), m.track),
        Contents::Revocation(r) => format!(
            "revocation of {} {} on track {}",
            r.name, r.version, r.track
        ),
    }
}

/// Every check a gateway with `config_dir` and state directory `state_dir`
/// would make, now; unpacks nothing.
pub fn verify(file: &Path, config_dir: &Path, state_dir: &Path) -> Result<String, String> {
    let gateway = Gateway::new(state_dir.join("bundles"), config_dir.to_path_buf());
    let verified = gateway
        .check(file, UnixTime::now())
        .map_err(|e| e.to_string())?;
    let signers: Vec<String> = verified.signers.iter().map(ToString::to_string).collect();
    Ok(format!(
        "{}: ok: {}, signed by {}; this gateway would accept it",
        file.display(),
        describe(&verified.contents),
        signers.join(", ")
    ))
}

/// What `file` holds, and whether (and why not) a gateway with
/// `config_dir` and `state_dir` would accept it.
pub fn inspect(file: &Path, config_dir: &Path, state_dir: &Path) -> Result<String, String> {
    let mut f = File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let opened = verify::open(&mut f, MAX_BUNDLE_BYTES)
        .map_err(|e| format!("{} is refused: {e}", file.display()))?;
    let mut out = String::new();
    match &opened.contents {
        Contents::Bundle(m) => {
            let _ = writeln!(out, "bundle {} {}", m.name, m.version);
            let _ = writeln!(out, "track {}", m.track);
            let _ = writeln!(out, "expires {}", m.expires);
            let _ = writeln!(
                out,
                "compatible: hardware {}; sites {}",
                m.compatible.hardware.join(", "),
                m.compatible.sites.join(", ")
            );
            if let Some(v) = &m.min_runtime {
                let _ = writeln!(out, "min_runtime {v}");
            }
            for c in &m.depends {
                let _ = writeln!(out, "depends {c}");
            }
            for c in &m.conflicts {
                let _ = writeln!(out, "conflicts {c}");
            }
            let _ = writeln!(out, "graph {}", m.graph);
            if let Some(b) = &m.binary {
                let _ = writeln!(out, "binary {b}");
            }
            for k in &m.kinds {
                let _ = writeln!(out, "kind {k}");
            }
            for id in &m.migrations {
                let _ = writeln!(out, "migration {id}");
            }
            for p in &m.payloads {
                let _ = writeln!(
                    out,
                    "payload {}  {} bytes  sha256 {}  stored {} ({} bytes)",
                    p.path,
                    p.size,
                    super::hex::encode(&p.sha256),
                    p.compression.name(),
                    p.stored_size
                );
            }
        }
        Contents::Revocation(r) => {
            let _ = writeln!(out, "revocation of {} {}", r.name, r.version);
            let _ = writeln!(out, "track {}", r.track);
            if !r.reason.is_empty() {
                let _ = writeln!(out, "reason {}", r.reason);
            }
        }
    }
    let config = GatewayConfig::load(config_dir);
    for s in &opened.signatures {
        let trusted = match &config {
            Ok(c) => c
                .trust
                .tracks
                .get(opened.contents.track())
                .is_some_and(|t| t.keys.iter().any(|k| k.to_bytes() == s.key)),
            Err(_) => false,
        };
        let _ = writeln!(
            out,
            "signature by key {}{}",
            s.key_id(),
            if trusted {
                ""
            } else {
                " (not trusted for this track here)"
            }
        );
    }
    if opened.signatures.is_empty() {
        let _ = writeln!(out, "signatures: none");
    }
    match verify(file, config_dir, state_dir) {
        Ok(_) => {
            let _ = writeln!(out, "verdict: this gateway would accept it");
        }
        Err(reason) => {
            let _ = writeln!(out, "verdict: {reason}");
        }
    }
    Ok(out)
}
