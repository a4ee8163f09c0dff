//! setup and teardown against a temporary root: what they install and remove, that a second
//! run changes nothing, and that files virtmasq did not write are left alone.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::*;
use crate::dnsmasq::fragment::MARK;

/// Every entry under `root`: directories, files with their bytes, links with their target.
fn tree(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let meta = p.symlink_metadata().unwrap();
            let what = if meta.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&p).unwrap().display())
            } else if meta.is_dir() {
                todo.push(p.clone());
                "dir".into()
            } else {
                String::from_utf8_lossy(&fs::read(&p).unwrap()).into_owned()
            };
            out.insert(rel, what);
        }
    }
    out
}

/// A root with libvirt's /etc, the shim, a conf-dir holding the site's file, one fragment of
/// virtmasq's and its hosts file.
fn host() -> (tempfile::TempDir, Layout, Config) {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout {
        root: dir.path().to_owned(),
        hook_shim: PathBuf::from(HOOK_SHIM),
    };
    let put = |p: &str, text: &str| {
        let host = layout.at(p);
        fs::create_dir_all(host.parent().unwrap()).unwrap();
        fs::write(host, text).unwrap();
    };
    fs::create_dir_all(layout.at("/etc/libvirt")).unwrap();
    put(HOOK_SHIM, "#!/bin/sh\n# virtmasq's libvirt network hook.\n");
    put(
        "/etc/dnsmasq.d/site.conf",
        "dhcp-range=10.9.0.10,10.9.0.20\n",
    );
    let mut cfg = Config::default();
    cfg.filter.enabled = true;
    (dir, layout, cfg)
}

fn add_fragment(layout: &Layout) {
    let frag = format!("{MARK} for network 'lab'.\ndhcp-range=tag:virbr9,10.8.0.10,10.8.0.20\n");
    fs::write(layout.at("/etc/dnsmasq.d/virtmasq-lab.conf"), frag).unwrap();
    fs::create_dir_all(layout.at("/var/lib/virtmasq/system")).unwrap();
    fs::write(layout.at("/var/lib/virtmasq/system/lab.hosts"), "").unwrap();
}

fn run_setup(cfg: &Config, layout: &Layout, mode: Mode) -> Report {
    let opts = SetupOptions { start: true };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(setup(cfg, layout, mode, None, opts)).unwrap()
}

fn run_teardown(cfg: &Config, layout: &Layout) -> Report {
    let opts = TeardownOptions {
        stop: true,
        disable: true,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(teardown(cfg, layout, None, opts)).unwrap()
}

#[test]
fn setup_installs_the_hook_and_the_filter_dropin_once() {
    let (_dir, layout, cfg) = host();
    let first = run_setup(&cfg, &layout, Mode::System);
    assert!(!first.changes.is_empty());
    let link = layout.at(HOOK_LINK);
    assert_eq!(fs::read_link(&link).unwrap(), Path::new(HOOK_SHIM));
    let dropin = layout.at("/etc/systemd/system/dnsmasq.service.d/virtmasq-filter.conf");
    assert_eq!(fs::read_to_string(dropin).unwrap(), DROPIN);
    assert!(DROPIN.contains("BindsTo=virtmasq.service"));
    let back = layout.at("/etc/systemd/system/virtmasq.service.d/virtmasq-filter.conf");
    assert!(fs::read_to_string(back)
        .unwrap()
        .contains("Wants=dnsmasq.service"));
    let after_first = tree(&layout.root);
    let second = run_setup(&cfg, &layout, Mode::System);
    assert_eq!(second.changes, Vec::<String>::new());
    assert_eq!(tree(&layout.root), after_first);
}

#[test]
fn no_dropin_in_private_mode_or_with_the_filter_off() {
    let (_dir, layout, mut cfg) = host();
    let dropin = layout.at("/etc/systemd/system/dnsmasq.service.d/virtmasq-filter.conf");
    run_setup(&cfg, &layout, Mode::Private);
    assert!(!dropin.exists());
    run_setup(&cfg, &layout, Mode::System);
    assert!(dropin.exists());
    cfg.filter.enabled = false;
    let off = run_setup(&cfg, &layout, Mode::System);
    assert!(!dropin.exists(), "{off:?}");
    // setup made /etc/systemd/system/dnsmasq.service.d and its parents here: all went with it.
    assert!(!layout.at("/etc/systemd").exists(), "{off:?}");
}

#[test]
fn teardown_undoes_setup_and_a_second_one_changes_nothing() {
    let (_dir, layout, cfg) = host();
    let before = tree(&layout.root);
    run_setup(&cfg, &layout, Mode::System);
    add_fragment(&layout);
    let first = run_teardown(&cfg, &layout);
    assert!(
        first
            .changes
            .iter()
            .any(|c| c.contains("/etc/dnsmasq.d/virtmasq-lab.conf")),
        "{first:?}"
    );
    let after = tree(&layout.root);
    // What remains beyond the tree before setup is state: the state directory and its lock.
    let extra: Vec<_> = after
        .keys()
        .filter(|p| !before.contains_key(*p))
        .filter(|p| !Path::new("var/lib/virtmasq").starts_with(p))
        .filter(|p| !p.starts_with("var/lib/virtmasq"))
        .collect();
    assert!(extra.is_empty(), "left behind: {extra:?}");
    for (p, v) in &before {
        assert_eq!(after.get(p), Some(v), "{} changed", p.display());
    }
    let second = run_teardown(&cfg, &layout);
    assert_eq!(second.changes, Vec::<String>::new());
    assert_eq!(tree(&layout.root), after);
}

#[test]
fn files_that_are_not_virtmasqs_are_left_alone() {
    let (_dir, layout, cfg) = host();
    let link = layout.at(HOOK_LINK);
    fs::create_dir_all(link.parent().unwrap()).unwrap();
    fs::write(&link, "#!/bin/sh\n# the admin's own hook\n").unwrap();
    let imposter = layout.at("/etc/dnsmasq.d/virtmasq-mine.conf");
    fs::write(&imposter, "# written by the admin\n").unwrap();
    let report = run_setup(&cfg, &layout, Mode::System);
    assert!(
        report.notes.iter().any(|n| n.contains("not virtmasq's")),
        "{report:?}"
    );
    run_teardown(&cfg, &layout);
    assert!(fs::read_to_string(&link).unwrap().contains("admin"));
    assert!(imposter.exists());
    // Directories that existed before setup stay, even empty ones.
    fs::remove_file(&link).unwrap();
    run_teardown(&cfg, &layout);
    assert!(layout.at("/etc/libvirt/hooks/network.d").is_dir());
}

#[test]
fn an_old_copy_of_the_shim_becomes_the_link() {
    let (_dir, layout, cfg) = host();
    let link = layout.at(HOOK_LINK);
    fs::create_dir_all(link.parent().unwrap()).unwrap();
    fs::write(
        &link,
        "#!/bin/sh\n# virtmasq's libvirt network hook.\n# old\n",
    )
    .unwrap();
    run_setup(&cfg, &layout, Mode::Private);
    assert_eq!(fs::read_link(&link).unwrap(), Path::new(HOOK_SHIM));
}

#[test]
fn without_libvirt_there_is_no_hook_and_a_missing_shim_is_an_error() {
    let (_dir, layout, cfg) = host();
    fs::remove_dir_all(layout.at("/etc/libvirt")).unwrap();
    let report = run_setup(&cfg, &layout, Mode::Private);
    assert!(report
        .notes
        .iter()
        .any(|n| n.contains("libvirt is not installed")));
    assert!(!layout.at("/etc/libvirt").exists());

    let (_dir, layout, cfg) = host();
    fs::remove_file(layout.at(HOOK_SHIM)).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let opts = SetupOptions { start: false };
    let err = rt
        .block_on(setup(&cfg, &layout, Mode::Private, None, opts))
        .unwrap_err();
    assert!(err.to_string().contains(HOOK_SHIM), "{err}");
}

/// Networks virtmasq adopted lose their service when it goes: teardown names each one and the
/// command that gives it back, and leaves them alone.
#[test]
fn teardown_names_the_networks_nothing_will_serve() {
    let (_dir, layout, cfg) = host();
    run_setup(&cfg, &layout, Mode::System);
    let adopted = layout.at(cfg.paths.state_dir.join(ADOPTED_DIR));
    std::fs::create_dir_all(&adopted).unwrap();
    for name in ["lab", "default"] {
        std::fs::write(adopted.join(name), "").unwrap();
    }
    let report = run_teardown(&cfg, &layout);
    let notes = report.notes.join("\n");
    for name in ["lab", "default"] {
        assert!(
            notes.contains(&format!("`virtmasq release {name}`")),
            "{notes}"
        );
    }
    assert!(adopted.join("lab").exists());
}
