//! Every refusal of a gateway, each with the message a user sees, and
//! nothing changed on disk after it: no floor raised, nothing unpacked.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Cursor;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use semver::Version;
use sha2::{Digest as _, Sha256};

use super::archive::{self, StatementKind};
use super::floor::Floor;
use super::install::{Gateway, InstallError, Prepared};
use super::manifest::{
    Compression, Constraint, KindDecl, Manifest, MigrationId, Payload, PayloadPath,
};
use super::revocation::Revocation;
use super::sign::{self, SecretKey, SignatureEntry, Statement};
use super::time::UnixTime;

/// 2026-01-01.
const NOW: UnixTime = UnixTime(1_767_225_600);

const GRAPH: &str = r#"[graph]
name = "up"

[sources.gen]
kind = "synthetic"
channels = ["power"]
rate = 100
shape = "constant"
amplitude = 1000.0

[vertices.calib]
kind = "scale"
inputs = ["gen.power"]
factor = 1.0

[vertices.energy]
kind = "integrate"
version = 2
inputs = ["calib"]

[sinks.out]
kind = "count"
inputs = ["energy"]
"#;

fn key(n: u8) -> SecretKey {
    SecretKey::from_seed(&[n; 32])
}

/// A gateway in a fresh directory: track `stable` trusts keys 1, 2, 3
/// and requires 2; it is hardware `gw-3` at site `site-7`.
struct Site {
    root: PathBuf,
    gateway: Gateway,
}

impl Site {
    fn new(name: &str) -> Site {
        let root =
            std::env::temp_dir().join(format!("tandem-bundle-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let config = root.join("config");
        std::fs::create_dir_all(config.join("keys/stable")).unwrap();
        std::fs::write(
            config.join("tracks.toml"),
            "[tracks.stable]\nthreshold = 2\n",
        )
        .unwrap();
        for n in 1..=3 {
            std::fs::write(
                config.join(format!("keys/stable/k{n}.pub")),
                key(n).public().to_text(""),
            )
            .unwrap();
        }
        std::fs::write(
            config.join("gateway.toml"),
            "hardware = \"gw-3\"\nsite = \"site-7\"\n",
        )
        .unwrap();
        let gateway = Gateway::new(root.join("state/bundles"), config);
        Site { root, gateway }
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.root.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// What `DIR/bundles` holds (nothing unpacked, no floor).
    fn bundles_dir(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.gateway.bundles_dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Installs `bytes` as a file: the refusal's message, after checking
    /// that nothing was left behind.
    fn refused(&self, bytes: &[u8]) -> String {
        let before = self.bundles_dir();
        let floor = Floor::load(&self.gateway.floor_file()).unwrap();
        let path = self.file("b.bundle", bytes);
        let e = match self.gateway.prepare(&path, NOW) {
            Ok(_) => panic!("accepted"),
            Err(e) => e,
        };
        assert_eq!(
            self.bundles_dir(),
            before,
            "a refusal left files behind: {e}"
        );
        assert_eq!(Floor::load(&self.gateway.floor_file()).unwrap(), floor);
        let text = e.to_string();
        let prefix = format!("{} is refused: ", path.display());
        text.strip_prefix(&prefix)
            .map_or(text.clone(), str::to_owned)
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

fn graph_payload() -> Payload {
    Payload {
        path: PayloadPath::parse("graph/up.toml").unwrap(),
        sha256: Sha256::digest(GRAPH.as_bytes()).into(),
        size: GRAPH.len() as u64,
        compression: Compression::None,
        stored_size: GRAPH.len() as u64,
        stored_sha256: None,
    }
}

/// A manifest of `GRAPH` as `up` 1.2.0 on track stable, for any gateway.
fn manifest() -> Manifest {
    let mut m = super::manifest::tests_support::sample();
    m.name = super::manifest::Name::parse("up").unwrap();
    m.depends.clear();
    m.conflicts.clear();
    m.compatible.hardware = vec!["*".into()];
    m.compatible.sites = vec!["*".into()];
    m.graph = graph_payload().path;
    m.payloads = vec![graph_payload()];
    m.kinds = vec![
        KindDecl {
            name: "integrate".into(),
            version: 2,
            state_schema: Some(1016),
        },
        KindDecl {
            name: "scale".into(),
            version: 1,
            state_schema: None,
        },
    ];
    m
}

/// An archive of `statement` with `signatures` and the graph payload.
fn archive_of(kind: StatementKind, statement: &[u8], signatures: &[SignatureEntry]) -> Vec<u8> {
    let payloads: Vec<(String, &[u8])> = match kind {
        StatementKind::Manifest => vec![("graph/up.toml".into(), GRAPH.as_bytes())],
        StatementKind::Revocation => Vec::new(),
    };
    let mut iter = payloads.into_iter().map(|(p, b)| {
        Ok::<_, std::io::Error>((p, b.len() as u64, Box::new(b) as Box<dyn std::io::Read>))
    });
    archive::write(
        Vec::new(),
        kind,
        statement,
        &sign::signatures_to_bytes(signatures),
        &mut iter,
    )
    .unwrap()
}

/// The bundle of manifest `m`, signed by `keys`.
fn signed(m: &Manifest, keys: &[u8]) -> Vec<u8> {
    let statement = m.to_bytes();
    let sigs: Vec<SignatureEntry> = keys
        .iter()
        .map(|&k| key(k).sign(Statement::Manifest, &statement))
        .collect();
    archive_of(StatementKind::Manifest, &statement, &sigs)
}

#[test]
fn a_good_bundle_is_unpacked_into_staging_and_committed() {
    let site = Site::new("good");
    let path = site.file("good.bundle", &signed(&manifest(), &[1, 2]));
    let Prepared::Bundle(mut unpacked) = site.gateway.prepare(&path, NOW).unwrap() else {
        panic!("not a bundle")
    };
    assert_eq!(unpacked.manifest.id(), "up 1.2.0");
    assert_eq!(unpacked.loaded.name, "up");
    unpacked.commit().unwrap();
    let graph = unpacked.graph_file();
    assert_eq!(std::fs::read_to_string(&graph).unwrap(), GRAPH);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&graph), 0o600);
    assert_eq!(mode(unpacked.dir()), 0o700);
    assert_eq!(site.bundles_dir(), vec!["up-1.2.0"]);
}

#[test]
fn an_unsigned_bundle_is_refused() {
    let site = Site::new("unsigned");
    assert_eq!(
        site.refused(&signed(&manifest(), &[])),
        "it is unsigned; track `stable` requires 2 signature(s) of distinct trusted keys (`tandem bundle sign`)"
    );
}

#[test]
fn a_bundle_signed_by_an_unknown_key_is_refused() {
    let site = Site::new("unknown-key");
    let stranger = key(9).public().id();
    assert_eq!(
        site.refused(&signed(&manifest(), &[9])),
        format!(
            "it is signed by key {stranger}, which track `stable` does not trust; it requires 2 signature(s) of its keys ({}, {}, {})",
            key(1).public().id(),
            key(2).public().id(),
            key(3).public().id()
        )
    );
}

#[test]
fn k_minus_one_of_k_signatures_is_refused() {
    let site = Site::new("k-1");
    let msg = site.refused(&signed(&manifest(), &[1, 9]));
    assert_eq!(
        msg,
        format!(
            "track `stable` requires 2 signatures of distinct trusted keys; it has 1 ({}); not trusted: {}",
            key(1).public().id(),
            key(9).public().id()
        )
    );
}

#[test]
fn the_same_key_counted_twice_is_refused() {
    let site = Site::new("twice");
    let m = manifest();
    let s = key(1).sign(Statement::Manifest, &m.to_bytes());
    let bytes = archive_of(StatementKind::Manifest, &m.to_bytes(), &[s, s]);
    assert_eq!(
        site.refused(&bytes),
        format!(
            "key {} signed it twice; each key counts once, and track `stable` requires 2 distinct keys",
            key(1).public().id()
        )
    );
}

#[test]
fn a_flipped_byte_in_a_payload_or_the_manifest_is_refused() {
    let site = Site::new("flipped");
    let good = signed(&manifest(), &[1, 2]);
    let at = good.windows(12).position(|w| w == b"[vertices.ca").unwrap();
    let mut bad = good.clone();
    bad[at] ^= 0x20;
    assert_eq!(
        site.refused(&bad),
        "payload `graph/up.toml` does not match its sha256 in the manifest: the bundle was changed after it was signed"
    );
    let at = good.windows(8).position(|w| w == b"\"stable\"").unwrap();
    let mut bad = good.clone();
    bad[at + 1] = b'S';
    assert!(site
        .refused(&bad)
        .starts_with("manifest field `track` is `Stable`"));
    let at = good.windows(7).position(|w| w == b"\"1.2.0\"").unwrap();
    let mut bad = good;
    bad[at + 1] = b'9';
    assert_eq!(
        site.refused(&bad),
        format!(
            "the signature of key {} does not verify: the bundle was changed after it was signed",
            key(1).public().id()
        )
    );
}

#[test]
fn a_truncated_bundle_is_refused() {
    let site = Site::new("truncated");
    let good = signed(&manifest(), &[1, 2]);
    assert_eq!(
        site.refused(&good[..good.len() - 1]),
        "it ends early (inside the end marker): the file is truncated"
    );
    assert_eq!(
        site.refused(&good[..good.len() - 1024]),
        "it ends early (after entry `graph/up.toml`): the file is truncated"
    );
    let inside = good.windows(7).position(|w| w == b"[graph]").unwrap() + 10;
    assert_eq!(
        site.refused(&good[..inside]),
        "it ends early (inside entry `graph/up.toml`): the file is truncated"
    );
}

#[test]
fn an_oversize_bundle_is_refused_before_it_is_read() {
    let mut site = Site::new("oversize");
    site.gateway.max_bytes = 2048;
    let good = signed(&manifest(), &[1, 2]);
    assert_eq!(
        site.refused(&good),
        format!(
            "it is {} bytes; a bundle may be at most 2048 bytes",
            good.len()
        )
    );
}

#[test]
fn an_older_or_equal_version_is_refused() {
    let site = Site::new("older");
    Floor::default()
        .raised("up", &Version::new(1, 2, 0))
        .save(&site.gateway.floor_file())
        .unwrap();
    assert_eq!(
        site.refused(&signed(&manifest(), &[1, 2])),
        "up 1.2.0 is not newer than 1.2.0, which this gateway installed (anti-rollback); only a version above 1.2.0 is accepted"
    );
    let mut older = manifest();
    older.version = Version::new(1, 1, 9);
    assert!(site
        .refused(&signed(&older, &[1, 2]))
        .starts_with("up 1.1.9 is not newer than 1.2.0"));
}

#[test]
fn an_expired_bundle_is_refused() {
    let site = Site::new("expired");
    let mut m = manifest();
    m.expires = UnixTime(NOW.0 - 1);
    assert_eq!(
        site.refused(&signed(&m, &[1, 2])),
        "it expired at 2025-12-31T23:59:59Z (it is 2026-01-01T00:00:00Z now); ask for a bundle signed with a later expiry"
    );
}

#[test]
fn a_bundle_for_another_gateway_is_refused() {
    let site = Site::new("compat");
    let mut m = manifest();
    m.compatible.hardware = vec!["gw-4".into()];
    assert_eq!(
        site.refused(&signed(&m, &[1, 2])),
        "it is for hardware gw-4; this gateway's hardware is gw-3"
    );
    let mut m = manifest();
    m.compatible.sites = vec!["site-8".into(), "site-9".into()];
    assert_eq!(
        site.refused(&signed(&m, &[1, 2])),
        "it is for site site-8, site-9; this gateway's site is site-7"
    );
}

#[test]
fn unsatisfiable_constraints_are_refused() {
    let site = Site::new("constraints");
    let mut m = manifest();
    m.depends = vec![Constraint::parse("battery-graph >= 2.14").unwrap()];
    assert_eq!(
        site.refused(&signed(&m, &[1, 2])),
        "it depends on battery-graph >=2.14, but this gateway has no battery-graph"
    );
    Floor::default()
        .raised("legacy", &Version::new(1, 0, 0))
        .save(&site.gateway.floor_file())
        .unwrap();
    let mut m = manifest();
    m.conflicts = vec![Constraint::parse("legacy").unwrap()];
    assert_eq!(
        site.refused(&signed(&m, &[1, 2])),
        "it conflicts with legacy, and this gateway has legacy 1.0.0 installed"
    );
    let mut m = manifest();
    m.min_runtime = Some(Version::new(99, 0, 0));
    assert!(site
        .refused(&signed(&m, &[1, 2]))
        .starts_with("it needs tandem runtime 99.0.0 or newer; this gateway runs"));
}

#[test]
fn an_unknown_migration_is_refused() {
    let site = Site::new("migration");
    let mut m = manifest();
    m.migrations = vec![MigrationId::parse("integrate:1016->2000").unwrap()];
    assert_eq!(
        site.refused(&signed(&m, &[1, 2])),
        format!(
            "it needs migration integrate:1016->2000, which this runtime ({}) does not have; it has integrate:1006->1016",
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[test]
fn a_graph_using_an_undeclared_kind_is_refused() {
    let site = Site::new("undeclared");
    let mut m = manifest();
    m.kinds.retain(|k| k.name != "scale");
    assert_eq!(
        site.refused(&signed(&m, &[1, 2])),
        "its graph uses scale v1 (vertex `calib`), which its manifest does not declare"
    );
}

/// A raw tar of the good manifest and signatures, then `entry` made by `edit`.
fn with_entry(edit: impl FnOnce(&mut tar::Header), data: &[u8]) -> Vec<u8> {
    let m = manifest();
    let statement = m.to_bytes();
    let sigs = [1u8, 2].map(|k| key(k).sign(Statement::Manifest, &statement));
    let mut out = Vec::new();
    {
        let mut b = tar::Builder::new(&mut out);
        let h = archive::canonical_header("MANIFEST.toml", statement.len() as u64).unwrap();
        b.append(&h, statement.as_slice()).unwrap();
        let sig_bytes = sign::signatures_to_bytes(&sigs);
        let h = archive::canonical_header("SIGNATURES.toml", sig_bytes.len() as u64).unwrap();
        b.append(&h, sig_bytes.as_slice()).unwrap();
        let mut h = archive::canonical_header("graph/up.toml", data.len() as u64).unwrap();
        edit(&mut h);
        h.set_cksum();
        b.append(&h, data).unwrap();
        b.finish().unwrap();
    }
    out
}

fn set_name(h: &mut tar::Header, name: &[u8]) {
    let field = &mut h.as_old_mut().name;
    field.fill(0);
    field[..name.len()].copy_from_slice(name);
}

#[test]
fn tar_entries_that_escape_or_link_are_refused() {
    let site = Site::new("tar");
    assert_eq!(
        site.refused(&with_entry(|h| set_name(h, b"../../etc/cron.d/x"), b"x")),
        "entry `../../etc/cron.d/x` contains `..`; payload paths are relative and stay inside the bundle"
    );
    assert_eq!(
        site.refused(&with_entry(|h| set_name(h, b"/etc/passwd"), b"x")),
        "entry `/etc/passwd` is absolute; payload paths are relative and stay inside the bundle"
    );
    assert_eq!(
        site.refused(&with_entry(
            |h| {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_link_name("/etc/shadow").unwrap();
                h.set_size(0);
            },
            b""
        )),
        "entry `graph/up.toml` is a link; a bundle holds regular files only"
    );
    assert_eq!(
        site.refused(&with_entry(|h| h.set_entry_type(tar::EntryType::Link), b"")),
        "entry `graph/up.toml` is a link; a bundle holds regular files only"
    );
    assert_eq!(
        site.refused(&with_entry(|h| h.set_entry_type(tar::EntryType::Char), b"")),
        "entry `graph/up.toml` is a device; a bundle holds regular files only"
    );
    assert_eq!(
        site.refused(&with_entry(|h| set_name(h, b"graph/other.toml"), GRAPH.as_bytes())),
        "entry `graph/other.toml` is not listed in the manifest; a bundle carries exactly its manifest's payloads"
    );
    assert_eq!(
        site.refused(&with_entry(|h| h.set_mtime(12345), GRAPH.as_bytes())),
        "the header or padding of entry `graph/up.toml` is not as `tandem bundle` writes it: the file was changed"
    );
    // The good one, for contrast.
    let good = with_entry(|_| {}, GRAPH.as_bytes());
    let path = site.file("ok.bundle", &good);
    assert!(site.gateway.prepare(&path, NOW).is_ok());
}

#[test]
fn a_zstd_bomb_is_cut_off_at_the_declared_size() {
    let site = Site::new("bomb");
    let huge = vec![b'a'; 8 << 20];
    let packed = zstd::bulk::compress(&huge, 3).unwrap();
    let mut m = manifest();
    m.payloads = vec![
        graph_payload(),
        Payload {
            path: PayloadPath::parse("data/x").unwrap(),
            sha256: [0; 32],
            size: 1000,
            compression: Compression::Zstd,
            stored_size: packed.len() as u64,
            stored_sha256: Some(Sha256::digest(&packed).into()),
        },
    ];
    let statement = m.to_bytes();
    let sigs = [1u8, 2].map(|k| key(k).sign(Statement::Manifest, &statement));
    let entries: Vec<(String, Vec<u8>)> = vec![
        ("graph/up.toml".into(), GRAPH.as_bytes().to_vec()),
        ("data/x".into(), packed),
    ];
    let mut iter = entries.iter().map(|(p, b)| {
        Ok::<_, std::io::Error>((
            p.clone(),
            b.len() as u64,
            Box::new(b.as_slice()) as Box<dyn std::io::Read>,
        ))
    });
    let bytes = archive::write(
        Vec::new(),
        StatementKind::Manifest,
        &statement,
        &sign::signatures_to_bytes(&sigs),
        &mut iter,
    )
    .unwrap();
    assert_eq!(
        site.refused(&bytes),
        "payload `data/x` unpacks to 1001 bytes; the manifest says 1000"
    );
}

#[test]
fn revocations_need_k_of_n_and_revoked_versions_are_refused() {
    let site = Site::new("revoked");
    let r = Revocation {
        name: super::manifest::Name::parse("up").unwrap(),
        version: Version::new(1, 2, 0),
        track: super::manifest::Name::parse("stable").unwrap(),
        reason: "wrong calibration".into(),
    };
    let one = super::build::revocation(&r, &key(1)).unwrap();
    assert_eq!(
        site.refused(&one),
        format!(
            "track `stable` requires 2 signatures of distinct trusted keys; it has 1 ({})",
            key(1).public().id()
        )
    );
    let path = site.file("r.revocation", &one);
    super::build::sign_file(&path, &key(2)).unwrap();
    let Prepared::Revocation {
        revocation,
        signers,
    } = site.gateway.prepare(&path, NOW).unwrap()
    else {
        panic!("not a revocation")
    };
    assert_eq!(signers.len(), 2);
    // What the hub does with it.
    let mut installs = super::install::Installs::open(site.gateway.clone());
    installs.revoke(revocation).unwrap();
    assert_eq!(
        site.refused(&signed(&manifest(), &[1, 2])),
        "up 1.2.0 was revoked: wrong calibration; install another version"
    );
    // Another version is fine.
    let mut m = manifest();
    m.version = Version::new(1, 2, 1);
    let path = site.file("next.bundle", &signed(&m, &[1, 2]));
    assert!(site.gateway.prepare(&path, NOW).is_ok());
}

#[test]
fn a_revocation_never_writes_over_revocations_it_could_not_read() {
    let site = Site::new("revoked-damaged");
    let revocation = |version: u64| Revocation {
        name: super::manifest::Name::parse("up").unwrap(),
        version: Version::new(1, 2, version),
        track: super::manifest::Name::parse("stable").unwrap(),
        reason: String::new(),
    };
    let file = site.gateway.revoked_file();
    std::fs::create_dir_all(&site.gateway.bundles_dir).unwrap();
    super::revocation::save(&file, &[revocation(0)]).unwrap();
    let good = std::fs::read(&file).unwrap();
    // Damaged when the agent starts: it holds no revocations.
    std::fs::write(&file, b"{ damaged").unwrap();
    let mut installs = super::install::Installs::open(site.gateway.clone());
    // A revocation while it is damaged is refused, and nothing changes.
    let e = installs.revoke(revocation(1)).unwrap_err();
    assert!(e.to_string().contains("damaged"), "{e}");
    assert_eq!(std::fs::read(&file).unwrap(), b"{ damaged");
    // Repaired while the agent runs: the next one adds to it.
    std::fs::write(&file, &good).unwrap();
    installs.revoke(revocation(1)).unwrap();
    assert_eq!(
        super::revocation::load(&file).unwrap(),
        vec![revocation(0), revocation(1)]
    );
}

#[test]
fn staging_left_by_an_interrupted_install_is_removed_when_the_agent_starts() {
    let site = Site::new("leftover-staging");
    let bundles = &site.gateway.bundles_dir;
    std::fs::create_dir_all(bundles.join(".staging-4242-7/graphs")).unwrap();
    std::fs::write(bundles.join(".staging-4242-7/graphs/up.toml"), GRAPH).unwrap();
    std::fs::create_dir_all(bundles.join("up-1.2.0")).unwrap();
    let _installs = super::install::Installs::open(site.gateway.clone());
    assert_eq!(site.bundles_dir(), vec!["up-1.2.0".to_owned()]);
}

#[test]
fn a_gateway_without_trust_refuses_everything() {
    let site = Site::new("no-trust");
    std::fs::remove_file(site.gateway.config_dir.join("tracks.toml")).unwrap();
    let path = site.file("b.bundle", &signed(&manifest(), &[1, 2]));
    let e = site.gateway.prepare(&path, NOW).unwrap_err();
    assert!(matches!(e, InstallError::Config(_)), "{e}");
    assert!(
        e.to_string().contains("this gateway trusts no bundle keys"),
        "{e}"
    );
}

#[test]
fn signing_and_building_make_what_a_gateway_accepts() {
    let site = Site::new("build");
    let graph = site.file("up.toml", GRAPH.as_bytes());
    let spec = super::build::BuildSpec {
        name: super::manifest::Name::parse("up").unwrap(),
        version: Version::new(2, 0, 0),
        track: super::manifest::Name::parse("stable").unwrap(),
        expires: NOW.plus(3600),
        hardware: vec!["gw-3".into()],
        sites: vec!["*".into()],
        min_runtime: None,
        depends: Vec::new(),
        conflicts: Vec::new(),
        graph,
        extra_graphs: Vec::new(),
        binary: None,
    };
    let (m, bytes) = super::build::build(&spec).unwrap();
    assert_eq!(
        m.migrations,
        vec![MigrationId::parse("integrate:1006->1016").unwrap()]
    );
    let path = site.file("built.bundle", &bytes);
    for k in [1, 3] {
        super::build::sign_file(&path, &key(k)).unwrap();
    }
    // Signing again with the same key replaces its signature.
    let (_, count) = super::build::sign_file(&path, &key(3)).unwrap();
    assert_eq!(count, 2);
    site.gateway.check(&path, NOW).unwrap();
}

fn verify_bytes(bytes: &[u8]) -> Result<(), String> {
    let site_config = SITE.with(|s| s.clone());
    let (trust, identity) = site_config;
    let registry = tandem_nodes::registry();
    let runtime = super::policy::runtime_version();
    let floor = Floor::default();
    let gateway = super::policy::Gateway {
        now: NOW,
        identity: &identity,
        floor: &floor,
        revoked: &[],
        runtime: &runtime,
        registry: &registry,
    };
    super::verify::verify(
        &mut Cursor::new(bytes),
        archive::MAX_BUNDLE_BYTES,
        &trust,
        &gateway,
        &mut super::verify::discard,
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

thread_local! {
    static SITE: (super::trust::Trust, super::trust::Identity) = {
        let mut trust = super::trust::Trust::default();
        trust.tracks.insert("stable".into(), super::trust::Track {
            threshold: 2,
            keys: (1..=3).map(|n| key(n).public()).collect(),
        });
        (trust, super::trust::Identity::default())
    };
    /// A good bundle whose graph is stored with zstd (and one as it is).
    static GOOD: (Vec<u8>, Vec<u8>) = {
        let mut m = manifest();
        let packed = zstd::bulk::compress(GRAPH.as_bytes(), 9).unwrap();
        m.payloads[0].compression = Compression::Zstd;
        m.payloads[0].stored_size = packed.len() as u64;
        m.payloads[0].stored_sha256 = Some(Sha256::digest(&packed).into());
        let statement = m.to_bytes();
        let sigs = [1u8, 2].map(|k| key(k).sign(Statement::Manifest, &statement));
        let mut iter = std::iter::once(Ok::<_, std::io::Error>((
            "graph/up.toml".to_owned(),
            packed.len() as u64,
            Box::new(Cursor::new(packed.clone())) as Box<dyn std::io::Read>,
        )));
        let zstd = archive::write(
            Vec::new(),
            StatementKind::Manifest,
            &statement,
            &sign::signatures_to_bytes(&sigs),
            &mut iter,
        )
        .unwrap();
        (zstd, signed(&manifest(), &[1, 2]))
    };
}

#[test]
fn the_good_bundles_of_the_property_test_verify() {
    GOOD.with(|(zstd, plain)| {
        verify_bytes(zstd).unwrap();
        verify_bytes(plain).unwrap();
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_flipped_byte_is_refused(which in any::<bool>(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let bad = GOOD.with(|(zstd, plain)| {
            let mut bytes = if which { zstd.clone() } else { plain.clone() };
            let i = at.index(bytes.len());
            bytes[i] ^= 1 << bit;
            bytes
        });
        prop_assert!(verify_bytes(&bad).is_err());
    }

    #[test]
    fn any_truncation_is_refused(which in any::<bool>(), at in any::<prop::sample::Index>()) {
        let cut = GOOD.with(|(zstd, plain)| {
            let bytes = if which { zstd } else { plain };
            bytes[..at.index(bytes.len())].to_vec()
        });
        prop_assert!(verify_bytes(&cut).is_err());
    }
}
