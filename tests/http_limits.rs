//! The server's limits hold before any body is read: the route decides the body limit, a declared
//! `Content-Length` over it is refused with 413 at once, and a client that stalls inside its request
//! headers is disconnected after the header-read timeout.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{localize, start, Api};
use hyper::Method;
use poseidon::http::{self, ServeOptions, Shutdown};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TWO_MIB: usize = 2 << 20;

/// Whether `got` holds a whole response: its head and as many body bytes as it announces.
fn complete(got: &[u8]) -> bool {
    let text = String::from_utf8_lossy(got);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0);
    body.len() >= length
}

/// Sends raw bytes and returns the response the server sends before `deadline`: `Ok("")` when it
/// hangs up without a word, `Err` when it neither answers nor hangs up in time.
async fn exchange(addr: &str, request: &[u8], deadline: Duration) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let end = tokio::time::Instant::now() + deadline;
    let mut got = Vec::new();
    loop {
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout_at(end, stream.read(&mut buf)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => {
                got.extend_from_slice(&buf[..n]);
                if complete(&got) {
                    break;
                }
            }
            Ok(Err(e)) if got.is_empty() => return Err(format!("read failed: {e}")),
            Err(_) if got.is_empty() => return Err(format!("no answer within {deadline:?}")),
            Ok(Err(_)) | Err(_) => break,
        }
    }
    Ok(String::from_utf8_lossy(&got).into_owned())
}

/// The head of a request that announces a body of `length` bytes and then sends none of it, so an
/// answer proves the server decided without waiting for the body. (Sending the body too would race:
/// a server that refuses early closes the connection while the client is still writing, and the
/// client sees a broken pipe instead of the 413.)
fn head_only(method: &str, path: &str, length: usize) -> Vec<u8> {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_routes_limit_is_refused_with_413_before_it_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize("[manager]\n", dir.path(), true)).await;
    let addr = run.manager.as_ref().unwrap().addr.to_string();
    let cases = [
        // Paths that merely start with /nodes or /assignments get the user limit.
        ("POST", "/nodes", TWO_MIB, "1048576"),
        ("GET", "/nodes/x", TWO_MIB, "1048576"),
        ("POST", "/nodes/w1", TWO_MIB, "1048576"),
        ("PUT", "/nodes/w1/heartbeat", TWO_MIB, "1048576"),
        ("POST", "/nodes/w1/heartbeat/x", TWO_MIB, "1048576"),
        // Assignments are a worker's route, not the manager's.
        ("POST", "/assignments", TWO_MIB, "1048576"),
        ("POST", "/tasks", TWO_MIB, "1048576"),
        // The cluster protocol's own routes get the large limit, and no more.
        ("POST", "/nodes/w1/heartbeat", (256 << 20) + 1, "268435456"),
        ("POST", "/nodes/w1/reports", (256 << 20) + 1, "268435456"),
    ];
    for (method, path, length, limit) in cases {
        let answer = exchange(
            &addr,
            &head_only(method, path, length),
            Duration::from_secs(5),
        )
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "{method} {path}: {answer}"
        );
        assert!(
            answer.contains(&format!("request body larger than {limit} bytes")),
            "{method} {path}: {answer}"
        );
    }
    // A large body on the heartbeat route is read in full and reaches the handler, which refuses
    // it as JSON, not as too large.
    let api = Api::new(run.manager_url().unwrap());
    let (status, body) = api
        .raw(
            Method::POST,
            "/nodes/w1/heartbeat",
            Some(vec![b'x'; TWO_MIB]),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("invalid JSON"),
        "{body}"
    );
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_in_its_headers_is_disconnected_after_the_timeout() {
    let listener = http::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let shutdown = Shutdown::new();
    let timeout = Duration::from_millis(300);
    let server = tokio::spawn(http::serve_with(
        listener,
        |_req| async { http::json(200, &serde_json::json!({"ok": true})) },
        shutdown.clone(),
        ServeOptions {
            header_read_timeout: timeout,
            ..ServeOptions::default()
        },
    ));
    // A complete request is answered, so the server works.
    let answer = exchange(
        &addr,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.unwrap().starts_with("HTTP/1.1 200"));
    // Half a header line, then nothing: the server must hang up (read returns 0 bytes or an error).
    let started = Instant::now();
    let answer = exchange(&addr, b"GET /tasks HTTP/1.1\r\nHo", Duration::from_secs(10)).await;
    let took = started.elapsed();
    match answer {
        Ok(text) => assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "expected a hang-up, got {text:?}"
        ),
        Err(e) => assert!(e.starts_with("read failed"), "{e} after {took:?}"),
    }
    assert!(
        took >= timeout,
        "hung up after {took:?}, before the timeout"
    );
    shutdown.trigger();
    server.await.unwrap();
}
