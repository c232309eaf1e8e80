//! What only the agent's user may read or change: the state directory and
//! everything in it (the control socket, keys, certificates, checkpoints)
//! are created with explicit modes, 0700 for directories and 0600 for files,
//! whatever the umask; and executables the agent is asked to run must be
//! owned by root or the agent's user and writable by no one else.

use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt,
};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Mode of directories in the state directory.
pub const DIR_MODE: u32 = 0o700;
/// Mode of files in the state directory.
pub const FILE_MODE: u32 = 0o600;

/// Creates `dir` and its missing parents with mode 0700. An existing
/// directory of ours that others may read or write is narrowed to 0700,
/// unless it is a shared sticky directory such as `/tmp`.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    let meta = std::fs::metadata(dir)?;
    let mode = meta.mode();
    let sticky = mode & 0o1000 != 0;
    if mode & 0o077 != 0 && !sticky && meta.uid() == effective_uid() {
        std::fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))?;
    }
    Ok(())
}

/// Options that create a file with mode 0600 (narrower under a umask that
/// asks for it, never wider).
pub fn file_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// Replaces `path` with `contents` atomically and durably: a temporary file
/// (mode 0600) written and synced, renamed over `path`, and the directory
/// synced, so that a crash leaves the old contents or the new, never a mix.
/// Each call writes a temporary file of its own (named for the process and
/// the call), so that writers of the same path at once (two rollouts of one
/// bundle) never write into or rename each other's; the last rename wins.
/// The first write of a path in a process also removes the temporary files
/// of that path left by processes that died while writing it.
pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    static SWEPT: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    {
        let mut swept = SWEPT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !swept.iter().any(|p| p == path) {
            swept.push(path.to_path_buf());
            remove_dead_writers_temps(path);
        }
    }
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{}-{call}.tmp", std::process::id()));
    let temp = path.with_file_name(name);
    let mut file = file_options().write(true).create_new(true).open(&temp)?;
    let written = file
        .write_all(contents)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&temp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written?;
    std::fs::File::open(dir_of(path))?.sync_all()?;
    Ok(())
}

/// The directory `path` is in: `.` for a bare file name (whose parent is
/// the empty path, which opens as nothing).
fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Removes `<name>.<pid>-<n>.tmp` beside `path` (what [`write_atomically`]
/// writes before its rename) for each pid that is not a running process:
/// a writer that died between the two. A running writer's are left alone,
/// and so are files of any other shape.
fn remove_dead_writers_temps(path: &Path) {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir_of(path)) else {
        return;
    };
    // Digits as `format!` writes a number: no sign, no leading zero.
    let number = |n: &str| {
        !n.is_empty() && (n == "0" || !n.starts_with('0')) && n.bytes().all(|b| b.is_ascii_digit())
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let pid = file
            .to_str()
            .and_then(|f| {
                f.strip_prefix(name)?
                    .strip_prefix('.')?
                    .strip_suffix(".tmp")
            })
            .and_then(|rest| rest.split_once('-'))
            .filter(|&(pid, call)| number(pid) && number(call))
            .and_then(|(pid, _)| pid.parse::<libc::pid_t>().ok())
            .filter(|&pid| pid > 0);
        if pid.is_some_and(|pid| !is_running(pid)) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// True when a process `pid` exists (whoever owns it).
fn is_running(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks that the process exists; nothing is sent.
    let sent = unsafe { libc::kill(pid, 0) };
    sent == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Opens `path` for reading if it is a regular file; `Ok(None)` when it is
/// something else. A FIFO or device is never waited on (it is opened
/// without blocking, and its type read from the open handle, so nothing can
/// swap it in between).
pub fn open_regular(path: &Path) -> io::Result<Option<std::fs::File>> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    Ok(file.metadata()?.is_file().then_some(file))
}

/// Narrows `path` (a socket, or a file made by a library) to mode 0600.
pub fn restrict(path: &Path) -> io::Result<()> {
    std::fs::set_permissions(path, Permissions::from_mode(FILE_MODE))
}

/// The user the process runs as.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// True when a peer running as `uid` may control this process: the same
/// user, or root.
pub fn may_control(uid: u32) -> bool {
    uid == 0 || uid == effective_uid()
}

/// Why an executable is not trusted to run as an instance.
#[derive(Debug, Error)]
pub enum ExecutableError {
    /// It does not exist or cannot be examined.
    #[error("`{path}`: cannot examine it: {source}")]
    Unreadable {
        /// As given.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// It is a directory, a FIFO, a device or a socket.
    #[error("`{path}` is not a regular file; name an executable file")]
    NotAFile {
        /// Where it resolves to.
        path: PathBuf,
    },
    /// No one may execute it.
    #[error("`{path}` is not executable (mode {mode:o}); `chmod 755` it")]
    NotExecutable {
        /// Where it resolves to.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Owned by a user other than root or the agent's.
    #[error(
        "`{path}` is owned by uid {owner}; the agent runs only executables owned by root \
         or by its own user (uid {agent})"
    )]
    Owner {
        /// Where it resolves to.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The agent's user.
        agent: u32,
    },
    /// Others could change it, or replace it in its directory.
    #[error(
        "`{path}` is writable by users other than its owner (mode {mode:o}); \
         the agent runs only executables that no one else can change (`chmod go-w` it)"
    )]
    Writable {
        /// The file or directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
}

/// Checks that `program` may be run by the agent: a regular, executable
/// file owned by root or the agent's user, that neither it nor its directory
/// can be changed by anyone else (a sticky directory protects its entries).
/// Returns the resolved path, which is what must be run.
pub fn trusted_executable(program: &Path) -> Result<PathBuf, ExecutableError> {
    let unreadable = |source| ExecutableError::Unreadable {
        path: program.to_path_buf(),
        source,
    };
    let path = std::fs::canonicalize(program).map_err(unreadable)?;
    let meta = std::fs::metadata(&path).map_err(unreadable)?;
    if !meta.is_file() {
        return Err(ExecutableError::NotAFile { path });
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o111 == 0 {
        return Err(ExecutableError::NotExecutable { path, mode });
    }
    let agent = effective_uid();
    if meta.uid() != 0 && meta.uid() != agent {
        return Err(ExecutableError::Owner {
            path,
            owner: meta.uid(),
            agent,
        });
    }
    if mode & 0o022 != 0 {
        return Err(ExecutableError::Writable { path, mode });
    }
    if let Some(dir) = path.parent() {
        let meta = std::fs::metadata(dir).map_err(unreadable)?;
        let mode = meta.mode() & 0o7777;
        let sticky = mode & 0o1000 != 0;
        if mode & 0o022 != 0 && !sticky {
            return Err(ExecutableError::Writable {
                path: dir.to_path_buf(),
                mode,
            });
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tandem-private-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn writers_of_one_path_at_once_all_succeed_and_leave_one_whole_file() {
        let dir = temp("atomic");
        create_dir(&dir).unwrap();
        let path = dir.join("kept.bundle");
        let contents: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 256 << 10]).collect();
        std::thread::scope(|s| {
            for c in &contents {
                let path = &path;
                s.spawn(move || write_atomically(path, c).unwrap());
            }
        });
        let kept = std::fs::read(&path).unwrap();
        assert!(contents.contains(&kept), "a mix of two writes");
        let names: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["kept.bundle"], "no temporary file left behind");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_dead_writers_temporary_file_goes_at_the_next_write_and_a_live_ones_stays() {
        let dir = temp("leftovers");
        create_dir(&dir).unwrap();
        let path = dir.join("status.json");
        // A pid no process has: past the largest the kernel hands out.
        let max: i64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let dead = format!("status.json.{}-3.tmp", max + 1);
        // Init's: running, whoever owns it.
        let live = "status.json.1-7.tmp".to_owned();
        let others = [
            "status.json.tmp",
            "other.json.1-1.tmp",
            "status.json.x-1.tmp",
            "status.json.+99999999-1.tmp",
            "status.json.099999999-1.tmp",
        ];
        for name in others.iter().copied().chain([dead.as_str(), live.as_str()]) {
            std::fs::write(dir.join(name), b"half").unwrap();
        }
        write_atomically(&path, b"{}").unwrap();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        let mut kept: Vec<String> = others
            .iter()
            .map(|s| s.to_string())
            .chain([live, "status.json".to_owned()])
            .collect();
        kept.sort();
        assert_eq!(names, kept);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_bare_file_name_is_in_the_working_directory() {
        assert_eq!(dir_of(Path::new("home-1.2.0.bundle")), Path::new("."));
        assert_eq!(dir_of(Path::new("out/home.bundle")), Path::new("out"));
        assert_eq!(dir_of(Path::new("/home.bundle")), Path::new("/"));
    }

    #[test]
    fn directories_are_private_whatever_was_there() {
        let dir = temp("dirs");
        create_dir(&dir.join("a/b")).unwrap();
        for d in [dir.join("a"), dir.join("a/b")] {
            assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        }
        std::fs::set_permissions(dir.join("a"), Permissions::from_mode(0o777)).unwrap();
        create_dir(&dir.join("a")).unwrap();
        assert_eq!(
            std::fs::metadata(dir.join("a")).unwrap().mode() & 0o777,
            0o700
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn executables_others_can_change_are_refused() {
        let dir = temp("exe");
        create_dir(&dir).unwrap();
        let exe = dir.join("tool");
        std::fs::write(&exe, b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&exe, Permissions::from_mode(0o755)).unwrap();
        assert_eq!(
            trusted_executable(&exe).unwrap(),
            exe.canonicalize().unwrap()
        );

        std::fs::set_permissions(&exe, Permissions::from_mode(0o757)).unwrap();
        let e = trusted_executable(&exe).unwrap_err().to_string();
        assert!(e.contains("writable by users other than its owner"), "{e}");

        std::fs::set_permissions(&exe, Permissions::from_mode(0o644)).unwrap();
        let e = trusted_executable(&exe).unwrap_err().to_string();
        assert!(e.contains("not executable"), "{e}");

        std::fs::set_permissions(&exe, Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&dir, Permissions::from_mode(0o777)).unwrap();
        let e = trusted_executable(&exe).unwrap_err().to_string();
        assert!(e.contains(&dir.display().to_string()), "{e}");

        std::fs::set_permissions(&dir, Permissions::from_mode(0o700)).unwrap();
        let e = trusted_executable(&dir).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
