//! Validated values of PXE profiles and iPXE rules: boot file paths, URLs, menu text, pxelinux
//! option values and machine UUIDs. Each one can only be built by checking it, so nothing that
//! could end a dnsmasq line, split a dnsmasq argument (`,`), start a comment (`#`), open a quote
//! or split an iPXE command line can reach a file virtmasq writes or a script it serves.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::{string_newtype, InvalidValue};

/// Longest text that fits the BOOTP `file` field (128 bytes with its NUL). dnsmasq truncates a
/// longer name silently when the client does not ask for option 67 (and `dhcp-no-override`,
/// which private instances use, keeps it out of option 67), so it is refused instead.
pub const BOOTP_FILE_MAX: usize = 127;

/// Longest URI accepted in an iPXE script line.
const SCRIPT_URI_MAX: usize = 1024;

/// Characters refused everywhere: dnsmasq's argument separator and comment start, quotes, and
/// the backslash (an escape in both dnsmasq and iPXE).
fn special(c: char) -> bool {
    matches!(c, ',' | '#' | '"' | '\'' | '\\')
}

/// Checks that `s` is 1..=`max` bytes of printable ASCII without spaces or [`special`]s.
fn check_token(kind: &'static str, s: &str, max: usize) -> Result<(), InvalidValue> {
    let bad = |reason: String| Err(InvalidValue::new(kind, s, &reason));
    if s.is_empty() {
        return bad("it is empty".into());
    }
    if s.len() > max {
        return bad(format!("it is {} bytes long; at most {max} fit", s.len()));
    }
    if let Some(c) = s.chars().find(|c| !c.is_ascii_graphic() || special(*c)) {
        return bad(format!(
            "character {c:?} is not allowed (no spaces, control characters, non-ASCII, \
             ',', '#', quotes or '\\')"
        ));
    }
    Ok(())
}

/// A boot file as a path relative to a TFTP root (`undionly.kpxe`, `efi64/ipxe.efi`): no
/// leading `/`, no `.` or `..` component, no empty component, and not all digits (dnsmasq's
/// `pxe-service` reads a number there as a boot service type, not a file).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BootFile(String);
string_newtype!(BootFile, validate_boot_file);

fn validate_boot_file(s: &str) -> Result<(), InvalidValue> {
    const KIND: &str = "boot file";
    check_token(KIND, s, BOOTP_FILE_MAX)?;
    let bad = |reason: &str| Err(InvalidValue::new(KIND, s, reason));
    if s.starts_with('/') {
        return bad("it must be relative to the TFTP root (no leading '/')");
    }
    if s.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return bad("it may not have empty, '.' or '..' path components");
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return bad("dnsmasq would read an all-digit name as a boot service type");
    }
    Ok(())
}

impl BootFile {
    /// The name a proxy-DHCP dnsmasq actually sends for this file: it appends `.0` (the PXE
    /// boot layer) to a `pxe-service` basename without a dot, and sends one with a dot as is.
    pub fn proxy_name(&self) -> String {
        if self.0.contains('.') {
            self.0.clone()
        } else {
            format!("{}.0", self.0)
        }
    }

    /// Whether the name looks like an iPXE binary, so that handing it to a client that already
    /// runs iPXE would load iPXE again, forever.
    pub fn looks_like_ipxe(&self) -> bool {
        let name = self
            .0
            .rsplit('/')
            .next()
            .unwrap_or(&self.0)
            .to_ascii_lowercase();
        ["ipxe", "undionly", "snponly", "snp.efi", ".kpxe", ".kkpxe"]
            .iter()
            .any(|m| name.contains(m))
    }
}

/// An `http://` or `https://` URL short enough for the BOOTP `file` field: what UEFI HTTP boot
/// clients and iPXE receive from DHCP.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BootUrl(String);
string_newtype!(BootUrl, validate_boot_url);

fn validate_boot_url(s: &str) -> Result<(), InvalidValue> {
    check_token("boot URL", s, BOOTP_FILE_MAX)?;
    check_http_url("boot URL", s)
}

/// Checks the scheme and that a host follows it.
fn check_http_url(kind: &'static str, s: &str) -> Result<(), InvalidValue> {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| InvalidValue::new(kind, s, "it must start with http:// or https://"))?;
    let host = rest.split(['/', '?']).next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err(InvalidValue::new(
            kind,
            s,
            "it has no host after the scheme",
        ));
    }
    Ok(())
}

/// A URI for an iPXE `chain` or `sanboot` line (`http://…`, `tftp://…`, `iscsi:…`, `aoe:…`):
/// a scheme, `:`, and at most 1024 printable characters without spaces or quotes. iPXE
/// settings such as `${mac}` may appear; iPXE expands them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScriptUri(String);
string_newtype!(ScriptUri, validate_script_uri);

fn validate_script_uri(s: &str) -> Result<(), InvalidValue> {
    const KIND: &str = "iPXE script URI";
    check_token(KIND, s, SCRIPT_URI_MAX)?;
    let (scheme, rest) = s
        .split_once(':')
        .ok_or_else(|| InvalidValue::new(KIND, s, "it has no scheme (like http: or iscsi:)"))?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.' | '_'));
    if !scheme_ok || rest.is_empty() {
        return Err(InvalidValue::new(
            KIND,
            s,
            "expected scheme:rest, like http://host/file or iscsi:host::::iqn",
        ));
    }
    if matches!(scheme, "http" | "https") {
        check_http_url(KIND, s)?;
    }
    Ok(())
}

/// Text of the proxy-DHCP boot prompt (`pxe-prompt`): 1 to 64 printable ASCII characters, spaces
/// allowed, no `,` `#`, quotes or `\`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PromptText(String);
string_newtype!(PromptText, validate_prompt);

fn validate_prompt(s: &str) -> Result<(), InvalidValue> {
    let bad = |reason: &str| Err(InvalidValue::new("boot prompt", s, reason));
    if s.is_empty() || s.len() > 64 {
        return bad("it must be 1 to 64 characters long");
    }
    if s.chars()
        .any(|c| !(c == ' ' || c.is_ascii_graphic()) || special(c))
    {
        return bad("use printable ASCII and spaces, without ',', '#', quotes or '\\'");
    }
    Ok(())
}

impl Default for PromptText {
    fn default() -> Self {
        Self("Network boot".into())
    }
}

/// A value of pxelinux's options 209 (configuration file) or 210 (path prefix).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PxelinuxValue(String);
string_newtype!(PxelinuxValue, validate_pxelinux);

fn validate_pxelinux(s: &str) -> Result<(), InvalidValue> {
    check_token("pxelinux option value", s, 255)
}

/// A machine UUID (SMBIOS system UUID, DHCP option 97) written the canonical way,
/// `11223344-5566-7788-99aa-bbccddeeff00`, in either case; printed lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MachineUuid([u8; 16]);

impl MachineUuid {
    /// The 16 bytes in the order the text shows them (RFC 4122).
    pub fn bytes(&self) -> [u8; 16] {
        self.0
    }

    /// The bytes as PXE clients put them in option 97: the first three fields little-endian
    /// (the GUID/SMBIOS layout). Seen from iPXE (qemu, `-uuid`) and in the FOG seed's Dell log.
    pub fn guid_bytes(&self) -> [u8; 16] {
        let mut b = self.0;
        b[0..4].reverse();
        b[4..6].reverse();
        b[6..8].reverse();
        b
    }
}

impl FromStr for MachineUuid {
    type Err = InvalidValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            InvalidValue::new(
                "machine UUID",
                s,
                "expected 8-4-4-4-12 hex digits like 11223344-5566-7788-99aa-bbccddeeff00",
            )
        };
        let groups: Vec<&str> = s.split('-').collect();
        let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
        if lens != [8, 4, 4, 4, 12] || !s.bytes().all(|b| b == b'-' || b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let hex: String = groups.concat();
        let mut out = [0u8; 16];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Self(out))
    }
}

impl fmt::Display for MachineUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl Serialize for MachineUuid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MachineUuid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_files() {
        for ok in ["undionly.kpxe", "efi64/ipxe.efi", "pxelinux.0", "a-b_c+1"] {
            assert!(ok.parse::<BootFile>().is_ok(), "{ok}");
        }
        let long = "a".repeat(128);
        for bad in [
            "",
            "/abs.efi",
            "../up.efi",
            "a/../b",
            "a//b",
            "./a",
            "a,b",
            "a b",
            "a#b",
            "a\"b",
            "a\nb",
            "é.efi",
            "7",
            &long,
        ] {
            let err = bad.parse::<BootFile>().unwrap_err().to_string();
            assert!(err.contains("boot file"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn proxy_names_follow_dnsmasq() {
        let f = |s: &str| s.parse::<BootFile>().unwrap().proxy_name();
        assert_eq!(f("pxelinux"), "pxelinux.0");
        assert_eq!(f("ipxe.efi"), "ipxe.efi");
        // dnsmasq looks for a dot anywhere in the basename, directories included.
        assert_eq!(f("v1.2/grub"), "v1.2/grub");
    }

    #[test]
    fn ipxe_binaries_are_recognised() {
        for yes in [
            "undionly.kpxe",
            "efi/ipxe.efi",
            "snp.efi",
            "ipxe.pxe",
            "x.kkpxe",
        ] {
            assert!(yes.parse::<BootFile>().unwrap().looks_like_ipxe(), "{yes}");
        }
        for no in [
            "pxelinux.0",
            "grubx64.efi",
            "shimx64.efi",
            "ipxe-dir/pxelinux.0",
        ] {
            assert!(!no.parse::<BootFile>().unwrap().looks_like_ipxe(), "{no}");
        }
    }

    #[test]
    fn urls() {
        assert!("http://10.0.0.1:8067/boot.ipxe".parse::<BootUrl>().is_ok());
        assert!("https://boot.example/x?y=1&z=2".parse::<BootUrl>().is_ok());
        let long = format!("http://h/{}", "a".repeat(120));
        for bad in [
            "ftp://h/x",
            "http://",
            "http:///x",
            "http://h/a,b",
            "http://h/a b",
            &long,
        ] {
            assert!(bad.parse::<BootUrl>().is_err(), "{bad}");
        }
        for ok in [
            "http://10.0.0.1/pxelinux.0",
            "iscsi:10.0.0.5::::iqn.2024-01.example:disk",
            "tftp://10.0.0.1/x.efi",
            "http://h/boot?mac=${mac}&uuid=${uuid}",
        ] {
            assert!(ok.parse::<ScriptUri>().is_ok(), "{ok}");
        }
        for bad in [
            "noscheme",
            "1x:abc",
            "http:",
            "http://h/a b",
            "http://h/\nexit",
            "a\"b:c",
        ] {
            assert!(bad.parse::<ScriptUri>().is_err(), "{bad}");
        }
    }

    #[test]
    fn prompts_and_pxelinux_values() {
        assert!("Booting FOG Client".parse::<PromptText>().is_ok());
        for bad in ["", "a,b", "a\"b", "x\ny", &"p".repeat(65)] {
            assert!(bad.parse::<PromptText>().is_err(), "{bad:?}");
        }
        assert!("pxelinux.cfg/default".parse::<PxelinuxValue>().is_ok());
        assert!("a b".parse::<PxelinuxValue>().is_err());
    }

    #[test]
    fn uuids_print_canonically_and_swap_for_the_wire() {
        let u: MachineUuid = "4C4C4544-0038-3610-804E-C4C04F4A5831".parse().unwrap();
        assert_eq!(u.to_string(), "4c4c4544-0038-3610-804e-c4c04f4a5831");
        // The Dell UUID of seed 03, as dnsmasq logged it after the 00 type byte.
        assert_eq!(
            u.guid_bytes(),
            [
                0x44, 0x45, 0x4c, 0x4c, 0x38, 0x00, 0x10, 0x36, 0x80, 0x4e, 0xc4, 0xc0, 0x4f, 0x4a,
                0x58, 0x31
            ]
        );
        for bad in [
            "",
            "4c4c4544003836108 04ec4c04f4a5831",
            "4c4c4544-0038-3610-804e-c4c04f4a583",
            "g4c4c544-0038-3610-804e-c4c04f4a5831",
        ] {
            assert!(bad.parse::<MachineUuid>().is_err(), "{bad}");
        }
    }
}
