use super::*;
use std::process::{Child, Command, Stdio};

const REPORT: Call<'static> = Call {
    destination: "org.virtmasq.Agent1",
    path: "/org/virtmasq/Agent1",
    interface: "org.virtmasq.Agent1",
    member: "ReportNetworkEvent",
    args: &["lab", "started"],
};

/// zbus reads the call as written: header fields, flags and both arguments.
#[test]
fn zbus_reads_the_call_as_written() {
    let bytes = encode(&REPORT, 7, FLAG_NO_AUTO_START);
    let data = zbus::zvariant::serialized::Data::new(
        bytes,
        zbus::zvariant::serialized::Context::new_dbus(zbus::zvariant::LE, 0),
    );
    // SAFETY: from_bytes checks the encoding it parses; the bytes are under test.
    let msg = unsafe { zbus::Message::from_bytes(data) }.expect("a message zbus accepts");
    let hdr = msg.header();
    assert_eq!(hdr.primary().serial_num().get(), 7);
    assert_eq!(hdr.message_type(), zbus::message::Type::MethodCall);
    assert!(hdr
        .primary()
        .flags()
        .contains(zbus::message::Flags::NoAutoStart));
    assert_eq!(hdr.path().unwrap().as_str(), REPORT.path);
    assert_eq!(hdr.interface().unwrap().as_str(), REPORT.interface);
    assert_eq!(hdr.member().unwrap().as_str(), REPORT.member);
    assert_eq!(hdr.destination().unwrap().as_str(), REPORT.destination);
    let (net, op): (String, String) = msg.body().deserialize().unwrap();
    assert_eq!((net.as_str(), op.as_str()), ("lab", "started"));
}

/// Answers as zbus writes them (the `Hello` reply, a signal, then the call's), fed in pieces.
#[test]
fn the_answer_is_found_among_the_others_in_any_pieces() {
    let call = |serial: u32| {
        zbus::Message::method_call("/a", "M")
            .unwrap()
            .serial(std::num::NonZeroU32::new(serial).unwrap())
            .build(&())
            .unwrap()
    };
    let hello = zbus::Message::method_return(&call(1).header())
        .unwrap()
        .build(&(":1.5",))
        .unwrap();
    let signal = zbus::Message::signal(
        "/org/freedesktop/DBus",
        "org.freedesktop.DBus",
        "NameAcquired",
    )
    .unwrap()
    .build(&(":1.5",))
    .unwrap();
    let ok = zbus::Message::method_return(&call(2).header())
        .unwrap()
        .build(&())
        .unwrap();
    let refused =
        zbus::Message::error(&call(2).header(), "org.freedesktop.DBus.Error.AccessDenied")
            .unwrap()
            .build(&("only root may change what virtmasq serves (caller uid 65534)",))
            .unwrap();
    for (last, want) in [
        (&ok, Ok(())),
        (
            &refused,
            Err(CallError::Method {
                name: "org.freedesktop.DBus.Error.AccessDenied".into(),
                message: "only root may change what virtmasq serves (caller uid 65534)".into(),
            }),
        ),
    ] {
        let mut all = b"OK 0123456789abcdef0123456789abcdef\r\n".to_vec();
        for m in [&hello, &signal, last] {
            all.extend_from_slice(m.data());
        }
        for piece in [1, 7, 64, all.len()] {
            let mut answers = Answers::default();
            let mut got = None;
            for chunk in all.chunks(piece) {
                assert!(got.is_none(), "an answer before the last byte");
                got = answers.feed(chunk, 2).unwrap();
            }
            assert_eq!(got, Some(want.clone()), "in pieces of {piece}");
        }
    }
}

#[test]
fn a_refused_authentication_is_an_error() {
    let mut answers = Answers::default();
    assert_eq!(
        answers.feed(b"REJECTED EXTERNAL\r\n", 2),
        Err(CallError::Rejected("REJECTED EXTERNAL".into()))
    );
    let mut answers = Answers::default();
    assert!(matches!(
        answers.feed(b"OK 0123\r\nXXXXXXXXXXXXXXXXXXXX", 2),
        Err(CallError::Transport(_))
    ));
}

/// A real dbus-daemon on a socket in `dir`, killed on drop.
struct Bus(Child);

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bus(dir: &Path) -> Bus {
    let conf = dir.join("bus.conf");
    let socket = dir.join("bus");
    std::fs::write(
        &conf,
        format!(
            "<busconfig><type>session</type><listen>unix:path={}</listen><auth>EXTERNAL</auth>\
             <policy context=\"default\"><allow send_destination=\"*\" eavesdrop=\"true\"/>\
             <allow eavesdrop=\"true\"/><allow own=\"*\"/></policy></busconfig>",
            socket.display()
        ),
    )
    .unwrap();
    let child = Command::new("dbus-daemon")
        .arg(format!("--config-file={}", conf.display()))
        .arg("--nofork")
        .stdout(Stdio::null())
        .spawn()
        .expect("dbus-daemon (package dbus) must be installed");
    let bus = Bus(child);
    let start = std::time::Instant::now();
    while !socket.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the bus did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    bus
}

/// A real dbus-daemon takes the pipelined authentication, `Hello` and call, and answers the
/// call, with a return or with an error.
#[test]
fn a_real_bus_answers_in_one_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let _bus = bus(dir.path());
    let socket = dir.path().join("bus");
    let dbus = |member, args| Call {
        destination: "org.freedesktop.DBus",
        path: "/org/freedesktop/DBus",
        interface: "org.freedesktop.DBus",
        member,
        args,
    };
    let t = Duration::from_secs(5);
    assert_eq!(
        call(&socket, &dbus("NameHasOwner", &["org.example.None"]), t),
        Ok(())
    );
    match call(&socket, &dbus("GetNameOwner", &["org.example.None"]), t) {
        Err(CallError::Method { name, message }) => {
            assert_eq!(name, "org.freedesktop.DBus.Error.NameHasNoOwner");
            assert!(message.contains("org.example.None"), "{message}");
        }
        other => panic!("expected NameHasNoOwner, got {other:?}"),
    }
    // A name no one owns, with auto-start off: the bus says so at once (with auto-start on,
    // it would say ServiceUnknown, having looked for an activation file).
    match call(&socket, &REPORT, t) {
        Err(CallError::Method { name, .. }) => {
            assert_eq!(name, "org.freedesktop.DBus.Error.NameHasNoOwner")
        }
        other => panic!("expected ServiceUnknown, got {other:?}"),
    }
    assert!(matches!(
        call(&dir.path().join("none"), &REPORT, t),
        Err(CallError::Transport(_))
    ));
}

/// The fuzz target's seeds are what a bus sends: the answers are found in them, at once and
/// in pieces.
#[test]
fn the_fuzz_seeds_read_as_answers() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/bus_answers");
    let seed = |name: &str| std::fs::read(dir.join(name)).unwrap()[1..].to_vec();
    for piece in [0, 1, 5] {
        assert_eq!(read_answers(&seed("return"), 2, piece), Ok(Some(Ok(()))));
        match read_answers(&seed("error"), 2, piece) {
            Ok(Some(Err(CallError::Method { name, message }))) => {
                assert_eq!(name, "org.freedesktop.DBus.Error.AccessDenied");
                assert!(message.contains("only root"), "{message}");
            }
            other => panic!("expected AccessDenied, got {other:?}"),
        }
        assert!(matches!(
            read_answers(&seed("rejected"), 2, piece),
            Err(CallError::Rejected(_))
        ));
        // Another serial's answer is not this call's.
        assert_eq!(read_answers(&seed("return"), 3, piece), Ok(None));
    }
}

/// A bus that accepts no one (its backlog full) is an error at once; one that accepts and
/// never answers, an error when the time is up: the hook then signals the daemon instead.
#[test]
fn a_bus_that_does_not_answer_is_an_error_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stuck");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    // Fill its backlog: connections nobody accepts, until one is refused.
    let mut held = Vec::new();
    let full = (0..10_000).any(|_| match connect(&path) {
        Ok(s) => {
            held.push(s);
            false
        }
        Err(_) => true,
    });
    assert!(full, "the backlog never filled");
    let start = std::time::Instant::now();
    assert!(matches!(
        call(&path, &REPORT, Duration::from_secs(5)),
        Err(CallError::Transport(_))
    ));
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    drop(held);
    drop(listener);
    // Accepted, never answered.
    let path = dir.path().join("mute");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let keep = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let start = std::time::Instant::now();
    match call(&path, &REPORT, Duration::from_millis(300)) {
        Err(CallError::Transport(e)) => {
            assert!(e.contains("no answer") || e.contains("read"), "{e}")
        }
        other => panic!("expected no answer, got {other:?}"),
    }
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(2),
        "{took:?}"
    );
    drop(keep.join());
}
