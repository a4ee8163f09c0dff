//! The etcd source over TLS with client certificates and etcd's user authentication, against
//! a real etcd (certificates made at test time with openssl): the agent follows the policy;
//! a wrong password or a wrong CA is a clear error naming the endpoint and the problem, in
//! the daemon's status and the CLI's message, and the last policy stays in force.

mod fleet;
mod lab;
mod support;

use std::time::Duration;

use fleet::tls::Pki;
use fleet::{offers, wait_files, Agent, Cluster, ETCD_ADDR};

const PREFIX: &str = "/vq/tls";
const MAC_A: &str = "52:54:00:8a:00:0a";
const MAC_B: &str = "52:54:00:8a:00:0b";
const WAIT: Duration = Duration::from_secs(15);

/// Users, a role for the prefix, and authentication on.
fn enable_auth(cluster: &mut Cluster) {
    for args in [
        &["user", "add", "root:rootpw"][..],
        &["role", "add", "vq"],
        &[
            "role",
            "grant-permission",
            "vq",
            "--prefix=true",
            "readwrite",
            "/vq/tls/",
        ],
        &["user", "add", "virtmasq:vq-secret"],
        &["user", "grant-role", "virtmasq", "vq"],
        &["auth", "enable"],
    ] {
        cluster.ctl(args);
    }
    cluster.ctl_flags.push("--user=root:rootpw".into());
}

/// The daemon's status as JSON, over its bus: the filter source's record.
fn source_status(agent: &Agent) -> serde_json::Value {
    let (ok, out) = agent.cli(&["status", "--json"]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    v["filter"]["source"].clone()
}

/// Restarts the daemon and waits for it to say its source is stale; the error it reports.
fn restart_stale(agent: &mut Agent) -> String {
    agent.stop();
    agent.start();
    agent.status_with("source stale since", WAIT);
    agent.wait_dnsmasq();
    let mut error = String::new();
    let named = support::wait_until(WAIT, || {
        error = source_status(agent)["error"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        error.contains(ETCD_ADDR) && !error.contains("not yet read")
    });
    assert!(
        named,
        "no error naming the endpoint: {error:?}\n{}",
        agent.log()
    );
    eprintln!("the daemon's source error: {error}");
    error
}

#[test]
fn tls_and_password_work_and_wrong_ones_say_so_and_keep_the_policy() {
    let mut cluster = Cluster::new("etcd_tls", 1, "https", Vec::new());
    let pki = Pki::new(&cluster.lab.dir().join("pki"), ETCD_ADDR);
    cluster.extra = pki.etcd_flags();
    cluster.ctl_flags = pki.ctl_flags();
    cluster.start_all();
    enable_auth(&mut cluster);
    cluster.ctl(&["put", &format!("{PREFIX}/macs/{MAC_A}"), "deny"]);

    let source = format!(
        "ca = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\nuser = \"virtmasq\"\npassword = \"vq-secret\"\n",
        pki.ca.display(),
        pki.client.display(),
        pki.client_key.display()
    );
    let mut agent = Agent::new("etcd_tls", &cluster, PREFIX, &source);
    agent.start();
    agent.status_with("etcd revision", WAIT);
    agent.wait_dnsmasq();
    let agents = std::slice::from_ref(&agent);
    wait_files(agents, MAC_A, true, WAIT);
    cluster.ctl(&["put", &format!("{PREFIX}/macs/{MAC_B}"), "deny"]);
    wait_files(agents, MAC_B, true, WAIT);
    let (ok, out) = agent.cli(&["filter", "allow", MAC_B]);
    assert!(ok, "the CLI over TLS with a password: {out}");
    wait_files(agents, MAC_B, false, WAIT);

    // A wrong password: the daemon says which endpoint refused and why, and serves on.
    agent.edit_config("password = \"vq-secret\"", "password = \"wrong\"");
    let error = restart_stale(&mut agent);
    assert!(
        error.contains("authentication failed") && error.contains("user and password"),
        "{error}"
    );
    let (ok, out) = agent.cli(&["filter", "deny", MAC_B]);
    assert!(!ok, "a write with a wrong password succeeded: {out}");
    eprintln!("CLI, wrong password: {out}");
    let endpoint = format!("https://{ETCD_ADDR}:2379");
    assert!(
        out.contains(&endpoint) && out.contains("authentication failed"),
        "{out}"
    );
    cluster.ctl(&["put", &format!("{PREFIX}/macs/{MAC_A}"), "allow"]);
    let (a, b) = (agent.client(MAC_A), agent.client(MAC_B));
    assert_eq!(
        offers(&[&a, &b]),
        [false, true],
        "the last policy stays in force"
    );

    // A wrong CA: the server's certificate is refused, by name, and the policy stays.
    agent.edit_config("password = \"wrong\"", "password = \"vq-secret\"");
    let ca = pki.ca.display().to_string();
    agent.edit_config(&ca, &pki.other_ca.display().to_string());
    let error = restart_stale(&mut agent);
    assert!(
        error.contains("certificate") && error.contains("[filter.source] ca"),
        "{error}"
    );
    let (ok, out) = agent.cli(&["filter", "deny", MAC_B]);
    eprintln!("CLI, wrong CA: {out}");
    assert!(
        !ok && out.contains(&endpoint) && out.contains("certificate"),
        "{out}"
    );
    assert_eq!(
        agent.denies(MAC_A),
        Some(true),
        "the last policy stays in force"
    );

    // Right again: what changed meanwhile arrives.
    agent.edit_config(&pki.other_ca.display().to_string(), &ca);
    agent.stop();
    agent.start();
    wait_files(agents_of(&agent), MAC_A, false, WAIT);
    assert_eq!(offers(&[&a, &b]), [true, true]);
}

fn agents_of(agent: &Agent) -> &[Agent] {
    std::slice::from_ref(agent)
}
