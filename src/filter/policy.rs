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
        let tagged = |list: &'static str, macs: &[MacAddr]| -> Vec<(MacAddr, Loc)> {
            let locs = (1..).map(move |i| Loc::Entry(list, i));
            macs.iter().copied().zip(locs).collect()
        };
        Self::build(tagged("allow", allow), tagged("deny", deny))
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
        let mut allow = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let entry = raw.split('#').next().unwrap_or("").trim();
            if entry.is_empty() {
                continue;
            }
            let mac = entry
                .parse()
                .map_err(|e| bad_entry(origin, Loc::Line(i + 1), e))?;
            allow.push((mac, Loc::Line(i + 1)));
        }
        Self::build(allow, Vec::new())
    }

    fn parse_json(text: &str, origin: &str) -> Result<Self, FilterError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(default)]
            allow: Vec<String>,
            #[serde(default)]
            deny: Vec<String>,
        }
        let raw: Raw = serde_json::from_str(text).map_err(|source| FilterError::BadJson {
            origin: origin.to_owned(),
            source,
        })?;
        // Line numbers are only for error messages: found for the entry reported, so that
        // parsing stays linear in the size of the input.
        let all: Vec<(&'static str, &String)> = (raw.allow.iter().map(|s| ("allow", s)))
            .chain(raw.deny.iter().map(|s| ("deny", s)))
            .collect();
        let locate = |loc: Loc| -> Loc {
            let Loc::Entry(list, n) = loc else { return loc };
            let offset = if list == "allow" { 0 } else { raw.allow.len() };
            let Some((_, s)) = all.get(offset + n - 1) else {
                return loc;
            };
            let nth = all[..offset + n - 1].iter().filter(|(_, t)| t == s).count();
            json_line(text, s, nth).map_or(loc, Loc::Line)
        };
        let resolve = |list: &'static str, entries: &[String]| {
            let mut out = Vec::with_capacity(entries.len());
            for (i, s) in entries.iter().enumerate() {
                let loc = Loc::Entry(list, i + 1);
                let mac = s.parse().map_err(|e| bad_entry(origin, locate(loc), e))?;
                out.push((mac, loc));
            }
            Ok::<_, FilterError>(out)
        };
        let allow = resolve("allow", &raw.allow)?;
        let deny = resolve("deny", &raw.deny)?;
        Self::build_located(allow, deny, locate)
    }

    fn build(allow: Vec<(MacAddr, Loc)>, deny: Vec<(MacAddr, Loc)>) -> Result<Self, FilterError> {
        Self::build_located(allow, deny, |loc| loc)
    }

    /// Checks and builds the lists; `locate` turns an entry's place into the one reported. A
    /// sort finds repeated MACs (50,000 entries in a few milliseconds, where a hash map of
    /// them took several times that) and the sets are built from sorted entries.
    fn build_located(
        allow: Vec<(MacAddr, Loc)>,
        deny: Vec<(MacAddr, Loc)>,
        locate: impl Fn(Loc) -> Loc,
    ) -> Result<Self, FilterError> {
        let tagged = |v: Verdict| move |(mac, loc): (MacAddr, Loc)| (mac, v, loc);
        let mut all: Vec<(MacAddr, usize, Verdict, Loc)> = (allow.into_iter())
            .map(tagged(Verdict::Allow))
            .chain(deny.into_iter().map(tagged(Verdict::Deny)))
            .enumerate()
            .map(|(i, (mac, v, loc))| (mac, i, v, loc))
            .collect();
        all.sort_unstable_by_key(|e| (e.0, e.1));
        // Reported: the repeat that comes first in the input, beside the entry it repeats.
        let repeat = all
            .windows(2)
            .filter(|w| w[0].0 == w[1].0)
            .min_by_key(|w| w[1].1);
        if let Some([first, again]) = repeat {
            let (mac, where_) = (
                again.0,
                format!("{} and {}", locate(first.3), locate(again.3)),
            );
            return Err(if first.2 == again.2 {
                FilterError::Duplicate { mac, where_ }
            } else {
                FilterError::Conflict { mac, where_ }
            });
        }
        let side = |v: Verdict| all.iter().filter(|e| e.2 == v).map(|e| e.0).collect();
        Ok(Self {
            allow: side(Verdict::Allow),
            deny: side(Verdict::Deny),
        })
    }
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
