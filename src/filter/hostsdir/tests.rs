//! Tests of the hostsdir's reads and writes.

use super::*;
use crate::filter::entry::Verdict;
use crate::model::MacAddr;

/// A new, empty hostsdir (`hd` in a temporary directory, which is returned to keep it).
fn hostsdir() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("hd");
    ensure_dir(&d).unwrap();
    (dir, d)
}

#[test]
fn observe_classifies_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = Target::Mac(MacAddr::new([0xaa, 0, 0, 0, 0, 1]));
    let b = Target::Mac(MacAddr::new([0xaa, 0, 0, 0, 0, 2]));
    let c = Target::Mac(MacAddr::new([0xaa, 0, 0, 0, 0, 3]));
    let plain = DenyLine::Plain;
    fs::write(d.join(a.file_name()), a.content(Verdict::Deny, plain)).unwrap();
    // Right length, wrong MAC: only a content check notices.
    fs::write(d.join(b.file_name()), a.content(Verdict::Allow, plain)).unwrap();
    fs::write(d.join(c.file_name()), "").unwrap();
    fs::write(d.join(".virtmasq-tmp.aa-00-00-00-00-09"), "x").unwrap();
    fs::write(d.join("README"), "x").unwrap();
    fs::write(d.join(".keep"), "").unwrap();
    fs::create_dir(d.join("aa-00-00-00-00-04")).unwrap();
    let cases = [
        (Verify::Sizes, FileState::Allow),
        (Verify::Contents, FileState::Other),
    ];
    for (verify, b_state) in cases {
        let seen = observe(d, verify, plain).unwrap();
        assert_eq!(seen.files.get(&a), Some(&FileState::Deny));
        assert_eq!(seen.files.get(&b), Some(&b_state), "{verify:?}");
        assert_eq!(seen.files.get(&c), Some(&FileState::Other));
        assert_eq!(seen.leftovers, [".virtmasq-tmp.aa-00-00-00-00-09"]);
        assert_eq!(seen.foreign, ["README", "aa-00-00-00-00-04"]);
    }
}

#[test]
fn a_file_planned_as_new_but_present_is_replaced_whole() {
    let (_dir, d) = hostsdir();
    let a = Target::Mac(MacAddr::new([0xaa, 0, 0, 0, 0, 2]));
    // Another writer (or a crash) left a longer, different file under the name.
    fs::write(
        d.join(a.file_name()),
        "left here by something else, much longer\n",
    )
    .unwrap();
    let actions = [FileAction::Write {
        target: a,
        verdict: Verdict::Allow,
        replaces: false,
    }];
    apply(&d, &actions, DenyLine::Tagged, Some(Durability::Syncfs)).unwrap();
    let text = fs::read_to_string(d.join(a.file_name())).unwrap();
    assert_eq!(text, a.content(Verdict::Allow, DenyLine::Tagged));
}

#[test]
fn a_replaced_file_is_swapped_out_and_freed_later() {
    let (_dir, d) = hostsdir();
    let a = Target::Mac(MacAddr::new([0xaa, 0, 0, 0, 0, 1]));
    let b = Target::Mac(MacAddr::new([0xaa, 0, 0, 0, 0, 2]));
    let form = DenyLine::Tagged;
    fs::write(d.join(a.file_name()), a.content(Verdict::Deny, form)).unwrap();
    fs::write(d.join(b.file_name()), b.content(Verdict::Deny, form)).unwrap();
    let actions = [
        FileAction::Write {
            target: a,
            verdict: Verdict::Allow,
            replaces: true,
        },
        FileAction::Remove {
            name: b.file_name(),
        },
    ];
    let mut retired = Retired::default();
    let done = apply_keeping(&d, &actions, form, None, &mut retired, 8).unwrap();
    assert_eq!((done.written, done.rewritten, done.removed), (1, 1, 1));
    assert_eq!(retired.len(), 2, "{retired:?}");
    let text = fs::read_to_string(d.join(a.file_name())).unwrap();
    assert_eq!(text, a.content(Verdict::Allow, form));
    // Until freed, the old file lies under a dotfile that dnsmasq skips and a sync of the
    // whole directory counts as a leftover.
    let seen = observe(&d, Verify::Contents, form).unwrap();
    assert_eq!(seen.files.len(), 1);
    assert_eq!(seen.leftovers.len(), 1, "{:?}", seen.leftovers);
    let old = fs::read_to_string(d.join(&seen.leftovers[0])).unwrap();
    assert_eq!(old, a.content(Verdict::Deny, form));
    retired.free(&d);
    let names: Vec<_> = fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, [std::ffi::OsString::from(a.file_name())]);
    // With no room, nothing is kept: the rename frees the old file at once.
    let mut none = Retired::default();
    let back = [FileAction::Write {
        target: a,
        verdict: Verdict::Deny,
        replaces: true,
    }];
    apply_keeping(&d, &back, form, None, &mut none, 0).unwrap();
    assert!(none.is_empty());
    assert_eq!(fs::read_dir(&d).unwrap().count(), 1);
}

#[test]
fn apply_writes_with_mode_and_no_temp_files() {
    let (_dir, d) = hostsdir();
    let a = Target::Mac(MacAddr::new([0xaa, 0, 0, 0, 0, 1]));
    for durability in [Some(Durability::Syncfs), Some(Durability::FsyncEach), None] {
        let actions = [
            FileAction::Write {
                target: a,
                verdict: Verdict::Deny,
                replaces: false,
            },
            FileAction::Write {
                target: Target::Unknown,
                verdict: Verdict::Allow,
                replaces: true,
            },
            FileAction::Remove {
                name: "gone".into(),
            },
        ];
        let done = apply(&d, &actions, DenyLine::Tagged, durability).unwrap();
        assert_eq!(
            done,
            Applied {
                written: 2,
                rewritten: 1,
                removed: 0
            }
        );
        let text = fs::read_to_string(d.join("aa-00-00-00-00-01")).unwrap();
        assert_eq!(text, a.content(Verdict::Deny, DenyLine::Tagged));
        let mode = fs::metadata(d.join("unknown-macs"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
        let names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }
    assert_eq!(
        fs::metadata(&d).unwrap().permissions().mode() & 0o777,
        0o755
    );
}
