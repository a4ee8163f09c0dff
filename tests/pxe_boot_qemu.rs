//! A real network boot: a qemu VM (TCG; iPXE from Debian's ipxe-qemu ROM, output on the serial
//! log) on a lab bridge gets its address from a dnsmasq configured from a PXE profile, is sent
//! to virtmasq's HTTP endpoint (its ROM is iPXE: user class and option 175, so it must get the
//! URL, never the iPXE binary again), fetches its script there, which the endpoint logs with
//! the VM's MAC, and follows it: it chains to a second script that the test serves and that
//! echoes a marker the test reads from the serial log. The VM cannot power itself off; it is
//! killed. Needs root, qemu-system-x86 and ipxe-qemu (scripts/install-deps.sh).
//!
//! Two ways: the endpoint and a dnsmasq built from the renderers in this process, and the
//! `virtmasq daemon` itself with its private dnsmasq, both configured from virtmasq.toml.

mod lab;
#[path = "fixtures/pxe/rig.rs"]
mod rig;
mod support;

use std::fs;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lab::Lab;
use rig::Rig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use virtmasq::http::{serve, HttpConfig, SharedRules};
use virtmasq::pxe::script::{ClientKey, ScriptAction, ScriptRule};

const QEMU: &str = "/usr/bin/qemu-system-x86_64";
/// The virtio NIC's iPXE ROM from ipxe-qemu. qemu finds it on its own firmware path; naming it
/// with `romfile=` made SeaBIOS skip the network boot here, so it is only checked for.
const ROM: &str = "/usr/lib/ipxe/qemu/efi-virtio.rom";
const VM_MAC: &str = "52:54:00:97:00:10";
const VM_UUID: &str = "11223344-5566-7788-99aa-bbccddeeff00";
/// The whole boot: ~20 s measured (DHCP after ~3 s, HTTP after ~19 s under TCG).
const BOOT_LIMIT: Duration = Duration::from_secs(120);

/// The endpoint's log, captured from `tracing`.
#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl LogBuf {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuf {
    type Writer = LogBuf;
    fn make_writer(&'a self) -> LogBuf {
        self.clone()
    }
}

/// A TCP listener on `addr` inside network namespace `ns`: bound from a thread that enters the
/// namespace and ends right after, so the socket lives in the lab while the server runs here.
fn listen_in(ns: &str, addr: &str) -> std::net::TcpListener {
    let path = format!("/run/netns/{ns}");
    let addr: SocketAddr = addr.parse().unwrap();
    std::thread::spawn(move || {
        let f = fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns changes the network namespace of this thread only; the thread binds one
        // socket and ends, so nothing else ever runs in the lab's namespace by accident.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", io::Error::last_os_error());
        let l = std::net::TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        l.set_nonblocking(true).unwrap();
        l
    })
    .join()
    .expect("binding thread")
}

/// Serves `body` to every GET on `listener`, recording each request line.
async fn serve_second_script(listener: TcpListener, body: String, seen: Arc<Mutex<Vec<String>>>) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let mut buf = vec![0u8; 4096];
        let read = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        let Ok(Ok(n)) = read else { continue };
        let head = String::from_utf8_lossy(&buf[..n]);
        seen.lock()
            .unwrap()
            .push(head.lines().next().unwrap_or("").to_owned());
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = s.write_all(reply.as_bytes()).await;
    }
}

fn read_lossy(p: &Path) -> String {
    fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).replace('\r', ""))
        .unwrap_or_default()
}

/// Sends `tracing` output (the endpoint's log) to a buffer the test reads.
fn capture_logs() -> LogBuf {
    let log = LogBuf::default();
    // Each script served is logged at debug.
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(log.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();
    log
}

/// Fails (never skips) without qemu or the iPXE ROMs.
fn check_tools() {
    for p in [QEMU, ROM] {
        let hint = "run scripts/install-deps.sh";
        assert!(Path::new(p).exists(), "{p} is missing: {hint}");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A tap for the VM on the rig's bridge, in the lab host.
fn add_tap(rig: &Rig) {
    let tap = ["ip", "tuntap", "add", "dev", "vqtap0", "mode", "tap"];
    rig.lab.host_run(&tap);
    let up = ["ip", "link", "set", "vqtap0", "master", &rig.bridge, "up"];
    rig.lab.host_run(&up);
}

/// Serves the second script (it echoes `marker`) on the bridge address inside the lab;
/// returns its URL. Requests are recorded in `seen`.
fn second_script(
    rt: &tokio::runtime::Runtime,
    rig: &Rig,
    marker: &str,
    seen: &Arc<Mutex<Vec<String>>>,
) -> String {
    let listener = listen_in(rig.lab.host_ns(), &format!("{}:0", rig.addr(1)));
    let url = format!("http://{}/second.ipxe", listener.local_addr().unwrap());
    let body = format!("#!ipxe\necho {marker}\nexit\n");
    let seen = seen.clone();
    rt.block_on(async {
        let listener = TcpListener::from_std(listener).unwrap();
        tokio::spawn(serve_second_script(listener, body, seen));
    });
    url
}

/// The rule that sends the VM to the second script.
fn vm_rule(url: &str) -> ScriptRule {
    ScriptRule {
        key: ClientKey::Mac(VM_MAC.parse().unwrap()),
        action: ScriptAction::Chain(url.parse().unwrap()),
    }
}

/// A profile with a BIOS boot file, to show the VM's iPXE is not handed it again.
const PROFILE: &str = "tftp_root = \"{root}\"\nboot_files = { bios = \"undionly.kpxe\" }";

/// Starts the VM on the tap; its serial console goes to `serial`.
fn start_vm(lab: &Lab, serial: &Path) -> u32 {
    lab.spawn_host(&[
        QEMU,
        "-accel",
        "tcg",
        "-machine",
        "pc,graphics=off",
        "-m",
        "256",
        "-display",
        "none",
        "-nodefaults",
        "-no-user-config",
        "-boot",
        "n",
        "-uuid",
        VM_UUID,
        "-netdev",
        "tap,id=n0,ifname=vqtap0,script=no,downscript=no",
        "-device",
        &format!("virtio-net-pci,netdev=n0,mac={VM_MAC}"),
        "-serial",
        &format!("file:{}", serial.display()),
    ])
}

/// What the test watches during the boot.
struct Watch<'a> {
    lab: &'a Lab,
    vm: u32,
    serial: &'a Path,
    /// The endpoint's log so far.
    endpoint_log: &'a dyn Fn() -> String,
    /// dnsmasq's log so far.
    dnsmasq_log: &'a dyn Fn() -> String,
    seen: &'a Mutex<Vec<String>>,
    marker: &'a str,
}

/// Starts the VM and waits (at most [`BOOT_LIMIT`]) for the marker on the serial log or the
/// VM's end, then kills it; returns whether the marker came, and when each step was first seen
/// after qemu started.
fn boot(w: &Watch) -> (bool, Vec<(&'static str, Duration)>) {
    let started = Instant::now();
    let mut marks: Vec<(&'static str, Duration)> = Vec::new();
    let mut note = |what: &'static str, done: bool| {
        if done && !marks.iter().any(|(m, _)| *m == what) {
            marks.push((what, started.elapsed()));
        }
    };
    let booted = Lab::wait_for(
        || {
            note(
                "DHCP lease",
                (w.dnsmasq_log)().contains("DHCPACK(vqpxq0) 10.97.0."),
            );
            let http = (w.endpoint_log)();
            note("identify script", http.contains("identify itself"));
            note("client script", http.contains("served an iPXE script"));
            note("second script", !w.seen.lock().unwrap().is_empty());
            let done = read_lossy(w.serial).contains(w.marker);
            note("marker on serial", done);
            done || w.lab.process_status(w.vm).is_some()
        },
        BOOT_LIMIT,
    );
    w.lab.stop_process(w.vm, Duration::from_secs(2));
    eprintln!("boot timeline (from qemu start): {marks:?}");
    (booted, marks)
}

#[test]
fn a_vm_boots_from_the_network_into_its_script() {
    check_tools();
    let log = capture_logs();
    let rt = runtime();
    let mut rig = Rig::new("pxe_qemu_boot", "vqpxq0", "10.97.0");
    add_tap(&rig);
    let marker = format!("VIRTMASQ-PXE-MARKER-{}-a", std::process::id());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let second = second_script(&rt, &rig, &marker, &seen);
    let endpoint = listen_in(rig.lab.host_ns(), "10.97.0.1:0");
    rig.http = HttpConfig {
        enabled: true,
        address: "10.97.0.1".parse().unwrap(),
        port: endpoint.local_addr().unwrap().port(),
        rules: vec![vm_rule(&second)],
        ..HttpConfig::default()
    };
    let conf = rig.private_conf(&rig.profile(PROFILE));
    rig.start(&conf);
    let rules = Arc::new(SharedRules::new(rig.http.script_rules().unwrap()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = {
        // Spawned, not awaited: the endpoint runs while the VM boots.
        let _runtime = rt.enter();
        let shutdown = async {
            let _ = stopped.await;
        };
        tokio::spawn(serve(
            TcpListener::from_std(endpoint).unwrap(),
            rules,
            shutdown,
        ))
    };
    let serial = rig.path("serial.log");
    let vm = start_vm(&rig.lab, &serial);
    let (endpoint_log, dnsmasq_log) = (|| log.text(), || rig.log());
    let watch = Watch {
        lab: &rig.lab,
        vm,
        serial: &serial,
        endpoint_log: &endpoint_log,
        dnsmasq_log: &dnsmasq_log,
        seen: &seen,
        marker: &marker,
    };
    let (booted, _) = boot(&watch);
    let _ = stop.send(());
    let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), server).await });
    check_boot(&watch, booted);
}

#[test]
fn the_daemon_gives_a_vm_its_address_and_its_script() {
    check_tools();
    let rt = runtime();
    let rig = Rig::new("pxe_qemu_daemon", "vqpxq0", "10.97.0");
    add_tap(&rig);
    let marker = format!("VIRTMASQ-PXE-MARKER-{}-d", std::process::id());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let second = second_script(&rt, &rig, &marker, &seen);
    let net = support::TestNet {
        name: "lab",
        bridge: "vqpxq0",
        ip: "10.97.0.1/24",
        dhcp: None,
    };
    let uri = support::write_node(rig.lab.dir(), "node.xml", &[net]);
    let extra = format!(
        "[http]\nenabled = true\nport = 8067\nrules = [{{ mac = \"{VM_MAC}\", chain = \"{second}\" }}]\n\
         [networks.lab]\ndns = false\nranges = [{{ start = \"10.97.0.100\", end = \"10.97.0.150\" }}]\n\
         [networks.lab.pxe]\n{}\n",
        PROFILE.replace("{root}", &rig.tftp_root().display().to_string())
    );
    let cfg = support::write_config(rig.lab.dir(), &uri, &extra);
    let daemon = rig.lab.spawn_host(&[
        support::BIN,
        "--config",
        cfg.to_str().unwrap(),
        // Each script served is logged at debug (a summary at info).
        "--log-level",
        "info,virtmasq::http=debug",
        "daemon",
    ]);
    let pid_file = rig.path("run/lab/pid/dnsmasq.pid");
    let daemon_log = || rig.lab.process_log(daemon);
    let up = support::wait_until(Duration::from_secs(10), || {
        support::live_pid(&pid_file).is_some()
    });
    assert!(up, "the daemon started no dnsmasq:\n{}", daemon_log());
    let serial = rig.path("serial.log");
    let vm = start_vm(&rig.lab, &serial);
    let watch = Watch {
        lab: &rig.lab,
        vm,
        serial: &serial,
        endpoint_log: &daemon_log,
        dnsmasq_log: &daemon_log,
        seen: &seen,
        marker: &marker,
    };
    let (booted, _) = boot(&watch);
    check_boot(&watch, booted);
}

/// The assertions, with everything seen in the failure message.
fn check_boot(w: &Watch, booted: bool) {
    let (serial_text, http_log, dnsmasq_log) =
        (read_lossy(w.serial), (w.endpoint_log)(), (w.dnsmasq_log)());
    let report = format!("serial:\n{serial_text}\nendpoint:\n{http_log}\ndnsmasq:\n{dnsmasq_log}");
    assert!(
        booted && serial_text.contains(w.marker),
        "no marker within {BOOT_LIMIT:?}\n{report}"
    );
    let served = http_log
        .lines()
        .find(|l| l.contains("served an iPXE script"))
        .unwrap_or_else(|| panic!("the endpoint served no script\n{report}"));
    eprintln!("endpoint: {served}");
    assert!(
        served.contains(&format!("mac={VM_MAC}")) && served.contains("rule=mac "),
        "{served}"
    );
    assert!(served.contains(&format!("uuid={VM_UUID}")), "{served}");
    assert!(
        serial_text.contains("http://10.97.0.1:") && !dnsmasq_log.contains("sent /"),
        "the VM's iPXE must get the URL and fetch nothing over TFTP\n{report}"
    );
    assert_eq!(w.seen.lock().unwrap()[0], "GET /second.ipxe HTTP/1.1");
}
