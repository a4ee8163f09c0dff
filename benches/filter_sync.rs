//! Benchmark of the PXE filter's hostsdir sync, against ironic-inspector's dnsmasq filter.
//!
//! `cargo bench --bench filter_sync` prints, for tmpfs and for the disk, the agent time and
//! files written of an initial sync of N MACs (default 50,000; `FILTER_BENCH_MACS` shrinks
//! it) and of an incremental sync of 100 changes among them, for both durability modes and
//! for the baseline; runs alternate so that disk noise spreads evenly (`FILTER_BENCH_ROUNDS`,
//! default 2; the best run is printed). As root it then starts a real dnsmasq in a lab
//! namespace on the N-file hostsdir and measures how long dnsmasq takes to absorb the 100
//! changes. `FILTER_BENCH_PARTS` (default `tmpfs,disk,dnsmasq`) picks what runs.
//!
//! Run without `--bench` (as `cargo test --all-targets` does), it is a 1,000-MAC smoke run.
//!
//! Scenario, identical for both: every MAC is known and denied, unknown MACs are allowed
//! (ironic with a `node_not_found_hook`), then 100 MACs start introspection (allowed).

#[path = "../tests/lab/mod.rs"]
#[allow(unused_imports)]
mod lab;

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use virtmasq::filter::{dnsmasq_lines, DesiredLists, Durability, FilterConfig, PxeFilter};
use virtmasq::model::MacAddr;

const CHANGES: usize = 100;

/// One implementation under test.
#[derive(Clone, Copy, PartialEq)]
enum Impl {
    Ours(Durability),
    Ironic,
    /// The baseline plus one syncfs per sync: ironic's writes made as durable as ours.
    IronicSyncfs,
}

impl Impl {
    fn label(self) -> &'static str {
        match self {
            Impl::Ours(Durability::Syncfs) => "virtmasq, syncfs",
            Impl::Ours(Durability::FsyncEach) => "virtmasq, fsync-each",
            Impl::Ironic => "ironic baseline",
            Impl::IronicSyncfs => "ironic + syncfs",
        }
    }
}

/// Times and file counts of one run.
#[derive(Clone, Copy, Default)]
struct Run {
    /// Time of the first sync into an empty directory.
    initial: Duration,
    /// Files it wrote.
    initial_files: usize,
    /// Time of the sync of the 100 changes.
    incremental: Duration,
    /// Files it wrote.
    incremental_files: usize,
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn macs(n: usize) -> Vec<MacAddr> {
    (0..n as u32)
        .map(|i| MacAddr::new([0x52, 0x54, 0x01, (i >> 16) as u8, (i >> 8) as u8, i as u8]))
        .collect()
}

/// The MACs that change in the incremental sync, spread over the whole set.
fn changed(all: &[MacAddr]) -> Vec<MacAddr> {
    let step = (all.len() / CHANGES).max(1);
    all.iter().step_by(step).take(CHANGES).copied().collect()
}

fn run_ours(base: &Path, durability: Durability, all: &[MacAddr], toggled: &[MacAddr]) -> Run {
    let cfg = FilterConfig {
        enabled: true,
        hostsdir: base.join("hostsdir"),
        durability,
        compact_after: u32::MAX,
        ..FilterConfig::default()
    };
    let filter = PxeFilter::new(cfg, base.join("state"));
    let desired = DesiredLists::new(&[], all).expect("distinct MACs");
    let t = Instant::now();
    let first = filter.replace_all(desired).expect("initial sync");
    let initial = t.elapsed();
    let t = Instant::now();
    let second = filter.allow(toggled).expect("incremental sync");
    Run {
        initial,
        initial_files: first.applied.written,
        incremental: t.elapsed(),
        incremental_files: second.applied.written,
    }
}

/// ironic-inspector's `ironic_inspector/pxe_filter/dnsmasq.py`, syscall for syscall: files
/// named by the colon MAC, state read from sizes (two `stat`s per file, as `_get_deny_allow_lists`
/// does), each write an `open(path, 'w')` (truncate in place), a non-blocking `flock`, write,
/// unlock, close; no temporary file, no fsync.
mod ironic {
    use super::*;

    const DENY_LEN: u64 = "ff:ff:ff:ff:ff:ff,ignore\n".len() as u64;
    const ALLOW_LEN: u64 = "ff:ff:ff:ff:ff:ff\n".len() as u64;
    const UNKNOWN_FILE: &str = "unknown_hosts_filter";
    const ALLOW_UNKNOWN: &str = "*:*:*:*:*:*\n";
    const DENY_UNKNOWN: &str = "*:*:*:*:*:*,ignore\n";

    /// `_sync`: `active` are MACs under introspection, `known` all of ironic's MACs. Returns
    /// the number of files written.
    pub fn sync(
        dir: &Path,
        active: &HashSet<String>,
        known: &HashSet<String>,
        allow_unknown: bool,
    ) -> usize {
        let (deny, allow) = deny_allow_lists(dir);
        let removed: Vec<&String> = deny.union(&allow).filter(|m| !known.contains(*m)).collect();
        let mut written = 0;
        for mac in active.difference(&allow) {
            written += write(&dir.join(mac), &format!("{mac}\n"));
        }
        for mac in known
            .iter()
            .filter(|m| !deny.contains(*m) && !active.contains(*m))
        {
            written += write(&dir.join(mac), &format!("{mac},ignore\n"));
        }
        let wildcard = if allow_unknown {
            ALLOW_UNKNOWN
        } else {
            DENY_UNKNOWN
        };
        let path = dir.join(UNKNOWN_FILE);
        if fs::metadata(&path).map(|m| m.len()).ok() != Some(wildcard.len() as u64) {
            written += write(&path, wildcard);
        }
        for mac in removed {
            let path = dir.join(mac);
            let (len, content) = if allow_unknown {
                (ALLOW_LEN, format!("{mac}\n"))
            } else {
                (DENY_LEN, format!("{mac},ignore\n"))
            };
            if fs::metadata(&path).expect("listed").len() != len {
                written += write(&path, &content);
            }
        }
        written
    }

    fn deny_allow_lists(dir: &Path) -> (HashSet<String>, HashSet<String>) {
        let (mut deny, mut allow) = (HashSet::new(), HashSet::new());
        for entry in fs::read_dir(dir).expect("hostsdir") {
            let name = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            let path = dir.join(&name);
            if fs::metadata(&path).expect("stat").len() == DENY_LEN {
                deny.insert(name.clone());
            }
            if fs::metadata(&path).expect("stat").len() == ALLOW_LEN {
                allow.insert(name);
            }
        }
        (deny, allow)
    }

    /// `_exclusive_write_or_pass`: 10 attempts, 10 ms apart.
    fn write(path: &Path, buf: &str) -> usize {
        let mut file = File::create(path).expect("open for writing");
        for _ in 0..10 {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(locked) => {
                    (&*locked).write_all(buf.as_bytes()).expect("write");
                    locked.unlock().expect("unlock");
                    return 1;
                }
                Err((back, _)) => {
                    file = back;
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        0
    }
}

fn run_ironic(base: &Path, all: &[MacAddr], toggled: &[MacAddr], durable: bool) -> Run {
    let dir = base.join("hostsdir");
    fs::create_dir_all(&dir).unwrap();
    let known: HashSet<String> = all.iter().map(MacAddr::to_string).collect();
    let sync = |active: &HashSet<String>| {
        let written = ironic::sync(&dir, active, &known, true);
        if durable {
            nix::unistd::syncfs(File::open(&dir).unwrap()).unwrap();
        }
        written
    };
    let t = Instant::now();
    let initial_files = sync(&HashSet::new());
    let initial = t.elapsed();
    let active: HashSet<String> = toggled.iter().map(MacAddr::to_string).collect();
    let t = Instant::now();
    let incremental_files = sync(&active);
    Run {
        initial,
        initial_files,
        incremental: t.elapsed(),
        incremental_files,
    }
}

fn run(which: Impl, parent: &Path, all: &[MacAddr], toggled: &[MacAddr]) -> Run {
    let base = tempfile::Builder::new()
        .prefix("filter-bench.")
        .tempdir_in(parent)
        .unwrap();
    // Start every run with nothing dirty, so that one run's syncfs does not pay for the
    // previous run's writes and deletions.
    nix::unistd::sync();
    let result = match which {
        Impl::Ours(d) => run_ours(base.path(), d, all, toggled),
        Impl::Ironic => run_ironic(base.path(), all, toggled, false),
        Impl::IronicSyncfs => run_ironic(base.path(), all, toggled, true),
    };
    drop(base);
    result
}

/// The fastest run: on a shared machine noise only ever adds time.
fn best(v: Vec<Duration>) -> Duration {
    v.into_iter().min().expect("at least one round")
}

/// Runs every implementation `rounds` times on `parent`, rotating the order each round.
fn compare(label: &str, parent: &Path, all: &[MacAddr], toggled: &[MacAddr], rounds: usize) {
    let impls = [
        Impl::Ours(Durability::Syncfs),
        Impl::Ours(Durability::FsyncEach),
        Impl::Ironic,
        Impl::IronicSyncfs,
    ];
    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); impls.len()];
    for round in 0..rounds {
        for k in 0..impls.len() {
            let i = (k + round) % impls.len();
            runs[i].push(run(impls[i], parent, all, toggled));
        }
    }
    println!(
        "\n{label} ({}), {} MACs, {rounds} rounds, best of each:",
        parent.display(),
        all.len()
    );
    println!(
        "  {:<22} {:>12} {:>8} {:>14} {:>8}",
        "", "initial", "files", "incremental", "files"
    );
    let best_of = |i: usize| {
        let r = &runs[i];
        let m = |f: fn(&Run) -> Duration| best(r.iter().map(f).collect());
        (m(|r| r.initial), m(|r| r.incremental), r[0])
    };
    for (i, which) in impls.iter().enumerate() {
        let (init, incr, any) = best_of(i);
        println!(
            "  {:<22} {:>12.1?} {:>8} {:>14.2?} {:>8}",
            which.label(),
            init,
            any.initial_files,
            incr,
            any.incremental_files
        );
    }
    let ratio = |ours: usize, base: usize| {
        let ((init, incr, _), (base_init, base_incr, _)) = (best_of(ours), best_of(base));
        println!(
            "  ratio {} / {}: initial {:.2}, incremental {:.2}",
            impls[ours].label(),
            impls[base].label(),
            init.as_secs_f64() / base_init.as_secs_f64(),
            incr.as_secs_f64() / base_incr.as_secs_f64()
        );
    };
    ratio(0, 2);
    ratio(1, 2);
    ratio(0, 3);
}

/// A tmpfs mounted on a fresh directory under /tmp, unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount() -> Option<Tmpfs> {
        let dir = tempfile::Builder::new()
            .prefix("filter-bench-tmpfs.")
            .tempdir()
            .ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1g,mode=0755", "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs(dir))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it,
    // and then a small smoke run keeps the test suite fast while still exercising every part.
    let full = std::env::args().any(|a| a == "--bench");
    let (macs_default, rounds_default) = if full { (50_000, 2) } else { (1_000, 1) };
    let n = env_usize("FILTER_BENCH_MACS", macs_default).max(CHANGES);
    let rounds = env_usize("FILTER_BENCH_ROUNDS", rounds_default).max(1);
    let parts = std::env::var("FILTER_BENCH_PARTS").unwrap_or("tmpfs,disk,dnsmasq".into());
    let part = |name: &str| parts.split(',').any(|p| p.trim() == name);
    let all = macs(n);
    let toggled = changed(&all);
    let root = nix::unistd::geteuid().is_root();
    let tmpfs = if root { Tmpfs::mount() } else { None };
    match &tmpfs {
        Some(t) if part("tmpfs") => compare("tmpfs", t.0.path(), &all, &toggled, rounds),
        Some(_) => {}
        None => println!("\ntmpfs: skipped (mounting one needs root)"),
    }
    if part("disk") {
        compare("disk", &std::env::temp_dir(), &all, &toggled, rounds);
    }
    if !root {
        println!("\ndnsmasq absorption: skipped (the lab needs root)");
    } else if part("dnsmasq") {
        let parent = tmpfs
            .as_ref()
            .map_or_else(std::env::temp_dir, |t| t.0.path().to_owned());
        measure_dnsmasq(&parent, &all, &toggled);
    }
}

/// The N-file hostsdir (all denied, as in the sync comparison) under `parent`.
fn absorb_filter(parent: &Path, all: &[MacAddr]) -> (tempfile::TempDir, PxeFilter) {
    let base = tempfile::Builder::new()
        .prefix("filter-absorb.")
        .tempdir_in(parent)
        .unwrap();
    // dnsmasq reads the hostsdir as nobody.
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    fs::set_permissions(base.path(), mode).unwrap();
    let cfg = FilterConfig {
        enabled: true,
        hostsdir: base.path().join("hostsdir"),
        compact_after: u32::MAX,
        ..FilterConfig::default()
    };
    let filter = PxeFilter::new(cfg, base.path().join("state"));
    filter
        .replace_all(DesiredLists::new(&[], all).unwrap())
        .unwrap();
    filter.purge_and_rebuild(false).unwrap();
    (base, filter)
}

/// Starts dnsmasq on bridge vqb1 of `lab` with the filter's lines; returns its pid.
fn spawn_dnsmasq(lab: &lab::Lab, filter: &PxeFilter) -> u32 {
    let cfg = FilterConfig {
        enabled: true,
        hostsdir: filter.hostsdir().to_owned(),
        ..FilterConfig::default()
    };
    let mut conf = vec!["dhcp-range=10.82.0.10,10.82.0.250,255.255.255.0,1h".to_owned()];
    conf.extend(dnsmasq_lines(&cfg, &["vqb1".parse().unwrap()], false).all());
    conf.push(format!(
        "dhcp-leasefile={}",
        lab.dir().join("leases").display()
    ));
    conf.push(format!("pid-file={}", lab.dir().join("pid").display()));
    let conf_path = lab.dir().join("dnsmasq.conf");
    fs::write(&conf_path, conf.join("\n") + "\n").unwrap();
    let args = [
        "/usr/sbin/dnsmasq".to_owned(),
        "--keep-in-foreground".into(),
        "--no-ping".into(),
        format!("--conf-file={}", conf_path.display()),
        "--bind-dynamic".into(),
        "--interface=vqb1".into(),
        "--except-interface=lo".into(),
        "--port=0".into(),
        format!("--log-facility={}", lab.dir().join("dnsmasq.log").display()),
        "--log-dhcp".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    lab.spawn_host(&args)
}

/// Starts dnsmasq in a lab namespace on an N-file hostsdir and measures its start, how long
/// it takes to absorb the 100 changes, and a compaction (SIGHUP).
fn measure_dnsmasq(parent: &Path, all: &[MacAddr], toggled: &[MacAddr]) {
    let (_base, filter) = absorb_filter(parent, all);
    let lab = lab::Lab::new("filter_sync_bench");
    lab.add_bridge("vqb1", "10.82.0.1/24");
    let client = lab.add_client("vqb1", "52:54:00:82:00:01");
    let mut prober = lab::Prober::start(client.ns());
    let started = Instant::now();
    let pid = spawn_dnsmasq(&lab, &filter);
    let stranger = MacAddr::new([0x52, 0x54, 0x00, 0x82, 0x00, 0x99]);
    let limit = Duration::from_secs(120);
    let first = prober.until_offer(&stranger.to_string(), Duration::from_millis(50), limit);
    let start_time = started.elapsed();
    assert!(
        first.is_some(),
        "dnsmasq never answered: {}",
        lab.process_log(pid)
    );
    let last = *toggled.iter().max().unwrap();
    let short = Duration::from_millis(300);
    assert!(
        prober
            .until_offer(&last.to_string(), short, short)
            .is_none(),
        "{last} should be denied"
    );

    let t = Instant::now();
    let report = filter.allow(toggled).unwrap();
    let synced = Instant::now();
    let answer = prober.until_offer(
        &last.to_string(),
        Duration::from_millis(20),
        Duration::from_secs(60),
    );
    let answer_after = synced.elapsed();
    let (ms, tries) = answer.unwrap_or_else(|| panic!("{last} never allowed"));
    let read_line = format!("read {}/{}", filter.hostsdir().display(), last.dashed());
    let log = lab.dir().join("dnsmasq.log");
    let read_it = || {
        fs::read_to_string(&log)
            .unwrap_or_default()
            .contains(&read_line)
    };
    let logged = lab::Lab::wait_for(read_it, Duration::from_secs(10));

    lab.signal_process(pid, "HUP");
    let hup = Instant::now();
    let after_hup = prober.until_offer(&last.to_string(), Duration::from_millis(50), limit);
    let hup_time = hup.elapsed();
    drop(prober);
    lab.stop_process(pid, Duration::from_secs(5));

    println!(
        "\ndnsmasq absorbing changes ({} MACs in the hostsdir, {}):",
        all.len(),
        parent.display()
    );
    println!("  start to first answer: {start_time:.2?}");
    println!(
        "  sync of {CHANGES} changes: {:.2?}, {} files; first answer for the last-written MAC \
         {answer_after:.2?} after the sync returned ({ms:.1} ms in the prober, {tries} tries; \
         dnsmasq logged reading it: {logged})",
        synced - t,
        report.applied.written
    );
    let state = if after_hup.is_some() {
        "still allowed"
    } else {
        "NOT answered"
    };
    println!(
        "  compaction (SIGHUP, re-read of every file) to the next answer: {hup_time:.2?} ({state})"
    );
}
