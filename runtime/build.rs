//! Stamps the git commit this is built from into the build (shown by
//! `tandem_build_info` and `tandem top`), when it is built in a git work
//! tree with git installed; otherwise the commit shows as unknown.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    out.status.success().then(|| text.trim().to_owned())
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) else {
        return;
    };
    // Built again when the commit moves: HEAD, the branch it names, and
    // the packed refs (only those that exist: a missing one would rebuild
    // every time).
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        let path = Path::new(&dir).join(name);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    if let Some(commit) = git(&["rev-parse", "--short=12", "HEAD"]) {
        println!("cargo:rustc-env=TANDEM_GIT_COMMIT={commit}");
    }
}
