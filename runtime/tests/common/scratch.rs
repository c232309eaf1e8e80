//! What every process test needs: a directory of its own, and a bounded
//! wait on an event.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Between two looks at what is awaited.
const POLL: Duration = Duration::from_millis(10);

/// A directory of its own under the system temp dir (`tandem-NAME-PID`),
/// made empty; removed at the end unless the test failed, so that what it
/// left can be read.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("tandem-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
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
