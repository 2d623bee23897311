//! The image of the binary under test for the container tests (`tests/multihost.rs`,
//! `tests/multihost_ha.rs` with etcd beside it, `tests/deploy.rs`): made by `deploy/image.sh`, the
//! one implementation `make image` uses too.

use std::hash::Hasher;
use std::path::Path;
use std::process::Stdio;

/// Makes (once per content) an image of `repo` holding the `poseidon` binary these tests were
/// built with and every program of `extra` (each under /usr/local/bin with its libraries), and
/// returns its name. The tag is a hash of the binaries, so a rebuilt binary gets a new image and
/// an unchanged one reuses the old; older images of `repo` are removed (one still in use stays).
pub async fn poseidon_image(repo: &str, extra: &[&str]) -> String {
    let bin = env!("CARGO_BIN_EXE_poseidon");
    let mut bins = vec![bin];
    bins.extend_from_slice(extra);
    let mut h = std::hash::DefaultHasher::new();
    for b in &bins {
        h.write(
            &tokio::fs::read(b)
                .await
                .unwrap_or_else(|e| panic!("reading {b}: {e}")),
        );
    }
    let tag = format!("{repo}:{:016x}", h.finish());
    if docker_ok(&["image", "inspect", "--format", "{{.Id}}", &tag]).await {
        return tag;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/image.sh");
    let out = tokio::process::Command::new(&script)
        .arg(&tag)
        .args(&bins)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} {tag} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let others = tokio::process::Command::new("docker")
        .args(["images", repo, "--format", "{{.Repository}}:{{.Tag}}"])
        .output()
        .await
        .unwrap();
    for other in String::from_utf8_lossy(&others.stdout).lines() {
        if other != tag {
            // An image a running container still uses is refused, and stays: that is fine.
            docker_ok(&["rmi", other]).await;
        }
    }
    tag
}

async fn docker_ok(args: &[&str]) -> bool {
    tokio::process::Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}
