//! The enrolment file: what a gateway needs to reach its controller,
//! carried to it by hand (a USB stick, a provisioning image). JSON, mode
//! 0600 (it holds the gateway's private key):
//!
//! ```json
//! {"format": 1, "gateway": "gw-0042", "track": "stable",
//!  "controller": "192.0.2.10:7141",
//!  "ca_pem": "...", "cert_pem": "...", "key_pem": "..."}
//! ```
//!
//! The agent takes it from `--controller-enrolment FILE`
//! (`$TANDEM_CONTROLLER_ENROLMENT`), else from `CONFIG/enrolment.json` in
//! its config directory when that exists.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::plan::GatewayId;
use crate::net::{Identity, SiteTrust};

/// The format this build writes and reads.
pub const FORMAT: u32 = 1;
/// Its name in a gateway's config directory.
pub const FILE_NAME: &str = "enrolment.json";
/// The largest enrolment file read.
const MAX_BYTES: u64 = 64 << 10;

/// A gateway's enrolment with one controller.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrolment {
    /// [`FORMAT`].
    pub format: u32,
    /// The gateway's name, as its certificate says.
    pub gateway: GatewayId,
    /// Its release track.
    pub track: String,
    /// Where the controller listens (UDP).
    pub controller: SocketAddr,
    /// The controller's CA certificate.
    pub ca_pem: String,
    /// The gateway's certificate, issued by that CA.
    pub cert_pem: String,
    /// Its private key.
    pub key_pem: String,
}

impl Enrolment {
    /// The JSON text of the file.
    pub fn to_text(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses and checks an enrolment's text.
    pub fn parse(text: &str) -> Result<Enrolment, String> {
        let e: Enrolment = serde_json::from_str(text).map_err(|e| {
            format!("not an enrolment file ({e}); make one with `tandem ctl enrol`")
        })?;
        if e.format != FORMAT {
            return Err(format!(
                "enrolment format {}, this tandem reads format {FORMAT}: enrol the gateway again \
                 with this release's `tandem ctl enrol`",
                e.format
            ));
        }
        e.identity()?;
        e.trust()?;
        Ok(e)
    }

    /// Reads `path`: a regular file of at most 64 KiB that other users
    /// cannot read.
    pub fn load(path: &Path) -> Result<Enrolment, String> {
        use std::io::Read as _;
        use std::os::unix::fs::MetadataExt as _;
        let shown = path.display();
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("{shown}: cannot read the enrolment: {e}"))?;
        if !meta.is_file() {
            return Err(format!("{shown}: the enrolment is not a regular file"));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(format!(
                "{shown}: the enrolment holds the gateway's private key but others may read it \
                 (mode {:o}); run `chmod 600 {shown}`",
                meta.mode() & 0o777
            ));
        }
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_BYTES).read_to_string(&mut text))
            .map_err(|e| format!("{shown}: cannot read the enrolment: {e}"))?;
        Enrolment::parse(&text).map_err(|e| format!("{shown}: {e}"))
    }

    /// Writes it to `path`, mode 0600 (write, fsync, rename).
    pub fn save(&self, path: &Path) -> Result<(), String> {
        crate::private::write_atomically(path, self.to_text().as_bytes())
            .map_err(|e| format!("{}: cannot write the enrolment: {e}", path.display()))
    }

    /// The certificate and key the gateway presents.
    pub fn identity(&self) -> Result<Identity, String> {
        Identity::from_pem(&self.cert_pem, &self.key_pem)
            .map_err(|e| format!("the enrolment's certificate: {e}"))
    }

    /// The controller's CA.
    pub fn trust(&self) -> Result<SiteTrust, String> {
        SiteTrust::from_pem(&self.ca_pem).map_err(|e| format!("the enrolment's CA: {e}"))
    }
}

/// Where the agent finds its enrolment: the flag's file, else
/// `CONFIG/enrolment.json` if it exists, else none.
pub fn locate(flag: Option<&Path>, config_dir: Option<&Path>) -> Option<PathBuf> {
    match flag {
        Some(path) => Some(path.to_path_buf()),
        None => config_dir
            .map(|dir| dir.join(FILE_NAME))
            .filter(|p| p.exists()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> Enrolment {
        let ca = crate::net::SiteCa::generate().unwrap();
        let (cert_pem, key_pem) = ca.issue_leaf("gw-1").unwrap();
        Enrolment {
            format: FORMAT,
            gateway: GatewayId::parse("gw-1").unwrap(),
            track: "stable".into(),
            controller: "127.0.0.1:7141".parse().unwrap(),
            ca_pem: ca.cert_pem().to_owned(),
            cert_pem,
            key_pem,
        }
    }

    #[test]
    fn enrolments_round_trip_and_refuse_other_formats() {
        let e = sample();
        assert_eq!(Enrolment::parse(&e.to_text()).unwrap(), e);
        let newer = e.to_text().replace("\"format\": 1", "\"format\": 2");
        let err = Enrolment::parse(&newer).unwrap_err();
        assert!(err.contains("enrol the gateway again"), "{err}");
        let err = Enrolment::parse("{}").unwrap_err();
        assert!(err.contains("tandem ctl enrol"), "{err}");
    }

    #[test]
    fn enrolments_others_may_read_are_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("tandem-enrol-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(FILE_NAME);
        sample().save(&path).unwrap();
        assert!(Enrolment::load(&path).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Enrolment::load(&path).unwrap_err();
        assert!(err.contains("chmod 600"), "{err}");
        assert_eq!(locate(None, Some(&dir)), Some(path));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
