//! A directory of a test's own, and a bounded wait on an event.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Between two looks at what is awaited.
pub const POLL: Duration = Duration::from_millis(10);

/// A directory of its own under the system temp dir (`tandem-NAME-PID`),
/// made empty; removed on drop unless the test failed, so that what it
/// left can be read.
#[derive(Debug)]
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("tandem-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("cannot make {}: {e}", dir.display()));
        Scratch(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// `NAME` inside it.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }

    /// The state directory agents started here use by default.
    pub fn state(&self) -> PathBuf {
        self.0.join("state")
    }

    /// Writes `text` to `NAME` inside it; its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// Waits up to `bound` for `probe` to give something; panics naming
/// `what`, with `context()` (a log, a status), when it does not.
pub fn wait_for<T>(
    what: &str,
    bound: Duration,
    context: impl Fn() -> String,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + bound;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "waited {bound:?} for {what}\n{}",
            context()
        );
        std::thread::sleep(POLL);
    }
}
