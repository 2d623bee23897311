//! Issue 18's paths from a checkout to a running cluster, run as a user runs them:
//!
//! - The set-up `make run` and `make test` start with (`make setup-run`, `make setup-test`, that
//!   is `deploy/setup.sh`), run by `make` in a `git clone` of this checkout: as root it installs
//!   exactly the Debian packages that are missing; as anyone else it names them in one `apt-get`
//!   line and exits non-zero.
//!   A fake `dpkg` (saying which packages are missing) and a fake `apt-get` (recording its
//!   arguments) stand in for the package system, so nothing is installed; everything else the
//!   script calls is real. Under `CI=true` the real script on the real machine must find nothing
//!   to install (`.ci/run` ran it before the suite).
//! - The Compose cluster (`deploy/compose.yaml` through `make up` and `make down`): the README's
//!   block, verbatim, against the image of the binary under test (made by `deploy/image.sh`, as
//!   `make image` makes the release one): three workers up, a task on each, and nothing left on
//!   the engine afterwards.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "common/image.rs"]
mod image;
#[path = "common/readme.rs"]
mod readme;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use poseidon_runtimes::testing::{docker_or_skip, ensure_test_image, TEST_IMAGE};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

/// A directory of fake `dpkg` and `apt-get`: `dpkg -s P` fails for each P of `missing`, and
/// `apt-get` appends its arguments to `apt.log` there.
fn fake_packages(missing: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    // An empty pattern list is a syntax error in sh: a name no package has stands in for none.
    let cases = if missing.is_empty() {
        "no-such-package".to_string()
    } else {
        missing.join("|")
    };
    let dpkg = format!(
        "#!/bin/sh\n[ \"$1\" = -s ] || exit 2\ncase \"$2\" in {cases}) exit 1;; *) exit 0;; esac\n"
    );
    let log = dir.path().join("apt.log");
    let apt = format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display());
    for (name, body) in [("dpkg", dpkg), ("apt-get", apt)] {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // Readable by the unprivileged user the non-root case runs as.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A checkout of this repository for the set-up to run in, readable by anyone (the non-root case
/// runs as uid 65534): `git clone` of this one, with the working tree's `Makefile` and
/// `deploy/setup.sh` over the clone's (so that uncommitted edits of the two are what is tested;
/// in CI the tree is a clean clone of main, so they are the same). Without git metadata (a
/// source archive), a copy of the two and `Cargo.toml`, which the Makefile reads its version from.
fn checkout() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let repo = dir.path().join("poseidon");
    let cloned = Path::new(ROOT).join(".git").exists()
        && Command::new("git")
            .args(["clone", "--quiet", "--no-hardlinks", ROOT])
            .arg(&repo)
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    if !cloned {
        std::fs::create_dir_all(repo.join("deploy")).unwrap();
    }
    for f in ["Makefile", "Cargo.toml", "deploy/setup.sh"] {
        std::fs::copy(Path::new(ROOT).join(f), repo.join(f)).unwrap();
    }
    dir
}

/// `make setup-run` or `make setup-test` (`what`: the set-up `make run` and `make test` start
/// with) in `repo`, with `fakes` first on the PATH, as root or (`as_nobody`) as uid 65534.
fn setup(repo: &Path, what: &str, fakes: &Path, as_nobody: bool) -> Output {
    let path = format!(
        "{}:{}",
        fakes.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "make"]);
        c
    } else {
        Command::new("make")
    };
    cmd.args(["-s", "-C"])
        .arg(repo)
        .arg(format!("setup-{what}"))
        .env("PATH", path)
        .env("HOME", fakes)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn setup_installs_what_is_missing_as_root_and_names_it_in_one_line_otherwise() {
    if !is_root() {
        eprintln!("SKIPPED: the set-up test switches users and needs root (CI runs as root)");
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI runs as root"
        );
        return;
    }
    let co = checkout();
    let repo = co.path().join("poseidon");
    // Two packages of the `run` set missing: exactly those two are asked for, in the set's order.
    let fakes = fake_packages(&["curl", "libclang-dev"]);
    let out = setup(&repo, "run", fakes.path(), false);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let log = std::fs::read_to_string(fakes.path().join("apt.log")).unwrap_or_default();
    assert_eq!(
        log.trim(),
        "install -y --no-install-recommends libclang-dev curl",
        "apt-get's arguments as root; stderr:\n{stderr}"
    );
    let docker_up = Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if docker_up {
        assert!(out.status.success(), "setup as root failed:\n{stderr}");
        assert!(stderr.contains("ready for make run"), "{stderr}");
    } else {
        assert!(stderr.contains("Docker Engine is unreachable"), "{stderr}");
    }

    // Not root: nothing is installed, the one command that would is printed, exit 1.
    let fakes = fake_packages(&["busybox-static", "protobuf-compiler"]);
    let out = setup(&repo, "run", fakes.path(), true);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    // The script exits 1; make reports that (`Error 1`) and exits non-zero itself.
    assert_ne!(out.status.code(), Some(0), "exit code as nobody:\n{stderr}");
    assert!(stderr.contains("setup-run] Error 1"), "{stderr}");
    assert!(
        stderr.contains(
            "\napt-get install -y --no-install-recommends protobuf-compiler busybox-static\n"
        ),
        "{stderr}"
    );
    assert!(
        !fakes.path().join("apt.log").exists(),
        "apt-get ran without root"
    );

    // Nothing missing: nothing installed.
    let fakes = fake_packages(&[]);
    let out = setup(&repo, "run", fakes.path(), false);
    assert!(
        !fakes.path().join("apt.log").exists(),
        "apt-get ran for nothing"
    );
    if docker_up {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // `make test`'s set-up: the test tools too, one from the build set and two of the test set.
    let fakes = fake_packages(&["wrk", "etcd-server", "protobuf-compiler"]);
    let out = setup(&repo, "test", fakes.path(), false);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let log = std::fs::read_to_string(fakes.path().join("apt.log")).unwrap_or_default();
    assert_eq!(
        log.trim(),
        "install -y --no-install-recommends protobuf-compiler wrk etcd-server",
        "apt-get's arguments for make test; stderr:\n{stderr}"
    );
    let fakes = fake_packages(&["dnsutils", "chromium-driver"]);
    let out = setup(&repo, "test", fakes.path(), true);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_ne!(
        out.status.code(),
        Some(0),
        "make setup-test as nobody:\n{stderr}"
    );
    assert!(stderr.contains("setup-test] Error 1"), "{stderr}");
    assert!(
        stderr.contains("\napt-get install -y --no-install-recommends dnsutils chromium-driver\n"),
        "{stderr}"
    );
    assert!(
        !fakes.path().join("apt.log").exists(),
        "apt-get ran without root"
    );

    // CI ran the real script before the suite: on this machine it finds nothing to install.
    if std::env::var("CI").as_deref() == Ok("true") {
        let out = Command::new(Path::new(ROOT).join("deploy/setup.sh"))
            .arg("test")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "deploy/setup.sh test: {stderr}");
        assert!(!stderr.contains("installing"), "{stderr}");
    }
}

/// Whichever Compose the Makefile will use, if any.
fn compose_installed() -> bool {
    let ok = |cmd: &mut Command| {
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    ok(Command::new("docker").args(["compose", "version"]))
        || ok(Command::new("docker-compose").arg("version"))
}

/// Lines of `docker ARGS` (empty if it fails).
fn docker_lines(args: &[&str]) -> Vec<String> {
    let out = Command::new("docker").args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

/// What the cluster of `project` left on the engine: its containers, networks and volumes, and
/// the task containers of the Compose workers.
fn leftovers(project: &str) -> Vec<String> {
    let label = format!("label=com.docker.compose.project={project}");
    let mut left = Vec::new();
    for kind in [
        &["ps", "-a", "--format", "{{.Names}}", "--filter", &label][..],
        &["network", "ls", "--format", "{{.Name}}", "--filter", &label][..],
        &["volume", "ls", "--format", "{{.Name}}", "--filter", &label][..],
    ] {
        left.extend(docker_lines(kind));
    }
    for w in ["compose-w1", "compose-w2", "compose-w3"] {
        let node = format!("label=io.poseidon.node={w}");
        left.extend(docker_lines(&[
            "ps",
            "-a",
            "--format",
            "{{.Names}}",
            "--filter",
            &node,
        ]));
    }
    left
}

/// Runs `make down` for the test's cluster when dropped (a failed step included), printing the
/// cluster's logs first if the test is panicking.
struct Down {
    env: Vec<(&'static str, String)>,
}

impl Down {
    fn make(&self, target: &str) -> Output {
        Command::new("make")
            .arg("--no-print-directory")
            .arg(target)
            .current_dir(ROOT)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for Down {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let project = &self
                .env
                .iter()
                .find(|(k, _)| *k == "COMPOSE_PROJECT_NAME")
                .unwrap()
                .1;
            for c in docker_lines(&[
                "ps",
                "-a",
                "--format",
                "{{.Names}}",
                "--filter",
                &format!("label=com.docker.compose.project={project}"),
            ]) {
                let out = Command::new("docker")
                    .args(["logs", "--tail", "40", &c])
                    .output();
                if let Ok(o) = out {
                    eprintln!(
                        "--- {c}\n{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    );
                }
            }
        }
        let _ = self.make("down");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_cluster_comes_up_takes_a_task_on_each_worker_and_leaves_nothing_behind() {
    let test = "the_compose_cluster_comes_up_takes_a_task_on_each_worker_and_leaves_nothing_behind";
    let Some(rt) = docker_or_skip(test).await else {
        return;
    };
    if !compose_installed() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "CI: neither `docker compose` nor docker-compose is installed"
        );
        eprintln!("SKIPPED {test}: no Docker Compose");
        return;
    }
    // The compose file's default image is the one `make image` makes for this version.
    let compose = std::fs::read_to_string(Path::new(ROOT).join("deploy/compose.yaml")).unwrap();
    let default_image = format!(
        "${{POSEIDON_IMAGE:-poseidon:{}}}",
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        compose.contains(&default_image),
        "deploy/compose.yaml lacks {default_image}"
    );

    // The quick start's image, which the README's block runs.
    ensure_test_image(&rt).await.unwrap();
    let tagged = Command::new("docker")
        .args(["tag", TEST_IMAGE, "busybox-local:latest"])
        .status()
        .unwrap();
    assert!(tagged.success());
    let image = image::poseidon_image("poseidon-test/deploy", &[]).await;

    let project = format!("pdeploy{}", std::process::id());
    let down = Down {
        env: vec![
            ("IMAGE", image.clone()),
            ("COMPOSE_PROJECT_NAME", project.clone()),
        ],
    };
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_poseidon"));
    let env: Vec<(&str, &str)> = down.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // The block up to its last line, `make down`; what it left running is checked in between.
    let script = readme::block("compose", "sh");
    let (up, last) = script.trim_end().rsplit_once('\n').unwrap();
    assert!(
        last.starts_with("make down"),
        "the block ends with make down: {last}"
    );
    let run = |s: &str| {
        tokio::task::block_in_place(|| {
            readme::run_script_with(s, Path::new(ROOT), bin.parent().unwrap(), &env, 180)
        })
    };
    let started = std::time::Instant::now();
    run(up);
    eprintln!(
        "the README's Compose block up to make down took {:?}",
        started.elapsed()
    );

    // Three workers as declared in deploy/compose/cluster.toml, each with one task, running as a
    // container of its own on the engine.
    let api = common::Api::new("http://127.0.0.1:5555");
    let (s, nodes) = api.get("/nodes").await;
    assert_eq!(s, 200, "{nodes}");
    let mut seen: Vec<(String, f64, String)> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_string(),
                n["capacity"]["cpus"].as_f64().unwrap(),
                n["labels"]["disk"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let expected = [
        ("compose-w1", 1.0, "ssd"),
        ("compose-w2", 2.0, "hdd"),
        ("compose-w3", 4.0, "ssd"),
    ]
    .map(|(n, c, d)| (n.to_string(), c, d.to_string()));
    assert_eq!(seen, expected.to_vec(), "GET /nodes: {nodes}");
    let (s, tasks) = api.get("/tasks").await;
    assert_eq!(s, 200, "{tasks}");
    let mut on: Vec<String> = tasks
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "running")
        .map(|t| t["node"].as_str().unwrap().to_string())
        .collect();
    on.sort();
    assert_eq!(on, ["compose-w1", "compose-w2", "compose-w3"], "{tasks}");
    for w in ["compose-w1", "compose-w2", "compose-w3"] {
        let running = docker_lines(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=io.poseidon.node={w}"),
        ]);
        assert_eq!(running.len(), 1, "task containers of {w}: {running:?}");
    }

    // The routing mesh and health checks in this cluster: the README's mesh block, through w1's
    // mesh at its address on the cluster network, to copies on all the workers.
    let w1 = docker_lines(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.compose.project={project}"),
        "--filter",
        "label=com.docker.compose.service=w1",
    ]);
    assert_eq!(w1.len(), 1, "the w1 container: {w1:?}");
    let ip = docker_lines(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{project}_cluster\").IPAddress}}}}"),
        &w1[0],
    ]);
    let ip = ip
        .first()
        .expect("w1's address on the cluster network")
        .clone();
    let worker = format!("http://{ip}:5556");
    let mut mesh_env = env.clone();
    mesh_env.extend([
        ("POSEIDON_MANAGER", "http://127.0.0.1:5555"),
        ("POSEIDON_WORKER", worker.as_str()),
        ("POSEIDON_MESH", ip.as_str()),
        ("POSEIDON_MESH_PORT", "8080"),
        ("POSEIDON_IMAGE", "busybox-local"),
    ]);
    let mesh = readme::block("mesh", "sh");
    let dir = tempfile::tempdir().unwrap();
    tokio::task::block_in_place(|| {
        readme::run_script_with(&mesh, dir.path(), bin.parent().unwrap(), &mesh_env, 180)
    });

    run(last);
    assert!(
        docker_lines(&[
            "network",
            "ls",
            "-q",
            "--filter",
            "name=poseidon-compose-tasks"
        ])
        .is_empty(),
        "the task network is left"
    );
    assert_eq!(
        leftovers(&project),
        Vec::<String>::new(),
        "left behind by make down"
    );
    drop(down);
}
