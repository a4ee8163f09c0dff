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

#[tokio::test]
async fn silent_connections_are_closed_and_do_not_hold_a_shutdown() {
    let limits = Limits {
        max_connections: 1,
        lifetime: Duration::from_millis(300),
    };
    let mut r = start_with(limits).await;
    // A client that connects and says nothing holds the only connection place...
    let mut silent = TcpStream::connect(r.addr).await.unwrap();
    let waiting = tokio::spawn(get(r.addr, "/boot.ipxe?mac=52:54:00:00:00:01"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiting.is_finished(),
        "a second connection was served beyond the limit"
    );
    // ...until its lifetime is over: it is closed, and the waiting request is answered.
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    let (status, _) = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("answered once the place was free")
        .unwrap();
    assert_eq!(status, 200);
    let _stuck = TcpStream::connect(r.addr).await.unwrap();
    r.stop.take().unwrap().send(()).unwrap();
    let done = tokio::time::timeout(Duration::from_secs(5), &mut r.task).await;
    assert!(
        matches!(done, Ok(Ok(Ok(())))),
        "shutdown waited on a silent client: {done:?}"
    );
}
