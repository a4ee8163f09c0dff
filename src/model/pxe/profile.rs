//! The PXE boot profile of one network, as written in virtmasq's configuration
//! (`[networks.<name>.pxe]`) or, later, in a network's `<metadata>`. Values are checked when the
//! profile is read (line and column in the error); how they fit together is checked when lines
//! are rendered ([`crate::pxe::dnsmasq_lines`]), where the network is known.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::arch::ClientArch;
use super::values::{BootFile, BootUrl, MachineUuid, PromptText, PxelinuxValue};
use crate::model::MacAddr;

/// Whether virtmasq's dnsmasq also hands out addresses on the network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PxeMode {
    /// virtmasq's dnsmasq is the network's DHCP server: boot files go in its offers.
    #[default]
    Dhcp,
    /// Another DHCP server hands out addresses; dnsmasq adds only boot information
    /// (`dhcp-range=<net>,proxy`, `pxe-service`, `pxe-prompt`), answering UEFI clients on
    /// port 4011. The network's own ranges must then not be served.
    Proxy,
}

/// Boot files by client architecture (option 93). TFTP files are paths relative to the TFTP
/// root; HTTP boot entries are URLs. An architecture without an entry gets no boot file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootFiles {
    /// x86 BIOS (arch 0), e.g. `undionly.kpxe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bios: Option<BootFile>,
    /// 32-bit x86 UEFI (arch 6), e.g. `i386-efi/ipxe.efi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub efi_ia32: Option<BootFile>,
    /// x86-64 UEFI (arch 7; also arch 9 unless `efi_bc` is set), e.g. `ipxe.efi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub efi_x64: Option<BootFile>,
    /// "EFI BC" (arch 9), which some x86-64 firmware sends; defaults to `efi_x64`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub efi_bc: Option<BootFile>,
    /// 32-bit ARM UEFI (arch 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub efi_arm32: Option<BootFile>,
    /// 64-bit ARM UEFI (arch 11), e.g. `arm64/snp.efi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub efi_arm64: Option<BootFile>,
    /// 32-bit x86 UEFI HTTP boot (arch 15): a URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_ia32: Option<BootUrl>,
    /// x86-64 UEFI HTTP boot (arch 16): a URL, e.g. `http://10.0.0.1/ipxe.efi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_x64: Option<BootUrl>,
    /// 32-bit ARM UEFI HTTP boot (arch 18): a URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_arm32: Option<BootUrl>,
    /// 64-bit ARM UEFI HTTP boot (arch 19): a URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_arm64: Option<BootUrl>,
}

/// What a client of one architecture is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootTarget {
    /// A file fetched over TFTP.
    Tftp(BootFile),
    /// A URL (UEFI HTTP boot).
    Http(BootUrl),
}

impl BootFiles {
    /// The entry for `arch`, with arch 9 falling back to the x86-64 entry.
    pub fn get(&self, arch: ClientArch) -> Option<BootTarget> {
        let tftp = |f: &Option<BootFile>| f.clone().map(BootTarget::Tftp);
        let http = |u: &Option<BootUrl>| u.clone().map(BootTarget::Http);
        match arch {
            ClientArch::Bios => tftp(&self.bios),
            ClientArch::EfiIa32 => tftp(&self.efi_ia32),
            ClientArch::EfiX64 => tftp(&self.efi_x64),
            ClientArch::EfiBc => tftp(&self.efi_bc).or_else(|| tftp(&self.efi_x64)),
            ClientArch::EfiArm32 => tftp(&self.efi_arm32),
            ClientArch::EfiArm64 => tftp(&self.efi_arm64),
            ClientArch::HttpIa32 => http(&self.http_ia32),
            ClientArch::HttpX64 => http(&self.http_x64),
            ClientArch::HttpArm32 => http(&self.http_arm32),
            ClientArch::HttpArm64 => http(&self.http_arm64),
        }
    }

    /// Every architecture with an entry, in rendering order.
    pub fn entries(&self) -> Vec<(ClientArch, BootTarget)> {
        ClientArch::ALL
            .iter()
            .filter_map(|a| self.get(*a).map(|t| (*a, t)))
            .collect()
    }

    /// Whether no architecture has an entry.
    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }
}

/// What clients that already run iPXE (user class `iPXE` or option 175) are sent instead of a
/// boot file. Handing them the iPXE binary again would make them load it forever.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum IpxeHandoff {
    /// `"endpoint"`: virtmasq's own HTTP endpoint on the bridge's address
    /// (`http://<bridge address>:<port>/boot.ipxe`), which picks a script per client.
    #[default]
    Endpoint,
    /// `"boot-files"`: the same boot files as other clients, for profiles whose files are not
    /// iPXE (pxelinux, GRUB). Refused when a file looks like iPXE.
    BootFiles,
    /// Any other value: this URL (a script or binary on another server).
    Url(BootUrl),
}

impl Serialize for IpxeHandoff {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            IpxeHandoff::Endpoint => s.serialize_str("endpoint"),
            IpxeHandoff::BootFiles => s.serialize_str("boot-files"),
            IpxeHandoff::Url(u) => s.serialize_str(u.as_str()),
        }
    }
}

impl<'de> Deserialize<'de> for IpxeHandoff {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "endpoint" => Ok(IpxeHandoff::Endpoint),
            "boot-files" => Ok(IpxeHandoff::BootFiles),
            url => url.parse().map(IpxeHandoff::Url).map_err(|e| {
                serde::de::Error::custom(format!(
                    "{e} (ipxe takes \"endpoint\", \"boot-files\" or an http:// URL)"
                ))
            }),
        }
    }
}

/// How a per-host override recognises its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HostKey {
    /// The client's MAC (`dhcp-mac`).
    Mac(MacAddr),
    /// The client's machine UUID, option 97 (`dhcp-match`).
    Uuid(MachineUuid),
}

/// Boot files or iPXE URL for one client, overriding the profile's for the architectures it
/// names. Written as `{ mac = "…", boot_files = { … } }` or with `uuid = "…"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawHost", into = "RawHost")]
pub struct PxeHost {
    /// The client this override is for.
    pub key: HostKey,
    /// Boot files that replace the profile's for these architectures.
    pub boot_files: BootFiles,
    /// The URL this client gets once it runs iPXE, replacing the profile's `ipxe` (which must
    /// then be `"endpoint"` or a URL).
    pub ipxe_url: Option<BootUrl>,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mac: Option<MacAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uuid: Option<MachineUuid>,
    #[serde(default)]
    boot_files: BootFiles,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ipxe_url: Option<BootUrl>,
}

impl TryFrom<RawHost> for PxeHost {
    type Error = String;
    fn try_from(r: RawHost) -> Result<Self, Self::Error> {
        let key = match (r.mac, r.uuid) {
            (Some(mac), None) => HostKey::Mac(mac),
            (None, Some(uuid)) => HostKey::Uuid(uuid),
            _ => return Err("a PXE host override needs exactly one of mac or uuid".into()),
        };
        if r.boot_files.is_empty() && r.ipxe_url.is_none() {
            return Err(format!(
                "the PXE host override for {} changes nothing: give boot_files or ipxe_url",
                key_text(&key)
            ));
        }
        Ok(Self {
            key,
            boot_files: r.boot_files,
            ipxe_url: r.ipxe_url,
        })
    }
}

impl From<PxeHost> for RawHost {
    fn from(h: PxeHost) -> Self {
        let (mac, uuid) = match h.key {
            HostKey::Mac(m) => (Some(m), None),
            HostKey::Uuid(u) => (None, Some(u)),
        };
        Self {
            mac,
            uuid,
            boot_files: h.boot_files,
            ipxe_url: h.ipxe_url,
        }
    }
}

/// How a host override is named in messages: `mac 52:54:00:00:00:01` or `uuid …`.
pub fn key_text(key: &HostKey) -> String {
    match key {
        HostKey::Mac(m) => format!("mac {m}"),
        HostKey::Uuid(u) => format!("uuid {u}"),
    }
}

/// A network's PXE boot profile, embedded as `[networks.<name>.pxe]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PxeProfile {
    /// `dhcp` (default) or `proxy`.
    #[serde(default)]
    pub mode: PxeMode,
    /// A directory that dnsmasq's TFTP server serves on this network's bridge only
    /// (`enable-tftp=<bridge>`, `tftp-root=<dir>,<bridge>`). Every TFTP boot file must exist in
    /// it, readable by the account dnsmasq runs as. Absent: no TFTP here, files come from
    /// `next_server`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tftp_root: Option<PathBuf>,
    /// The TFTP server clients fetch boot files from (BOOTP `siaddr`). Default: dnsmasq's own
    /// address on the bridge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_server: Option<Ipv4Addr>,
    /// Boot files by client architecture.
    #[serde(default)]
    pub boot_files: BootFiles,
    /// What clients already running iPXE get: `"endpoint"` (default), `"boot-files"`, or a URL.
    #[serde(default)]
    pub ipxe: IpxeHandoff,
    /// pxelinux's configuration file, option 209 (e.g. `pxelinux.cfg/default`); dhcp mode only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pxelinux_config_file: Option<PxelinuxValue>,
    /// pxelinux's path prefix, option 210 (e.g. `http://10.0.0.1/`); dhcp mode only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pxelinux_path_prefix: Option<PxelinuxValue>,
    /// Text of the proxy-DHCP boot prompt (`pxe-prompt`), proxy mode only.
    #[serde(default)]
    pub prompt: PromptText,
    /// Seconds the proxy-DHCP prompt waits before booting the first entry; 0 boots at once.
    #[serde(default)]
    pub prompt_timeout: u8,
    /// Per-host overrides by MAC or machine UUID; a MAC override wins over a UUID one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<PxeHost>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_profile_from_toml() {
        let p: PxeProfile = toml::from_str(
            r#"
            mode = "proxy"
            tftp_root = "/srv/tftp"
            boot_files = { bios = "undionly.kpxe", efi_x64 = "ipxe.efi" }
            ipxe = "http://10.0.0.5/boot.ipxe"
            prompt = "Booting FOG Client"
            prompt_timeout = 3
            [[hosts]]
            mac = "52:54:00:00:00:01"
            boot_files = { bios = "pxelinux.0" }
            [[hosts]]
            uuid = "4c4c4544-0038-3610-804e-c4c04f4a5831"
            ipxe_url = "http://10.0.0.5/special.ipxe"
            "#,
        )
        .unwrap();
        assert_eq!(p.mode, PxeMode::Proxy);
        assert!(matches!(p.ipxe, IpxeHandoff::Url(_)));
        assert_eq!(p.hosts.len(), 2);
        assert_eq!(
            p.boot_files.get(ClientArch::EfiBc),
            p.boot_files.get(ClientArch::EfiX64),
            "arch 9 falls back to the x86-64 file"
        );
        let again: PxeProfile = toml::from_str(&toml::to_string(&p).unwrap()).unwrap();
        assert_eq!(again, p);
    }

    #[test]
    fn errors_name_the_value() {
        let cases = [
            ("boot_files = { bios = \"../x\" }", "../x"),
            ("boot_files = { efi64 = \"x.efi\" }", "efi64"),
            ("ipxe = \"ftp://x/y\"", "ftp://x/y"),
            ("mode = \"relay\"", "relay"),
            (
                "[[hosts]]\nboot_files = { bios = \"a.0\" }",
                "exactly one of mac or uuid",
            ),
            ("[[hosts]]\nmac = \"52:54:00:00:00:01\"", "changes nothing"),
            (
                "[[hosts]]\nuuid = \"nope\"\nipxe_url = \"http://h/x\"",
                "nope",
            ),
        ];
        for (text, needle) in cases {
            let err = toml::from_str::<PxeProfile>(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
