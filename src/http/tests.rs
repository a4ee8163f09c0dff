//! The endpoint in-process on port 0, asked with plain HTTP/1.1 over a TcpStream, as iPXE asks.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::*;
use crate::pxe::script::{ClientKey, ScriptAction, ScriptRule};

/// A running endpoint and the handle that stops it.
struct Running {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<io::Result<()>>,
    rules: Arc<SharedRules>,
}

async fn start() -> Running {
    start_with(Limits::default()).await
}

async fn start_with(limits: Limits) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let rules = vec![
        ScriptRule {
            key: ClientKey::Mac("52:54:00:00:00:01".parse().unwrap()),
            action: ScriptAction::Chain("http://10.0.0.1/pxelinux.0".parse().unwrap()),
        },
        ScriptRule {
            key: ClientKey::Uuid("11223344-5566-7788-99aa-bbccddeeff00".parse().unwrap()),
            action: ScriptAction::Sanboot("iscsi:10.0.0.5::::iqn.2024-01.x:d".parse().unwrap()),
        },
    ];
    let rules = Arc::new(SharedRules::new(
        ScriptRules::new(&rules, ScriptAction::Exit).unwrap(),
    ));
    let (tx, rx) = oneshot::channel::<()>();
    let shutdown = async {
        let _ = rx.await;
    };
    let task = tokio::spawn(serve_with_limits(listener, rules.clone(), shutdown, limits));
    Running {
        addr,
        stop: Some(tx),
        task,
        rules,
    }
}

/// Sends one request and returns (status code, body).
async fn get(addr: SocketAddr, target: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .expect("response within 5 s")
        .unwrap();
    let text = String::from_utf8(buf).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    (status, body.to_owned())
}

#[tokio::test]
async fn scripts_by_mac_uuid_and_default() {
    let r = start().await;
    let cases = [
        (
            "/boot.ipxe?mac=52%3A54%3A00%3A00%3A00%3A01",
            "chain http://10.0.0.1/pxelinux.0\n",
        ),
        (
            "/boot.ipxe?mac=52:54:00:00:00:09&uuid=11223344-5566-7788-99AA-bbccddeeff00",
            "sanboot iscsi:",
        ),
        (
            "/boot.ipxe?mac=52:54:00:00:00:09&uuid=&serial=&platform=pcbios",
            "exit\n",
        ),
    ];
    for (target, want) in cases {
        let (status, body) = get(r.addr, target).await;
        assert_eq!(status, 200, "{target}: {body}");
        assert!(body.starts_with("#!ipxe\n"), "{target}: {body}");
        assert!(body.contains(want), "{target}: {body}");
    }
}

#[tokio::test]
async fn an_anonymous_client_is_asked_to_identify_itself_at_our_address() {
    let r = start().await;
    let (status, body) = get(r.addr, "/boot.ipxe").await;
    assert_eq!(status, 200);
    let want = format!(
        "chain http://{}/boot.ipxe?mac=${{mac}}&uuid=${{uuid}}",
        r.addr
    );
    assert!(
        body.starts_with("#!ipxe\n") && body.contains(&want),
        "{body}"
    );
}

#[tokio::test]
async fn bad_queries_get_400_and_the_server_keeps_serving() {
    let r = start().await;
    let long = format!("/boot.ipxe?mac={}", "a".repeat(MAX_QUERY));
    for target in [
        "/boot.ipxe?mac=",
        "/boot.ipxe?mac=zz:zz",
        "/boot.ipxe?mac=52:54:00:00:00:01&mac=52:54:00:00:00:02",
        "/boot.ipxe?mac=52:54:00:00:00:01&uuid=not-a-uuid",
        "/boot.ipxe?mac=%ff%00",
        long.as_str(),
    ] {
        let (status, body) = get(r.addr, target).await;
        assert_eq!(status, 400, "{target}: {body}");
        assert!(
            body.starts_with("bad request: parameter") || body.contains("bytes long"),
            "{body}"
        );
    }
    assert_eq!(get(r.addr, "/other").await.0, 404);
    assert_eq!(get(r.addr, "/boot.ipxe?mac=52:54:00:00:00:01").await.0, 200);
}

#[tokio::test]
async fn replaced_rules_apply_to_the_next_request_and_shutdown_returns() {
    let mut r = start().await;
    r.rules
        .replace(ScriptRules::new(&[], ScriptAction::Exit).unwrap());
    let (_, body) = get(r.addr, "/boot.ipxe?mac=52:54:00:00:00:01").await;
    assert!(body.ends_with("exit\n"), "{body}");
    r.stop.take().unwrap().send(()).unwrap();
    let done = tokio::time::timeout(Duration::from_secs(5), &mut r.task).await;
    assert!(matches!(done, Ok(Ok(Ok(())))), "{done:?}");
    assert!(TcpStream::connect(r.addr).await.is_err(), "still listening");
}

/// Connects from `from` (a loopback address: each is another peer) to `addr`.
async fn connect_from(from: &str, addr: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Whether the server closes `s` within `wait` (without an answer).
async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(wait, s.read(&mut buf)).await;
    matches!(read, Ok(Ok(0)) | Ok(Err(_)))
}

async fn closed_at_once(s: &mut TcpStream) -> bool {
    closed_within(s, Duration::from_secs(1)).await
}

#[tokio::test]
async fn silent_connections_are_closed_and_do_not_hold_a_shutdown() {
    let limits = Limits {
        max_connections: 1,
        lifetime: Duration::from_millis(300),
        ..Limits::default()
    };
    let mut r = start_with(limits).await;
    // A client that connects and says nothing holds the only connection place...
    let mut silent = TcpStream::connect(r.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut over = connect_from("127.0.0.2", r.addr).await;
    assert!(
        closed_at_once(&mut over).await,
        "a connection beyond the total was kept"
    );
    // ...until its lifetime is over: it is closed, and the place is free again.
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    let (status, _) = get(r.addr, "/boot.ipxe?mac=52:54:00:00:00:01").await;
    assert_eq!(status, 200);
    let _stuck = TcpStream::connect(r.addr).await.unwrap();
    r.stop.take().unwrap().send(()).unwrap();
    let done = tokio::time::timeout(Duration::from_secs(5), &mut r.task).await;
    assert!(
        matches!(done, Ok(Ok(Ok(())))),
        "shutdown waited on a silent client: {done:?}"
    );
}

/// Regression (issue 13, item 5): one guest holding idle sockets took every connection place,
/// and every other guest's iPXE waited behind it in the accept queue.
#[tokio::test]
async fn one_peer_holding_idle_connections_does_not_starve_another() {
    let r = start().await;
    let mut idle = Vec::new();
    for _ in 0..140 {
        idle.push(connect_from("127.0.0.2", r.addr).await);
    }
    let served = tokio::time::timeout(
        Duration::from_secs(3),
        get(r.addr, "/boot.ipxe?mac=52:54:00:00:00:01"),
    )
    .await
    .expect("another peer was not served while one held idle connections");
    assert_eq!(served.0, 200);
    // The idle peer keeps its share, and no more: its newest connection is closed at once.
    let mut beyond = connect_from("127.0.0.2", r.addr).await;
    assert!(closed_at_once(&mut beyond).await);
    let mut kept = 0;
    for s in idle.iter_mut() {
        if !closed_within(s, Duration::from_millis(200)).await {
            kept += 1;
        }
        if kept > Limits::default().max_per_peer {
            break;
        }
    }
    assert_eq!(kept, Limits::default().max_per_peer);
    drop(idle);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut again = connect_from("127.0.0.2", r.addr).await;
    assert!(
        !closed_at_once(&mut again).await,
        "a peer's places were not given back"
    );
}
