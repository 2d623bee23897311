//! `GET /events` as clients use it: the changes of a task from Pending to Running in order, a
//! resume with `?index=`, 410 for an index the history cannot serve, a slow subscriber dropped
//! with a final line while submissions go on at full speed, subscriptions released when clients
//! hang up; and the CLI's `events`, `status -w` and `run` on top of it.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{wait_for, Api};
use poseidon::client::{EventLine, EventLines, ManagerClient};
use poseidon::wire::EventBody;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_poseidon");
const WAIT: Duration = Duration::from_secs(20);

async fn mock_cluster(dir: &std::path::Path) -> poseidon::cluster::Running {
    let cfg = common::localize(
        "[manager]\n[[worker]]\nname = \"w1\"\nruntime = \"mock\"\n",
        dir,
        false,
    );
    common::start(&cfg).await
}

/// Reads events until one about task `id` reaches `state`; returns every (index, state) of that
/// task seen on the way.
async fn until_state(lines: &mut EventLines, id: &str, state: &str) -> Vec<(u64, String)> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = tokio::time::timeout(left, lines.next())
            .await
            .expect("an event in time")
            .unwrap()
            .expect("the stream goes on");
        let EventLine::Event(e) = line else {
            panic!("the stream ended: {line:?}");
        };
        if let EventBody::Task {
            id: tid, state: s, ..
        } = &e.body
        {
            if tid.to_string() == id {
                seen.push((e.index, s.as_str().to_string()));
                if s.as_str() == state {
                    return seen;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_is_followed_from_pending_to_running_and_a_stream_resumes_after_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let run = mock_cluster(dir.path()).await;
    let url = run.manager_url().unwrap();
    let manager = ManagerClient::new(&url, WAIT);
    let api = Api::new(url.clone());

    let mut lines = manager.events(None).await.unwrap();
    let id = api.submit(&json!({"name": "ev", "image": "busybox"})).await;
    let seen = until_state(&mut lines, &id, "running").await;
    let states: Vec<&str> = seen.iter().map(|(_, s)| s.as_str()).collect();
    assert_eq!(states.first(), Some(&"pending"), "{seen:?}");
    assert!(states.contains(&"scheduled"), "{seen:?}");
    let indexes: Vec<u64> = seen.iter().map(|(i, _)| *i).collect();
    assert!(indexes.windows(2).all(|w| w[0] < w[1]), "{indexes:?}");

    // A second client resumes after the first event of the task and gets the rest again.
    let first = indexes[0];
    let mut again = manager.events(Some(first)).await.unwrap();
    let replay = until_state(&mut again, &id, "running").await;
    assert_eq!(replay, seen[1..].to_vec());

    // An index ahead of the stream (as after a manager restart) or not a number is refused.
    let (status, body) = api.get("/events?index=999999999").await;
    assert_eq!(status, 410, "{body}");
    assert!(body["error"].as_str().unwrap().contains("resync"), "{body}");
    let (status, body) = api.get("/events?index=soon").await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = api.post("/events", &json!({})).await;
    assert_eq!(status, 405);

    // Hanging up releases the subscriptions (no task left copying events to nobody).
    let m = run.manager.as_ref().unwrap().manager.clone();
    assert_eq!(m.event_subscribers(), 2);
    drop(lines);
    drop(again);
    // The next event finds both streams closed (or the server notices the hang-up first).
    api.submit(&json!({"name": "after", "image": "busybox"}))
        .await;
    wait_for("the subscriptions to be released", WAIT, || async {
        (m.event_subscribers() == 0).then_some(())
    })
    .await;
    run.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_dropped_with_a_final_line_and_submissions_go_on() {
    let dir = tempfile::tempdir().unwrap();
    // A manager alone: every submission stays Pending, one event each, nothing else moves.
    let cfg = common::localize("[manager]\n", dir.path(), false);
    let run = common::start(&cfg).await;
    let url = run.manager_url().unwrap();
    let addr = url.trim_start_matches("http://").to_string();
    let api = Api::new(url.clone());
    let m = run.manager.as_ref().unwrap().manager.clone();

    // A subscriber that sends its request and then reads nothing.
    let mut stalled = std::net::TcpStream::connect(&addr).unwrap();
    write!(stalled, "GET /events HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    wait_for("the subscription", WAIT, || async {
        (m.event_subscribers() == 1).then_some(())
    })
    .await;

    // Far more events than its share of the ring, its response buffer and the socket buffers
    // hold: 40 batches of 1,000 tasks.
    let batch: Vec<serde_json::Value> = (0..1000)
        .map(|i| json!({"name": format!("t{i}"), "image": "busybox"}))
        .collect();
    let body = serde_json::to_vec(&batch).unwrap();
    let started = Instant::now();
    for _ in 0..40 {
        let (status, v) = api
            .raw(hyper::Method::POST, "/tasks", Some(body.clone()))
            .await;
        assert_eq!(status, 201, "{v}");
    }
    let took = started.elapsed();
    // The stalled subscriber cannot hold the manager up: the submissions did not wait on it.
    // (Each batch is one synced write; 40 of them take well under a second here. The bound
    // is loose on purpose; a manager that waited on the subscriber would never finish.)
    assert!(took < Duration::from_secs(30), "{took:?}");
    wait_for("the stalled subscriber to be dropped", WAIT, || async {
        (m.event_subscribers() == 0).then_some(())
    })
    .await;

    // When it finally reads, its stream ends with the error line telling it to resync.
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut all = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stalled.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) => panic!("the stream must end, not hang: {e}"),
        }
        if all.ends_with(b"0\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&all);
    assert!(
        text.contains("fell more than"),
        "{}",
        &text[text.len().saturating_sub(500)..]
    );
    assert!(text.contains("resync"));
    // Nothing it missed was invented: the manager holds every task.
    assert_eq!(m.tasks(None, None).len(), 40_000);
    run.stop().await;
}

fn spawn_cli(args: &[&str], url: &str) -> std::process::Child {
    Command::new(BIN)
        .args(args)
        .env("POSEIDON_MANAGER", url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads a child's stdout on a thread until a line contains `needle`; returns what was read.
fn read_until(child: &mut std::process::Child, needles: &[&str]) -> String {
    let out = child.stdout.take().unwrap();
    let needles: Vec<String> = needles.iter().map(|s| s.to_string()).collect();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            text.push_str(&line);
            text.push('\n');
            if needles.iter().all(|n| text.contains(n.as_str())) {
                break;
            }
        }
        let _ = tx.send(text);
    });
    rx.recv_timeout(WAIT)
        .unwrap_or_else(|_| "(nothing in time)".into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_follows_events_watches_status_and_runs_through_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let run = mock_cluster(dir.path()).await;
    let url = run.manager_url().unwrap();
    let m = run.manager.as_ref().unwrap().manager.clone();

    let mut events = spawn_cli(&["events"], &url);
    let mut watch = spawn_cli(&["status", "-w"], &url);
    wait_for("both CLIs to subscribe", WAIT, || async {
        (m.event_subscribers() == 2).then_some(())
    })
    .await;

    // `run` subscribes too, before it submits, and follows its task to Running.
    let out = tokio::task::spawn_blocking({
        let url = url.clone();
        move || {
            Command::new(BIN)
                .args(["run", "--image", "busybox", "--name", "watched"])
                .env("POSEIDON_MANAGER", &url)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains("placed on w1") && stdout.contains("running"),
        "{stdout}"
    );
    assert!(!stderr.contains("polling instead"), "{stderr}");
    let id = stdout.split_whitespace().nth(1).unwrap().to_string();

    let (events_text, watch_text) = tokio::task::spawn_blocking({
        let id = id.clone();
        move || {
            let e = read_until(&mut events, &[&id, "running"]);
            let w = read_until(&mut watch, &[&id, "running"]);
            let _ = events.kill();
            let _ = watch.kill();
            let _ = events.wait();
            let _ = watch.wait();
            (e, w)
        }
    })
    .await
    .unwrap();
    assert!(
        events_text.contains(&format!("task  {id} watched")) && events_text.contains("running"),
        "{events_text}"
    );
    assert!(
        watch_text.contains("ID")
            && watch_text
                .lines()
                .any(|l| l.contains(&id) && l.contains("running")),
        "{watch_text}"
    );
    run.stop().await;
}
