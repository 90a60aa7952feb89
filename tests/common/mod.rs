//! Helpers shared by the integration tests.
//!
//! Tests that need the shared reference data (`../shared`, or `$KDSEG_SHARED`) or the Python tools of
//! the set-up (`$KDSEG_PYTHON`, from `scripts/env.sh`) skip with a visible notice when those are
//! absent, as on a user's fresh clone; with `KDSEG_REQUIRE_ALL=1` (set by `.ci/run`) a missing
//! prerequisite fails the test instead.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn strict() -> bool {
    std::env::var("KDSEG_REQUIRE_ALL").is_ok_and(|v| v == "1")
}

/// Reports a missing prerequisite: panics in strict mode, otherwise prints a notice and returns so the
/// caller can skip.
pub fn missing(what: &str) {
    if strict() {
        panic!("KDSEG_REQUIRE_ALL=1 but {what}");
    }
    eprintln!("SKIPPED: {what}");
}

/// The shared data directory, or `None` (after a notice) when it is absent.
pub fn shared() -> Option<PathBuf> {
    let dir = std::env::var_os("KDSEG_SHARED").map(PathBuf::from).unwrap_or_else(|| repo().join("..").join("shared"));
    if dir.join("fixtures").is_dir() {
        Some(dir)
    } else {
        missing(&format!("shared data not found at {} (set KDSEG_SHARED)", dir.display()));
        None
    }
}

/// The set-up's Python (with rosbags, mcap, rclpy, numpy), or `None` after a notice.
pub fn python() -> Option<PathBuf> {
    match std::env::var_os("KDSEG_PYTHON").map(PathBuf::from) {
        Some(p) if p.exists() => Some(p),
        _ => {
            missing("KDSEG_PYTHON is not set (run `make setup` and `source scripts/env.sh`)");
            None
        }
    }
}

pub fn python_script(name: &str) -> PathBuf {
    repo().join("tests").join("python").join(name)
}

/// Runs a Python helper and returns its stdout, panicking with its stderr on failure.
pub fn run_python(python: &Path, script: &str, args: &[&str]) -> String {
    let out = Command::new(python).arg(python_script(script)).args(args).output().expect("start python");
    assert!(out.status.success(), "{script} {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8 output")
}

pub fn kdseg() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kdseg"));
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// Runs `kdseg args...`, asserting success, and returns stdout.
pub fn kdseg_ok(args: &[&str]) -> String {
    let out = kdseg().args(args).output().expect("start kdseg");
    assert!(out.status.success(), "kdseg {args:?} failed ({}):\n{}\n{}", out.status, String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Runs `kdseg args...`, asserting failure, and returns stderr.
pub fn kdseg_err(args: &[&str]) -> String {
    let out: Output = kdseg().args(args).output().expect("start kdseg");
    assert!(!out.status.success(), "kdseg {args:?} should have failed:\n{}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).to_string()
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("kdseg-test-").tempdir().expect("temp dir")
}

/// Extracts a `.tar.gz` into `dest`.
pub fn untar(archive: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    let status = Command::new("tar").arg("-xzf").arg(archive).arg("-C").arg(dest).status().expect("run tar");
    assert!(status.success(), "tar -xzf {}", archive.display());
}

pub fn approx(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + a.abs().max(b.abs()))
}
