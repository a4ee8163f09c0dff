//! The policy's journal: the changes made since `filter.json` was last written whole, one
//! line each (`allow MAC`, `deny MAC`, `forget MAC`), so that a change of a few MACs among
//! 50,000 appends and fsyncs a few lines instead of rewriting and fsyncing the whole policy.
//!
//! The journal belongs to one state file: it is named after that file's inode
//! (`filter.journal.<inode>`). Writing the policy whole gives the state file a new inode, so a
//! journal left over from before (a stop between the write and the journal's removal) names
//! another inode and is never read again. A last line without its newline is a write that
//! never finished (nor was acknowledged): it is ignored, and the next change writes the
//! policy whole rather than append after it.

use std::collections::BTreeSet;

use super::store::StoredPolicy;
use crate::model::MacAddr;

/// Prefix of the journal's file name; the state file's inode follows.
pub const PREFIX: &str = "filter.journal.";

/// Above this size (or a quarter of the state file's, if larger), the policy is written whole.
pub const MIN_COMPACT_BYTES: u64 = 64 * 1024;

/// The journal lines that record the entries of `macs` as they are in `policy`.
pub fn lines(policy: &StoredPolicy, macs: &[MacAddr]) -> String {
    let mut out = String::with_capacity(macs.len() * 24);
    for mac in macs {
        let op = if policy.allow.contains(mac) {
            "allow"
        } else if policy.deny.contains(mac) {
            "deny"
        } else {
            "forget"
        };
        out.push_str(op);
        out.push(' ');
        out.push_str(&mac.to_string());
        out.push('\n');
    }
    out
}

/// Applies the journal `text` to `policy`. Returns whether its end is torn (a last line
/// without newline, ignored), or the first bad line.
pub fn replay(policy: &mut StoredPolicy, text: &str) -> Result<bool, String> {
    let (whole, torn) = match text.rfind('\n') {
        Some(end) => (&text[..=end], end + 1 < text.len()),
        None => ("", !text.is_empty()),
    };
    for (i, line) in whole.lines().enumerate() {
        let bad = |why: &str| format!("line {}: {why}: {:?}", i + 1, line);
        let (op, mac) = line.split_once(' ').ok_or_else(|| bad("no MAC"))?;
        let mac: MacAddr = mac.parse().map_err(|_| bad("not a MAC"))?;
        let (to, other): (Option<&mut BTreeSet<MacAddr>>, &mut BTreeSet<MacAddr>) = match op {
            "allow" => (Some(&mut policy.allow), &mut policy.deny),
            "deny" => (Some(&mut policy.deny), &mut policy.allow),
            "forget" => {
                policy.allow.remove(&mac);
                (None, &mut policy.deny)
            }
            _ => return Err(bad("unknown operation")),
        };
        other.remove(&mac);
        if let Some(set) = to {
            set.insert(mac);
        }
    }
    Ok(torn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(last: u8) -> MacAddr {
        MacAddr::new([0xaa, 0, 0, 0, 0, last])
    }

    #[test]
    fn lines_replay_to_the_same_policy() {
        let mut after = StoredPolicy::default();
        after.allow.insert(mac(1));
        after.deny.insert(mac(2));
        let text = lines(&after, &[mac(1), mac(2), mac(3)]);
        assert_eq!(
            text,
            "allow aa:00:00:00:00:01\ndeny aa:00:00:00:00:02\nforget aa:00:00:00:00:03\n"
        );
        let mut before = StoredPolicy::default();
        before.deny.insert(mac(1));
        before.allow.insert(mac(2));
        before.allow.insert(mac(3));
        assert_eq!(replay(&mut before, &text), Ok(false));
        assert_eq!(before, after);
    }

    #[test]
    fn a_torn_end_is_ignored_and_a_bad_line_named() {
        let mut p = StoredPolicy::default();
        assert_eq!(
            replay(&mut p, "allow aa:00:00:00:00:01\ndeny aa:0"),
            Ok(true)
        );
        assert_eq!(p.allow.len(), 1);
        assert!(p.deny.is_empty());
        let err = replay(&mut p, "allow aa:00:00:00:00:01\nsteal aa:00:00:00:00:02\n");
        assert!(err.unwrap_err().contains("line 2"));
        assert!(replay(&mut p, "allow nope\n").is_err());
    }
}
