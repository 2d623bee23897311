//! The Docker CLI as the container tests (`tests/multihost.rs`, `tests/multihost_ha.rs`) drive it:
//! one command at a time, its trimmed stdout on success and a message naming the command on failure.
#![allow(dead_code)]

use std::process::Stdio;

/// `docker ARGS...`: its trimmed stdout, or an error naming the command and what it said.
pub async fn try_docker(args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("docker {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!(
            "docker {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// [`try_docker`], panicking on failure.
pub async fn docker(args: &[&str]) -> String {
    try_docker(args).await.unwrap_or_else(|e| panic!("{e}"))
}

/// [`try_docker`] without a runtime, for `Drop` (a guard that cleans up while a test panics).
pub fn docker_blocking(args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Prints the last `lines` lines of each container's log to stderr (unbuffered: the harness does
/// not capture it), headed by the container's name; for a guard whose test is panicking.
pub fn print_logs(containers: &[String], lines: usize) {
    for c in containers {
        let Ok(out) = std::process::Command::new("docker")
            .args(["logs", "--tail", &lines.to_string(), c])
            .output()
        else {
            continue;
        };
        let text = format!(
            "\n----- logs of {c} -----\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::io::Write::write_all(&mut std::io::stderr(), text.as_bytes());
    }
}

/// Removes `containers` (running or not), then every container a Poseidon worker of `nodes` made
/// (found by the node label; looked for again until none is left, as a worker's last create may
/// land after it is gone), then `networks`; errors are ignored (a guard cleans up what exists).
pub fn remove_all(containers: &[String], nodes: &[String], networks: &[String]) {
    if !containers.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(containers.iter().map(String::as_str));
        let _ = docker_blocking(&args);
    }
    for _ in 0..3 {
        let mut left = Vec::new();
        for n in nodes {
            let filter = format!("label=io.poseidon.node={n}");
            if let Ok(ids) = docker_blocking(&["ps", "-aq", "--filter", &filter]) {
                left.extend(ids.lines().map(str::to_string));
            }
        }
        if left.is_empty() {
            break;
        }
        let mut args = vec!["rm", "-f"];
        args.extend(left.iter().map(String::as_str));
        let _ = docker_blocking(&args);
    }
    for n in networks {
        let _ = docker_blocking(&["network", "rm", n]);
    }
}
