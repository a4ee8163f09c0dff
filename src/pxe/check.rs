//! Checks that a profile can be served before anything is written: settings that contradict
//! each other or the mode ([`check_profile`], pure) and boot files that are not where dnsmasq's
//! TFTP server will look for them ([`check_files`]). Each error names the network and the
//! value.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::arch::ClientArch;
use super::profile::{key_text, BootFiles, BootTarget, IpxeHandoff, PxeMode, PxeProfile};
use super::{PxeError, PxeScope};
use crate::model::NetworkName;

/// Checks how the settings of `profile` fit together and with the network; no I/O.
pub(super) fn check_profile(profile: &PxeProfile, scope: &PxeScope) -> Result<(), PxeError> {
    let net = scope.network;
    if let Some(root) = &profile.tftp_root {
        check_root_syntax(net, root)?;
    }
    if profile.mode == PxeMode::Proxy {
        check_proxy(profile, net)?;
    }
    check_something_to_boot(profile, net)?;
    check_tftp_server(profile, net)?;
    check_no_loop(profile, net)?;
    check_hosts(profile, net)
}

fn check_root_syntax(net: &NetworkName, root: &Path) -> Result<(), PxeError> {
    let text = root.to_str().unwrap_or("");
    let bad = text.is_empty()
        || !root.is_absolute()
        || text
            .chars()
            .any(|c| !c.is_ascii_graphic() || matches!(c, ',' | '#' | '"' | '\'' | '\\'));
    if bad {
        return Err(PxeError::profile(
            net,
            format!(
                "tftp_root {root:?} must be an absolute path of printable ASCII without spaces, \
                 ',', '#', quotes or '\\'"
            ),
        ));
    }
    Ok(())
}

fn check_proxy(profile: &PxeProfile, net: &NetworkName) -> Result<(), PxeError> {
    let all =
        std::iter::once(&profile.boot_files).chain(profile.hosts.iter().map(|h| &h.boot_files));
    for files in all {
        if let Some((arch, _)) = files.entries().into_iter().find(|(a, _)| a.is_http_boot()) {
            return Err(PxeError::profile(
                net,
                format!(
                    "{arch}: UEFI HTTP boot needs mode = \"dhcp\"; dnsmasq's proxy DHCP \
                     answers PXE clients only"
                ),
            ));
        }
    }
    if profile.pxelinux_config_file.is_some() || profile.pxelinux_path_prefix.is_some() {
        return Err(PxeError::profile(
            net,
            "pxelinux options 209/210 need mode = \"dhcp\": dnsmasq's proxy replies carry no \
             such options before 2.91 (set them from an iPXE script instead: set 209:string …)",
        ));
    }
    Ok(())
}

fn check_something_to_boot(profile: &PxeProfile, net: &NetworkName) -> Result<(), PxeError> {
    let files =
        !profile.boot_files.is_empty() || profile.hosts.iter().any(|h| !h.boot_files.is_empty());
    if !files && profile.ipxe == IpxeHandoff::BootFiles {
        return Err(PxeError::profile(
            net,
            "it gives no client anything: add boot_files, or send iPXE clients to a script \
             (ipxe = \"endpoint\" or a URL)",
        ));
    }
    Ok(())
}

/// TFTP boot files need someone to serve them.
fn check_tftp_server(profile: &PxeProfile, net: &NetworkName) -> Result<(), PxeError> {
    if profile.tftp_root.is_some() || profile.next_server.is_some() {
        return Ok(());
    }
    if let Some((what, file)) = tftp_files(profile).into_iter().next() {
        return Err(PxeError::profile(
            net,
            format!(
                "boot file {file:?} for {what} has no TFTP server: set tftp_root (dnsmasq \
                 serves it on the bridge) or next_server"
            ),
        ));
    }
    Ok(())
}

/// iPXE clients that are handed an iPXE binary load it again, forever.
fn check_no_loop(profile: &PxeProfile, net: &NetworkName) -> Result<(), PxeError> {
    if profile.ipxe != IpxeHandoff::BootFiles {
        return Ok(());
    }
    let all =
        std::iter::once(&profile.boot_files).chain(profile.hosts.iter().map(|h| &h.boot_files));
    for files in all {
        for (arch, t) in files.entries() {
            if let BootTarget::Tftp(f) = t {
                if f.looks_like_ipxe() {
                    return Err(PxeError::profile(
                        net,
                        format!(
                            "ipxe = \"boot-files\" would hand {f:?} ({arch}), an iPXE binary, to \
                             clients already running iPXE, which would load it forever; send \
                             them to a script (ipxe = \"endpoint\" or a URL)"
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn check_hosts(profile: &PxeProfile, net: &NetworkName) -> Result<(), PxeError> {
    let mut seen = HashSet::new();
    for h in &profile.hosts {
        if !seen.insert(h.key) {
            return Err(PxeError::profile(
                net,
                format!("{} has two host overrides; merge them", key_text(&h.key)),
            ));
        }
        if h.ipxe_url.is_some() && profile.ipxe == IpxeHandoff::BootFiles {
            return Err(PxeError::profile(
                net,
                format!(
                    "the override for {} has an ipxe_url, but the profile's ipxe is \
                     \"boot-files\": iPXE clients are not told apart; use \"endpoint\" or a URL",
                    key_text(&h.key)
                ),
            ));
        }
    }
    Ok(())
}

/// Every TFTP file of the profile with the entry that names it.
fn tftp_files(profile: &PxeProfile) -> Vec<(String, super::values::BootFile)> {
    let mut out = Vec::new();
    let mut add = |files: &BootFiles, host: Option<String>| {
        for (arch, t) in files.entries() {
            if let BootTarget::Tftp(f) = t {
                out.push((what(arch, host.as_deref()), f));
            }
        }
    };
    add(&profile.boot_files, None);
    for h in &profile.hosts {
        add(&h.boot_files, Some(key_text(&h.key)));
    }
    out
}

fn what(arch: ClientArch, host: Option<&str>) -> String {
    match host {
        None => arch.to_string(),
        Some(h) => format!("{arch} of host {h}"),
    }
}

/// Checks that every TFTP boot file of `profile` is a regular file in its TFTP root, under the
/// name dnsmasq will send. Without a TFTP root (files on `next_server`) there is nothing here
/// to check.
pub fn check_files(profile: &PxeProfile, network: &NetworkName) -> Result<(), PxeError> {
    let Some(root) = &profile.tftp_root else {
        return Ok(());
    };
    let root_err = |reason: &'static str, source: Option<io::Error>| PxeError::TftpRoot {
        network: network.clone(),
        root: root.clone(),
        reason,
        source,
    };
    let meta = std::fs::metadata(root).map_err(|e| root_err("cannot be read", Some(e)))?;
    if !meta.is_dir() {
        return Err(root_err("is not a directory", None));
    }
    if meta.permissions().mode() & 0o005 != 0o005 {
        // Not fatal: dnsmasq's account may get in as owner or group.
        tracing::warn!(network = %network, root = %root.display(),
            "TFTP root is not world-readable; dnsmasq runs unprivileged and must be able to read it");
    }
    for (what, file) in tftp_files(profile) {
        let name = match profile.mode {
            PxeMode::Proxy => file.proxy_name(),
            PxeMode::Dhcp => file.as_str().to_owned(),
        };
        let file_err = |reason: &'static str, source: Option<io::Error>| PxeError::BootFile {
            network: network.clone(),
            what: what.clone(),
            file: name.clone(),
            root: root.clone(),
            reason,
            source,
        };
        match std::fs::metadata(root.join(&name)) {
            Ok(m) if m.is_file() => {}
            Ok(_) => return Err(file_err("is not a regular file", None)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(file_err("does not exist", None))
            }
            Err(e) => return Err(file_err("cannot be read", Some(e))),
        }
    }
    Ok(())
}
