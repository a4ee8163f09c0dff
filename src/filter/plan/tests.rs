//! Table-driven tests of the planner. Actions are shown compactly: `W <who> <verdict> new|old`
//! for a write, `R <name>` for a removal; `<who>` is the last MAC octet or `*`.

use super::*;
use crate::filter::config::UnknownPolicy;
use crate::model::MacAddr;

fn mac(last: u8) -> MacAddr {
    MacAddr::new([0xaa, 0, 0, 0, 0, last])
}

fn target(who: &str) -> Target {
    match who {
        "*" => Target::Unknown,
        n => Target::Mac(mac(n.parse().unwrap())),
    }
}

/// `files`: "<who>=allow|deny|other"; `extra`: "leftover:<name>" or "foreign:<name>".
fn observed(files: &[&str], extra: &[&str]) -> ObservedDir {
    let mut dir = ObservedDir::default();
    for f in files {
        let (who, state) = f.split_once('=').unwrap();
        let state = match state {
            "allow" => FileState::Allow,
            "deny" => FileState::Deny,
            _ => FileState::Other,
        };
        dir.files.insert(target(who), state);
    }
    for e in extra {
        match e.split_once(':').unwrap() {
            ("leftover", n) => dir.leftovers.push(n.to_owned()),
            (_, n) => dir.foreign.push(n.to_owned()),
        }
    }
    dir
}

fn policy(unknown: UnknownPolicy, allow: &[u8], deny: &[u8]) -> Policy {
    Policy {
        unknown,
        allow: allow.iter().map(|n| mac(*n)).collect(),
        deny: deny.iter().map(|n| mac(*n)).collect(),
        deny_line: Default::default(),
    }
}

fn show(actions: &[FileAction]) -> Vec<String> {
    actions
        .iter()
        .map(|a| match a {
            FileAction::Write {
                target,
                verdict,
                replaces,
            } => {
                let who = match target {
                    Target::Mac(m) => m.octets()[5].to_string(),
                    Target::Unknown => "*".to_owned(),
                };
                let v = if *verdict == Verdict::Allow {
                    "allow"
                } else {
                    "deny"
                };
                let age = if *replaces { "old" } else { "new" };
                format!("W {who} {v} {age}")
            }
            FileAction::Remove { name } => format!("R {name}"),
        })
        .collect()
}

use UnknownPolicy::{Allow as UA, Deny as UD};

struct Case {
    name: &'static str,
    files: &'static [&'static str],
    extra: &'static [&'static str],
    policy: Policy,
    runtime: &'static [&'static str],
    purge: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "empty dir, unknown allowed: only denies need files",
            files: &[],
            extra: &[],
            policy: policy(UA, &[1], &[2, 3]),
            runtime: &["W 2 deny new", "W 3 deny new"],
            purge: &["W 2 deny new", "W 3 deny new"],
        },
        Case {
            name: "empty dir, unknown denied: allows and the wildcard, wildcard last",
            files: &[],
            extra: &[],
            policy: policy(UD, &[1], &[2]),
            runtime: &["W 1 allow new", "W * deny new"],
            purge: &["W 1 allow new", "W * deny new"],
        },
        Case {
            name: "in sync: nothing to do",
            files: &["2=deny"],
            extra: &[],
            policy: policy(UA, &[1], &[2]),
            runtime: &[],
            purge: &[],
        },
        Case {
            name: "toggle both ways, denies first",
            files: &["1=deny", "2=allow"],
            extra: &[],
            policy: policy(UA, &[1], &[2]),
            runtime: &["W 2 deny old", "W 1 allow old"],
            purge: &["R aa-00-00-00-00-01", "W 2 deny old"],
        },
        Case {
            name: "forgotten MAC: rewritten to the unknown policy, removed only at purge",
            files: &["5=deny"],
            extra: &[],
            policy: policy(UA, &[], &[]),
            runtime: &["W 5 allow old"],
            purge: &["R aa-00-00-00-00-05"],
        },
        Case {
            name: "unknown policy flips to deny: allowed MAC gets a file before the wildcard",
            files: &["2=deny"],
            extra: &[],
            policy: policy(UD, &[1], &[2]),
            runtime: &["W 1 allow new", "W * deny new"],
            purge: &["R aa-00-00-00-00-02", "W 1 allow new", "W * deny new"],
        },
        Case {
            name: "unknown policy flips back to allow: the wildcard is rewritten, never deleted",
            files: &["1=allow", "*=deny"],
            extra: &[],
            policy: policy(UA, &[1], &[]),
            runtime: &["W * allow old"],
            purge: &["R aa-00-00-00-00-01", "R unknown-macs"],
        },
        Case {
            name: "damaged file is rewritten",
            files: &["2=other", "*=other"],
            extra: &[],
            policy: policy(UD, &[2], &[]),
            runtime: &["W 2 allow old", "W * deny old"],
            purge: &["W 2 allow old", "W * deny old"],
        },
        Case {
            name: "leftovers always removed, foreign files only at purge",
            files: &[],
            extra: &["leftover:.virtmasq-tmp.x", "foreign:notes.txt"],
            policy: policy(UA, &[], &[]),
            runtime: &["R .virtmasq-tmp.x"],
            purge: &["R .virtmasq-tmp.x", "R notes.txt"],
        },
    ]
}

#[test]
fn runtime_and_purge_plans() {
    for case in cases() {
        let dir = observed(case.files, case.extra);
        assert_eq!(
            show(&plan(&dir, &case.policy)),
            case.runtime,
            "runtime: {}",
            case.name
        );
        assert_eq!(
            show(&plan_purge(&dir, &case.policy)),
            case.purge,
            "purge: {}",
            case.name
        );
    }
}

#[test]
fn applying_a_plan_reaches_a_fixed_point() {
    for case in cases() {
        let mut dir = observed(case.files, case.extra);
        for action in plan(&dir, &case.policy) {
            apply(&mut dir, &action);
        }
        assert!(plan(&dir, &case.policy).is_empty(), "{}", case.name);
        for action in plan_purge(&dir, &case.policy) {
            apply(&mut dir, &action);
        }
        assert!(plan_purge(&dir, &case.policy).is_empty(), "{}", case.name);
    }
}

/// What the applier does to the directory, as the planner sees it.
fn apply(dir: &mut ObservedDir, action: &FileAction) {
    match action {
        FileAction::Write {
            target, verdict, ..
        } => {
            dir.files.insert(*target, (*verdict).into());
        }
        FileAction::Remove { name } => {
            dir.leftovers.retain(|n| n != name);
            dir.foreign.retain(|n| n != name);
            dir.files.retain(|t, _| t.file_name() != *name);
        }
    }
}
