//! What one hostsdir file is called and holds. Names and contents are fixed byte strings built
//! only from a validated [`MacAddr`], so the directory can be read back from names and sizes
//! alone, and no file can carry anything but a MAC-only `dhcp-host` line.

use crate::model::MacAddr;

/// Tag that the configuration sets (`tag-if`) on requests arriving on an in-scope bridge. Every
/// filter line requires it, so the filter never touches other interfaces, and all entries are
/// tagged alike: dnsmasq looks for tagged `dhcp-host` entries before untagged ones, so a tagged
/// wildcard would otherwise beat an untagged exact MAC.
pub const SCOPE_TAG: &str = "virtmasq-filter";

/// Tag that a deny line sets. `ignore` alone does not stop proxy-DHCP PXE replies (dnsmasq's
/// proxy path skips the disabled check); `dhcp-ignore=tag:virtmasq-deny` does.
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

    /// The exact bytes of this target's file for `verdict`.
    pub fn content(&self, verdict: Verdict) -> String {
        let mac = self.mac_text();
        match verdict {
            Verdict::Allow => format!("tag:{SCOPE_TAG},{mac}\n"),
            Verdict::Deny => format!("tag:{SCOPE_TAG},{mac},set:{DENY_TAG},ignore\n"),
        }
    }

    /// File length for `verdict`: allow and deny differ, so a size tells them apart without
    /// reading the file (the way ironic's filter reads its cache).
    pub fn content_len(&self, verdict: Verdict) -> u64 {
        let mac_len = match self {
            Self::Mac(_) => 17,
            Self::Unknown => WILDCARD_MAC.len(),
        };
        let base = "tag:".len() + SCOPE_TAG.len() + 1 + mac_len + 1;
        let extra = match verdict {
            Verdict::Allow => 0,
            Verdict::Deny => ",set:".len() + DENY_TAG.len() + ",ignore".len(),
        };
        (base + extra) as u64
    }

    /// The verdict a file of `len` bytes holds, if it has one of our two lengths.
    pub fn verdict_from_len(&self, len: u64) -> Option<Verdict> {
        [Verdict::Allow, Verdict::Deny]
            .into_iter()
            .find(|v| self.content_len(*v) == len)
    }

    /// The verdict `bytes` holds, if they are exactly what we would write.
    pub fn verdict_from_content(&self, bytes: &[u8]) -> Option<Verdict> {
        [Verdict::Allow, Verdict::Deny]
            .into_iter()
            .find(|v| self.content(*v).as_bytes() == bytes)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    #[test]
    fn contents_and_lengths_agree() {
        for target in [Target::Mac(mac("de:ad:be:ef:00:01")), Target::Unknown] {
            for verdict in [Verdict::Allow, Verdict::Deny] {
                let content = target.content(verdict);
                assert_eq!(
                    content.len() as u64,
                    target.content_len(verdict),
                    "{content}"
                );
                assert_eq!(target.verdict_from_len(content.len() as u64), Some(verdict));
                assert_eq!(
                    target.verdict_from_content(content.as_bytes()),
                    Some(verdict)
                );
            }
        }
    }

    #[test]
    fn exact_lines() {
        let m = Target::Mac(mac("DE-AD-BE-EF-00-01"));
        let cases = [
            (m, Verdict::Allow, "tag:virtmasq-filter,de:ad:be:ef:00:01\n"),
            (
                m,
                Verdict::Deny,
                "tag:virtmasq-filter,de:ad:be:ef:00:01,set:virtmasq-deny,ignore\n",
            ),
            (
                Target::Unknown,
                Verdict::Allow,
                "tag:virtmasq-filter,*:*:*:*:*:*\n",
            ),
            (
                Target::Unknown,
                Verdict::Deny,
                "tag:virtmasq-filter,*:*:*:*:*:*,set:virtmasq-deny,ignore\n",
            ),
        ];
        for (target, verdict, want) in cases {
            assert_eq!(target.content(verdict), want);
        }
        assert_eq!(m.file_name(), "de-ad-be-ef-00-01");
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
            assert_eq!(m.verdict_from_content(bytes), None, "{bytes:?}");
        }
        assert_eq!(m.verdict_from_len(0), None);
        assert_eq!(m.verdict_from_len(25), None);
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
