//! Contract tests for the streamed answers (events, pull progress, multiplexed logs and exec output)
//! against a small hand-written HTTP/1.1 server that cuts its bodies into chunks at awkward places:
//! mid-line, mid-JSON, mid-frame-header. wiremock sends a body in one piece, which would hide every
//! buffering bug these streams invite.

// A failed unwrap is how a test reports a broken expectation.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use poseidon_runtimes::docker::{DockerRuntime, Timeouts};
use poseidon_runtimes::{Runtime, RuntimeError, RuntimeEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server does once it has sent a route's chunks.
#[derive(Clone, Copy, PartialEq)]
enum Finish {
    /// Ends the chunked body properly; the connection stays usable.
    End,
    /// Drops the connection, as a daemon that dies would.
    Close,
    /// Keeps the body open and silent.
    Hang,
    /// Repeats the last chunk every 20 ms until the client goes away.
    Repeat,
}

#[derive(Clone)]
struct Route {
    /// Matches request paths that start with this.
    prefix: &'static str,
    chunks: Vec<Vec<u8>>,
    finish: Finish,
}

fn route(prefix: &'static str, chunks: Vec<Vec<u8>>, finish: Finish) -> Route {
    Route {
        prefix,
        chunks,
        finish,
    }
}

/// Shared observations of the test server.
#[derive(Default)]
struct Seen {
    /// Pings answered so far.
    pings: AtomicUsize,
    /// Set when a client went away while a `Repeat` body was still being written.
    client_left: AtomicBool,
}

/// Starts the server. Pings beyond `good_pings` hang, to play a daemon that stopped answering.
async fn serve(routes: Vec<Route>, good_pings: usize) -> (SocketAddr, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let shared = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(connection(
                stream,
                routes.clone(),
                good_pings,
                shared.clone(),
            ));
        }
    });
    (address, seen)
}

async fn connection(mut stream: TcpStream, routes: Vec<Route>, good_pings: usize, seen: Arc<Seen>) {
    stream.set_nodelay(true).unwrap();
    let mut buffer = Vec::new();
    loop {
        // Read one request head; the requests in these tests carry no body.
        let head_end = loop {
            if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        buffer.drain(..head_end);
        let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
        if target == "/_ping" {
            if seen.pings.fetch_add(1, Ordering::SeqCst) >= good_pings {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            let answer = "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Length: 2\r\n\r\nOK";
            if stream.write_all(answer.as_bytes()).await.is_err() {
                return;
            }
            continue;
        }
        let Some(r) = routes.iter().find(|r| target.starts_with(r.prefix)) else {
            let answer =
                "HTTP/1.1 404 Not Found\r\nContent-Length: 22\r\n\r\n{\"message\":\"no route\"}";
            let _ = stream.write_all(answer.as_bytes()).await;
            continue;
        };
        let header = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
        if stream.write_all(header.as_bytes()).await.is_err() {
            return;
        }
        for chunk in &r.chunks {
            if write_chunk(&mut stream, chunk).await.is_err() {
                return;
            }
            // A pause makes each chunk arrive in a read of its own.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        match r.finish {
            Finish::End => {
                if stream.write_all(b"0\r\n\r\n").await.is_err() {
                    return;
                }
            }
            Finish::Close => return,
            Finish::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Finish::Repeat => loop {
                let last = r.chunks.last().cloned().unwrap_or_default();
                if write_chunk(&mut stream, &last).await.is_err() {
                    seen.client_left.store(true, Ordering::SeqCst);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            },
        }
    }
}

async fn write_chunk(stream: &mut TcpStream, chunk: &[u8]) -> std::io::Result<()> {
    stream
        .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
        .await?;
    stream.write_all(chunk).await?;
    stream.write_all(b"\r\n").await?;
    stream.flush().await
}

/// Cuts `bytes` into pieces of `size` bytes.
fn pieces(bytes: &[u8], size: usize) -> Vec<Vec<u8>> {
    bytes.chunks(size).map(<[u8]>::to_vec).collect()
}

/// Multiplexed frames for `(stream, text)` pairs.
fn frames(parts: &[(u8, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (stream, text) in parts {
        out.extend_from_slice(&[*stream, 0, 0, 0]);
        out.extend_from_slice(&(text.len() as u32).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    out
}

fn client(address: SocketAddr) -> DockerRuntime {
    DockerRuntime::new(Some(&format!("tcp://{address}"))).unwrap()
}

fn event_line(action: &str, id: &str, extra: &str) -> String {
    format!(
        "{{\"Type\":\"container\",\"Action\":\"{action}\",\"Actor\":{{\"ID\":\"{id}\",\"Attributes\":{{\"io.poseidon.node\":\"w1\"{extra}}}}}}}\n"
    )
}

async fn next(
    events: &mut poseidon_runtimes::EventStream,
) -> Option<Result<RuntimeEvent, RuntimeError>> {
    tokio::time::timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("the stream answers within 5 s")
}

#[tokio::test]
async fn events_split_mid_line_arrive_whole_and_a_lost_daemon_ends_the_stream_with_an_error() {
    let text = [
        event_line("start", "c1", ""),
        event_line("die", "c1", ",\"exitCode\":\"3\""),
        event_line("start", "c2", ""),
    ]
    .concat();
    // Seven-byte pieces split every line, and the JSON inside it, several times.
    let (address, _) = serve(
        vec![route(
            "/v1.41/events",
            pieces(text.as_bytes(), 7),
            Finish::Close,
        )],
        usize::MAX,
    )
    .await;
    let mut events = client(address).events("io.poseidon.node=w1").await.unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(next(&mut events).await.unwrap().unwrap());
    }
    let labels =
        std::collections::BTreeMap::from([("io.poseidon.node".to_string(), "w1".to_string())]);
    assert_eq!(
        got,
        vec![
            RuntimeEvent::Started {
                id: "c1".into(),
                labels: labels.clone()
            },
            RuntimeEvent::Died {
                id: "c1".into(),
                exit_code: Some(3),
                labels: labels.clone()
            },
            RuntimeEvent::Started {
                id: "c2".into(),
                labels
            },
        ]
    );
    assert!(matches!(
        next(&mut events).await,
        Some(Err(RuntimeError::Unreachable(_)))
    ));
    assert!(
        next(&mut events).await.is_none(),
        "the channel closes after the error"
    );
}

#[tokio::test]
async fn a_silent_event_stream_ends_when_the_daemon_stops_answering_pings() {
    let (address, _) = serve(vec![route("/v1.41/events", vec![], Finish::Hang)], 1).await;
    let rt = client(address).with_timeouts(Timeouts {
        ping: Duration::from_millis(200),
        liveness: Duration::from_millis(200),
        ..Timeouts::default()
    });
    let mut events = rt.events("io.poseidon.node=w1").await.unwrap();
    let end = next(&mut events).await.unwrap().unwrap_err();
    assert_eq!(end, RuntimeError::Timeout("ping after 200ms".into()));
    assert!(next(&mut events).await.is_none());
}

#[tokio::test]
async fn dropping_the_event_receiver_closes_the_connection() {
    let line = event_line("start", "c1", "");
    let (address, seen) = serve(
        vec![route(
            "/v1.41/events",
            vec![line.into_bytes()],
            Finish::Repeat,
        )],
        usize::MAX,
    )
    .await;
    let mut events = client(address).events("io.poseidon.node=w1").await.unwrap();
    next(&mut events).await.unwrap().unwrap();
    drop(events);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !seen.client_left.load(Ordering::SeqCst) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the client kept reading"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn pull_progress_split_mid_line_is_reported_and_a_final_error_line_fails_the_pull() {
    let text = concat!(
        "{\"status\":\"Pulling from library/app\",\"id\":\"2\"}\r\n",
        "{\"status\":\"Downloading\",\"progressDetail\":{\"current\":512,\"total\":1024},\"id\":\"aa\"}\r\n",
        "{\"errorDetail\":{\"message\":\"pull access denied for app, repository does not exist\"},",
        "\"error\":\"pull access denied for app, repository does not exist\"}\r\n"
    );
    let routes = vec![route(
        "/v1.41/images/create",
        pieces(text.as_bytes(), 5),
        Finish::End,
    )];
    let (address, _) = serve(routes, usize::MAX).await;
    let seen = std::sync::Mutex::new(Vec::new());
    let report = |p: poseidon_runtimes::PullProgress| seen.lock().unwrap().push(p);
    // Unknown routes answer 404, which is exactly "image not present" for the lookup.
    let err = client(address)
        .ensure_image("app:2", &report)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        RuntimeError::NoSuchImage("pull access denied for app, repository does not exist".into())
    );
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1].status, "Downloading");
    assert_eq!((seen[1].current, seen[1].total), (Some(512), Some(1024)));
}

#[tokio::test]
async fn a_pull_stream_cut_off_midway_is_unreachable() {
    let text = "{\"status\":\"Pulling from library/app\",\"id\":\"2\"}\n{\"status\":\"Down";
    let (address, _) = serve(
        vec![route(
            "/v1.41/images/create",
            pieces(text.as_bytes(), 9),
            Finish::Close,
        )],
        usize::MAX,
    )
    .await;
    let err = client(address)
        .ensure_image("app:2", &|_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::Unreachable(_)), "{err}");
}

#[tokio::test]
async fn log_frames_split_mid_header_and_mid_payload_are_reassembled() {
    let body = frames(&[
        (1, "first line\n"),
        (2, "an error\n"),
        (1, "second line\n"),
        (2, ""),
        (1, &"x".repeat(300)),
    ]);
    // Three-byte pieces cut every header, and most payloads, apart.
    let (address, _) = serve(
        vec![route(
            "/v1.41/containers/abc/logs",
            pieces(&body, 3),
            Finish::End,
        )],
        usize::MAX,
    )
    .await;
    let logs = client(address).logs("abc", None).await.unwrap();
    assert_eq!(
        logs.stdout,
        format!("first line\nsecond line\n{}", "x".repeat(300))
    );
    assert_eq!(logs.stderr, "an error\n");
}

#[tokio::test]
async fn exec_output_split_across_chunks_is_reassembled() {
    let body = frames(&[(1, "healthy "), (2, "warning\n"), (1, "done\n")]);
    let routes = vec![
        route(
            "/v1.41/containers/abc/exec",
            vec![b"{\"Id\":\"e1\"}".to_vec()],
            Finish::End,
        ),
        route("/v1.41/exec/e1/start", pieces(&body, 5), Finish::End),
        route(
            "/v1.41/exec/e1/json",
            vec![b"{\"Running\":false,\"ExitCode\":0}".to_vec()],
            Finish::End,
        ),
    ];
    let (address, _) = serve(routes, usize::MAX).await;
    let out = client(address)
        .exec("abc", &["check".into()], Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(out.exit_code, 0);
    assert_eq!(out.output, "healthy warning\ndone\n");
}
