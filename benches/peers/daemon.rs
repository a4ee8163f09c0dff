//! The filter's syncs through the running daemon: `FilterSync(allow, deny)` over D-Bus, the
//! call timed from send to reply (the hostsdir is written before the daemon replies). The
//! daemon keeps the policy in memory, so a change costs what it writes.

use std::time::{Duration, Instant};

use super::filter::{bare_loop, change_files, changed, config, initial, Lists};
use super::{dbus_name, median, Row, Scale};
use crate::lab::Lab;
use crate::support::bus::PrivateBus;
use crate::support::{wait_until, BIN};

const PATH: &str = "/org/virtmasq/Agent1";

async fn call(conn: &zbus::Connection, lists: &Lists) -> Duration {
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

/// Times of the first sync, and of `rounds` changes and no-change syncs.
async fn measure(
    address: &str,
    scale: Scale,
) -> (Duration, Vec<Duration>, Vec<Duration>, Vec<Duration>) {
    let conn = zbus::connection::Builder::address(address)
        .unwrap()
        .build()
        .await
        .expect("connect to the bus");
    let (first, second) = (initial(scale.macs), changed(scale.macs));
    let first_time = call(&conn, &first).await;
    let (mut change, mut same, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..scale.rounds {
        change.push(call(&conn, &second).await);
        same.push(call(&conn, &second).await);
        floor.push(refused(&conn, &second).await);
        call(&conn, &first).await; // back, for the next round
    }
    (first_time, change, same, floor)
}

/// The daemon rows of the table.
pub fn rows(scale: Scale) -> Vec<Row> {
    let lab = Lab::new("peers_daemon");
    let bus = PrivateBus::start();
    let cfg = config(lab.dir());
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
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (first, change, same, transport) = rt.block_on(measure(&bus.address, scale));
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
            ours: first.into(),
            peer: None,
            target: "",
        },
        Row {
            what: "filter sync, 100+50+50 change, daemon (D-Bus)".into(),
            ours: median(change).into(),
            peer: Some((
                format!("bare create+rename, {files} files"),
                median(floor).into(),
            )),
            target: "< 10 ms",
        },
        Row {
            what: "filter sync, no change, daemon (D-Bus)".into(),
            ours: median(same).into(),
            peer: Some((
                "the same call refused at its first MAC".into(),
                median(transport).into(),
            )),
            target: "< 5 ms",
        },
    ]
}
