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

/// Sends raw bytes and returns what the server answers before it closes or `deadline` passes.
async fn exchange(addr: &str, request: &[u8], deadline: Duration) -> Result<String, String> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(deadline, stream.read(&mut buf)).await {
        Ok(Ok(n)) => Ok(String::from_utf8_lossy(&buf[..n]).into_owned()),
        Ok(Err(e)) => Err(format!("read failed: {e}")),
        Err(_) => Err(format!("no answer within {deadline:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_on_a_path_that_merely_starts_with_nodes_is_refused_with_413() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize("[manager]\n", dir.path(), true)).await;
    let api = Api::new(run.manager_url().unwrap());
    let big = vec![b'x'; TWO_MIB];
    for (method, path) in [
        (Method::POST, "/nodes"),
        (Method::GET, "/nodes/x"),
        (Method::POST, "/nodes/w1"),
        (Method::PUT, "/nodes/w1/heartbeat"),
        (Method::POST, "/assignments"),
        (Method::POST, "/tasks"),
    ] {
        let (status, body) = api.raw(method.clone(), path, Some(big.clone())).await;
        assert_eq!(status, 413, "{method} {path}: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("larger than 1048576"),
            "{body}"
        );
    }
    // The cluster protocol's own route still takes a large body: it reaches the handler, which
    // refuses it as JSON, not as too large.
    let (status, body) = api
        .raw(Method::POST, "/nodes/w1/heartbeat", Some(big))
        .await;
    assert_eq!(status, 400, "{body}");
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_content_length_over_the_limit_is_refused_without_waiting_for_the_body() {
    let dir = tempfile::tempdir().unwrap();
    let run = start(&localize("[manager]\n", dir.path(), true)).await;
    let addr = run.manager.as_ref().unwrap().addr.to_string();
    for (path, length) in [
        ("/tasks", TWO_MIB),
        ("/nodes/w1/heartbeat", (256 << 20) + 1),
    ] {
        // Headers only: the body never comes, so an answer proves it was not awaited.
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        );
        let answer = exchange(&addr, head.as_bytes(), Duration::from_secs(5)).await;
        let answer = answer.unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(answer.starts_with("HTTP/1.1 413"), "{path}: {answer}");
    }
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
