//! A long-lived DHCP prober in a client namespace: python and scapy start once, then each
//! request sends DISCOVERs until an offer comes, so that a benchmark times the server, not
//! the prober's start-up (about 1 s of imports).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A long-lived scapy prober in a client namespace (imports once, then answers requests).
pub struct Prober {
    /// The python process; its stdin takes one request per line.
    child: Child,
    /// Its answers, one line per request.
    out: BufReader<std::process::ChildStdout>,
}

const PROBER: &str = r#"
import sys, os, struct, time, types, select
sys.path.insert(0, sys.argv[1])
import dhcp_probe as p
from scapy.arch.linux import L2Socket
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
sock = L2Socket(iface="eth0")
print("ready", flush=True)
for line in sys.stdin:
    mac_s, per_try, limit = line.split()
    mac = bytes.fromhex(mac_s.replace(":", ""))
    args = types.SimpleNamespace(vendor_class=None, user_class=None, client_arch=None,
        client_ndi=False, uuid=None, ipxe_175=False, request_list=None)
    start = time.monotonic(); tries = 0; got = None
    while got is None and time.monotonic() - start < float(limit):
        xid = struct.unpack("!I", os.urandom(4))[0]; tries += 1
        frame = Ether(src=mac_s, dst="ff:ff:ff:ff:ff:ff") / IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67) / p.discover(args, mac, xid)
        sock.send(frame)
        end = time.monotonic() + float(per_try)
        while got is None and time.monotonic() < end:
            r, _, _ = select.select([sock.ins], [], [], max(0, end - time.monotonic()))
            if not r: break
            _, raw, _ = sock.recv_raw()
            if raw and len(raw) > 42 and raw[12:14] == b"\x08\x00":
                pkt = Ether(raw)
                if UDP in pkt and pkt[UDP].dport == 68:
                    got = p.parse_reply(bytes(pkt[UDP].payload), xid)
    print("offer" if got else "none", "%.1f" % ((time.monotonic() - start) * 1000), tries, flush=True)
"#;

impl Prober {
    pub fn start(ns: &str) -> Prober {
        let lab_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/lab");
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "/usr/bin/python3",
                "-c",
                PROBER,
                lab_dir,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the prober");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).expect("prober output");
        assert_eq!(line.trim(), "ready", "prober failed to start");
        Prober { child, out }
    }

    /// Probes `mac` until an offer comes (each try waits `per_try`), for at most `limit`.
    pub fn until_offer(
        &mut self,
        mac: &str,
        per_try: Duration,
        limit: Duration,
    ) -> Option<(f64, u32)> {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(
            stdin,
            "{mac} {} {}",
            per_try.as_secs_f64(),
            limit.as_secs_f64()
        )
        .unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).expect("prober answer");
        let mut words = line.split_whitespace();
        let offered = words.next() == Some("offer");
        let ms: f64 = words.next()?.parse().ok()?;
        let tries: u32 = words.next()?.parse().ok()?;
        offered.then_some((ms, tries))
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
