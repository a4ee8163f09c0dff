//! The packages the tests install: the .deb and an upgrade of it, built once per test process
//! by packaging/build-deb.sh from the binary this test run built, each copied to a directory
//! of this process's own.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

use super::{BIN, MANIFEST, UPGRADE_VERSION};

/// The .deb and an upgrade of it (the same files, a later version), built once per test
/// process from the binary this test run built.
pub fn debs() -> &'static (PathBuf, PathBuf) {
    static DEBS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    DEBS.get_or_init(|| {
        let built = Path::new(MANIFEST).join("target/debug/virtmasq");
        assert_eq!(
            Path::new(BIN),
            built,
            "build-deb.sh packages target/debug/virtmasq; this test's binary is elsewhere"
        );
        sweep_stale_outputs();
        (build_deb(None), build_deb(Some(UPGRADE_VERSION)))
    })
}

pub fn deb() -> &'static Path {
    &debs().0
}

/// Removes the package copies of test processes that are gone.
fn sweep_stale_outputs() {
    let dir = Path::new(MANIFEST).join("target/packaging-test");
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let pid = e.file_name().to_string_lossy().parse::<u32>().ok();
        if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Where this test process keeps a package and its generated files.
fn out_dir(name: &str) -> PathBuf {
    Path::new(MANIFEST)
        .join("target/packaging-test")
        .join(std::process::id().to_string())
        .join(name)
}

/// The generated man page and completions that went into the package.
pub fn assets() -> PathBuf {
    deb();
    out_dir("install").join("assets")
}

fn build_deb(version: Option<&str>) -> PathBuf {
    let started = Instant::now();
    let mut cmd = Command::new(Path::new(MANIFEST).join("packaging/build-deb.sh"));
    cmd.env("PROFILE", "dev").env("NO_BUILD", "1");
    // A copy of its own (cargo-deb empties target/debian on each run, and another test run
    // may build beside this one).
    cmd.env("DEB_OUT", out_dir(version.unwrap_or("install")));

    if let Some(v) = version {
        cmd.env("DEB_VERSION", v);
    }
    let out = cmd.output().expect("running packaging/build-deb.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "build-deb.sh failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let path = Path::new(MANIFEST).join(stdout.lines().last().unwrap_or_default().trim());
    assert!(path.is_file(), "no .deb at {}", path.display());
    eprintln!(
        "packaging: built {} in {:.1?}",
        path.display(),
        started.elapsed()
    );
    path
}
