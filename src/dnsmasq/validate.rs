//! Asking dnsmasq itself whether a configuration is valid (`dnsmasq --test`), before anything
//! is started or restarted on it.

use std::path::Path;
use std::process::Command;

/// Checks `text`, meant for `target`, by writing it to a dotfile beside `target` and running
/// `dnsmasq --test` on it. Returns dnsmasq's message when it refuses.
pub fn check_text(binary: &Path, target: &Path, text: &str) -> Result<(), String> {
    let dir = target.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".virtmasq-test.{}.conf", std::process::id()));
    std::fs::write(&tmp, text).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    let result = check_args(binary, &[format!("--conf-file={}", tmp.display())]);
    let _ = std::fs::remove_file(&tmp);
    result
}

/// Runs `dnsmasq --test` with `args`; Ok when dnsmasq says the syntax is fine.
pub fn check_args(binary: &Path, args: &[String]) -> Result<(), String> {
    let out = Command::new(binary)
        .arg("--test")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let mut msg = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if msg.is_empty() {
        msg = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    }
    Err(msg)
}
