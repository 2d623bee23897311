//! What `DockerRuntime` costs on top of the Engine API itself.
//!
//! Each cycle creates, starts and force-removes a container of the test image running `sleep 30`:
//! (a) through `DockerRuntime` (hyper, pooled connections, version prefix, timeouts, typed errors);
//! (b) with the very same request bodies written by a bare HTTP/1.1 client on one kept-alive Unix
//!     stream (Content-Length bodies; status line, headers, and a Content-Length or chunked body).
//! The two alternate (ABAB...) so that drift in the engine (its state growing, caches warming) falls
//! on both equally. Medians and 90th percentiles are printed in milliseconds, with our overhead.
//!
//! Run: `cargo bench -p poseidon-runtimes --bench docker_cycle` (`POSEIDON_BENCH_CYCLES=N` to change
//! the 60 cycles of each). Without a reachable Docker it says so and exits successfully.

use std::collections::BTreeMap;
use std::time::Instant;

use poseidon_runtimes::docker::{create_body, DockerRuntime};
use poseidon_runtimes::testing::{ensure_test_image, TEST_IMAGE};
use poseidon_runtimes::{ContainerSpec, Runtime};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

const SOCKET: &str = "/var/run/docker.sock";

fn main() {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start tokio: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run()) {
        eprintln!("docker_cycle failed: {e}");
        std::process::exit(1);
    }
}

/// Milliseconds spent in each step of one cycle.
#[derive(Debug, Clone, Copy, Default)]
struct Cycle {
    create: f64,
    start: f64,
    remove: f64,
}

impl Cycle {
    fn total(&self) -> f64 {
        self.create + self.start + self.remove
    }
}

async fn run() -> Result<(), String> {
    let rt = DockerRuntime::new(Some(&format!("unix://{SOCKET}"))).map_err(|e| e.to_string())?;
    if let Err(e) = rt.ping().await {
        println!("SKIPPED docker_cycle: docker unreachable at {SOCKET} ({e})");
        return Ok(());
    }
    let version = rt.api_version().await.map_err(|e| e.to_string())?;
    ensure_test_image(&rt).await?;
    let cycles: usize = std::env::var("POSEIDON_BENCH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let mut raw = RawClient::connect(SOCKET).await?;
    let prefix = format!("poseidon-bench-{}", std::process::id());

    // Warm both paths up: the first containers of a run pay for cold caches in the engine.
    for i in 0..3 {
        through_runtime(&rt, &spec(&format!("{prefix}-warm-a{i}"))).await?;
        through_raw(&mut raw, &version, &spec(&format!("{prefix}-warm-b{i}"))).await?;
    }
    let mut ours = Vec::with_capacity(cycles);
    let mut bare = Vec::with_capacity(cycles);
    for i in 0..cycles {
        // Alternate which goes first, so neither always follows the other's removal.
        if i % 2 == 0 {
            ours.push(through_runtime(&rt, &spec(&format!("{prefix}-a{i}"))).await?);
            bare.push(through_raw(&mut raw, &version, &spec(&format!("{prefix}-b{i}"))).await?);
        } else {
            bare.push(through_raw(&mut raw, &version, &spec(&format!("{prefix}-b{i}"))).await?);
            ours.push(through_runtime(&rt, &spec(&format!("{prefix}-a{i}"))).await?);
        }
    }

    println!("docker_cycle: create + start + remove(force) of {TEST_IMAGE} running `sleep 30`");
    println!("engine API {version}, {cycles} cycles each, interleaved\n");
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "", "create", "start", "remove", "cycle p50", "cycle p90"
    );
    for (label, data) in [
        ("DockerRuntime (hyper)", &ours),
        ("bare HTTP/1.1, one stream", &bare),
    ] {
        println!(
            "{label:<28} {:>8.1}ms {:>8.1}ms {:>8.1}ms {:>8.1}ms {:>8.1}ms",
            median(data.iter().map(|c| c.create)),
            median(data.iter().map(|c| c.start)),
            median(data.iter().map(|c| c.remove)),
            median(data.iter().map(Cycle::total)),
            percentile(data.iter().map(Cycle::total), 0.9),
        );
    }
    let a = median(ours.iter().map(Cycle::total));
    let b = median(bare.iter().map(Cycle::total));
    println!(
        "\noverhead of DockerRuntime: {:+.2} ms per cycle ({:+.2} %) on the medians; target <= 5 %",
        a - b,
        (a - b) / b * 100.0
    );
    // The paired view: each A against the B run right beside it, which cancels slow drift.
    let paired: Vec<f64> = ours
        .iter()
        .zip(&bare)
        .map(|(o, b)| o.total() - b.total())
        .collect();
    println!(
        "median of paired differences: {:+.2} ms",
        median(paired.iter().copied())
    );
    Ok(())
}

fn spec(name: &str) -> ContainerSpec {
    ContainerSpec {
        name: name.to_string(),
        image: TEST_IMAGE.to_string(),
        cmd: vec!["sleep".into(), "30".into()],
        labels: BTreeMap::from([("io.poseidon.bench".to_string(), "true".to_string())]),
        ..ContainerSpec::default()
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

async fn through_runtime(rt: &DockerRuntime, spec: &ContainerSpec) -> Result<Cycle, String> {
    let t = Instant::now();
    let id = rt.create(spec).await.map_err(|e| e.to_string())?;
    let create = ms(t);
    let t = Instant::now();
    rt.start(&id).await.map_err(|e| e.to_string())?;
    let start = ms(t);
    let t = Instant::now();
    rt.remove(&id, true).await.map_err(|e| e.to_string())?;
    let remove = ms(t);
    Ok(Cycle {
        create,
        start,
        remove,
    })
}

async fn through_raw(
    raw: &mut RawClient,
    version: &str,
    spec: &ContainerSpec,
) -> Result<Cycle, String> {
    let body = create_body(spec).map_err(|e| e.to_string())?.to_string();
    let t = Instant::now();
    let (status, answer) = raw
        .request(
            "POST",
            &format!("/v{version}/containers/create?name={}", spec.name),
            Some(body.as_bytes()),
        )
        .await?;
    if status != 201 {
        return Err(format!(
            "create answered {status}: {}",
            String::from_utf8_lossy(&answer)
        ));
    }
    let created: serde_json::Value =
        serde_json::from_slice(&answer).map_err(|e| format!("create answer: {e}"))?;
    let id = created["Id"]
        .as_str()
        .ok_or("create answer has no Id")?
        .to_string();
    let create = ms(t);
    let t = Instant::now();
    let (status, answer) = raw
        .request("POST", &format!("/v{version}/containers/{id}/start"), None)
        .await?;
    if status != 204 {
        return Err(format!(
            "start answered {status}: {}",
            String::from_utf8_lossy(&answer)
        ));
    }
    let start = ms(t);
    let t = Instant::now();
    let (status, answer) = raw
        .request(
            "DELETE",
            &format!("/v{version}/containers/{id}?force=true&v=true"),
            None,
        )
        .await?;
    if status != 204 {
        return Err(format!(
            "remove answered {status}: {}",
            String::from_utf8_lossy(&answer)
        ));
    }
    let remove = ms(t);
    Ok(Cycle {
        create,
        start,
        remove,
    })
}

/// The least HTTP/1.1 client that can drive the Engine API: one kept-alive Unix stream, requests
/// with Content-Length bodies, answers with a Content-Length or chunked body (or none).
struct RawClient {
    stream: BufReader<UnixStream>,
}

impl RawClient {
    async fn connect(path: &str) -> Result<Self, String> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|e| format!("connect {path}: {e}"))?;
        Ok(RawClient {
            stream: BufReader::new(stream),
        })
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<(u16, Vec<u8>), String> {
        let io = |e: std::io::Error| format!("raw client: {e}");
        let body = body.unwrap_or_default();
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: docker\r\nContent-Length: {}\r\n",
            body.len()
        );
        if !body.is_empty() {
            request.push_str("Content-Type: application/json\r\n");
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        self.stream.get_mut().write_all(&bytes).await.map_err(io)?;

        let mut line = String::new();
        self.stream.read_line(&mut line).await.map_err(io)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {line:?}"))?;
        let mut length = None;
        let mut chunked = false;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.map_err(io)?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.parse::<usize>().ok();
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                }
            }
        }
        let mut answer = Vec::new();
        if status == 204 || status == 304 {
            return Ok((status, answer));
        }
        if chunked {
            loop {
                line.clear();
                self.stream.read_line(&mut line).await.map_err(io)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|e| format!("bad chunk size {line:?}: {e}"))?;
                let mut chunk = vec![0; size + 2];
                self.stream.read_exact(&mut chunk).await.map_err(io)?;
                if size == 0 {
                    break;
                }
                answer.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(n) = length {
            answer.resize(n, 0);
            self.stream.read_exact(&mut answer).await.map_err(io)?;
        }
        Ok((status, answer))
    }
}

fn sorted(values: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let v = sorted(values);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The nearest-rank percentile (`p` in 0..=1).
fn percentile(values: impl Iterator<Item = f64>, p: f64) -> f64 {
    let v = sorted(values);
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}
