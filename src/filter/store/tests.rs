//! Tests of the state directory: round trips, damage, the journal, the lock.

use super::*;

#[test]
fn round_trip_and_damage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path().join("state"));
    assert_eq!(store.load().unwrap(), StoredPolicy::default());
    assert_eq!(store.rewrites().unwrap(), 0);
    let policy = StoredPolicy {
        unknown: Some(UnknownPolicy::Deny),
        allow: [MacAddr::new([0xaa, 0, 0, 0, 0, 1])].into(),
        deny: BTreeSet::new(),
        deny_line: DenyLine::Tagged,
    };
    store.save(&policy).unwrap();
    assert_eq!(store.load().unwrap(), policy);
    store.set_rewrites(7).unwrap();
    assert_eq!(store.rewrites().unwrap(), 7);
    let state = dir.path().join("state").join(STATE_FILE);
    let cases = [
        ("{", "damaged"),
        ("{\"version\": 2}", "version 2"),
        (
            "{\"version\":1,\"allow\":[\"aa:00:00:00:00:01\"],\"deny\":[\"aa:00:00:00:00:01\"]}",
            "both allowed and denied",
        ),
        ("{\"version\":1,\"allow\":[\"nope\"]}", "nope"),
    ];
    for (text, want) in cases {
        fs::write(&state, text).unwrap();
        let err = store.load().unwrap_err();
        let chain = format!("{err} / {}", std::error::Error::source(&err).unwrap());
        assert!(chain.contains(want), "{text}: {chain}");
    }
}

fn journals(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(journal::PREFIX))
        .collect();
    names.sort();
    names
}

#[test]
fn changes_go_to_the_journal_until_it_outgrows_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let mac = |i: u32| MacAddr::new([0xaa, 0, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
    let mut policy = StoredPolicy::default();
    policy.allow.extend((0..100).map(mac));
    store.save(&policy).unwrap();
    let whole = fs::read(dir.path().join(STATE_FILE)).unwrap();
    policy.allow.remove(&mac(1));
    policy.deny.insert(mac(1));
    policy.allow.remove(&mac(2));
    store.save_change(&policy, &[mac(1), mac(2)]).unwrap();
    assert_eq!(fs::read(dir.path().join(STATE_FILE)).unwrap(), whole);
    assert_eq!(journals(dir.path()).len(), 1);
    assert_eq!(store.load().unwrap(), policy);
    // A torn append: ignored when read, and the next change writes the policy whole.
    let journal = dir.path().join(&journals(dir.path())[0]);
    let mut f = OpenOptions::new().append(true).open(&journal).unwrap();
    f.write_all(b"deny aa:00:00:00:00:0").unwrap();
    assert_eq!(store.load().unwrap(), policy);
    policy.deny.insert(mac(200));
    store.save_change(&policy, &[mac(200)]).unwrap();
    assert!(journals(dir.path()).is_empty());
    assert_eq!(store.load().unwrap(), policy);
    // Past the size limit: the whole policy again, no journal.
    let many: Vec<MacAddr> = (1000..5000).map(mac).collect();
    policy.deny.extend(many.iter().copied());
    store.save_change(&policy, &many).unwrap();
    assert!(journals(dir.path()).is_empty());
    assert_eq!(store.load().unwrap(), policy);
}

#[test]
fn a_journal_of_an_older_state_file_is_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let mut policy = StoredPolicy::default();
    store.save(&policy).unwrap();
    let stale = store.journal_path(store.version().unwrap().unwrap().1);
    policy.allow.insert(MacAddr::new([0xaa, 0, 0, 0, 0, 1]));
    store.save(&policy).unwrap();
    // As if a stop came between writing the state file and removing the old journal.
    fs::write(&stale, "forget aa:00:00:00:00:01\n").unwrap();
    assert_eq!(store.load().unwrap(), policy);
}

#[test]
fn lock_times_out_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    let held = store.lock(Duration::from_millis(50)).unwrap();
    let err = store
        .lock(Duration::from_millis(50))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("filter.lock") && err.contains("another virtmasq process"),
        "{err}"
    );
    drop(held);
    assert!(store.lock(Duration::from_millis(50)).is_ok());
}

#[test]
fn the_deny_line_is_remembered_while_the_state_file_is_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::new(dir.path());
    assert_eq!(store.deny_line().unwrap(), DenyLine::default());
    let mut policy = StoredPolicy {
        deny_line: DenyLine::Tagged,
        ..StoredPolicy::default()
    };
    store.save(&policy).unwrap();
    assert_eq!(store.deny_line().unwrap(), DenyLine::Tagged);
    let mac = MacAddr::new([0xaa, 0, 0, 0, 0, 1]);
    policy.allow.insert(mac);
    store.save_change(&policy, &[mac]).unwrap();
    assert_eq!(store.deny_line().unwrap(), DenyLine::Tagged);
    policy.deny_line = DenyLine::Plain;
    store.save(&policy).unwrap();
    assert_eq!(
        store.deny_line().unwrap(),
        DenyLine::Plain,
        "a new state file was not read"
    );
}
