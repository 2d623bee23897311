//! Task secrets, black-box: a secret reaches the container's environment but no API answer (the
//! manager's or the worker's), no log line (the whole tracing output of the process is captured at
//! TRACE level), no CLI output, and no file of any data directory (it is encrypted at rest).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{localize, Api};
use hyper::Method;
use poseidon::cluster::{self, Roles};
use poseidon::http::HttpClient;
use poseidon::security::ca::{ClusterCa, MANAGER_NAME, NODE_NAME};
use poseidon::security::tls::{client_config, CertStore};
use poseidon_runtimes::mock::Call;
use serde_json::{json, Value};

/// Everything the process logs, at every level.
fn captured() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        buf
    })
    .clone()
}

struct Sink(Arc<Mutex<Vec<u8>>>);
impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            hits.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|w| w == needle) {
                hits.push(path.display().to_string());
            }
        }
    }
    hits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_reaches_the_container_but_no_answer_log_line_cli_output_or_file() {
    let log = captured();
    let dir = tempfile::tempdir().unwrap();
    let cfg = localize(
        "[manager]\n[[worker]]\nname = \"w1\"\nruntime = \"mock\"\nheartbeat_interval = \"100ms\"\n[security]\nacl = true\ntls = \"auto\"\n",
        dir.path(),
        true,
    );
    let running = cluster::start(&cfg, Roles::All).await.unwrap();
    let ca = ClusterCa::load_or_create(&dir.path().join("manager")).unwrap();
    let tls = |name: &str, cert: Option<Arc<CertStore>>| {
        HttpClient::with_tls(
            Duration::from_secs(10),
            client_config(ca.cert_pem(), name, cert).unwrap(),
        )
    };
    let api = Api::with_http(running.manager_url().unwrap(), tls(MANAGER_NAME, None));
    let (_, boot) = api.post("/acl/bootstrap", &Value::Null).await;
    let token = boot["token"].as_str().unwrap().to_string();
    let api = api.with_token(&token);

    let plain = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let (s, created) = api
        .post(
            "/tasks",
            &json!({"name": "db", "image": "busybox", "env": {"MODE": "x"}, "secrets": {"DB_PASSWORD": plain}}),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    api.wait_state(&id, "running", Duration::from_secs(20))
        .await;

    // The container got it.
    let mock = running.workers[0].mock.clone().unwrap();
    let env: Vec<_> = mock
        .calls_of(poseidon_runtimes::mock::Op::Create)
        .into_iter()
        .filter_map(|c| match c {
            Call::Create(spec) => Some(spec.env.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(env.len(), 1, "{env:?}");
    assert_eq!(env[0].get("DB_PASSWORD"), Some(&plain));
    assert_eq!(env[0].get("MODE").map(String::as_str), Some("x"));

    // Every answer of the manager's API, and the worker's, as its manager sees them.
    let mut answers = vec![created.to_string()];
    for path in [
        "/tasks".to_string(),
        format!("/tasks/{id}"),
        format!("/tasks/{id}/logs"),
        "/nodes".to_string(),
        "/acl/tokens".to_string(),
    ] {
        let (s, v) = api.get(&path).await;
        assert!(s < 500, "{path}: {v}");
        answers.push(v.to_string());
    }
    let (_, metrics) = api.raw(Method::GET, "/metrics", None).await;
    answers.push(metrics.to_string());
    let identity: Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("w1").join("identity.json")).unwrap(),
    )
    .unwrap();
    let manager_cert = CertStore::new(&ca.issue_manager().unwrap()).unwrap();
    let worker = Api::with_http(
        format!("https://{}", running.workers[0].addr),
        tls(NODE_NAME, Some(manager_cert)),
    )
    .with_token(identity["manager_secret"].as_str().unwrap());
    for path in ["/tasks".to_string(), format!("/tasks/{id}")] {
        let (s, v) = worker.get(&path).await;
        assert_eq!(s, 200, "{path}: {v}");
        answers.push(v.to_string());
    }
    let (s, stopped) = api.delete(&format!("/tasks/{id}")).await;
    assert_eq!(s, 200, "{stopped}");
    answers.push(stopped.to_string());
    for a in &answers {
        assert!(!a.contains(&plain), "an answer holds the secret: {a}");
    }
    // The task still carries its secret, sealed.
    assert!(answers[2].contains("sealed:v1:"), "{}", answers[2]);

    running.stop().await;
    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    assert!(text.contains("manager listening"), "the capture works");
    assert!(!text.contains(&plain), "a log line holds the secret");
    // The search does find what the stores hold in the clear (the task's id), so an empty result
    // below means the secret is not there.
    assert!(!files_containing(dir.path(), id.as_bytes()).is_empty());
    let hits = files_containing(dir.path(), plain.as_bytes());
    assert!(
        hits.is_empty(),
        "files holding the secret in plain text: {hits:?}"
    );
    // The worker's identity holds the key the secret can be opened with; the key files are private.
    assert!(identity["secrets_key"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_never_shows_a_secret() {
    let _log = captured();
    let dir = tempfile::tempdir().unwrap();
    let cfg = localize(
        "[manager]\n[[worker]]\nname = \"w1\"\nruntime = \"mock\"\nheartbeat_interval = \"100ms\"\n[security]\nacl = true\n",
        dir.path(),
        true,
    );
    let running = cluster::start(&cfg, Roles::All).await.unwrap();
    let url = running.manager_url().unwrap();
    let api = Api::new(url.clone());
    let (_, boot) = api.post("/acl/bootstrap", &Value::Null).await;
    let token = boot["token"].as_str().unwrap().to_string();
    let plain = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let file = dir.path().join("task.json");
    std::fs::write(
        &file,
        json!({"name": "db", "image": "busybox", "secrets": {"DB_PASSWORD": plain}}).to_string(),
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_poseidon");
    let run = |args: Vec<String>| {
        let token = token.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                std::process::Command::new(bin)
                    .args(&args)
                    .env("POSEIDON_TOKEN", token)
                    .output()
                    .unwrap()
            })
            .await
            .unwrap()
        }
    };
    let f = file.display().to_string();
    let mut outputs = Vec::new();
    for args in [
        vec!["run", "-f", &f, "--manager", &url],
        vec!["run", "-f", &f, "--json", "-d", "--manager", &url],
        vec!["status", "--manager", &url],
        vec!["status", "--json", "--manager", &url],
        vec!["status", "db", "--manager", &url],
        vec!["status", "db", "--json", "--manager", &url],
    ] {
        let out = run(args.iter().map(|s| s.to_string()).collect()).await;
        outputs.push((
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        ));
    }
    for (cmd, code, out) in &outputs {
        assert!(
            !out.contains(&plain),
            "poseidon {cmd} showed the secret: {out}"
        );
        assert!(
            !out.contains("HTTP 401"),
            "poseidon {cmd} ({code:?}) was not authenticated: {out}"
        );
    }
    running.stop().await;
}
