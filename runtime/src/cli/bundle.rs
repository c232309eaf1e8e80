//! `tandem bundle keygen|build|sign|verify|inspect|revoke`: the arguments
//! are checked here; `tandem::bundle::command` does the work.

use clap::Subcommand;
use std::path::PathBuf;
use std::process::ExitCode;

use tandem::bundle::build::BuildSpec;
use tandem::bundle::manifest::Name;
use tandem::bundle::revocation::Revocation;

use super::{duration_arg, Printed, INVALID};

/// `tandem bundle ...`.
#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Make a signing key pair: NAME.key (secret, 0600) and NAME.pub.
    Keygen {
        /// The key's name.
        name: String,
        /// Where to write the two files.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Build an unsigned bundle of a graph (and a binary).
    Build {
        /// The graph the upgrade runs.
        #[arg(long)]
        graph: PathBuf,
        /// Further graph files to carry.
        #[arg(long = "with-graph")]
        extra_graphs: Vec<PathBuf>,
        /// A tandem executable the new instances run.
        #[arg(long)]
        binary: Option<PathBuf>,
        /// The bundle's name (its versions replace each other).
        #[arg(long)]
        name: String,
        /// Its semantic version (such as 1.2.0).
        #[arg(long = "version")]
        bundle_version: String,
        /// The release track whose keys sign it.
        #[arg(long, default_value = "stable")]
        track: String,
        /// Expiry, UTC (2027-01-31T00:00:00Z); default: --expires-in from now.
        #[arg(long, conflicts_with = "expires_in")]
        expires: Option<String>,
        /// Expiry from now, in days (90d) or a duration.
        #[arg(long, default_value = "90d")]
        expires_in: String,
        /// A hardware id it is for (repeat; default any).
        #[arg(long = "hardware", default_value = "*")]
        hardware: Vec<String>,
        /// A site id it is for (repeat; default any).
        #[arg(long = "site", default_value = "*")]
        sites: Vec<String>,
        /// A bundle that must be installed (`battery-graph >= 2.14`; repeat).
        #[arg(long)]
        depends: Vec<String>,
        /// A bundle that must not be installed (repeat).
        #[arg(long)]
        conflicts: Vec<String>,
        /// The oldest runtime it runs on.
        #[arg(long)]
        min_runtime: Option<String>,
        /// The bundle file to write.
        #[arg(long, short)]
        output: PathBuf,
    },
    /// Add a signature to a bundle or revocation, in place.
    Sign {
        /// The file.
        file: PathBuf,
        /// The secret key (NAME.key).
        #[arg(long)]
        key: PathBuf,
    },
    /// Check a bundle as a gateway would, now. Exit 0 accepted, 1 refused.
    Verify {
        /// The bundle or revocation.
        file: PathBuf,
        #[command(flatten)]
        gateway: GatewayDirs,
    },
    /// Show what a bundle holds and why a gateway would refuse it.
    Inspect {
        /// The bundle or revocation.
        file: PathBuf,
        #[command(flatten)]
        gateway: GatewayDirs,
    },
    /// Write a signed revocation of one version of a bundle.
    Revoke {
        /// The bundle's name.
        name: String,
        /// The version to revoke.
        #[arg(value_name = "VERSION")]
        revoked: String,
        /// The secret key that signs it (add more with `tandem bundle sign`).
        #[arg(long)]
        key: PathBuf,
        /// The track whose keys sign it.
        #[arg(long, default_value = "stable")]
        track: String,
        /// Why, for people.
        #[arg(long, default_value = "")]
        reason: String,
        /// The file to write.
        #[arg(long, short)]
        output: PathBuf,
    },
}

/// Whose trust and state `tandem bundle verify|inspect` check against.
#[derive(Debug, clap::Args)]
pub struct GatewayDirs {
    /// The gateway's config directory (trusted keys, tracks, identity).
    #[arg(long, env = "TANDEM_CONFIG_DIR", default_value = tandem::bundle::trust::DEFAULT_CONFIG_DIR)]
    config_dir: PathBuf,
    /// Its state directory (the anti-rollback floor and revocations).
    #[arg(long, env = "TANDEM_STATE_DIR", default_value = tandem::up::dirs::DEFAULT_STATE_DIR)]
    state_dir: PathBuf,
}

/// `tandem bundle ...`: prints what was done; exit 1 with the reason otherwise.
pub fn run(action: BundleCommand) -> Printed {
    use tandem::bundle::command;
    let done = match action {
        BundleCommand::Keygen { name, dir } => command::keygen(&name, &dir),
        BundleCommand::Build {
            graph,
            extra_graphs,
            binary,
            name,
            bundle_version,
            track,
            expires,
            expires_in,
            hardware,
            sites,
            depends,
            conflicts,
            min_runtime,
            output,
        } => bundle_spec(BundleArgs {
            graph,
            extra_graphs,
            binary,
            name,
            version: bundle_version,
            track,
            expires,
            expires_in,
            hardware,
            sites,
            depends,
            conflicts,
            min_runtime,
        })
        .map_err(|e| e.to_string())
        .and_then(|spec| command::build(&spec, &output)),
        BundleCommand::Sign { file, key } => command::sign(&file, &key),
        BundleCommand::Verify { file, gateway } => {
            command::verify(&file, &gateway.config_dir, &gateway.state_dir)
        }
        BundleCommand::Inspect { file, gateway } => {
            command::inspect(&file, &gateway.config_dir, &gateway.state_dir)
        }
        BundleCommand::Revoke {
            name,
            revoked,
            key,
            track,
            reason,
            output,
        } => revocation(&name, &revoked, &track, reason)
            .map_err(|e| e.to_string())
            .and_then(|r| command::revoke(&r, &key, &output)),
    };
    match done {
        Ok(text) => {
            outln!("{}", text.trim_end())?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("tandem: {e}");
            Ok(ExitCode::from(INVALID))
        }
    }
}

/// The arguments of `tandem bundle build`, as given.
struct BundleArgs {
    graph: PathBuf,
    extra_graphs: Vec<PathBuf>,
    binary: Option<PathBuf>,
    name: String,
    version: String,
    track: String,
    expires: Option<String>,
    expires_in: String,
    hardware: Vec<String>,
    sites: Vec<String>,
    depends: Vec<String>,
    conflicts: Vec<String>,
    min_runtime: Option<String>,
}

/// An argument of `tandem bundle build` or `revoke` that is not valid.
#[derive(Debug, thiserror::Error)]
enum ArgError {
    /// Not a bundle or track name.
    #[error("`{text}` is not a {what} name; use a-z, 0-9, `.`, `_` and `-`")]
    Name {
        /// `bundle` or `track`.
        what: &'static str,
        /// As given.
        text: String,
    },
    /// Not a semantic version.
    #[error("{what} `{text}` is not a semantic version; use e.g. 1.2.0")]
    Version {
        /// Which argument.
        what: &'static str,
        /// As given.
        text: String,
    },
    /// `--expires` is not an RFC 3339 UTC time.
    #[error("--expires `{0}` is not a UTC time such as 2027-01-31T00:00:00Z")]
    Expires(String),
    /// `--expires-in` is neither days nor a duration.
    #[error("--expires-in `{0}` is not a duration; use days such as 90d, or e.g. 12h, 30m")]
    ExpiresIn(String),
    /// A `--depends` or `--conflicts` that does not parse.
    #[error(
        "`{0}` is not a constraint; use a bundle name and an optional requirement such as `battery-graph >= 2.14`"
    )]
    Constraint(String),
}

fn bundle_name(what: &'static str, text: &str) -> Result<Name, ArgError> {
    Name::parse(text).ok_or_else(|| ArgError::Name {
        what,
        text: text.to_owned(),
    })
}

fn semver_arg(what: &'static str, text: &str) -> Result<semver::Version, ArgError> {
    semver::Version::parse(text).map_err(|_| ArgError::Version {
        what,
        text: text.to_owned(),
    })
}

fn bundle_spec(a: BundleArgs) -> Result<BuildSpec, ArgError> {
    use tandem::bundle::manifest::Constraint;
    use tandem::bundle::UnixTime;
    let expires = match &a.expires {
        Some(at) => UnixTime::parse_rfc3339(at).ok_or_else(|| ArgError::Expires(at.clone()))?,
        None => {
            let secs = match a.expires_in.strip_suffix('d').map(str::parse::<u64>) {
                Some(Ok(days)) => days.saturating_mul(86_400),
                _ => duration_arg(&a.expires_in)
                    .map_err(|_| ArgError::ExpiresIn(a.expires_in.clone()))?
                    .as_secs(),
            };
            // The wall clock, read once for this build.
            UnixTime::now().plus(secs)
        }
    };
    let constraints = |list: &[String]| {
        list.iter()
            .map(|c| Constraint::parse(c).ok_or_else(|| ArgError::Constraint(c.clone())))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok(BuildSpec {
        name: bundle_name("bundle", &a.name)?,
        version: semver_arg("--version", &a.version)?,
        track: bundle_name("track", &a.track)?,
        expires,
        hardware: a.hardware,
        sites: a.sites,
        min_runtime: a
            .min_runtime
            .as_deref()
            .map(|v| semver_arg("--min-runtime", v))
            .transpose()?,
        depends: constraints(&a.depends)?,
        conflicts: constraints(&a.conflicts)?,
        graph: a.graph,
        extra_graphs: a.extra_graphs,
        binary: a.binary,
    })
}

fn revocation(
    name: &str,
    version: &str,
    track: &str,
    reason: String,
) -> Result<Revocation, ArgError> {
    Ok(Revocation {
        name: bundle_name("bundle", name)?,
        version: semver_arg("the version", version)?,
        track: bundle_name("track", track)?,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `tandem bundle build` says of arguments `change` makes from valid ones.
    fn refusal(change: fn(&mut BundleArgs)) -> Option<String> {
        let mut args = BundleArgs {
            graph: "home.toml".into(),
            extra_graphs: Vec::new(),
            binary: None,
            name: "battery-graph".into(),
            version: "1.2.0".into(),
            track: "stable".into(),
            expires: None,
            expires_in: "90d".into(),
            hardware: vec!["*".into()],
            sites: vec!["*".into()],
            depends: Vec::new(),
            conflicts: Vec::new(),
            min_runtime: None,
        };
        change(&mut args);
        bundle_spec(args).err().map(|e| e.to_string())
    }

    #[test]
    fn build_arguments_that_are_not_valid_say_what_would_be() {
        assert_eq!(refusal(|_| {}), None);
        assert_eq!(refusal(|a| a.expires_in = "36h".into()), None);
        assert_eq!(
            refusal(|a| a.name = "Battery Graph".into()).as_deref(),
            Some("`Battery Graph` is not a bundle name; use a-z, 0-9, `.`, `_` and `-`")
        );
        assert_eq!(
            refusal(|a| a.version = "two".into()).as_deref(),
            Some("--version `two` is not a semantic version; use e.g. 1.2.0")
        );
        assert_eq!(
            refusal(|a| a.expires_in = "soon".into()).as_deref(),
            Some("--expires-in `soon` is not a duration; use days such as 90d, or e.g. 12h, 30m")
        );
        assert_eq!(
            refusal(|a| a.expires = Some("tomorrow".into())).as_deref(),
            Some("--expires `tomorrow` is not a UTC time such as 2027-01-31T00:00:00Z")
        );
        let said = refusal(|a| a.depends = vec![">= 2".into()]);
        assert!(
            said.as_deref()
                .is_some_and(|s| s.starts_with("`>= 2` is not a constraint; use a bundle name")),
            "{said:?}"
        );
    }

    #[test]
    fn a_revocation_names_a_bundle_and_a_version() {
        assert!(revocation("home", "1.2.0", "stable", String::new()).is_ok());
        let said = revocation("home", "latest", "stable", String::new()).map_err(|e| e.to_string());
        assert_eq!(
            said.err().as_deref(),
            Some("the version `latest` is not a semantic version; use e.g. 1.2.0")
        );
    }
}
