//! The filter's syncs through the running daemon: `FilterSync(allow, deny)` (the lists in the
//! message) and `FilterSyncFrom(fd)` (the user's JSON file handed over) on D-Bus, each call
//! timed from send to reply (the policy is durable and the hostsdir written when the daemon
//! replies; its syncfs follows), and `virtmasq filter sync --from FILE` as a whole process
//! while the daemon runs (it hands the file over). The daemon keeps the policy in memory, so
//! a change costs what it writes. Each of the three parts starts a daemon with an empty
//! hostsdir and policy, so its first sync is a first one. Each timed call starts 300 ms after the one before, once
//! the daemon's deferred sync of the hostsdir and the disk's writeback are done.

use std::time::{Duration, Instant};

use std::path::{Path, PathBuf};
use std::process::Command;

use super::filter::{bare_loop, change_files, changed, config, initial, write_json, Lists};
use super::{dbus_name, median, timed, Row, Scale};
use crate::lab::Lab;
use crate::support::bus::PrivateBus;
use crate::support::{wait_until, BIN};

const PATH: &str = "/org/virtmasq/Agent1";

/// The pause before each timed call.
const SETTLE: Duration = Duration::from_millis(300);

/// Lets the daemon's deferred sync of the last call finish, then waits for the disk itself
/// (`sync`): after 25,000 removals its writeback runs for seconds, and a timed call started
/// meanwhile measures the disk's backlog, not the call.
fn settle() {
    std::thread::sleep(SETTLE);
    let synced = Command::new("sync").status().expect("run sync");
    assert!(synced.success(), "sync failed");
}

async fn call(conn: &zbus::Connection, lists: &Lists) -> Duration {
    settle();
    let start = Instant::now();
    conn.call_method(
        Some(dbus_name()),
        PATH,
        Some(dbus_name()),
        "FilterSync",
        &(&lists.allow, &lists.deny),
    )
    .await
    .expect("FilterSync");
    start.elapsed()
}

/// `FilterSyncFrom` with `json` opened and handed over.
async fn call_from(conn: &zbus::Connection, json: &Path) -> Duration {
    settle();
    let start = Instant::now();
    let file = std::fs::File::open(json).unwrap();
    conn.call_method(
        Some(dbus_name()),
        PATH,
        Some(dbus_name()),
        "FilterSyncFrom",
        &(zbus::zvariant::Fd::from(&file), json.to_str().unwrap()),
    )
    .await
    .expect("FilterSyncFrom");
    start.elapsed()
}

/// `virtmasq filter sync --from json` as a whole process, on the daemon's bus.
fn cli(cfg: &Path, bus: &str, json: &Path) -> Duration {
    settle();
    let (took, out) = timed(
        Command::new(BIN)
            .args([
                "--config",
                cfg.to_str().unwrap(),
                "filter",
                "sync",
                "--from",
            ])
            .arg(json)
            .env("DBUS_SYSTEM_BUS_ADDRESS", bus),
    );
    assert!(
        out.contains("by the daemon"),
        "the CLI did not hand the list over: {out}"
    );
    took
}

/// The floor of a whole-list call: the same lists, refused by the daemon at their first MAC
/// (so: the message's way through the bus and its decoding, and an error back).
async fn refused(conn: &zbus::Connection, lists: &Lists) -> Duration {
    let mut bad = lists.allow.clone();
    bad[0] = "not-a-mac".into();
    let start = Instant::now();
    let r = conn
        .call_method(
            Some(dbus_name()),
            PATH,
            Some(dbus_name()),
            "FilterSync",
            &(&bad, &lists.deny),
        )
        .await;
    let took = start.elapsed();
    assert!(r.is_err(), "a list with a bad MAC was taken");
    took
}

/// What one run measured: the first sync, and per round a change and a no-change sync.
#[derive(Default)]
struct Measured {
    first: Duration,
    change: Vec<Duration>,
    same: Vec<Duration>,
    transport: Vec<Duration>,
    from_first: Duration,
    from_change: Vec<Duration>,
    from_same: Vec<Duration>,
}

/// Times of the first sync, and of `rounds` changes and no-change syncs, with the lists in
/// the message.
async fn measure_message(address: &str, scale: Scale, m: &mut Measured) {
    let conn = connect(address).await;
    let (first, second) = (initial(scale.macs), changed(scale.macs));
    m.first = call(&conn, &first).await;
    for _ in 0..scale.rounds {
        m.change.push(call(&conn, &second).await);
        m.same.push(call(&conn, &second).await);
        m.transport.push(refused(&conn, &second).await);
        call(&conn, &first).await; // back, for the next round
    }
}

/// The same with the JSON files `jsons` (initial, changed) handed over.
async fn measure_from(address: &str, scale: Scale, jsons: &[PathBuf; 2], m: &mut Measured) {
    let conn = connect(address).await;
    m.from_first = call_from(&conn, &jsons[0]).await;
    for _ in 0..scale.rounds {
        m.from_change.push(call_from(&conn, &jsons[1]).await);
        m.from_same.push(call_from(&conn, &jsons[1]).await);
        call_from(&conn, &jsons[0]).await;
    }
}

async fn connect(address: &str) -> zbus::Connection {
    zbus::connection::Builder::address(address)
        .unwrap()
        .build()
        .await
        .expect("connect to the bus")
}

/// Starts a daemon on `bus` with an empty hostsdir and policy (each part's first sync is a
/// first one); returns its pid.
fn fresh_daemon(lab: &Lab, cfg: &Path, bus: &PrivateBus) -> u32 {
    let gone = wait_until(Duration::from_secs(10), || !bus.has_owner(dbus_name()));
    assert!(gone, "the last daemon still holds its bus name");
    for dir in ["hostsdir", "state"] {
        let _ = std::fs::remove_dir_all(lab.dir().join(dir));
    }
    let mut cmd = lab.host_command(BIN);
    cmd.args([
        "--config",
        cfg.to_str().unwrap(),
        "--log-level",
        &super::daemon_log(),
    ])
    .arg("daemon")
    .env("DBUS_SYSTEM_BUS_ADDRESS", &bus.address);
    let pid = lab.spawn(&mut cmd);
    let up = wait_until(Duration::from_secs(10), || bus.has_owner(dbus_name()));
    assert!(up, "the daemon (pid {pid}) did not take its bus name");
    pid
}

/// The CLI's first sync, changes and no-change syncs while the daemon runs.
fn measure_cli(cfg: &Path, bus: &str, scale: Scale, jsons: &[PathBuf; 2]) -> [Duration; 3] {
    let first = cli(cfg, bus, &jsons[0]);
    let (mut change, mut same) = (Vec::new(), Vec::new());
    for _ in 0..scale.rounds {
        change.push(cli(cfg, bus, &jsons[1]));
        same.push(cli(cfg, bus, &jsons[1]));
        cli(cfg, bus, &jsons[0]);
    }
    [first, median(change), median(same)]
}

/// The daemon rows of the table.
pub fn rows(scale: Scale) -> Vec<Row> {
    let lab = Lab::new("peers_daemon");
    let bus = PrivateBus::start();
    let cfg = config(lab.dir());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let jsons = [
        lab.dir().join("initial.json"),
        lab.dir().join("change.json"),
    ];
    write_json(&jsons[0], &initial(scale.macs));
    write_json(&jsons[1], &changed(scale.macs));
    let mut m = Measured::default();
    let pid = fresh_daemon(&lab, &cfg, &bus);
    rt.block_on(measure_message(&bus.address, scale, &mut m));
    lab.stop_process(pid, Duration::from_secs(5));
    let pid = fresh_daemon(&lab, &cfg, &bus);
    rt.block_on(measure_from(&bus.address, scale, &jsons, &mut m));
    lab.stop_process(pid, Duration::from_secs(5));
    let pid = fresh_daemon(&lab, &cfg, &bus);
    let cli_times = measure_cli(&cfg, &bus.address, scale, &jsons);
    lab.stop_process(pid, Duration::from_secs(5));
    let n = scale.macs;
    let files = change_files(n);
    bare_loop(&lab.dir().join("bare"), files, 0); // then each run replaces files, as the change does
    let floor: Vec<Duration> = (0..scale.rounds)
        .map(|_| bare_loop(&lab.dir().join("bare"), files, 0))
        .collect();
    vec![
        Row {
            what: format!("filter sync, {n} MACs, daemon (D-Bus), once"),
            ours: m.first.into(),
            peer: None,
            target: "",
        },
        Row {
            what: "filter sync, 100+50+50 change, daemon (D-Bus)".into(),
            ours: median(m.change).into(),
            peer: Some((
                format!("bare create+rename+syncfs, {files} files"),
                median(floor.clone()).into(),
            )),
            target: "< 10 ms",
        },
        Row {
            what: "filter sync, no change, daemon (D-Bus)".into(),
            ours: median(m.same).into(),
            peer: Some((
                "the same call refused at its first MAC".into(),
                median(m.transport).into(),
            )),
            target: "< 5 ms",
        },
        Row {
            what: format!("FilterSyncFrom(JSON file), {n} MACs, daemon, once"),
            ours: m.from_first.into(),
            peer: None,
            target: "",
        },
        Row {
            what: "FilterSyncFrom(JSON file), 100+50+50 change, daemon".into(),
            ours: median(m.from_change).into(),
            peer: Some((
                format!("bare create+rename+syncfs, {files} files"),
                median(floor.clone()).into(),
            )),
            target: "< 10 ms",
        },
        Row {
            what: "FilterSyncFrom(JSON file), no change, daemon".into(),
            ours: median(m.from_same).into(),
            peer: None,
            target: "< 5 ms",
        },
        Row {
            what: format!("filter sync --from, {n} MACs, CLI, daemon running"),
            ours: cli_times[0].into(),
            peer: None,
            target: "",
        },
        Row {
            what: "filter sync --from, 100+50+50 change, CLI, daemon running".into(),
            ours: cli_times[1].into(),
            peer: Some((
                format!("bare create+rename+syncfs, {files} files"),
                median(floor).into(),
            )),
            target: "< 50 ms",
        },
        Row {
            what: "filter sync --from, no change, CLI, daemon running".into(),
            ours: cli_times[2].into(),
            peer: None,
            target: "",
        },
    ]
}
