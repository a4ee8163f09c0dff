//! DHCP clients living in a lab client namespace.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use super::exec;

/// Debian's interpreter, the one python3-scapy is installed for.
const PYTHON: &str = "/usr/bin/python3";
/// The scapy DISCOVER/OFFER probe.
const PROBE_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lab/dhcp_probe.py");
const DNS_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lab/dns_probe.py");
/// Probe timeout used when [`ProbeOptions::timeout`] is zero.
const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Extra time allowed for the interpreter to start before the probe is killed.
const STARTUP_SLACK: Duration = Duration::from_secs(15);
/// Hard limit on one udhcpc run (it gives up by itself after about 4 s).
const LEASE_LIMIT: Duration = Duration::from_secs(20);

static LEASE_COUNTER: AtomicUsize = AtomicUsize::new(0);

mod ipv6;
#[allow(unused_imports)] // each test uses only part of the lab
pub use ipv6::{Lease6, RouterAdvert};

/// What the probe's DHCPDISCOVER carries besides the basics (message type,
/// client id, max size, parameter request list).
#[derive(Debug, Default, Clone)]
pub struct ProbeOptions {
    /// How long to wait for an offer; zero means 3 s.
    pub timeout: Duration,
    /// Option 60, e.g. "PXEClient:Arch:00007:UNDI:003001".
    pub vendor_class: Option<String>,
    /// Option 93, client system architecture (e.g. 7 for x86-64 UEFI).
    pub client_arch: Option<u16>,
    /// Option 94, client network interface identifier (UNDI 3.16).
    pub client_ndi: bool,
    /// Option 97, client machine UUID (sent as type 0 + 16 bytes).
    pub uuid: Option<[u8; 16]>,
    /// Option 77, sent verbatim as iPXE does, e.g. "iPXE".
    pub user_class: Option<String>,
    /// Option 175 present (a small iPXE feature list).
    pub ipxe_175: bool,
    /// Option 55, the parameter request list. None sends common options
    /// without 66/67: dnsmasq puts the boot file in option 67 instead of the
    /// BOOTP file field when 67 is requested (see [`Offer::boot_file`]).
    pub request_list: Option<Vec<u8>>,
}

/// A DHCPOFFER as received by [`Client::probe`].
#[derive(Debug, Clone)]
pub struct Offer {
    /// Offered address.
    pub yiaddr: Ipv4Addr,
    /// BOOTP next-server address.
    pub siaddr: Ipv4Addr,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// BOOTP file field (up to the first NUL), None when empty.
    pub file: Option<String>,
    /// BOOTP sname field (up to the first NUL), None when empty.
    pub sname: Option<String>,
    /// Every option of the offer, raw (including 53, the message type).
    pub options: BTreeMap<u8, Vec<u8>>,
}

impl Offer {
    /// Option `code` as text (lossy UTF-8, trailing NULs trimmed).
    pub fn option_str(&self, code: u8) -> Option<String> {
        let raw = self.options.get(&code)?;
        Some(
            String::from_utf8_lossy(raw)
                .trim_end_matches('\0')
                .to_string(),
        )
    }

    /// Option `code` read as one IPv4 address (its first four bytes).
    pub fn option_ipv4(&self, code: u8) -> Option<Ipv4Addr> {
        let raw = self.options.get(&code)?;
        let octets: [u8; 4] = raw.get(..4)?.try_into().ok()?;
        Some(Ipv4Addr::from(octets))
    }

    /// First router (option 3).
    pub fn router(&self) -> Option<Ipv4Addr> {
        self.option_ipv4(3)
    }

    /// Lease time in seconds (option 51).
    pub fn lease_secs(&self) -> Option<u32> {
        let raw = self.options.get(&51)?;
        Some(u32::from_be_bytes(raw.get(..4)?.try_into().ok()?))
    }

    /// Domain name (option 15).
    pub fn domain(&self) -> Option<String> {
        self.option_str(15)
    }

    /// The boot file wherever the server put it: the BOOTP file field, else
    /// option 67.
    pub fn boot_file(&self) -> Option<String> {
        self.file.clone().or_else(|| self.option_str(67))
    }

    fn from_json(v: &Value) -> Result<Offer, String> {
        let text = |key: &str| v.get(key).and_then(Value::as_str);
        let addr = |key: &str| -> Result<Option<Ipv4Addr>, String> {
            text(key)
                .map(|s| s.parse().map_err(|e| format!("{key} {s:?}: {e}")))
                .transpose()
        };
        let mut options = BTreeMap::new();
        if let Some(map) = v.get("options").and_then(Value::as_object) {
            for (code, hex) in map {
                let code: u8 = code.parse().map_err(|e| format!("option {code}: {e}"))?;
                let hex = hex.as_str().ok_or("option value is not a string")?;
                options.insert(code, decode_hex(hex)?);
            }
        }
        Ok(Offer {
            yiaddr: addr("yiaddr")?.ok_or("offer without yiaddr")?,
            siaddr: addr("siaddr")?.unwrap_or(Ipv4Addr::UNSPECIFIED),
            server_id: addr("server_id")?,
            file: text("file").map(str::to_string),
            sname: text("sname").map(str::to_string),
            options,
        })
    }
}

fn decode_hex(hex: &str) -> Result<Vec<u8>, String> {
    hex.as_bytes()
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .filter(|p| p.len() == 2)
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| format!("bad hex {hex:?}"))
        })
        .collect()
}

/// A lease obtained by busybox udhcpc ([`Client::lease`]).
#[derive(Debug, Clone)]
pub struct Lease {
    /// Leased address.
    pub ip: Ipv4Addr,
    /// Option 54.
    pub server_id: Option<Ipv4Addr>,
    /// First router (option 3).
    pub router: Option<Ipv4Addr>,
    /// BOOTP file field.
    pub boot_file: Option<String>,
    /// BOOTP next-server address, None when zero.
    pub siaddr: Option<Ipv4Addr>,
    /// Option 51.
    pub lease_secs: Option<u32>,
    /// Option 15.
    pub domain: Option<String>,
}

impl Lease {
    fn parse(text: &str) -> Result<Lease, String> {
        let vars: BTreeMap<&str, &str> = text
            .lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(_, v)| !v.trim().is_empty())
            .collect();
        // Lists (router, dns) are space separated; keep the first entry.
        let first = |k: &str| vars.get(k).and_then(|v| v.split_whitespace().next());
        let addr = |k: &str| -> Result<Option<Ipv4Addr>, String> {
            first(k)
                .map(|s| s.parse().map_err(|e| format!("{k}={s:?}: {e}")))
                .transpose()
        };
        Ok(Lease {
            ip: addr("ip")?.ok_or("udhcpc reported no ip")?,
            server_id: addr("serverid")?,
            router: addr("router")?,
            boot_file: vars.get("boot_file").map(|s| s.to_string()),
            siaddr: addr("siaddr")?.filter(|a| !a.is_unspecified()),
            lease_secs: first("lease")
                .map(|s| s.parse().map_err(|e| format!("lease={s:?}: {e}")))
                .transpose()?,
            domain: vars.get("domain").map(|s| s.to_string()),
        })
    }
}

/// A client namespace with "eth0" plugged into a lab bridge; made by
/// [`super::Lab::add_client`] and removed with its lab.
pub struct Client {
    ns: String,
    mac: String,
    dir: PathBuf,
    udhcpc_script: PathBuf,
}

impl Client {
    /// Wraps an already plumbed client namespace; `udhcpc_script` is the
    /// lab's copy of tests/lab/udhcpc_script.sh, `dir` where leases go.
    pub(super) fn new(ns: String, mac: String, dir: &Path, udhcpc_script: PathBuf) -> Client {
        Client {
            ns,
            mac,
            dir: dir.to_path_buf(),
            udhcpc_script,
        }
    }

    /// Name of the client namespace.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// MAC address of the client's eth0 (lowercase).
    pub fn mac(&self) -> &str {
        &self.mac
    }

    /// A Command that runs `program` inside the client namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, program]);
        cmd
    }

    /// Gives eth0 a fixed address (`10.0.0.5/24`), as a guest that took its lease would have,
    /// so that the client can talk to the server (DNS).
    pub fn set_address(&self, cidr: &str) {
        exec::ip(&["-n", &self.ns, "addr", "add", cidr, "dev", "eth0"]);
    }

    /// One DNS query from this client to `server` (tests/lab/dns_probe.py): the reply's rcode
    /// and answers (`"A 10.0.0.7"`, `"SRV 10 5 389 ldap.lab."`, `"TXT a"`), None if no reply.
    pub fn dns(&self, server: &str, name: &str, qtype: &str) -> Option<(u8, Vec<String>)> {
        let mut cmd = self.command(PYTHON);
        cmd.env_remove("PYTHONPATH").env_remove("PYTHONHOME").args([
            DNS_SCRIPT,
            server,
            name,
            qtype,
            "--timeout",
            "3",
        ]);
        let stdout = exec::run_checked(&mut cmd, Duration::from_secs(3) + STARTUP_SLACK);
        let json: Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("lab: dns probe printed invalid JSON ({e}): {stdout}"));
        let rcode = json.get("rcode")?.as_u64()?;
        let answers = json["answers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        Some((rcode as u8, answers))
    }

    /// Sends one DHCPDISCOVER from eth0 (scapy, tests/lab/dhcp_probe.py) and
    /// waits at most `opts.timeout` for a DHCPOFFER with its xid; None if no
    /// offer came. Panics if the probe itself cannot run.
    pub fn probe(&self, opts: &ProbeOptions) -> Option<Offer> {
        let timeout = if opts.timeout.is_zero() {
            DEFAULT_PROBE_TIMEOUT
        } else {
            opts.timeout
        };
        let mut cmd = self.command(PYTHON);
        cmd.env_remove("PYTHONPATH")
            .env_remove("PYTHONHOME")
            .args([PROBE_SCRIPT, "--iface", "eth0", "--mac", &self.mac])
            .args(["--timeout", &format!("{:.3}", timeout.as_secs_f64())]);
        if let Some(vc) = &opts.vendor_class {
            cmd.args(["--vendor-class", vc]);
        }
        if let Some(arch) = opts.client_arch {
            cmd.args(["--client-arch", &arch.to_string()]);
        }
        if opts.client_ndi {
            cmd.arg("--client-ndi");
        }
        if let Some(uuid) = &opts.uuid {
            let hex: String = uuid.iter().map(|b| format!("{b:02x}")).collect();
            cmd.args(["--uuid", &hex]);
        }
        if let Some(uc) = &opts.user_class {
            cmd.args(["--user-class", uc]);
        }
        if opts.ipxe_175 {
            cmd.arg("--ipxe-175");
        }
        if let Some(list) = &opts.request_list {
            let codes: Vec<String> = list.iter().map(u8::to_string).collect();
            cmd.args(["--request-list", &codes.join(",")]);
        }
        let stdout = exec::run_checked(&mut cmd, timeout + STARTUP_SLACK);
        let json: Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("lab: probe printed invalid JSON ({e}): {stdout}"));
        match json.get("offer") {
            None => panic!("lab: probe output has no \"offer\" key: {stdout}"),
            Some(Value::Null) => None,
            Some(offer) => Some(
                Offer::from_json(offer)
                    .unwrap_or_else(|e| panic!("lab: bad offer from probe ({e}): {stdout}")),
            ),
        }
    }

    /// Obtains a real lease (DISCOVER/OFFER/REQUEST/ACK) with busybox udhcpc,
    /// `-n -q -f -t 3 -T 1` (gives up after about 4 s). None if no lease.
    pub fn lease(&self) -> Option<Lease> {
        self.lease_with_args(&[])
    }

    /// Like [`Client::lease`], with extra udhcpc arguments (e.g. `-V`
    /// vendor class, `-x 93:0007`, `-r` requested address).
    pub fn lease_with_args(&self, extra: &[&str]) -> Option<Lease> {
        let n = LEASE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let out = self.dir.join(format!("lease-{}-{n}.env", self.ns));
        let script = self.udhcpc_script.to_string_lossy();
        let mut cmd = self.command("busybox");
        cmd.args([
            "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "3", "-T", "1",
        ])
        .args(["-s", &script])
        .args(extra)
        .env("LAB_LEASE_OUT", &out);
        let output = exec::run_bounded(&mut cmd, LEASE_LIMIT)
            .unwrap_or_else(|e| panic!("lab: udhcpc in {}: {e}", self.ns));
        if !output.status.success() {
            return None;
        }
        let text = std::fs::read_to_string(&out).unwrap_or_else(|e| {
            panic!(
                "lab: udhcpc succeeded but its script wrote no {} ({e}); stderr: {}",
                out.display(),
                String::from_utf8_lossy(&output.stderr)
            )
        });
        Some(Lease::parse(&text).unwrap_or_else(|e| panic!("lab: bad udhcpc lease ({e}): {text}")))
    }
}
