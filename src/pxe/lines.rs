//! A PXE profile rendered as dnsmasq lines, for a private instance bound to one bridge or for a
//! system fragment where every line that has an effect requires `tag:<bridge>` (the tag dnsmasq
//! sets to the interface a request arrived on). Pure: the checks against the TFTP root on disk
//! are in [`super::check`]; [`super::render_lines`] and [`super::dnsmasq_lines`] run both.
//!
//! Lines that only set tags (`dhcp-match`, `dhcp-mac`, `dhcp-userclass`, `tag-if`) cannot be
//! scoped in dnsmasq; they set `virtmasq-` tags only, and those naming a host carry the bridge
//! in their name, so a MAC listed for one network never selects anything on another.
//!
//! The boot lines are mutually exclusive, so their order never decides who gets what: firmware
//! lines require `!virtmasq-ipxe` (iPXE clients get their URL instead, which is what stops the
//! chainloading loop), general lines give way to host overrides through `tag-if`-computed
//! "overridden" tags, and a UUID override gives way to a MAC override of the same client.

use super::arch::{ClientArch, TAG_PREFIX};
use super::profile::{BootTarget, HostKey, IpxeHandoff, PxeMode, PxeProfile};
use super::values::{BootFile, BootUrl};
use super::{PxeError, PxeScope};

/// The tag set on requests from clients already running iPXE (user class `iPXE`, or option
/// 175, which iPXE and gPXE send).
pub const IPXE_TAG: &str = "virtmasq-ipxe";

/// Which kind of dnsmasq the lines are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinesFor {
    /// A private instance bound to the network's bridge only: no scope tag needed.
    Private,
    /// A fragment in the system dnsmasq's conf-dir: every effective line requires
    /// `tag:<bridge>`.
    System,
    /// A fragment for a system dnsmasq whose configuration has a plain `enable-tftp` (TFTP on
    /// every interface): like [`LinesFor::System`] without `enable-tftp=<bridge>`, which
    /// dnsmasq would take as its list of TFTP interfaces, stopping TFTP everywhere else.
    SystemTftpEverywhere,
}

impl LinesFor {
    fn is_system(self) -> bool {
        self != LinesFor::Private
    }
}

/// What a profile's lines change for the *other* interfaces of a shared (system) dnsmasq, for
/// `status` and the logs to say; None when nothing.
///
/// Proxy mode needs `pxe-service`/`pxe-prompt`, which turn on dnsmasq's PXE handling as a
/// whole: from then on its ordinary offers to PXE clients on every interface carry vendor
/// class `PXEClient` and an option 43 telling them to boot the file in the offer (seen with
/// dnsmasq 2.90; tests/pxe_lab.rs pins it). Run such a network on a private instance where
/// that matters.
pub fn system_side_effect(profile: &PxeProfile) -> Option<&'static str> {
    (profile.mode == PxeMode::Proxy).then_some(
        "proxy mode turns on dnsmasq's PXE handling for every interface: offers to PXE \
         clients on other networks gain vendor class PXEClient and option 43",
    )
}

/// Renders the lines of a profile already checked ([`super::render_lines`] checks first).
pub(super) fn render(
    profile: &PxeProfile,
    scope: &PxeScope,
    mode: LinesFor,
) -> Result<Vec<String>, PxeError> {
    let ipxe_url = handoff_url(profile, scope)?;
    let mut r = Renderer::new(profile, scope, mode, ipxe_url);
    r.header();
    r.tftp();
    r.detection();
    r.hosts();
    for arch in ClientArch::ALL {
        r.arch(arch);
    }
    r.ipxe();
    r.pxelinux();
    r.proxy_lines();
    Ok(r.lines)
}

/// The URL iPXE clients get, None when they get the boot files.
fn handoff_url(profile: &PxeProfile, scope: &PxeScope) -> Result<Option<BootUrl>, PxeError> {
    let err = |reason: String| PxeError::ScriptUrl {
        network: scope.network.clone(),
        reason,
    };
    match &profile.ipxe {
        IpxeHandoff::BootFiles => Ok(None),
        IpxeHandoff::Url(u) => Ok(Some(u.clone())),
        IpxeHandoff::Endpoint => {
            let url = scope
                .endpoint
                .script_url(scope.subnet.addr())
                .map_err(err)?;
            url.parse().map(Some).map_err(|e| err(format!("{e}")))
        }
    }
}

/// What an override is about: one architecture's boot file, or the iPXE URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    Arch(ClientArch),
    Ipxe,
}

impl Subject {
    fn suffix(self) -> String {
        match self {
            Subject::Arch(a) => a.code().to_string(),
            Subject::Ipxe => "ipxe".into(),
        }
    }
}

struct Renderer<'a> {
    p: &'a PxeProfile,
    mode: LinesFor,
    s: &'a PxeScope<'a>,
    /// `tag:<bridge>,` for a system fragment, empty for a private instance.
    scope: String,
    /// `tag:!virtmasq-ipxe,` when iPXE clients get a URL rather than the boot files.
    not_ipxe: &'static str,
    ipxe_url: Option<BootUrl>,
    lines: Vec<String>,
}

impl<'a> Renderer<'a> {
    fn new(
        p: &'a PxeProfile,
        s: &'a PxeScope<'a>,
        mode: LinesFor,
        ipxe_url: Option<BootUrl>,
    ) -> Self {
        let scope = if mode.is_system() {
            format!("tag:{},", s.bridge)
        } else {
            String::new()
        };
        let not_ipxe = if ipxe_url.is_some() {
            "tag:!virtmasq-ipxe,"
        } else {
            ""
        };
        Self {
            p,
            mode,
            s,
            scope,
            not_ipxe,
            ipxe_url,
            lines: Vec::new(),
        }
    }

    fn push(&mut self, line: String) {
        self.lines.push(line);
    }

    fn proxy(&self) -> bool {
        self.p.mode == PxeMode::Proxy
    }

    fn host_tag(&self, i: usize) -> String {
        format!("{TAG_PREFIX}{}-host{i}", self.s.bridge)
    }

    /// Set when any host override of `what` matches the client.
    fn ovr_tag(&self, what: Subject) -> String {
        format!("{TAG_PREFIX}{}-ovr-{}", self.s.bridge, what.suffix())
    }

    /// Set when a MAC override of `what` matches the client.
    fn movr_tag(&self, what: Subject) -> String {
        format!("{TAG_PREFIX}{}-movr-{}", self.s.bridge, what.suffix())
    }

    fn host_overrides(&self, i: usize, what: Subject) -> bool {
        let h = &self.p.hosts[i];
        match what {
            Subject::Arch(a) => h.boot_files.get(a).is_some(),
            Subject::Ipxe => h.ipxe_url.is_some(),
        }
    }

    fn overriders(&self, what: Subject, by_mac: Option<bool>) -> Vec<usize> {
        (0..self.p.hosts.len())
            .filter(|i| self.host_overrides(*i, what))
            .filter(|i| by_mac.is_none_or(|m| matches!(self.p.hosts[*i].key, HostKey::Mac(_)) == m))
            .collect()
    }

    /// Whether UUID overrides of `what` must give way to MAC overrides of it.
    fn needs_movr(&self, what: Subject) -> bool {
        !self.overriders(what, Some(true)).is_empty()
            && !self.overriders(what, Some(false)).is_empty()
    }

    fn header(&mut self) {
        let mode = if self.proxy() { "proxy" } else { "dhcp" };
        self.push(format!(
            "# PXE boot profile ({mode} mode) of network '{}'",
            self.s.network
        ));
    }

    fn tftp(&mut self) {
        if let Some(root) = &self.p.tftp_root {
            // Per-interface forms: TFTP answers on this bridge only, from this root only.
            let b = self.s.bridge;
            if self.mode != LinesFor::SystemTftpEverywhere {
                self.push(format!("enable-tftp={b}"));
            }
            self.push(format!("tftp-root={},{b}", root.display()));
        }
    }

    fn detection(&mut self) {
        if self.ipxe_url.is_some() {
            self.push(format!("dhcp-userclass=set:{IPXE_TAG},iPXE"));
            self.push(format!("dhcp-match=set:{IPXE_TAG},175"));
        }
        if self.proxy() {
            // pxe-service selects by architecture itself.
            return;
        }
        for arch in ClientArch::ALL {
            let used = self.p.boot_files.get(arch).is_some()
                || self
                    .p
                    .hosts
                    .iter()
                    .any(|h| h.boot_files.get(arch).is_some());
            if used {
                let code = arch.code();
                self.push(format!(
                    "dhcp-match=set:{},option:client-arch,{code}",
                    arch.tag()
                ));
            }
        }
    }

    fn hosts(&mut self) {
        for i in 0..self.p.hosts.len() {
            let tag = self.host_tag(i);
            match self.p.hosts[i].key {
                HostKey::Mac(mac) => self.push(format!("dhcp-mac=set:{tag},{mac}")),
                HostKey::Uuid(uuid) => {
                    // Option 97 is a type byte (0) and the UUID; clients send the GUID layout
                    // (first three fields little-endian), a few the RFC 4122 order: match both.
                    let guid = hex(&uuid.guid_bytes());
                    self.push(format!("dhcp-match=set:{tag},97,00:{guid}"));
                    let plain = hex(&uuid.bytes());
                    if plain != guid {
                        self.push(format!("dhcp-match=set:{tag},97,00:{plain}"));
                    }
                }
            }
        }
        let subjects = ClientArch::ALL
            .iter()
            .map(|a| Subject::Arch(*a))
            .chain([Subject::Ipxe]);
        for what in subjects {
            for i in self.overriders(what, None) {
                let (host, ovr) = (self.host_tag(i), self.ovr_tag(what));
                self.push(format!("tag-if=set:{ovr},tag:{host}"));
                if self.needs_movr(what) && matches!(self.p.hosts[i].key, HostKey::Mac(_)) {
                    let movr = self.movr_tag(what);
                    self.push(format!("tag-if=set:{movr},tag:{host}"));
                }
            }
        }
    }

    /// The conditions of a boot line for `what`: general (`host` None) or one host's.
    fn conditions(&self, what: Subject, host: Option<usize>) -> String {
        let mut c = self.scope.clone();
        match what {
            Subject::Arch(a) => {
                if !self.proxy() {
                    c += &format!("tag:{},", a.tag());
                }
                c += self.not_ipxe;
            }
            Subject::Ipxe => c += &format!("tag:{IPXE_TAG},"),
        }
        match host {
            None if !self.overriders(what, None).is_empty() => {
                c += &format!("tag:!{},", self.ovr_tag(what));
            }
            None => {}
            Some(i) => {
                c += &format!("tag:{},", self.host_tag(i));
                let by_uuid = matches!(self.p.hosts[i].key, HostKey::Uuid(_));
                if by_uuid && self.needs_movr(what) {
                    c += &format!("tag:!{},", self.movr_tag(what));
                }
            }
        }
        c
    }

    fn arch(&mut self, arch: ClientArch) {
        let what = Subject::Arch(arch);
        if let Some(t) = self.p.boot_files.get(arch) {
            let line = self.boot_line(arch, &self.conditions(what, None), &t);
            self.push(line);
        }
        for i in self.overriders(what, None) {
            if let Some(t) = self.p.hosts[i].boot_files.get(arch) {
                let line = self.boot_line(arch, &self.conditions(what, Some(i)), &t);
                self.push(line);
            }
        }
        let http_used = arch.is_http_boot()
            && (self.p.boot_files.get(arch).is_some() || !self.overriders(what, None).is_empty());
        if http_used {
            // UEFI HTTP boot firmware ignores an offer without vendor class HTTPClient.
            self.push(format!(
                "dhcp-option-force={}tag:{},60,HTTPClient",
                self.scope,
                arch.tag()
            ));
        }
    }

    fn boot_line(&self, arch: ClientArch, cond: &str, target: &BootTarget) -> String {
        let server = self
            .p
            .next_server
            .map(|a| a.to_string())
            .unwrap_or_default();
        match (target, arch.dnsmasq_csa()) {
            (BootTarget::Tftp(f), Some(csa)) if self.proxy() => {
                let server = if server.is_empty() {
                    server
                } else {
                    format!(",{server}")
                };
                format!("pxe-service={cond}{csa},\"{}\",{f}{server}", self.p.prompt)
            }
            (BootTarget::Tftp(f), _) => dhcp_boot(cond, f, &server),
            (BootTarget::Http(u), _) => format!("dhcp-boot={cond}{u}"),
        }
    }

    fn ipxe(&mut self) {
        let Some(url) = self.ipxe_url.clone() else {
            return;
        };
        let line = format!("dhcp-boot={}{url}", self.conditions(Subject::Ipxe, None));
        self.push(line);
        for i in self.overriders(Subject::Ipxe, None) {
            if let Some(u) = self.p.hosts[i].ipxe_url.clone() {
                let cond = self.conditions(Subject::Ipxe, Some(i));
                self.push(format!("dhcp-boot={cond}{u}"));
            }
        }
    }

    fn pxelinux(&mut self) {
        // Forced: pxelinux reads the reply the PXE ROM received, and the ROM never asks for
        // 209/210. Quoted so that a value like 1.2.3.4 stays a string.
        let opts = [
            (209, &self.p.pxelinux_config_file),
            (210, &self.p.pxelinux_path_prefix),
        ];
        let lines: Vec<String> = opts
            .iter()
            .filter_map(|(code, v)| v.as_ref().map(|v| (code, v)))
            .map(|(code, v)| format!("dhcp-option-force={}{code},\"{v}\"", self.scope))
            .collect();
        self.lines.extend(lines);
    }

    fn proxy_lines(&mut self) {
        if !self.proxy() {
            return;
        }
        let (net, mask) = (self.s.subnet.network(), self.s.subnet.netmask());
        self.push(format!("dhcp-range={}{net},proxy,{mask}", self.scope));
        self.push(format!(
            "pxe-prompt={}\"{}\",{}",
            self.scope, self.p.prompt, self.p.prompt_timeout
        ));
    }
}

/// A `dhcp-boot` line for a TFTP file: `file,,server` puts the server in `siaddr` (a lone
/// second field would be the server *name*, which most ROMs ignore).
fn dhcp_boot(cond: &str, file: &BootFile, server: &str) -> String {
    if server.is_empty() {
        format!("dhcp-boot={cond}{file}")
    } else {
        format!("dhcp-boot={cond}{file},,{server}")
    }
}

/// Bytes as dnsmasq's colon-separated hex.
fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests;
