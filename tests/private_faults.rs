//! Private mode under faults, with the agent, real dnsmasq and real clients in the lab:
//! dnsmasq killed again and again (restarted with backoff, never two at once), the agent
//! killed (no dnsmasq left, leases kept: the next run offers a guest the address it had), and a
//! full state directory (guests are still served, dnsmasq's error is in the agent's log, and
//! the leases given meanwhile reach the disk once there is room).

mod lab;
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use lab::{Lab, ProbeOptions};
use support::*;

const RANGE: &str = r#"<virtmasq:range start="10.91.0.100" end="10.91.0.150" lease="1h"/>"#;

fn node(lab: &Lab) -> String {
    write_node(
        lab.dir(),
        "node.xml",
        &[TestNet {
            name: "lab",
            bridge: "vqa0",
            ip: "10.91.0.1/24",
            dhcp: Some(RANGE),
        }],
    )
}

fn start_agent(lab: &Lab) -> u32 {
    let cfg = write_config(lab.dir(), &node(lab), "");
    lab.spawn_host(&[BIN, "--config", cfg.to_str().unwrap(), "daemon"])
}

fn pid_file(lab: &Lab) -> std::path::PathBuf {
    lab.dir().join("run/lab/pid/dnsmasq.pid")
}

fn instances(lab: &Lab) -> usize {
    let conf = lab.dir().join("run/lab/dnsmasq.conf");
    pids_with_arg(conf.to_str().unwrap()).len()
}

#[test]
fn a_dnsmasq_killed_again_and_again_comes_back_with_backoff_never_twice() {
    let lab = Lab::new("private_kill_loop");
    lab.add_bridge("vqa0", "10.91.0.1/24");
    let agent = start_agent(&lab);
    let pids = pid_file(&lab);
    assert!(
        wait_until(Duration::from_secs(10), || live_pid(&pids).is_some()),
        "{}",
        lab.process_log(agent)
    );
    let mut gaps = Vec::new();
    for _ in 0..4 {
        let old = live_pid(&pids).unwrap();
        signal(old as u32, nix::sys::signal::SIGKILL);
        let killed = Instant::now();
        let mut most = 0;
        let back = wait_until(Duration::from_secs(10), || {
            most = most.max(instances(&lab));
            live_pid(&pids).is_some_and(|p| p != old)
        });
        assert!(back, "no new dnsmasq\n{}", lab.process_log(agent));
        gaps.push(killed.elapsed());
        assert!(most <= 1, "{most} instances of the network's dnsmasq at once");
    }
    eprintln!("restart gaps: {gaps:?}");
    assert!(
        gaps[3] > gaps[0] + Duration::from_millis(500),
        "no backoff between quick deaths: {gaps:?}"
    );
    assert_eq!(instances(&lab), 1);
    let lease = lab.add_client("vqa0", "52:54:00:91:00:31").lease();
    assert!(lease.is_some(), "no lease after the kills");
}

#[test]
fn a_killed_agent_leaves_no_dnsmasq_and_its_leases_serve_the_next_run() {
    let lab = Lab::new("private_agent_killed");
    lab.add_bridge("vqa0", "10.91.0.1/24");
    let agent = start_agent(&lab);
    assert!(wait_until(Duration::from_secs(10), || live_pid(
        &pid_file(&lab)
    )
    .is_some()));
    // A guest asks for an address of its own choosing, which the hash would not give it.
    let guest = lab.add_client("vqa0", "52:54:00:91:00:32");
    let lease = guest
        .lease_with_args(&["-r", "10.91.0.140"])
        .expect("a lease");
    assert_eq!(lease.ip.to_string(), "10.91.0.140");
    signal(agent, nix::sys::signal::SIGKILL);
    assert!(
        wait_until(Duration::from_secs(3), || instances(&lab) == 0),
        "a dnsmasq outlived the agent"
    );
    let leases = std::fs::read_to_string(lab.dir().join("state/leases/lab.leases")).unwrap();
    assert!(leases.contains("10.91.0.140"), "{leases}");

    let agent = start_agent(&lab);
    assert!(
        wait_until(Duration::from_secs(10), || live_pid(&pid_file(&lab)).is_some()),
        "{}",
        lab.process_log(agent)
    );
    let offer = guest
        .probe(&ProbeOptions::default())
        .expect("an offer from the next run");
    assert_eq!(
        offer.yiaddr.to_string(),
        "10.91.0.140",
        "the guest's lease was not kept"
    );
}

/// Unmounts the tmpfs when the test ends, however it ends.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_state_directory_loses_no_lease() {
    let lab = Lab::new("private_state_full");
    lab.add_bridge("vqa0", "10.91.0.1/24");
    let state = lab.dir().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs"])
        .arg(&state)
        .status()
        .unwrap();
    assert!(ok.success(), "mount a small tmpfs");
    let _mounted = Mounted(state.clone());
    let agent = start_agent(&lab);
    assert!(
        wait_until(Duration::from_secs(10), || live_pid(&pid_file(&lab)).is_some()),
        "{}",
        lab.process_log(agent)
    );
    // The state directory fills up (another program's file).
    let filler = state.join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 512 * 1024]);
    // Guests are still served; dnsmasq says why their lease is not on disk yet.
    let first = lab.add_client("vqa0", "52:54:00:91:00:33");
    let lease = first.lease().expect("a lease with the state directory full");
    assert!(
        wait_until(Duration::from_secs(5), || lab
            .process_log(agent)
            .contains("No space left on device")),
        "no clear error:\n{}",
        lab.process_log(agent)
    );
    assert!(lab.process_status(agent).is_none(), "the agent exited");
    // Room again: the next lease written carries the first one too (dnsmasq keeps them all).
    std::fs::remove_file(&filler).unwrap();
    let second = lab.add_client("vqa0", "52:54:00:91:00:34");
    assert!(second.lease().is_some());
    let file = state.join("leases/lab.leases");
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_to_string(&file)
            .is_ok_and(|t| t.contains(&lease.ip.to_string()) && t.contains("52:54:00:91:00:34"))),
        "the lease given while the disk was full was lost: {:?}",
        std::fs::read_to_string(&file)
    );
}
