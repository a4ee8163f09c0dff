//! Many hosts, one policy: a real three-member etcd cluster and three agents, each in its
//! own network namespace with its own daemon, real dnsmasq and DHCP clients. A change made
//! with one host's CLI reaches every host; one member lost changes nothing; every member lost,
//! every host keeps serving the last policy and says it is stale; members back, what changed
//! meanwhile arrives everywhere. A host's own override beats the fleet-wide key there only;
//! keys not of the layout (per network) are named in every host's log. iPXE rules come from
//! the same prefix, a host's own beating the fleet's, and stay across a restart without etcd.

mod fleet;
mod lab;
mod support;

use std::time::Duration;

use fleet::{offers, wait_files, Agent, Cluster};
use lab::Client;

const PREFIX: &str = "/vq/fleet";
const MAC_A: &str = "52:54:00:89:00:0a";
const MAC_B: &str = "52:54:00:89:00:0b";
/// Longest wait for a change to reach every hostsdir.
const SPREAD: Duration = Duration::from_secs(10);

/// The clients: MAC_A and MAC_B on each host, in host order.
type Clients<'a> = [&'a Client];

#[test]
fn one_policy_on_three_hosts_through_member_loss_and_total_outage() {
    let mut cluster = Cluster::new("etcd_cluster", 3, "http", Vec::new());
    cluster.start_all();
    let mut agents: Vec<Agent> = (1..=3)
        .map(|i| {
            Agent::new(
                "etcd_cluster",
                &cluster,
                PREFIX,
                &format!("host = \"agent{i}\"\n[http]\nenabled = true\n"),
            )
        })
        .collect();
    for a in &mut agents {
        a.start();
    }
    for a in &agents {
        a.status_with("etcd revision", Duration::from_secs(20));
        a.wait_dnsmasq();
    }
    let clients: Vec<_> = agents
        .iter()
        .map(|a| (a.client(MAC_A), a.client(MAC_B)))
        .collect();
    let all: Vec<_> = clients.iter().flat_map(|(a, b)| [a, b]).collect();
    assert_eq!(
        offers(&all),
        [true; 6],
        "unknown MACs are served on every host"
    );

    cli_change_reaches_every_host(&agents, &all);
    one_member_lost(&mut cluster, &agents, &all);
    total_outage(&mut cluster, &agents, &all);
    members_back(&mut cluster, &agents, &all);
    host_override(&cluster, &agents, &all);
    ipxe_rules(&mut cluster, &mut agents);
}

fn cli_change_reaches_every_host(agents: &[Agent], all: &Clients) {
    // One host's CLI denies two MACs: every hostsdir and every dnsmasq follows.
    let (ok, out) = agents[0].cli(&["filter", "deny", MAC_A, MAC_B]);
    assert!(ok && out.contains("written to etcd at revision"), "{out}");
    let t = wait_files(agents, MAC_A, true, SPREAD);
    wait_files(agents, MAC_B, true, SPREAD);
    eprintln!("CLI deny on agent1 to all three hostsdirs: {t:?} after the command returned");
    assert_eq!(
        offers(all),
        [false; 6],
        "a MAC denied on one host got an offer somewhere"
    );
}

fn one_member_lost(cluster: &mut Cluster, agents: &[Agent], all: &Clients) {
    // One member killed: another host's CLI still writes, and every host still follows.
    cluster.kill(0);
    // If it was the leader, the two left elect another first (a CLI write meanwhile fails
    // with a clear "no answer" error, as etcdctl's would).
    let elected = cluster.wait_writable(Duration::from_secs(20));
    eprintln!("a leader among the two members left after {elected:?}");
    let (ok, out) = agents[1].cli(&["filter", "allow", MAC_A]);
    assert!(ok, "a write with one member of three down failed: {out}");
    wait_files(agents, MAC_A, false, SPREAD);
    assert_eq!(
        offers(all),
        [true, false, true, false, true, false],
        "allow MAC_A on every host, MAC_B still denied"
    );
}

fn total_outage(cluster: &mut Cluster, agents: &[Agent], all: &Clients) {
    // Every member stopped: every host says stale and keeps serving the last policy.
    cluster.kill_all();
    for a in agents {
        a.status_with("source stale since", Duration::from_secs(15));
        let (ok, out) = a.cli(&["status"]);
        assert!(ok && out.contains("etcd source stale since"), "{out}");
    }
    let (ok, out) = agents[2].cli(&["filter", "deny", MAC_A]);
    assert!(
        !ok && out.contains("etcd at"),
        "a write without etcd must fail: {out}"
    );
    assert_eq!(
        offers(all),
        [true, false, true, false, true, false],
        "the last policy changed without etcd"
    );
}

fn members_back(cluster: &mut Cluster, agents: &[Agent], all: &Clients) {
    // Members back, out of the agents' reach at first: changes made then arrive once they
    // reach it again (the watches resume from the revision each applied).
    for a in agents {
        a.lab.host_run(&["ip", "link", "set", "vqup", "down"]);
    }
    cluster.start_all();
    cluster.ctl(&["put", &format!("{PREFIX}/macs/{MAC_B}"), "allow"]);
    cluster.ctl(&["put", &format!("{PREFIX}/macs/{MAC_A}"), "deny"]);
    for a in agents {
        a.lab.host_run(&["ip", "link", "set", "vqup", "up"]);
    }
    let t = wait_files(agents, MAC_B, false, Duration::from_secs(20));
    wait_files(agents, MAC_A, true, SPREAD);
    eprintln!("changes made during the outage on every host {t:?} after the links came back");
    for a in agents {
        a.status_with("etcd revision", SPREAD);
        assert!(!a.log().contains("compacted"), "{}", a.log());
    }
    assert_eq!(
        offers(all),
        [false, true, false, true, false, true],
        "the changes made meanwhile are served on every host"
    );
}

fn host_override(cluster: &Cluster, agents: &[Agent], all: &Clients) {
    // One host's override, written from another host's CLI: only that host changes.
    let (ok, out) = agents[0].cli(&["filter", "deny", "--host", "agent2", MAC_B]);
    assert!(ok && out.contains("host agent2 applies it"), "{out}");
    wait_files(&agents[1..2], MAC_B, true, SPREAD);
    let per_network = format!("{PREFIX}/networks/lab/macs/{MAC_A}");
    cluster.ctl(&["put", &per_network, "allow"]);
    for a in agents {
        let named = support::wait_until(SPREAD, || {
            a.log().contains(&per_network)
                && a.log().contains("per-network policy is not supported")
        });
        assert!(
            named,
            "a per-network key was not refused by name\n{}",
            a.log()
        );
    }
    assert_eq!(
        offers(all),
        [false, true, false, false, false, true],
        "MAC_B denied on agent2 only; the per-network key changed nothing"
    );
    // The override forgotten: agent2 follows the fleet-wide key again.
    let (ok, out) = agents[2].cli(&["filter", "forget", "--host", "agent2", MAC_B]);
    assert!(ok, "{out}");
    wait_files(agents, MAC_B, false, SPREAD);
    let (ok, out) = agents[0].cli(&["filter", "list", "--host", "agent2"]);
    assert!(!ok && out.contains("--host agent2"), "{out}");
}

fn ipxe_rules(cluster: &mut Cluster, agents: &mut [Agent]) {
    // iPXE script rules from etcd: the fleet's on every host, agent3's own there.
    let fleet_rule = "chain http://10.90.0.1/fleet.ipxe";
    cluster.ctl(&["put", &format!("{PREFIX}/ipxe/macs/{MAC_A}"), fleet_rule]);
    cluster.ctl(&[
        "put",
        &format!("{PREFIX}/hosts/agent3/ipxe/macs/{MAC_A}"),
        "exit",
    ]);
    let url = format!("http://127.0.0.1:8067/boot.ipxe?mac={MAC_A}");
    let wants = [
        fleet_rule,
        fleet_rule,
        "mac rule for 52:54:00:89:00:0a\nexit\n",
    ];
    for (a, want) in agents.iter().zip(wants) {
        let mut last = None;
        let served = support::wait_until(SPREAD, || {
            last = a.fetch(&url);
            last.as_deref().is_some_and(|s| s.contains(want))
        });
        assert!(served, "{want:?} not served: {last:?}\n{}", a.log());
    }
    // agent3 restarted while etcd is gone: its rule is still served.
    agents[2].stop();
    cluster.kill_all();
    agents[2].start();
    agents[2].status_with("source stale since", SPREAD);
    let mut last = None;
    let served = support::wait_until(SPREAD, || {
        last = agents[2].fetch(&url);
        last.as_deref().is_some_and(|s| s.contains(wants[2]))
    });
    assert!(
        served,
        "the last iPXE rule is gone after a restart without etcd: {last:?}"
    );
}
