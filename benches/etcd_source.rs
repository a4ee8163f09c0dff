//! Benchmark of the PXE filter's policy followed from etcd: a real etcd (Debian's
//! `etcd-server`) on loopback with free ports and a temporary data directory.
//!
//! `cargo bench --bench etcd_source` loads N MACs into etcd (default 50,000;
//! `ETCD_BENCH_MACS`), then starts A agents' followers at once (default 3;
//! `ETCD_BENCH_AGENTS`), each with its own filter, state directory and hostsdir, and times
//! their start: the whole prefix read at one revision and applied to an empty hostsdir. Then
//! it writes changes at R per second for S seconds (`ETCD_BENCH_RATE`, default 1,000;
//! `ETCD_BENCH_SECS`, default 10; 60 for the full run), each a new MAC denied, and
//! reports the latency from the put to the MAC's file in *every* agent's hostsdir (polled
//! every millisecond), timed from just before the put: p50, p99, max, and whether every
//! follower kept up. The agents share this process and its runtime (two worker threads, as on
//! the two-core machines this runs on), like daemons sharing one machine.
//!
//! Run without `--bench` (as `cargo test --all-targets` does), it is a small smoke run.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{Client, PutOptions, Txn, TxnOp};
use virtmasq::filter::etcd::{spawn, SourceStatus};
use virtmasq::filter::{FilterConfig, PxeFilter, SourceConfig, SourceKind};

const PREFIX: &str = "/bench/filter";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An etcd member killed on drop.
struct Etcd(Child);

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_etcd(dir: &Path) -> (Etcd, String) {
    let (client, peer) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{client}");
    let peer = format!("http://127.0.0.1:{peer}");
    let child = Command::new("etcd")
        .arg("--name=b0")
        .arg(format!("--data-dir={}", dir.join("etcd").display()))
        .arg(format!("--listen-client-urls={url}"))
        .arg(format!("--advertise-client-urls={url}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=b0={peer}"))
        .arg("--log-level=error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("etcd (Debian's etcd-server) must be installed: scripts/install-deps.sh");
    (Etcd(child), url)
}

fn mac(i: usize) -> String {
    let b = (i as u32).to_be_bytes();
    format!("52:54:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
}

async fn connect(url: &str) -> Client {
    for _ in 0..100 {
        if let Ok(mut c) = Client::connect([url], None).await {
            if c.get("/", None).await.is_ok() {
                return c;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("etcd at {url} did not answer");
}

/// Puts `macs` denied, in transactions of 100 (etcd allows 128 operations in one).
async fn load(client: &mut Client, macs: impl Iterator<Item = usize>) {
    let macs: Vec<usize> = macs.collect();
    for chunk in macs.chunks(100) {
        let ops: Vec<TxnOp> = chunk
            .iter()
            .map(|&i| {
                TxnOp::put(
                    format!("{PREFIX}/macs/{}", mac(i)),
                    "deny",
                    None::<PutOptions>,
                )
            })
            .collect();
        client.txn(Txn::new().and_then(ops)).await.unwrap();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = if full {
        env_or("ETCD_BENCH_MACS", 50_000)
    } else {
        1_000
    };
    let agents = if full {
        env_or("ETCD_BENCH_AGENTS", 3)
    } else {
        2
    };
    let rate = if full {
        env_or("ETCD_BENCH_RATE", 1_000)
    } else {
        100
    };
    let secs = if full {
        env_or("ETCD_BENCH_SECS", 10)
    } else {
        1
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(n, agents, rate, secs));
}

async fn run(n: usize, agents: usize, rate: usize, secs: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (_etcd, url) = start_etcd(dir.path());
    let mut client = connect(&url).await;
    let t = Instant::now();
    load(&mut client, 0..n).await;
    println!("loaded {n} MACs into etcd in {:?}", t.elapsed());

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, SourceStatus)>();
    let t = Instant::now();
    let mut following = Vec::new();
    let mut hostsdirs = Vec::new();
    for a in 0..agents {
        let (hostsdir, state) = (
            dir.path().join(format!("hostsdir{a}")),
            dir.path().join(format!("state{a}")),
        );
        let cfg = FilterConfig {
            enabled: true,
            hostsdir: hostsdir.clone(),
            ..FilterConfig::default()
        };
        let filter = Arc::new(PxeFilter::new(cfg, state.clone()));
        let source = SourceConfig {
            kind: SourceKind::Etcd,
            endpoints: vec![url.clone()],
            prefix: PREFIX.into(),
            host: Some(format!("bench{a}")),
            ..SourceConfig::default()
        };
        let tx = tx.clone();
        let report = Box::new(move |s: &SourceStatus| drop(tx.send((a, s.clone()))));
        following.push(spawn(&source, filter, &state, report, None));
        hostsdirs.push(hostsdir);
    }
    let mut current = vec![false; agents];
    while let Some((a, s)) = rx.recv().await {
        if s.stale_since.is_none() && !current[a] {
            current[a] = true;
            println!(
                "start: agent {a} read {n} MACs from etcd and applied them in {:?}",
                t.elapsed()
            );
        }
        if current.iter().all(|c| *c) {
            break;
        }
    }
    let files: Vec<usize> = (hostsdirs.iter())
        .map(|h| std::fs::read_dir(h).unwrap().count())
        .collect();
    println!(
        "start: {agents} agents, {n} MACs each, all applied in {:?} (files per hostsdir: {files:?})",
        t.elapsed()
    );
    changes(&mut client, &hostsdirs, n, rate, secs).await;
}

/// A change on its way: when it was put, and the agents whose file is still missing.
struct Pending {
    sent: Instant,
    missing: Vec<usize>,
}

/// Writes `rate` changes a second for `secs` seconds and measures put-to-every-file latency.
async fn changes(
    client: &mut Client,
    hostsdirs: &[PathBuf],
    base: usize,
    rate: usize,
    secs: usize,
) {
    let pending: Arc<Mutex<HashMap<String, Pending>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let total = rate * secs;
    let watcher = {
        let (pending, latencies) = (pending.clone(), latencies.clone());
        let dirs = hostsdirs.to_vec();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(secs as u64 + 30);
            while latencies.lock().unwrap().len() < total && Instant::now() < deadline {
                let mut p = pending.lock().unwrap();
                let mut done = Vec::new();
                for (name, change) in p.iter_mut() {
                    change.missing.retain(|&a| !dirs[a].join(name).exists());
                    if change.missing.is_empty() {
                        done.push((name.clone(), change.sent.elapsed()));
                    }
                }
                for (name, latency) in done {
                    p.remove(&name);
                    latencies.lock().unwrap().push(latency);
                }
                drop(p);
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1) / rate as u32);
    let start = Instant::now();
    let mut puts = Vec::with_capacity(total);
    for i in 0..total {
        tick.tick().await;
        let m = mac(base + i);
        // Timed from before the put: the latency includes etcd's commit.
        let change = Pending {
            sent: Instant::now(),
            missing: (0..hostsdirs.len()).collect(),
        };
        pending.lock().unwrap().insert(m.replace(':', "-"), change);
        // Not awaited in turn: one put's round trip must not hold back the next, or the rate
        // would be etcd's latency's, not the one asked for.
        let mut c = client.clone();
        puts.push(tokio::spawn(async move {
            c.put(format!("{PREFIX}/macs/{m}"), "deny", None)
                .await
                .unwrap();
        }));
    }
    for p in puts {
        p.await.unwrap();
    }
    let written = start.elapsed();
    watcher.join().unwrap();
    let mut l = latencies.lock().unwrap().clone();
    l.sort();
    let missing = total - l.len();
    println!(
        "changes: {total} puts in {written:?} (target {rate}/s); put-to-every-hostsdir ({} agents) latency p50 {:?} p99 {:?} max {:?}; {missing} not arrived",
        hostsdirs.len(),
        percentile(&l, 0.5),
        percentile(&l, 0.99),
        l.last().unwrap()
    );
    assert_eq!(missing, 0, "a follower fell behind");
}
