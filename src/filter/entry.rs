//! What one hostsdir file is called and holds. Names and contents are fixed byte strings built
//! only from a validated [`MacAddr`], so the directory can be read back from names and sizes
//! alone, and no file can carry anything but a MAC-only `dhcp-host` line.

use serde::{Deserialize, Serialize};

use crate::model::MacAddr;

/// Tag that the configuration sets (`tag-if`) on requests arriving on an in-scope bridge. Every
/// filter line requires it, so the filter never touches other interfaces, and all entries are
/// tagged alike: dnsmasq looks for tagged `dhcp-host` entries before untagged ones, so a tagged
/// wildcard would otherwise beat an untagged exact MAC.
pub const SCOPE_TAG: &str = "virtmasq-filter";

/// Tag that a deny line sets where proxy DHCP is served. `ignore` alone does not stop
/// proxy-DHCP PXE replies (dnsmasq's proxy path skips the disabled check);
/// `dhcp-ignore=tag:virtmasq-deny` does.
pub const DENY_TAG: &str = "virtmasq-deny";

/// Name of the file holding the unknown-MAC policy (a wildcard entry). Not a MAC, and not a
/// name dnsmasq skips.
pub const WILDCARD_FILE: &str = "unknown-macs";

/// Prefix of our temporary files. It starts with `.`, so dnsmasq never reads a half-written
/// file; the rename that follows is the IN_MOVED_TO event dnsmasq reacts to.
pub const TEMP_PREFIX: &str = ".virtmasq-tmp.";

const WILDCARD_MAC: &str = "*:*:*:*:*:*";

/// Whether a host may be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// dnsmasq answers it as usual.
    Allow,
    /// dnsmasq ignores it, in proxy mode too.
    Deny,
}

/// The form of a deny line.
///
/// The tagged form is needed for proxy DHCP, but dnsmasq 2.90 and older crash (SIGSEGV) on
/// SIGHUP once a `dhcp-host` with `set:` has matched a request (fixed in 2.91 by commit
/// f006be7, "Fix crash when reloading DHCP config on SIGHUP"). So the tag is only written
/// where some covered network serves proxy DHCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DenyLine {
    /// `<mac>,ignore`: enough for a DHCP server.
    #[default]
    Plain,
    /// `<mac>,set:virtmasq-deny,ignore`: also silences proxy DHCP.
    Tagged,
}

impl DenyLine {
    /// The form a dnsmasq serving proxy DHCP (`proxy`) or not needs.
    pub fn for_proxy(proxy: bool) -> Self {
        if proxy {
            Self::Tagged
        } else {
            Self::Plain
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Self::Plain => ",ignore",
            Self::Tagged => concat!(",set:", "virtmasq-deny", ",ignore"),
        }
    }
}

/// Who a file is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// One host.
    Mac(MacAddr),
    /// Every MAC without a file of its own.
    Unknown,
}

impl Target {
    /// The file name: the MAC with dashes, or [`WILDCARD_FILE`].
    pub fn file_name(&self) -> String {
        match self {
            Self::Mac(mac) => mac.dashed(),
            Self::Unknown => WILDCARD_FILE.to_owned(),
        }
    }

    fn mac_text(&self) -> String {
        match self {
            Self::Mac(mac) => mac.to_string(),
            Self::Unknown => WILDCARD_MAC.to_owned(),
        }
    }

    /// The exact bytes of this target's file for `verdict`, deny lines in `form`.
    pub fn content(&self, verdict: Verdict, form: DenyLine) -> String {
        let mac = self.mac_text();
        match verdict {
            Verdict::Allow => format!("tag:{SCOPE_TAG},{mac}\n"),
            Verdict::Deny => format!("tag:{SCOPE_TAG},{mac}{}\n", form.suffix()),
        }
    }

    /// File length for `verdict`. Allow and both deny forms differ in length, so a size
    /// tells them apart without reading the file (the way ironic's filter reads its cache).
    pub fn content_len(&self, verdict: Verdict, form: DenyLine) -> u64 {
        let mac_len = match self {
            Self::Mac(_) => 17,
            Self::Unknown => WILDCARD_MAC.len(),
        };
        let base = "tag:".len() + SCOPE_TAG.len() + 1 + mac_len + 1;
        let extra = match verdict {
            Verdict::Allow => 0,
            Verdict::Deny => form.suffix().len(),
        };
        (base + extra) as u64
    }

    /// The verdict a file of `len` bytes holds, if it has one of our lengths for `form` (a
    /// deny line of the other form counts as no verdict, so it gets rewritten).
    pub fn verdict_from_len(&self, len: u64, form: DenyLine) -> Option<Verdict> {
        [Verdict::Allow, Verdict::Deny]
            .into_iter()
            .find(|v| self.content_len(*v, form) == len)
    }

    /// The verdict `bytes` holds, if they are exactly what we would write in `form`.
    pub fn verdict_from_content(&self, bytes: &[u8], form: DenyLine) -> Option<Verdict> {
        [Verdict::Allow, Verdict::Deny]
            .into_iter()
            .find(|v| self.content(*v, form).as_bytes() == bytes)
    }
}

/// How a directory entry's name is treated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameKind {
    /// One of our files.
    Ours(Target),
    /// Our temporary file, left behind by a crash (the lock excludes a live writer).
    Leftover,
    /// A name dnsmasq skips (dotfile, `~`, `#...#`) that is not ours: harmless, left alone.
    Skipped,
    /// A name dnsmasq reads that we did not write: reported, and removed at start-up.
    Foreign,
}

/// Classifies a directory entry by name. Only the canonical lowercase dashed form counts as a
/// MAC, because that is the only form we write; `AA-BB-..` or `aa:bb:..` (ironic's naming) is
/// someone else's file.
pub fn classify(name: &str) -> NameKind {
    if name.starts_with(TEMP_PREFIX) {
        return NameKind::Leftover;
    }
    if name.is_empty()
        || name.starts_with('.')
        || name.ends_with('~')
        || (name.starts_with('#') && name.ends_with('#'))
    {
        return NameKind::Skipped;
    }
    if name == WILDCARD_FILE {
        return NameKind::Ours(Target::Unknown);
    }
    match name.parse::<MacAddr>() {
        Ok(mac) if mac.dashed() == name => NameKind::Ours(Target::Mac(mac)),
        _ => NameKind::Foreign,
    }
}

/// The temporary name under which `final_name` is written before the rename.
pub fn temp_name(final_name: &str) -> String {
    format!("{TEMP_PREFIX}{final_name}")
}

/// A temporary name of its own for `final_name`, the `n`th swap of process `pid`: the
/// replaced file lies under it until it is freed.
pub fn swap_name(final_name: &str, pid: u32, n: u64) -> String {
    format!("{TEMP_PREFIX}{final_name}.{pid}.{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    #[test]
    fn contents_and_lengths_agree() {
        for target in [Target::Mac(mac("de:ad:be:ef:00:01")), Target::Unknown] {
            for form in [DenyLine::Plain, DenyLine::Tagged] {
                for verdict in [Verdict::Allow, Verdict::Deny] {
                    let content = target.content(verdict, form);
                    let len = content.len() as u64;
                    assert_eq!(len, target.content_len(verdict, form), "{content}");
                    assert_eq!(target.verdict_from_len(len, form), Some(verdict));
                    let bytes = content.as_bytes();
                    assert_eq!(target.verdict_from_content(bytes, form), Some(verdict));
                }
            }
            // A deny line of the other form is not ours: it gets rewritten.
            let tagged = target.content(Verdict::Deny, DenyLine::Tagged);
            let len = tagged.len() as u64;
            assert_eq!(target.verdict_from_len(len, DenyLine::Plain), None);
        }
    }

    #[test]
    fn exact_lines() {
        let m = Target::Mac(mac("DE-AD-BE-EF-00-01"));
        let u = Target::Unknown;
        let (plain, tagged) = (DenyLine::Plain, DenyLine::Tagged);
        let cases = [
            (
                m,
                Verdict::Allow,
                plain,
                "tag:virtmasq-filter,de:ad:be:ef:00:01\n",
            ),
            (
                m,
                Verdict::Deny,
                plain,
                "tag:virtmasq-filter,de:ad:be:ef:00:01,ignore\n",
            ),
            (
                m,
                Verdict::Deny,
                tagged,
                "tag:virtmasq-filter,de:ad:be:ef:00:01,set:virtmasq-deny,ignore\n",
            ),
            (
                u,
                Verdict::Allow,
                tagged,
                "tag:virtmasq-filter,*:*:*:*:*:*\n",
            ),
            (
                u,
                Verdict::Deny,
                plain,
                "tag:virtmasq-filter,*:*:*:*:*:*,ignore\n",
            ),
            (
                u,
                Verdict::Deny,
                tagged,
                "tag:virtmasq-filter,*:*:*:*:*:*,set:virtmasq-deny,ignore\n",
            ),
        ];
        for (target, verdict, form, want) in cases {
            assert_eq!(target.content(verdict, form), want);
        }
        assert_eq!(m.file_name(), "de-ad-be-ef-00-01");
        assert_eq!(DenyLine::Tagged.suffix(), format!(",set:{DENY_TAG},ignore"));
    }

    #[test]
    fn other_bytes_are_not_ours() {
        let m = Target::Mac(mac("de:ad:be:ef:00:01"));
        for bytes in [
            &b"tag:virtmasq-filter,de:ad:be:ef:00:02\n"[..],
            b"de:ad:be:ef:00:01,ignore\n",
            b"",
            b"tag:virtmasq-filter,de:ad:be:ef:00:01",
        ] {
            assert_eq!(
                m.verdict_from_content(bytes, DenyLine::Plain),
                None,
                "{bytes:?}"
            );
        }
        assert_eq!(m.verdict_from_len(0, DenyLine::Plain), None);
        assert_eq!(m.verdict_from_len(25, DenyLine::Tagged), None);
    }

    #[test]
    fn names() {
        let cases = [
            (
                "de-ad-be-ef-00-01",
                NameKind::Ours(Target::Mac(mac("de:ad:be:ef:00:01"))),
            ),
            ("unknown-macs", NameKind::Ours(Target::Unknown)),
            (".virtmasq-tmp.de-ad-be-ef-00-01", NameKind::Leftover),
            (".virtmasq-tmp.unknown-macs", NameKind::Leftover),
            (".hidden", NameKind::Skipped),
            ("de-ad-be-ef-00-01~", NameKind::Skipped),
            ("#de-ad-be-ef-00-01#", NameKind::Skipped),
            ("DE-AD-BE-EF-00-01", NameKind::Foreign),
            ("de:ad:be:ef:00:01", NameKind::Foreign),
            ("unknown_hosts_filter", NameKind::Foreign),
            ("#", NameKind::Skipped),
            ("de-ad-be-ef-00-01.conf", NameKind::Foreign),
        ];
        for (name, want) in cases {
            assert_eq!(classify(name), want, "{name}");
        }
        assert_eq!(temp_name("unknown-macs"), ".virtmasq-tmp.unknown-macs");
    }
}
