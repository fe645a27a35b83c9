//! The server over real loopback connections, with short limits so each bound shows
//! within a test's time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Limits, Server, Serving};

/// Long enough for any one step on a loaded machine; a test failing here hung.
const PATIENCE: Duration = Duration::from_secs(10);
/// More than loopback socket buffers can hold (receive buffers grow to 32 MiB here).
const BIG_BODY: usize = 40 << 20;

/// Two parts, as two features would contribute them.
fn routes() -> Router {
    let part_a = Router::new().route("/ok", get(|| async { "ok" })).route(
        "/slow",
        get(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "late"
        }),
    );
    let part_b = Router::new().route("/big", get(|| async { vec![b'x'; BIG_BODY] }));
    part_a.merge(part_b)
}

fn limits() -> Limits {
    Limits {
        max_connections: 4,
        header_read_timeout: Duration::from_millis(500),
        ..Limits::default()
    }
}

async fn start(limits: Limits) -> (Serving, SocketAddr) {
    let server = Server::bind("127.0.0.1:0".parse().expect("addr"), limits)
        .await
        .expect("bind");
    let addr = server.local_addr();
    (server.serve(routes()), addr)
}

/// Sends `request` and reads the response to EOF: (status line, raw response).
async fn exchange(addr: SocketAddr, request: &[u8]) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("send");
    read_response(&mut stream).await
}

async fn read_response(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut raw = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
        .await
        .expect("response within the test's patience")
        .expect("read");
    let status = String::from_utf8_lossy(&raw)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    (status, raw)
}

/// Waits until the server closes `stream` (EOF or reset); returns how long that took.
async fn closed_by_server(stream: &mut TcpStream) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await {
            Err(_) => panic!("connection still open after {PATIENCE:?}"),
            Ok(Ok(0) | Err(_)) => return start.elapsed(),
            // Whatever the server says before closing (nothing, for a timeout).
            Ok(Ok(_)) => {}
        }
    }
}

fn still_open(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 1];
    matches!(stream.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[tokio::test]
async fn merged_parts_are_served_and_other_paths_get_404() {
    let (serving, addr) = start(limits()).await;
    let (status, raw) = exchange(addr, b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(raw.ends_with(b"\r\n\r\nok"));
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(text.contains("connection: close"), "{text}");
    let (status, _) = exchange(addr, b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    let (status, _) = exchange(addr, b"garbage\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 400 Bad Request");
    serving.shutdown().await;
}

#[tokio::test]
async fn idle_and_partial_clients_neither_block_a_request_nor_outlive_the_header_timeout() {
    let limits = limits();
    let (serving, addr) = start(limits).await;
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    let mut partial = TcpStream::connect(addr).await.expect("connect");
    partial
        .write_all(b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("send");

    let (status, _) = exchange(addr, b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    // The request did not wait for them: both are still connected.
    assert!(still_open(&idle) && still_open(&partial));

    let waited = closed_by_server(&mut idle).await;
    closed_by_server(&mut partial).await;
    assert!(
        waited >= limits.header_read_timeout / 2,
        "closed by the header timeout, not at once: {waited:?}"
    );
    serving.shutdown().await;
}

#[tokio::test]
async fn connections_over_the_cap_wait_for_a_free_slot() {
    let limits = Limits {
        max_connections: 2,
        ..limits()
    };
    let (serving, addr) = start(limits).await;
    let mut idle = [
        TcpStream::connect(addr).await.expect("connect"),
        TcpStream::connect(addr).await.expect("connect"),
    ];
    // Both are taken in (accepted) and hold the two slots.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    let third = tokio::spawn(exchange(addr, b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!third.is_finished(), "served beyond the cap");
    let (status, _) = third.await.expect("task");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(
        started.elapsed() >= limits.header_read_timeout / 2,
        "served once a slot freed: {:?}",
        started.elapsed()
    );
    for stream in &mut idle {
        closed_by_server(stream).await;
    }
    serving.shutdown().await;
}

#[tokio::test]
async fn oversized_requests_are_rejected() {
    let (serving, addr) = start(limits()).await;
    let mut head = b"GET /ok HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    head.resize(head.len() + 9 * 1024, b'a');
    head.extend_from_slice(b"\r\n\r\n");
    let (status, _) = exchange(addr, &head).await;
    assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large");

    let (status, _) = exchange(
        addr,
        b"GET /ok HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n",
    )
    .await;
    assert_eq!(status, "HTTP/1.1 413 Payload Too Large");
    serving.shutdown().await;
}

#[tokio::test]
async fn a_route_that_does_not_answer_in_time_gets_503() {
    let (serving, addr) = start(Limits {
        request_timeout: Duration::from_millis(200),
        ..limits()
    })
    .await;
    let (status, _) = exchange(addr, b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    serving.shutdown().await;
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_and_frees_its_slot() {
    let (serving, addr) = start(Limits {
        max_connections: 1,
        connection_timeout: Duration::from_millis(500),
        ..limits()
    })
    .await;
    let mut stalled = TcpStream::connect(addr).await.expect("connect");
    stalled
        .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("send");
    // More than the socket buffers hold: the server is stuck writing until cut off.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (status, _) = exchange(addr, b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    let mut got = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stalled.read_to_end(&mut got)).await;
    assert!(got.len() < BIG_BODY, "the stalled response was cut short");
    serving.shutdown().await;
}

#[tokio::test]
async fn shutdown_closes_idle_connections_and_the_listener() {
    let (serving, addr) = start(limits()).await;
    let mut idle = TcpStream::connect(addr).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(50)).await;
    tokio::time::timeout(Duration::from_secs(1), serving.shutdown())
        .await
        .expect("an idle connection does not hold up shutdown");
    closed_by_server(&mut idle).await;
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
}

#[tokio::test]
async fn dropping_the_handle_stops_the_server() {
    let (serving, addr) = start(limits()).await;
    drop(serving);
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still listening after drop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
