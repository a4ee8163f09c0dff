//! The desired policy (allow set, deny set, unknown-MAC policy) and the validation of requests
//! that change it. A request is checked whole before anything is touched: a malformed MAC, a
//! duplicate or a MAC both allowed and denied fails it with an error naming the entry.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use super::config::UnknownPolicy;
use super::entry::{DenyLine, Verdict};
use super::error::FilterError;
use crate::model::MacAddr;

/// The policy the hostsdir is derived from. `allow` and `deny` never share a MAC.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Policy {
    /// Policy for MACs in neither set.
    pub unknown: UnknownPolicy,
    /// MACs that are answered.
    pub allow: BTreeSet<MacAddr>,
    /// MACs that are ignored.
    pub deny: BTreeSet<MacAddr>,
    /// How deny lines are written: tagged where proxy DHCP is served.
    pub deny_line: DenyLine,
}

impl Policy {
    /// The verdict dnsmasq should reach for `mac`.
    pub fn verdict(&self, mac: &MacAddr) -> Verdict {
        if self.allow.contains(mac) {
            Verdict::Allow
        } else if self.deny.contains(mac) {
            Verdict::Deny
        } else {
            self.unknown_verdict()
        }
    }

    /// The verdict for MACs in neither set.
    pub fn unknown_verdict(&self) -> Verdict {
        match self.unknown {
            UnknownPolicy::Allow => Verdict::Allow,
            UnknownPolicy::Deny => Verdict::Deny,
        }
    }
}

/// Where an entry of a request came from, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loc {
    Line(usize),
    Entry(&'static str, usize),
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line(n) => write!(f, "line {n}"),
            Self::Entry(list, n) => write!(f, "{list} entry {n}"),
        }
    }
}

/// A full desired list for `replace_all` (`filter sync --from FILE`), validated: no
/// duplicates, no MAC on both sides.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DesiredLists {
    /// MACs to allow.
    pub allow: BTreeSet<MacAddr>,
    /// MACs to deny.
    pub deny: BTreeSet<MacAddr>,
}

impl DesiredLists {
    /// Builds the lists from two slices (the D-Bus form), naming entries by position.
    pub fn new(allow: &[MacAddr], deny: &[MacAddr]) -> Result<Self, FilterError> {
        let a = allow.len();
        let at = move |i: usize| match i < a {
            true => Loc::Entry("allow", i + 1),
            false => Loc::Entry("deny", i - a + 1),
        };
        Self::build(allow.to_vec(), deny.to_vec(), at)
    }

    /// Parses a desired-list file. Two forms:
    ///
    /// * JSON, when the text starts with `{`: `{"allow": [MAC...], "deny": [MAC...]}`, both
    ///   optional, nothing else;
    /// * otherwise one MAC per line, each meaning allow (nothing is denied); blank lines and
    ///   text after `#` are ignored.
    ///
    /// MACs are `aa:bb:cc:dd:ee:ff` or `AA-BB-CC-DD-EE-FF`. MACs in neither list fall back to
    /// the unknown-MAC policy. `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, FilterError> {
        if text.trim_start().starts_with('{') {
            Self::parse_json(text, origin)
        } else {
            Self::parse_lines(text, origin)
        }
    }

    fn parse_lines(text: &str, origin: &str) -> Result<Self, FilterError> {
        let (mut allow, mut lines) = (Vec::new(), Vec::new());
        for (i, raw) in text.lines().enumerate() {
            let entry = raw.split('#').next().unwrap_or("").trim();
            if entry.is_empty() {
                continue;
            }
            let mac = entry
                .parse()
                .map_err(|e| bad_entry(origin, Loc::Line(i + 1), e))?;
            allow.push(mac);
            lines.push(i + 1);
        }
        Self::build(allow, Vec::new(), |i| Loc::Line(lines[i]))
    }

    fn parse_json(text: &str, origin: &str) -> Result<Self, FilterError> {
        /// The lists as written: borrowed from the text where no escape forces a copy.
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw<'a> {
            #[serde(default, borrow)]
            allow: Vec<std::borrow::Cow<'a, str>>,
            #[serde(default, borrow)]
            deny: Vec<std::borrow::Cow<'a, str>>,
        }
        let raw: Raw = serde_json::from_str(text).map_err(|source| FilterError::BadJson {
            origin: origin.to_owned(),
            source,
        })?;
        // Line numbers are only for error messages: found for the entry reported, so that
        // parsing stays linear in the size of the input.
        let a = raw.allow.len();
        let entry = |i: usize| -> &str {
            match i < a {
                true => &raw.allow[i],
                false => &raw.deny[i - a],
            }
        };
        let locate = |i: usize| -> Loc {
            let loc = match i < a {
                true => Loc::Entry("allow", i + 1),
                false => Loc::Entry("deny", i - a + 1),
            };
            let s = entry(i);
            let nth = (0..i).filter(|&j| entry(j) == s).count();
            json_line(text, s, nth).map_or(loc, Loc::Line)
        };
        let resolve = |entries: &[std::borrow::Cow<'_, str>], base: usize| {
            let mut out = Vec::with_capacity(entries.len());
            for (i, s) in entries.iter().enumerate() {
                let mac = s
                    .parse()
                    .map_err(|e| bad_entry(origin, locate(base + i), e))?;
                out.push(mac);
            }
            Ok::<_, FilterError>(out)
        };
        let allow = resolve(&raw.allow, 0)?;
        let deny = resolve(&raw.deny, a)?;
        Self::build(allow, deny, locate)
    }

    /// Checks and builds the lists from the allowed and the denied MACs; `at(i)` says where
    /// the `i`th entry (allowed ones first) came from, for the error reported. A sort of
    /// compact keys finds repeated MACs (50,000 entries in about a millisecond) and the sets
    /// are built from sorted entries.
    fn build(
        allow: Vec<MacAddr>,
        deny: Vec<MacAddr>,
        at: impl Fn(usize) -> Loc,
    ) -> Result<Self, FilterError> {
        let a = allow.len();
        // The MAC in the high bits, the entry's index in the low 32: sorted by MAC, then
        // by place in the input.
        let mut keys: Vec<u128> = (allow.iter().chain(&deny))
            .enumerate()
            .map(|(i, mac)| (mac_bits(mac) << 32) | i as u128)
            .collect();
        keys.sort_unstable();
        let mac_of = |k: u128| mac_from_bits((k >> 32) as u64);
        let index_of = |k: u128| (k & 0xffff_ffff) as usize;
        // Reported: the repeat that comes first in the input, beside the entry it repeats.
        let repeat = keys
            .windows(2)
            .filter(|w| w[0] >> 32 == w[1] >> 32)
            .min_by_key(|w| index_of(w[1]));
        if let Some(&[first, again]) = repeat {
            let (i, j) = (index_of(first), index_of(again));
            let (mac, where_) = (mac_of(again), format!("{} and {}", at(i), at(j)));
            return Err(if (i < a) == (j < a) {
                FilterError::Duplicate { mac, where_ }
            } else {
                FilterError::Conflict { mac, where_ }
            });
        }
        let side = |allowed: bool| {
            (keys.iter())
                .filter(|&&k| (index_of(k) < a) == allowed)
                .map(|&k| mac_of(k))
                .collect()
        };
        Ok(Self {
            allow: side(true),
            deny: side(false),
        })
    }
}

/// A MAC as the low 48 bits of an integer, ordered as the MACs are.
fn mac_bits(mac: &MacAddr) -> u128 {
    let o = mac.octets();
    u128::from(u64::from_be_bytes([
        0, 0, o[0], o[1], o[2], o[3], o[4], o[5],
    ]))
}

fn mac_from_bits(bits: u64) -> MacAddr {
    let b = bits.to_be_bytes();
    MacAddr::new([b[2], b[3], b[4], b[5], b[6], b[7]])
}

/// Checks that a request (allow, deny, forget) names each MAC once.
pub fn check_request(macs: &[MacAddr]) -> Result<(), FilterError> {
    let mut first: HashMap<MacAddr, usize> = HashMap::new();
    for (i, mac) in macs.iter().enumerate() {
        if let Some(at) = first.insert(*mac, i + 1) {
            return Err(FilterError::Duplicate {
                mac: *mac,
                where_: format!("entries {at} and {}", i + 1),
            });
        }
    }
    Ok(())
}

fn bad_entry(origin: &str, at: Loc, e: impl fmt::Display) -> FilterError {
    FilterError::BadEntry {
        origin: origin.to_owned(),
        at: at.to_string(),
        reason: e.to_string(),
    }
}

/// Line (1-based) of the `nth` occurrence of the JSON string `"s"` in `text`, if it is written
/// without escapes (then it can be found verbatim).
fn json_line(text: &str, s: &str, nth: usize) -> Option<usize> {
    let needle = format!("\"{s}\"");
    let (offset, _) = text.match_indices(&needle).nth(nth)?;
    Some(text[..offset].matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(s: &str) -> MacAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_both_forms() {
        let cases: [(&str, &[&str], &[&str]); 4] = [
            (
                "aa:00:00:00:00:01\n\n# note\nAA-00-00-00-00-02 # x\n",
                &["aa:00:00:00:00:01", "aa:00:00:00:00:02"],
                &[],
            ),
            ("", &[], &[]),
            (
                "{\"allow\": [\"aa:00:00:00:00:01\"], \"deny\": [\"aa:00:00:00:00:02\"]}",
                &["aa:00:00:00:00:01"],
                &["aa:00:00:00:00:02"],
            ),
            ("  {\"deny\": []}", &[], &[]),
        ];
        for (text, allow, deny) in cases {
            let got = DesiredLists::parse(text, "list").unwrap();
            assert_eq!(got.allow, allow.iter().map(|s| mac(s)).collect(), "{text}");
            assert_eq!(got.deny, deny.iter().map(|s| mac(s)).collect(), "{text}");
        }
    }

    #[test]
    fn errors_name_the_entry_and_line() {
        let cases = [
            (
                "aa:00:00:00:00:01\nzz:00:00:00:00:02\n",
                &["list, line 2", "zz:00:00:00:00:02"][..],
            ),
            (
                "aa:00:00:00:00:01\n\naa-00-00-00-00-01\n",
                &["aa:00:00:00:00:01", "line 1 and line 3", "more than once"],
            ),
            (
                "{\"allow\": [\"aa:00:00:00:00:01\"],\n \"deny\": [\n\"AA:00:00:00:00:01\"]}",
                &["both allowed and denied", "line 1 and line 3"],
            ),
            (
                "{\"allow\": [\n\"aa:00:00:00:00:01\",\n\"bad\"]}",
                &["list, line 3", "\"bad\""],
            ),
            (
                "{\"allow\": [], \"other\": []}",
                &["list: not a valid filter list"],
            ),
            (
                "{\"allow\": [\"aa:00:00:00:00:01\", \"aa:00:00:00:00:01\"]}",
                &["line 1 and line 1"],
            ),
        ];
        for (text, wants) in cases {
            let err = DesiredLists::parse(text, "list").unwrap_err().to_string();
            for want in wants {
                assert!(err.contains(want), "{text:?}: {err}");
            }
        }
    }

    #[test]
    fn slices_and_requests() {
        let a = mac("aa:00:00:00:00:01");
        let b = mac("aa:00:00:00:00:02");
        let err = DesiredLists::new(&[a, b], &[b]).unwrap_err().to_string();
        assert!(err.contains("allow entry 2 and deny entry 1"), "{err}");
        assert!(DesiredLists::new(&[a], &[b]).is_ok());
        let err = check_request(&[a, b, a]).unwrap_err().to_string();
        assert!(err.contains("entries 1 and 3"), "{err}");
        assert!(check_request(&[a, b]).is_ok());
    }

    #[test]
    fn policy_verdicts() {
        let (a, b, c) = (
            mac("aa:00:00:00:00:01"),
            mac("aa:00:00:00:00:02"),
            mac("aa:00:00:00:00:03"),
        );
        let mut p = Policy {
            unknown: UnknownPolicy::Allow,
            allow: [a].into(),
            deny: [b].into(),
            deny_line: DenyLine::Plain,
        };
        assert_eq!(
            (p.verdict(&a), p.verdict(&b), p.verdict(&c)),
            (Verdict::Allow, Verdict::Deny, Verdict::Allow)
        );
        p.unknown = UnknownPolicy::Deny;
        assert_eq!(
            (p.verdict(&a), p.verdict(&c)),
            (Verdict::Allow, Verdict::Deny)
        );
    }
}
