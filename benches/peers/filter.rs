//! The PXE filter: `virtmasq filter sync --from FILE` as a user runs it, against a bare
//! create+write+rename loop of the same files and against ironic's own filter code.
//!
//! The lists: N MACs, every even one allowed and every odd one denied, unknown MACs denied
//! (so virtmasq writes a file per allowed MAC plus the wildcard; ironic one per MAC). The
//! change: 100 MACs flip sides, 50 leave the lists, 50 new ones join them.

use std::fs;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{median, timed, Row, Scale};
use crate::support::{write_config, BIN};

/// The allow and deny lists of one sync.
pub struct Lists {
    /// Allowed MACs.
    pub allow: Vec<String>,
    /// Denied MACs.
    pub deny: Vec<String>,
}

fn mac(i: usize) -> String {
    format!(
        "52:54:01:{:02x}:{:02x}:{:02x}",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

/// The first sync's lists: `n` MACs, alternately allowed and denied.
pub fn initial(n: usize) -> Lists {
    Lists {
        allow: (0..n).step_by(2).map(mac).collect(),
        deny: (1..n).step_by(2).map(mac).collect(),
    }
}

/// The lists after 100 flips, 50 removals and 50 additions, spread over the whole set.
pub fn changed(n: usize) -> Lists {
    let step = (n / 200).max(1);
    let mut allow = Vec::new();
    let mut deny = Vec::new();
    for i in 0..n {
        let picked = i % step == 0 && i / step < 200;
        let (flip, removed) = (picked && i / step < 100, picked && i / step >= 150);
        let allowed = (i % 2 == 0) != flip;
        if removed {
            continue;
        }
        if allowed {
            allow.push(mac(i));
        } else {
            deny.push(mac(i));
        }
    }
    for i in n..n + 50 {
        if i % 2 == 0 {
            allow.push(mac(i));
        } else {
            deny.push(mac(i));
        }
    }
    Lists { allow, deny }
}

/// How many files virtmasq rewrites for the change (unknown MACs denied: a file exists per
/// allowed MAC, and one whose MAC is no longer allowed is rewritten to deny).
pub fn change_files(n: usize) -> usize {
    use std::collections::BTreeSet;
    let before: BTreeSet<String> = initial(n).allow.into_iter().collect();
    let after: BTreeSet<String> = changed(n).allow.into_iter().collect();
    before.symmetric_difference(&after).count()
}

/// Writes `lists` as a user's JSON file, one MAC a line.
pub fn write_json(path: &Path, lists: &Lists) {
    let v = json!({"allow": lists.allow, "deny": lists.deny});
    fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
}

/// A configuration for the CLI with the filter on, under `dir`.
pub fn config(dir: &Path) -> PathBuf {
    let extra = format!(
        "[filter]\nenabled = true\nunknown = \"deny\"\nhostsdir = \"{}/hostsdir\"\n",
        dir.display()
    );
    write_config(dir, "test:///default", &extra)
}

/// `virtmasq filter sync --from json`: wall time and files written.
fn cli(cfg: &Path, json: &Path) -> (Duration, usize) {
    let (took, out) = timed(Command::new(BIN).args([
        "--config",
        cfg.to_str().unwrap(),
        "filter",
        "sync",
        "--from",
        json.to_str().unwrap(),
    ]));
    let written = out
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no file count in {out:?}"));
    (took, written)
}

/// ironic's `dnsmasq.sync()` in its own process: wall time and ironic's in-process time.
fn ironic(python: &str, hostsdir: &Path, json: &Path) -> (Duration, Duration) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/benches/peers/ironic_filter.py"
    );
    let (took, out) = timed(Command::new(python).args([
        script,
        hostsdir.to_str().unwrap(),
        json.to_str().unwrap(),
    ]));
    let inner: f64 = out.trim().parse().expect("ironic driver's time");
    (took, Duration::from_secs_f64(inner / 1000.0))
}

/// The floor: `files` files each written to a temporary name and renamed into `dir`, then
/// one syncfs (virtmasq's default durability).
pub fn bare_loop(dir: &Path, files: usize, base: usize) -> Duration {
    fs::create_dir_all(dir).unwrap();
    let start = Instant::now();
    for i in base..base + files {
        let name = mac(i).replace(':', "-");
        let tmp = dir.join(format!(".{name}.tmp"));
        fs::write(&tmp, format!("{},set:virtmasq-filter\n", mac(i))).unwrap();
        fs::rename(&tmp, dir.join(&name)).unwrap();
    }
    let d = fs::File::open(dir).unwrap();
    // SAFETY: syncfs on a descriptor we own and keep open for the call.
    assert_eq!(unsafe { libc::syncfs(d.as_raw_fd()) }, 0);
    start.elapsed()
}

/// Times of one implementation over the three syncs.
#[derive(Default)]
struct Times {
    first: Vec<Duration>,
    change: Vec<Duration>,
    same: Vec<Duration>,
}

impl Times {
    fn push(&mut self, t: [Duration; 3]) {
        self.first.push(t[0]);
        self.change.push(t[1]);
        self.same.push(t[2]);
    }
}

/// What one round measured.
#[derive(Default)]
struct Measured {
    cli: Times,
    bare: Times,
    ironic: Times,
    ironic_inner: Times,
    /// Files virtmasq wrote in the first sync and in the change.
    written: (usize, usize),
}

fn round(scale: Scale, dir: &Path, jsons: &[PathBuf; 2], m: &mut Measured) {
    let ours = dir.join("ours");
    fs::create_dir_all(&ours).unwrap();
    let cfg = config(&ours);
    let (a, first_files) = cli(&cfg, &jsons[0]);
    let (b, change_files) = cli(&cfg, &jsons[1]);
    let (c, _) = cli(&cfg, &jsons[1]);
    m.cli.push([a, b, c]);
    m.written = (first_files, change_files);
    let bare = dir.join("bare");
    let first = bare_loop(&bare, first_files, 0);
    let change = bare_loop(&bare, change_files, 0);
    m.bare.push([first, change, Duration::ZERO]);
    let python = std::env::var("IRONIC_PYTHON").ok();
    assert!(
        python.is_some() || !scale.full,
        "IRONIC_PYTHON is not set: run `make bench-peers`, which builds ironic's venv"
    );
    if let Some(python) = python {
        let hostsdir = dir.join("ironic");
        fs::create_dir_all(&hostsdir).unwrap();
        let runs = [0, 1, 1].map(|i| ironic(&python, &hostsdir, &jsons[i]));
        m.ironic.push(runs.map(|r| r.0));
        m.ironic_inner.push(runs.map(|r| r.1));
    }
}

fn row(what: String, ours: Duration, peer: Option<(&str, Duration)>, target: &'static str) -> Row {
    Row {
        what,
        ours: ours.into(),
        peer: peer.map(|(n, d)| (n.to_owned(), d.into())),
        target,
    }
}

/// The first sync with the files on tmpfs (`/dev/shm`) on both sides: ironic never syncs its
/// files to disk and virtmasq's `syncfs` is most of its time on a disk, so this compares the
/// work each does on the same footing (a `syncfs` of tmpfs returns at once).
fn tmpfs_rows(scale: Scale, json: &Path) -> Vec<Row> {
    let base = tempfile::Builder::new()
        .prefix("virtmasq-peers.")
        .tempdir_in("/dev/shm")
        .unwrap();
    let python = std::env::var("IRONIC_PYTHON").ok();
    let (mut ours, mut inner) = (Vec::new(), Vec::new());
    for i in 0..scale.rounds {
        let dir = base.path().join(format!("round{i}"));
        fs::create_dir_all(dir.join("ours")).unwrap();
        ours.push(cli(&config(&dir.join("ours")), json).0);
        if let Some(python) = &python {
            fs::create_dir_all(dir.join("ironic")).unwrap();
            inner.push(ironic(python, &dir.join("ironic"), json).1);
        }
        fs::remove_dir_all(&dir).unwrap();
    }
    let what = format!("filter sync --from, {} MACs, CLI, all on tmpfs", scale.macs);
    let ours = median(ours);
    match inner.is_empty() {
        true => vec![row(what, ours, None, "")],
        false => vec![row(
            what,
            ours,
            Some(("ironic 39.0.0, in-process, on tmpfs", median(inner))),
            ">= 2x faster",
        )],
    }
}

/// The filter rows of the table.
pub fn rows(scale: Scale) -> Vec<Row> {
    let base = tempfile::Builder::new()
        .prefix("virtmasq-peers.")
        .tempdir_in("/var/tmp")
        .unwrap();
    let jsons = [
        base.path().join("initial.json"),
        base.path().join("change.json"),
    ];
    write_json(&jsons[0], &initial(scale.macs));
    write_json(&jsons[1], &changed(scale.macs));
    let mut m = Measured::default();
    for i in 0..scale.rounds {
        let dir = base.path().join(format!("round{i}"));
        round(scale, &dir, &jsons, &mut m);
        fs::remove_dir_all(&dir).unwrap();
    }
    let n = scale.macs;
    let (first_files, change_files) = m.written;
    let mut rows = Vec::new();
    let sets = [
        (
            format!("filter sync --from, {n} MACs, CLI"),
            &m.cli.first,
            &m.bare.first,
            &m.ironic.first,
            &m.ironic_inner.first,
            "1.5x the bare loop",
        ),
        (
            "filter sync --from, 100+50+50 change, CLI".into(),
            &m.cli.change,
            &m.bare.change,
            &m.ironic.change,
            &m.ironic_inner.change,
            "< 50 ms",
        ),
        (
            "filter sync --from, no change, CLI".into(),
            &m.cli.same,
            &m.bare.same,
            &m.ironic.same,
            &m.ironic_inner.same,
            "",
        ),
    ];
    for (i, (what, ours, bare, whole, inner, target)) in sets.into_iter().enumerate() {
        let ours = median(ours.clone());
        let files = [first_files, change_files, 0][i];
        if i < 2 {
            let label = format!("bare create+rename, {files} files");
            rows.push(row(
                what.clone(),
                ours,
                Some((&label, median(bare.clone()))),
                target,
            ));
        }
        if !whole.is_empty() {
            rows.push(row(
                what.clone(),
                ours,
                Some(("ironic 39.0.0, whole process", median(whole.clone()))),
                "",
            ));
            rows.push(row(
                what,
                ours,
                Some(("ironic 39.0.0, in-process", median(inner.clone()))),
                "",
            ));
        }
    }
    rows.extend(tmpfs_rows(scale, &jsons[0]));
    rows
}
