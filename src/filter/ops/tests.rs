//! Tests of the filter operations against a temporary state directory and hostsdir.

use std::fs;
use std::path::Path;

use super::*;
use crate::filter::config::Durability;

fn mac(last: u8) -> MacAddr {
    MacAddr::new([0xaa, 0, 0, 0, 0, last])
}

struct Fixture {
    _dir: tempfile::TempDir,
    filter: PxeFilter,
}

fn fixture(unknown: UnknownPolicy, compact_after: u32) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let cfg = FilterConfig {
        enabled: true,
        hostsdir: dir.path().join("hostsdir"),
        unknown,
        durability: Durability::Syncfs,
        compact_after,
        ..FilterConfig::default()
    };
    let filter = PxeFilter::new(cfg, dir.path().join("state"));
    Fixture { _dir: dir, filter }
}

/// The hostsdir as "name=content" lines, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let text = fs::read_to_string(e.path()).unwrap();
            format!("{}={}", e.file_name().to_string_lossy(), text.trim_end())
        })
        .collect();
    out.sort();
    out
}

const DENY_1: &str = "aa-00-00-00-00-01=tag:virtmasq-filter,aa:00:00:00:00:01,ignore";
const ALLOW_1: &str = "aa-00-00-00-00-01=tag:virtmasq-filter,aa:00:00:00:00:01";
const ALLOW_2: &str = "aa-00-00-00-00-02=tag:virtmasq-filter,aa:00:00:00:00:02";
const WILD_DENY: &str = "unknown-macs=tag:virtmasq-filter,*:*:*:*:*:*,ignore";
const WILD_ALLOW: &str = "unknown-macs=tag:virtmasq-filter,*:*:*:*:*:*";

#[test]
fn operations_shape_the_directory() {
    let f = fixture(UnknownPolicy::Allow, 100);
    let hd = f.filter.hostsdir().to_owned();
    type Step = fn(&PxeFilter) -> Result<SyncReport, FilterError>;
    let steps: [(&str, Step, &[&str]); 6] = [
        (
            "allow under unknown=allow needs no file",
            |f| f.allow(&[mac(2)]),
            &[],
        ),
        ("deny writes a deny file", |f| f.deny(&[mac(1)]), &[DENY_1]),
        (
            "forget rewrites, never deletes",
            |f| f.forget(&[mac(1)]),
            &[ALLOW_1],
        ),
        (
            "unknown=deny: the allowed MAC gets a file, the forgotten one follows the wildcard",
            |f| f.set_unknown(Some(UnknownPolicy::Deny)),
            &[DENY_1, ALLOW_2, WILD_DENY],
        ),
        (
            "back to the configured policy",
            |f| f.set_unknown(None),
            &[ALLOW_1, ALLOW_2, WILD_ALLOW],
        ),
        (
            "purge keeps only what is needed",
            |f| f.purge_and_rebuild(false),
            &[],
        ),
    ];
    for (what, step, want) in steps {
        step(&f.filter).unwrap();
        assert_eq!(listing(&hd), want, "{what}");
    }
    let policy = f.filter.list().unwrap();
    assert_eq!(policy.allow, [mac(2)].into());
    assert!(policy.deny.is_empty());
}

#[test]
fn bad_requests_change_nothing() {
    let f = fixture(UnknownPolicy::Allow, 100);
    f.filter.deny(&[mac(1)]).unwrap();
    let before = (f.filter.list().unwrap(), listing(f.filter.hostsdir()));
    let err = f.filter.allow(&[mac(1), mac(2), mac(1)]).unwrap_err();
    assert!(err.to_string().contains("aa:00:00:00:00:01"), "{err}");
    let err = DesiredLists::parse("aa:00:00:00:00:03\nnot-a-mac\n", "list.txt").unwrap_err();
    assert!(err.to_string().contains("list.txt, line 2"), "{err}");
    assert_eq!(
        (f.filter.list().unwrap(), listing(f.filter.hostsdir())),
        before
    );
}

#[test]
fn replace_all_and_sync_repair() {
    let f = fixture(UnknownPolicy::Deny, 100);
    let hd = f.filter.hostsdir().to_owned();
    let desired = DesiredLists::parse(
        "{\"allow\": [\"aa:00:00:00:00:01\"], \"deny\": [\"aa:00:00:00:00:02\"]}",
        "x",
    )
    .unwrap();
    f.filter.replace_all(desired).unwrap();
    assert_eq!(listing(&hd), [ALLOW_1, WILD_DENY]);
    // A damaged file of the wrong length, a leftover temporary file and a foreign file.
    fs::write(hd.join("aa-00-00-00-00-01"), "").unwrap();
    fs::write(hd.join(".virtmasq-tmp.unknown-macs"), "x").unwrap();
    fs::write(hd.join("stray"), "aa:00:00:00:00:09\n").unwrap();
    let report = f.filter.sync().unwrap();
    assert_eq!(report.foreign, ["stray"]);
    assert_eq!(
        listing(&hd),
        [ALLOW_1, "stray=aa:00:00:00:00:09", WILD_DENY]
    );
    f.filter.purge_and_rebuild(false).unwrap();
    assert_eq!(listing(&hd), [ALLOW_1, WILD_DENY]);
}

#[test]
fn rewrites_are_counted_until_compaction() {
    let f = fixture(UnknownPolicy::Allow, 3);
    let filter = &f.filter;
    let cases: [(Step, bool); 5] = [
        (|f| f.deny(&[mac(1), mac(2)]), false),
        (|f| f.allow(&[mac(1), mac(2)]), false),
        (|f| f.deny(&[mac(1)]), true),
        (|f| f.compacted().map(|()| SyncReport::default()), false),
        (|f| f.purge_and_rebuild(false), false),
    ];
    type Step = fn(&PxeFilter) -> Result<SyncReport, FilterError>;
    for (i, (step, due)) in cases.into_iter().enumerate() {
        step(filter).unwrap();
        assert_eq!(filter.needs_compaction().unwrap(), due, "step {i}");
    }
}

#[test]
fn concurrent_writers_lose_nothing() {
    let f = fixture(UnknownPolicy::Allow, 1000);
    std::thread::scope(|s| {
        for t in 0..4u8 {
            let filter = f.filter.clone();
            s.spawn(move || {
                for i in 0..25u8 {
                    filter.deny(&[MacAddr::new([0xbb, t, 0, 0, 0, i])]).unwrap();
                }
            });
        }
    });
    assert_eq!(f.filter.list().unwrap().deny.len(), 100);
    assert_eq!(listing(f.filter.hostsdir()).len(), 100);
}

#[test]
fn disabled_filter_only_stores_the_policy() {
    let mut f = fixture(UnknownPolicy::Allow, 100);
    let mut cfg = f.filter.cfg.clone();
    cfg.enabled = false;
    f.filter = PxeFilter::new(cfg, f.filter.store.dir().to_owned());
    f.filter.deny(&[mac(1)]).unwrap();
    f.filter.purge_and_rebuild(false).unwrap();
    assert!(!f.filter.hostsdir().exists());
    assert_eq!(f.filter.list().unwrap().deny, [mac(1)].into());
}

#[test]
fn proxy_start_up_switches_deny_lines_to_the_tagged_form() {
    let f = fixture(UnknownPolicy::Deny, 100);
    let hd = f.filter.hostsdir().to_owned();
    f.filter.deny(&[mac(1)]).unwrap();
    f.filter.allow(&[mac(2)]).unwrap();
    assert_eq!(listing(&hd), [ALLOW_2, WILD_DENY]);
    f.filter.set_unknown(Some(UnknownPolicy::Allow)).unwrap();
    f.filter.purge_and_rebuild(true).unwrap();
    let tagged = "aa-00-00-00-00-01=tag:virtmasq-filter,aa:00:00:00:00:01,set:virtmasq-deny,ignore";
    assert_eq!(listing(&hd), [tagged]);
    // Later writers keep the form chosen at start-up.
    f.filter.deny(&[mac(3)]).unwrap();
    assert!(listing(&hd)[1].ends_with("set:virtmasq-deny,ignore"));
    assert!(!sighup_is_safe((2, 90), true));
    assert!(sighup_is_safe((2, 90), false) && sighup_is_safe((2, 91), true));
}

#[test]
fn switching_proxy_rewrites_deny_lines_in_place() {
    let f = fixture(UnknownPolicy::Allow, 100);
    let hd = f.filter.hostsdir().to_owned();
    f.filter.deny(&[mac(1)]).unwrap();
    assert_eq!(listing(&hd), vec![DENY_1]);
    f.filter.set_proxy(true).unwrap();
    let tagged = listing(&hd);
    assert_eq!(tagged.len(), 1, "{tagged:?}");
    assert!(
        tagged[0].contains("set:virtmasq-deny") && tagged[0].ends_with(",ignore"),
        "{tagged:?}"
    );
    f.filter.set_proxy(false).unwrap();
    assert_eq!(listing(&hd), vec![DENY_1], "back to the plain form");
}

#[test]
fn the_cached_list_reads_the_policy_again_only_after_a_save() {
    let f = fixture(UnknownPolicy::Deny, 1000);
    assert!(f.filter.list_cached().unwrap().allow.is_empty());
    f.filter.allow(&[mac(1)]).unwrap();
    assert!(f.filter.list_cached().unwrap().allow.contains(&mac(1)));
    f.filter.deny(&[mac(2)]).unwrap();
    assert!(f.filter.list_cached().unwrap().deny.contains(&mac(2)));
    // Spoil the file in place, same size and times: an unchanged version is not read again.
    let state = f.filter.store.dir().join("filter.json");
    let meta = fs::metadata(&state).unwrap();
    let spoiled = "x".repeat(meta.len() as usize);
    fs::write(&state, spoiled).unwrap();
    let times = |m: &fs::Metadata| {
        use std::os::unix::fs::MetadataExt;
        (
            nix::sys::time::TimeSpec::new(m.atime(), m.atime_nsec()),
            nix::sys::time::TimeSpec::new(m.mtime(), m.mtime_nsec()),
        )
    };
    let (atime, mtime) = times(&meta);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        &state,
        &atime,
        &mtime,
        nix::sys::stat::UtimensatFlags::FollowSymlink,
    )
    .unwrap();
    assert!(
        f.filter.list().is_err(),
        "the spoiled file should not parse"
    );
    assert!(f.filter.list_cached().unwrap().allow.contains(&mac(1)));
}

fn lists(allow: &[u8], deny: &[u8]) -> DesiredLists {
    let macs = |l: &[u8]| l.iter().map(|&i| mac(i)).collect::<Vec<_>>();
    DesiredLists::new(&macs(allow), &macs(deny)).unwrap()
}

#[test]
fn a_whole_list_sync_looks_only_at_what_it_changes() {
    let f = fixture(UnknownPolicy::Deny, 1000);
    let hd = f.filter.hostsdir().to_owned();
    let first = f.filter.replace_all(lists(&[1, 2, 3], &[4])).unwrap();
    assert_eq!(
        first.applied.written, 4,
        "three allowed MACs and the wildcard"
    );
    // A damaged file of a MAC the next sync leaves as it is: not looked at, so not repaired.
    fs::write(hd.join("aa-00-00-00-00-03"), "").unwrap();
    let flip = f.filter.replace_all(lists(&[1, 3], &[2, 4])).unwrap();
    assert_eq!(flip.applied.written, 1, "only the flipped MAC's file");
    assert_eq!(
        fs::read_to_string(hd.join("aa-00-00-00-00-03")).unwrap(),
        ""
    );
    let same = f.filter.replace_all(lists(&[1, 3], &[2, 4])).unwrap();
    assert_eq!(same.applied.written, 0);
    // The full check still repairs it.
    f.filter.sync().unwrap();
    assert!(listing(&hd)
        .contains(&"aa-00-00-00-00-03=tag:virtmasq-filter,aa:00:00:00:00:03".to_owned()));
}

#[test]
fn the_change_after_an_interrupted_one_looks_at_the_whole_directory() {
    let f = fixture(UnknownPolicy::Deny, 1000);
    let hd = f.filter.hostsdir().to_owned();
    f.filter.replace_all(lists(&[1], &[])).unwrap();
    // Another process saved 2 as allowed and stopped before writing its file.
    let store = Store::new(f._dir.path().join("state"));
    let mut stored = store.load().unwrap();
    stored.allow.insert(mac(2));
    store.set_pending().unwrap();
    store.save(&stored).unwrap();
    // The next sync changes nothing in the policy, yet finishes that change.
    let report = f.filter.replace_all(lists(&[1, 2], &[])).unwrap();
    assert_eq!(report.applied.written, 1);
    assert_eq!(listing(&hd), [ALLOW_1, ALLOW_2, WILD_DENY]);
    assert!(!store.pending().unwrap(), "the mark outlived the repair");
}

#[test]
fn a_long_lived_filter_sees_another_writers_changes() {
    let f = fixture(UnknownPolicy::Deny, 1000);
    f.filter.allow(&[mac(1)]).unwrap();
    let other = PxeFilter::new(f.filter.cfg.clone(), f._dir.path().join("state"));
    other.allow(&[mac(2)]).unwrap();
    f.filter.replace_all(lists(&[1, 2, 3], &[])).unwrap();
    let policy = f.filter.list().unwrap();
    assert_eq!(policy.allow, [mac(1), mac(2), mac(3)].into());
    assert_eq!(listing(f.filter.hostsdir()).len(), 4);
    other.forget(&[mac(3)]).unwrap();
    f.filter.deny(&[mac(4)]).unwrap();
    assert_eq!(f.filter.list().unwrap().allow, [mac(1), mac(2)].into());
}

#[test]
fn a_deferred_flush_keeps_the_mark_until_the_files_are_synced() {
    let f = fixture(UnknownPolicy::Deny, 1000);
    let filter = f.filter.clone().with_deferred_flush();
    let hd = filter.hostsdir().to_owned();
    let store = Store::new(f._dir.path().join("state"));
    filter.allow(&[mac(1)]).unwrap();
    assert_eq!(listing(&hd), [ALLOW_1, WILD_DENY]);
    // The flush thread may already have run; written again, the mark is owed again.
    filter.allow(&[mac(2)]).unwrap();
    filter.flush().unwrap();
    assert!(!store.pending().unwrap(), "the flush left the mark");
    assert_eq!(listing(&hd), [ALLOW_1, ALLOW_2, WILD_DENY]);
}

/// A crash before the flush (power lost: a written file comes back empty) is repaired by the
/// next process's first change, although that change touches another MAC.
#[test]
fn a_crash_before_the_deferred_flush_is_repaired_by_the_next_process() {
    let f = fixture(UnknownPolicy::Deny, 1000);
    let state = f._dir.path().join("state");
    let cfg = f.filter.cfg.clone();
    let hd = f.filter.hostsdir().to_owned();
    let mut daemon = PxeFilter::new(cfg.clone(), &state);
    daemon.deferred = Some(Arc::default()); // no flush thread: the process dies first
    daemon.allow(&[mac(1)]).unwrap();
    assert!(
        Store::new(&state).pending().unwrap(),
        "a change cleared the mark before its sync"
    );
    // Its own next change trusts its own writes: it looks at its MACs only.
    fs::write(hd.join("aa-00-00-00-00-01"), "").unwrap();
    daemon.allow(&[mac(3)]).unwrap();
    assert_eq!(
        fs::read_to_string(hd.join("aa-00-00-00-00-01")).unwrap(),
        ""
    );
    drop(daemon);
    let next = PxeFilter::new(cfg, &state);
    next.allow(&[mac(2)]).unwrap();
    let listed = listing(&hd);
    assert!(
        listed.contains(&ALLOW_1.to_owned()),
        "not repaired: {listed:?}"
    );
    assert!(!Store::new(&state).pending().unwrap());
}

#[test]
fn files_a_change_replaced_are_freed_by_the_flush() {
    let f = fixture(UnknownPolicy::Deny, 1000);
    let mut filter = f.filter.clone();
    let deferred: Arc<flush::Deferred> = Arc::default(); // no thread: flushed by hand
    filter.deferred = Some(deferred.clone());
    filter.allow(&[mac(1)]).unwrap();
    assert_eq!(
        deferred.room(),
        flush::MAX_RETIRED,
        "a new file replaced nothing"
    );
    filter.deny(&[mac(1)]).unwrap();
    assert_eq!(deferred.room(), flush::MAX_RETIRED - 1);
    // The allow file was swapped out: it lies under a dotfile, which dnsmasq skips, until
    // the flush frees it.
    let before = listing(filter.hostsdir());
    let swapped = format!(
        "{}.{}.",
        crate::filter::entry::temp_name("aa-00-00-00-00-01"),
        std::process::id()
    );
    assert_eq!(before.len(), 3, "{before:?}");
    assert!(before[0].starts_with(&swapped), "{before:?}");
    assert!(
        before[0].ends_with(&ALLOW_1[ALLOW_1.find('=').unwrap()..]),
        "{before:?}"
    );
    assert_eq!(before[1..], [DENY_1, WILD_DENY]);
    filter.flush().unwrap();
    assert_eq!(deferred.room(), flush::MAX_RETIRED);
    assert_eq!(listing(filter.hostsdir()), [DENY_1, WILD_DENY]);
}

/// The same list's text again is recognised while the policy is the one it left, and only
/// then: another writer's change, another text or a mark left by an interrupted change send
/// it through the parse and the comparison again, which put things right.
#[test]
fn the_same_list_again_is_answered_only_while_the_policy_is_its_own() {
    let f = fixture(UnknownPolicy::Deny, 1000);
    let hd = f.filter.hostsdir().to_owned();
    let text = "aa:00:00:00:00:01\n";
    let key = same_list::ListKey::of(text);
    assert!(
        !f.filter.unchanged_since(key).unwrap(),
        "nothing applied yet"
    );
    let first = f.filter.replace_all_from(text, "list").unwrap();
    assert_eq!(first.applied.written, 2, "the allowed MAC and the wildcard");
    assert!(f.filter.unchanged_since(key).unwrap());
    assert!(!f
        .filter
        .unchanged_since(same_list::ListKey::of("aa:00:00:00:00:02\n"))
        .unwrap());
    let again = f.filter.replace_all_from(text, "list").unwrap();
    assert!(!again.did_anything());

    // Another process denies the MAC: the same text must allow it again.
    let other = PxeFilter::new(f.filter.cfg.clone(), f._dir.path().join("state"));
    other.deny(&[mac(1)]).unwrap();
    assert!(
        !f.filter.unchanged_since(key).unwrap(),
        "another writer's change went unseen"
    );
    let back = f.filter.replace_all_from(text, "list").unwrap();
    assert_eq!(back.applied.written, 1);
    assert_eq!(listing(&hd), [ALLOW_1, WILD_DENY]);

    // A process stopped between its mark and its save: the whole directory is looked at.
    Store::new(f._dir.path().join("state"))
        .set_pending()
        .unwrap();
    fs::write(hd.join("aa-00-00-00-00-01"), "").unwrap();
    assert!(
        !f.filter.unchanged_since(key).unwrap(),
        "a foreign pending mark was ignored"
    );
    f.filter.replace_all_from(text, "list").unwrap();
    assert_eq!(listing(&hd), [ALLOW_1, WILD_DENY]);

    // A bad text is refused by name and remembered as nothing.
    let err = f
        .filter
        .replace_all_from("not-a-mac\n", "list")
        .unwrap_err();
    assert!(err.to_string().contains("list"), "{err}");
    assert!(f.filter.unchanged_since(key).unwrap());
}

/// `FilterSync`'s two lists, keyed string by string: the same lists again change nothing and
/// are recognised without a parse while the policy is theirs; the place of each string
/// (which list, which order) is part of the key.
#[test]
fn the_same_two_lists_again_are_recognised_while_the_policy_is_theirs() {
    let f = fixture(UnknownPolicy::Deny, 1000);
    let (a, b) = ("aa:00:00:00:00:01", "aa:00:00:00:00:02");
    let key = ListKey::of_lists(&[a], &[b]);
    assert_ne!(key, ListKey::of_lists(&[a, b], &[]));
    assert_ne!(key, ListKey::of_lists(&[b], &[a]));
    assert_ne!(key, ListKey::of(&format!("{a}\n{b}\n")));
    assert!(
        !f.filter.unchanged_since(key).unwrap(),
        "nothing applied yet"
    );
    let lists = DesiredLists::new(&[mac(1)], &[mac(2)]).unwrap();
    let first = f.filter.replace_all_as(lists.clone(), key).unwrap();
    assert!(first.did_anything());
    assert!(f.filter.unchanged_since(key).unwrap());
    assert!(!f
        .filter
        .unchanged_since(ListKey::of_lists(&[b], &[a]))
        .unwrap());
    // Another writer's change: the same lists are parsed and applied again.
    let other = PxeFilter::new(f.filter.cfg.clone(), f._dir.path().join("state"));
    other.forget(&[mac(1)]).unwrap();
    assert!(!f.filter.unchanged_since(key).unwrap());
    let back = f.filter.replace_all_as(lists, key).unwrap();
    assert_eq!(back.applied.written, 1);
    assert!(f.filter.unchanged_since(key).unwrap());
}
