//! Binaries of earlier commits of this repository, for upgrade tests.
//!
//! `scripts/test.sh` builds them before the tests (`scripts/build-old.sh`,
//! sharing the workspace's cargo target dir so that dependencies compile
//! once); a test run some other way builds a missing one itself, in its
//! own target dir (`target/old/cargo`, minutes), never in the one whose
//! binaries other tests are running.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The last commit of Skein 0.1.0 (positional bincode, no versions).
pub const V0_1_0: &str = "0ffaab6";

/// The commit of the previous release, 0.2.0 (schema 1.0, the first with
/// versioned encodings): rolling upgrades start from there.
pub const PREVIOUS: &str = "4766277";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The `skein` binary of `commit`, built if missing.
///
/// # Panics
///
/// If the commit is not in this clone or does not build.
pub fn skein_at(commit: &str) -> PathBuf {
    let root = workspace();
    let bin = root.join("target/old").join(commit).join("skein");
    if bin.is_file() {
        return bin;
    }
    // One build at a time: two tests asking for the same commit wait.
    std::fs::create_dir_all(root.join("target/old")).expect("cannot create target/old");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join("target/old/.lock"))
        .expect("cannot open target/old/.lock");
    // SAFETY: flock on a descriptor we own; released when `lock` drops.
    // Blocking: the holder's build is bounded by its own timeout.
    unsafe {
        libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX);
    }
    if bin.is_file() {
        return bin;
    }
    eprintln!("skein-e2e: building skein at {commit} (scripts/build-old.sh); this takes minutes");
    let out = crate::run_with_timeout(
        Command::new(root.join("scripts/build-old.sh"))
            .arg(commit)
            .current_dir(&root),
        Duration::from_secs(1800),
    );
    assert!(
        out.success() && bin.is_file(),
        "cannot build skein at {commit}: {}\n{}",
        out.stdout,
        out.stderr
    );
    bin
}
