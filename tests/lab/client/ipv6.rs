//! IPv6 clients in a lab client namespace: router solicitations with `rdisc6` (package
//! ndisc6) and DHCPv6 leases with ISC `dhclient -6` (package isc-dhcp-client).

use std::net::Ipv6Addr;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{exec, Client, LEASE_COUNTER};

/// Hard limit on one dhclient run that gets a lease (it takes about 2 s).
const DHCP6_LIMIT: Duration = Duration::from_secs(20);

/// What `dhclient -6` was given, from its script's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease6 {
    /// `new_ip6_address`.
    pub ip: Ipv6Addr,
    /// `new_max_life`: the valid lifetime, seconds.
    pub valid_secs: u32,
    /// `new_dhcp6_name_servers`, if any.
    pub dns: Option<String>,
    /// `new_dhcp6_domain_search`, if any.
    pub domain_search: Option<String>,
}

/// One router advertisement as rdisc6 prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouterAdvert {
    /// "Stateful address conf." (the M flag).
    pub managed: bool,
    /// "Stateful other conf." (the O flag).
    pub other: bool,
    /// Router lifetime in seconds.
    pub lifetime: u32,
    /// Each prefix with its autonomous (A) flag.
    pub prefixes: Vec<(String, bool)>,
    /// rdisc6's whole output.
    pub text: String,
}

impl RouterAdvert {
    fn parse(text: &str) -> RouterAdvert {
        let value = |line: &str| line.split(':').nth(1).unwrap_or("").trim().to_owned();
        let flag = |label: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(label))
                .is_some_and(|l| value(l).starts_with("Yes"))
        };
        let mut prefixes = Vec::new();
        let mut lines = text.lines().peekable();
        while let Some(l) = lines.next() {
            if let Some(p) = l.trim_start().strip_prefix("Prefix") {
                let prefix = p.trim_start_matches([' ', ':']).trim().to_owned();
                let auto = lines
                    .by_ref()
                    .take(3)
                    .find(|l| l.contains("Autonomous"))
                    .is_some_and(|l| l.rsplit(':').next().unwrap_or("").trim() == "Yes");
                prefixes.push((prefix, auto));
            }
        }
        let lifetime = text
            .lines()
            .find(|l| l.trim_start().starts_with("Router lifetime"))
            .and_then(|l| value(l).split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        RouterAdvert {
            managed: flag("Stateful address conf."),
            other: flag("Stateful other conf."),
            lifetime,
            prefixes,
            text: text.to_owned(),
        }
    }
}

impl Client {
    /// Waits (at most 5 s) until eth0's link-local address has passed duplicate address
    /// detection: before that, neither rdisc6 nor dhclient can send from it.
    pub fn wait_ipv6_ready(&self) {
        let ready = exec::wait_for(
            || {
                let mut cmd = self.command("ip");
                cmd.args(["-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"]);
                exec::run_bounded(&mut cmd, Duration::from_secs(5)).is_ok_and(|o| {
                    let text = String::from_utf8_lossy(&o.stdout).into_owned();
                    text.contains("fe80") && !text.contains("tentative")
                })
            },
            Duration::from_secs(5),
        );
        assert!(
            ready,
            "lab: {} eth0 has no usable link-local address",
            self.ns
        );
    }

    /// Sends router solicitations from eth0 (rdisc6, `tries` of them a second apart) and
    /// returns the first advertisement, or None if none came.
    pub fn router_advert(&self, tries: u32) -> Option<RouterAdvert> {
        self.wait_ipv6_ready();
        let mut cmd = self.command("rdisc6");
        cmd.args(["-1", "-r", &tries.to_string(), "-w", "1000", "eth0"]);
        let limit = Duration::from_secs(u64::from(tries) + 10);
        let out = exec::run_bounded(&mut cmd, limit)
            .unwrap_or_else(|e| panic!("lab: rdisc6 in {}: {e}", self.ns));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status
            .success()
            .then(|| RouterAdvert::parse(&text))
            .filter(|ra| !ra.prefixes.is_empty() || ra.lifetime > 0)
    }

    /// The DUID `dhclient -6 -D LL` sends: type 3 (link-layer), hardware type 1, the MAC.
    pub fn duid_ll(&self) -> String {
        format!("00:03:00:01:{}", self.mac)
    }

    /// Obtains a DHCPv6 lease (Solicit/Advertise/Request/Reply) with `dhclient -6 -1 -D LL`,
    /// so the client's DUID is [`Client::duid_ll`]. None when no server answered within
    /// `limit`. The dhclient that stays behind to renew is stopped.
    pub fn dhcp6_lease(&self, limit: Duration) -> Option<Lease6> {
        self.dhcp6_lease_as(limit, None)
    }

    /// As [`Client::dhcp6_lease`], sending `name` in the client FQDN option (RFC 4704), as a
    /// guest does that wants its name in the network's DNS.
    pub fn dhcp6_lease_as(&self, limit: Duration, name: Option<&str>) -> Option<Lease6> {
        self.wait_ipv6_ready();
        let n = LEASE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let base = self.dir.join(format!("dhcp6-{}-{n}", self.ns));
        let (script, env, pid) = (
            base.with_extension("sh"),
            base.with_extension("env"),
            base.with_extension("pid"),
        );
        let body = format!(
            "#!/bin/sh\n[ \"$reason\" = BOUND6 ] && env > {}\nexit 0\n",
            env.display()
        );
        std::fs::write(&script, body)
            .and_then(|()| {
                std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))
            })
            .unwrap_or_else(|e| panic!("lab: writing {}: {e}", script.display()));
        // Our own configuration, not the host's /etc/dhcp/dhclient.conf.
        let conf = base.with_extension("conf");
        let body = name.map_or(String::new(), |n| format!("send fqdn.fqdn \"{n}\";\n"));
        std::fs::write(&conf, body)
            .unwrap_or_else(|e| panic!("lab: writing {}: {e}", conf.display()));
        let mut cmd = self.command("dhclient");
        cmd.args(["-6", "-1", "-D", "LL", "-cf"])
            .arg(&conf)
            .arg("-lf")
            .arg(base.with_extension("leases"))
            .arg("-pf")
            .arg(&pid)
            .arg("-sf")
            .arg(&script)
            .arg("eth0");
        let outcome = exec::run_bounded(&mut cmd, limit.min(DHCP6_LIMIT));
        if let Some(p) = std::fs::read_to_string(&pid)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
        {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::SIGTERM);
        }
        if !outcome.is_ok_and(|o| o.status.success()) {
            return None;
        }
        let text = std::fs::read_to_string(&env).ok()?;
        let var = |k: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .map(|v| v.trim_matches('\'').to_owned())
        };
        Some(Lease6 {
            ip: var("new_ip6_address")?.parse().ok()?,
            valid_secs: var("new_max_life")?.parse().ok()?,
            dns: var("new_dhcp6_name_servers"),
            domain_search: var("new_dhcp6_domain_search"),
        })
    }
}
