//! `scripts/install-deps.sh` as a bare machine runs it: packages missing, `apt-get` and
//! `dpkg-query` replaced on PATH by stubs that record their calls (nothing is installed), and
//! the policy that keeps package scripts from starting services pointed at a file of the
//! test's own (`VIRTMASQ_POLICY_RC_D`). Its first run on a bare machine once failed after a
//! successful install because the EXIT trap's last test was false where that policy already
//! existed.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/install-deps.sh");

/// Packages the dpkg-query stub reports as installed; every other one is missing.
const INSTALLED: &[&str] = &["iproute2", "pkg-config", "dbus", "ca-certificates"];

struct Run {
    /// The script's exit code.
    code: Option<i32>,
    /// Its stdout and stderr.
    output: String,
    /// The stubs' record: one line per call, `<program> <args>`, and what apt-get saw.
    calls: String,
}

/// Writes an executable stub `name` into `dir`.
fn stub(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs the script with the stubs first on PATH; `installed` lists what dpkg-query reports.
fn run(dir: &Path, policy: &Path, installed: &[&str]) -> Run {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let log = dir.join("calls");
    let _ = std::fs::remove_file(&log);
    let known = installed.join(" ");
    stub(
        &bin,
        "dpkg-query",
        &format!(
            "echo \"dpkg-query $*\" >> '{log}'\n\
             for a in \"$@\"; do for p in {known}; do\n\
               if [ \"$p\" = \"$a\" ]; then printf 'install ok installed'; exit 0; fi\n\
             done; done\n\
             exit 1\n",
            log = log.display()
        ),
    );
    // apt-get records its arguments and whether the policy existed and refused (exit 101)
    // while it ran.
    stub(
        &bin,
        "apt-get",
        &format!(
            "echo \"apt-get $*\" >> '{log}'\n\
             if [ -x '{p}' ]; then '{p}'; echo \"policy exit $?\" >> '{log}'; \
             else echo 'policy absent' >> '{log}'; fi\n\
             exit 0\n",
            log = log.display(),
            p = policy.display()
        ),
    );
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = Command::new("bash")
        .arg(SCRIPT)
        .env("PATH", path)
        .env("VIRTMASQ_POLICY_RC_D", policy)
        .output()
        .unwrap();
    Run {
        code: out.status.code(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        calls: std::fs::read_to_string(&log).unwrap_or_default(),
    }
}

/// The packages the script lists, in order.
fn listed() -> Vec<String> {
    let text = std::fs::read_to_string(SCRIPT).unwrap();
    let start = text.find("PACKAGES=(").unwrap() + "PACKAGES=(".len();
    let body = &text[start..start + text[start..].find("\n)").unwrap()];
    body.lines()
        .map(|l| l.split('#').next().unwrap())
        .flat_map(str::split_whitespace)
        .map(str::to_owned)
        .collect()
}

fn missing() -> Vec<String> {
    listed()
        .into_iter()
        .filter(|p| !INSTALLED.contains(&p.as_str()))
        .collect()
}

fn install_line(calls: &str) -> Vec<String> {
    let line = calls
        .lines()
        .find(|l| l.starts_with("apt-get ") && l.contains(" install "))
        .unwrap_or_else(|| panic!("no apt-get install:\n{calls}"));
    let args: Vec<&str> = line.split_whitespace().collect();
    let after = args
        .iter()
        .position(|a| *a == "--no-install-recommends")
        .unwrap();
    args[after + 1..].iter().map(|s| s.to_string()).collect()
}

fn policy_path(dir: &Path) -> PathBuf {
    dir.join("policy-rc.d")
}

#[test]
fn a_policy_that_was_there_stays_and_the_install_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_path(dir.path());
    let original = "#!/bin/sh\n# the image's own\nexit 101\n";
    std::fs::write(&policy, original).unwrap();
    std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o750)).unwrap();

    let r = run(dir.path(), &policy, INSTALLED);
    assert_eq!(r.code, Some(0), "{}\n{}", r.output, r.calls);
    assert_eq!(install_line(&r.calls), missing(), "{}", r.calls);
    assert!(r.calls.contains("policy exit 101"), "{}", r.calls);
    assert_eq!(std::fs::read_to_string(&policy).unwrap(), original);
    let mode = std::fs::metadata(&policy).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o750);
    assert!(r.output.contains("installing"), "{}", r.output);
}

#[test]
fn a_policy_made_for_the_install_is_gone_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_path(dir.path());
    let r = run(dir.path(), &policy, INSTALLED);
    assert_eq!(r.code, Some(0), "{}\n{}", r.output, r.calls);
    assert_eq!(install_line(&r.calls), missing(), "{}", r.calls);
    // It existed, and refused service starts, while apt-get ran; it is gone now.
    assert!(r.calls.contains("policy exit 101"), "{}", r.calls);
    assert!(!r.calls.contains("policy absent"), "{}", r.calls);
    assert!(!policy.exists());
}

#[test]
fn nothing_missing_installs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_path(dir.path());
    let all = listed();
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let r = run(dir.path(), &policy, &all);
    assert_eq!(r.code, Some(0), "{}\n{}", r.output, r.calls);
    assert!(!r.calls.contains("apt-get"), "{}", r.calls);
    assert!(!policy.exists());
}
