//! The `virtmasq filter` commands through the binary: changes land in the hostsdir, bad input
//! is refused with the entry named and nothing changed, concurrent writers lose nothing.

mod support;

use std::path::Path;
use std::time::Duration;

use support::*;

fn setup() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let uri = write_node(dir.path(), "node.xml", &[]);
    let extra = format!(
        "[filter]\nenabled = true\nunknown = \"deny\"\nhostsdir = \"{}/hostsdir\"\n",
        dir.path().display()
    );
    let cfg = write_config(dir.path(), &uri, &extra);
    (dir, cfg.to_str().unwrap().to_owned())
}

fn filter(cfg: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--config", cfg, "filter"];
    all.extend_from_slice(args);
    run_agent(&all, Duration::from_secs(30))
}

fn hostsdir_files(dir: &Path) -> Vec<(String, String)> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("hostsdir"))
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_to_string(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn allow_deny_forget_and_list() {
    let (dir, cfg) = setup();
    assert!(
        filter(&cfg, &["allow", "52:54:00:00:00:01", "52-54-00-00-00-02"])
            .status
            .success()
    );
    assert!(filter(&cfg, &["deny", "52:54:00:00:00:03"])
        .status
        .success());
    let files = hostsdir_files(dir.path());
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    // Unknown MACs are denied here: allowed MACs get a file each, the wildcard denies the rest
    // (a denied MAC needs no file of its own).
    assert!(
        names.contains(&"52-54-00-00-00-01") && names.contains(&"52-54-00-00-00-02"),
        "{files:?}"
    );
    let wildcard = &files.iter().find(|(n, _)| n == "unknown-macs").unwrap().1;
    assert!(wildcard.contains("*:*:*:*:*:*,ignore"), "{wildcard}");
    let list = filter(&cfg, &["list", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(
        json["allow"],
        serde_json::json!(["52:54:00:00:00:01", "52:54:00:00:00:02"])
    );
    assert_eq!(json["deny"], serde_json::json!(["52:54:00:00:00:03"]));
    let allowed = &files
        .iter()
        .find(|(n, _)| n == "52-54-00-00-00-01")
        .unwrap()
        .1;
    assert!(!allowed.contains("ignore"), "{allowed}");
    // Forget: the file stays (dnsmasq ignores deletions) and now says what unknown MACs get
    // (deny, in this configuration).
    assert!(filter(&cfg, &["forget", "52:54:00:00:00:01"])
        .status
        .success());
    let after = hostsdir_files(dir.path());
    let forgotten = &after
        .iter()
        .find(|(n, _)| n == "52-54-00-00-00-01")
        .unwrap()
        .1;
    assert!(forgotten.contains("ignore"), "{forgotten}");
}

#[test]
fn bad_input_names_the_entry_and_changes_nothing() {
    let (dir, cfg) = setup();
    assert!(filter(&cfg, &["allow", "52:54:00:00:00:01"])
        .status
        .success());
    let before = hostsdir_files(dir.path());
    let state_before = std::fs::read(dir.path().join("state/filter.json")).unwrap();
    let list_file = dir.path().join("macs.txt");
    std::fs::write(&list_file, "52:54:00:00:00:07\nnot-a-mac\n").unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["allow", "zz:00:00:00:00:00"], "zz:00:00:00:00:00"),
        (
            vec!["allow", "52:54:00:00:00:05", "52:54:00:00:00:05"],
            "more than once",
        ),
        (
            vec!["sync", "--from", list_file.to_str().unwrap()],
            "not-a-mac",
        ),
    ];
    for (args, want) in cases {
        let out = filter(&cfg, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let json = dir.path().join("both.json");
    std::fs::write(
        &json,
        r#"{"allow": ["52:54:00:00:00:08"], "deny": ["52-54-00-00-00-08"]}"#,
    )
    .unwrap();
    let out = filter(&cfg, &["sync", "--from", json.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(65),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("both allowed and denied"));
    assert_eq!(hostsdir_files(dir.path()), before);
    assert_eq!(
        std::fs::read(dir.path().join("state/filter.json")).unwrap(),
        state_before
    );
}

#[test]
fn concurrent_writers_lose_nothing() {
    let (dir, cfg) = setup();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                let macs: Vec<String> = (0..25)
                    .map(|j| format!("52:54:00:00:{i:02x}:{j:02x}"))
                    .collect();
                let mut args = vec!["allow"];
                args.extend(macs.iter().map(String::as_str));
                filter(&cfg, &args)
            })
        })
        .collect();
    for h in handles {
        let out = h.join().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let list = filter(&cfg, &["list", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(json["allow"].as_array().unwrap().len(), 200);
    assert_eq!(
        hostsdir_files(dir.path())
            .iter()
            .filter(|(n, _)| n.starts_with("52-54"))
            .count(),
        200
    );
}
