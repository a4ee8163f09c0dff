//! The staged check against the real dnsmasq: it sees the conf-dir as the plan leaves it,
//! and the live conf-dir never changes.

use super::*;
use crate::system::plan::Plan;

struct Site {
    _dir: tempfile::TempDir,
    root: PathBuf,
    conf_dir: PathBuf,
    args: Vec<String>,
}

/// A main file naming a conf-dir (the Fedora way), with the site's own file in it.
fn site(main_extra: &str) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let conf_dir = root.join("dnsmasq.d");
    fs::create_dir(&conf_dir).unwrap();
    fs::write(conf_dir.join("site.conf"), "no-ping\n").unwrap();
    let main = root.join("dnsmasq.conf");
    fs::write(
        &main,
        format!(
            "port=0\nconf-dir={}/,*.conf\n{main_extra}",
            conf_dir.display()
        ),
    )
    .unwrap();
    Site {
        args: vec![format!("--conf-file={}", main.display())],
        _dir: dir,
        root,
        conf_dir,
    }
}

fn checker(s: &Site) -> Checker {
    Checker {
        flavor: Flavor::Plain,
        binary: PathBuf::from("/usr/sbin/dnsmasq"),
        conf_dir: s.conf_dir.clone(),
        args: s.args.clone(),
        stage_dir: s.root.join("state/system.stage"),
    }
}

fn listing(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let p = e.path();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

fn writes(s: &Site, name: &str, text: &str) -> Plan {
    Plan {
        writes: vec![(s.conf_dir.join(name), text.to_owned())],
        restart: true,
        ..Plan::default()
    }
}

#[test]
fn a_bad_new_fragment_is_refused_before_the_live_dir_changes() {
    let s = site("");
    let before = listing(&s.conf_dir);
    let err = checker(&s)
        .check_plan(&writes(
            &s,
            "virtmasq-lab.conf",
            "dhcp-rnage=10.0.0.2,10.0.0.9\n",
        ))
        .unwrap_err();
    let StageFailure::Refused(msg) = err else {
        panic!("{err:?}")
    };
    assert!(msg.contains("virtmasq-lab.conf"), "{msg}");
    assert_eq!(listing(&s.conf_dir), before);
    assert!(
        !s.root.join("state/system.stage").exists(),
        "the copy stays"
    );
}

/// The check reads the copy, not the live dir: removing a broken fragment of ours passes
/// although the live dir still holds it.
#[test]
fn the_check_sees_the_staged_set_not_the_live_one() {
    let s = site("");
    let ours = s.conf_dir.join("virtmasq-old.conf");
    fs::write(&ours, "dhcp-rnage=1\n").unwrap();
    assert!(checker(&s).check_live().is_err(), "the live set is broken");
    let plan = Plan {
        removals: vec![ours.clone()],
        restart: true,
        ..Plan::default()
    };
    checker(&s).check_plan(&plan).unwrap();
    assert!(ours.exists());
    // And the other files of the conf-dir are part of what is checked.
    fs::write(s.conf_dir.join("zz-typo.conf"), "dhcp-rnage=1\n").unwrap();
    assert!(matches!(
        checker(&s).check_plan(&plan),
        Err(StageFailure::Refused(_))
    ));
}

/// The conf-dir's filter (`*.conf`) applies to the copy too: a file dnsmasq would not read
/// does not fail the check.
#[test]
fn the_conf_dirs_filter_still_applies() {
    let s = site("");
    fs::write(s.conf_dir.join("notes.txt"), "not an option\n").unwrap();
    checker(&s)
        .check_plan(&writes(
            &s,
            "virtmasq-lab.conf",
            "dhcp-range=tag:x,10.0.0.2,10.0.0.9\n",
        ))
        .unwrap();
}
