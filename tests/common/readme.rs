//! README.md's examples, for the tests that run them: the fenced block after a
//! `<!-- readme-test: NAME -->` marker, and running a shell block as a user would.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

pub const README: &str = include_str!("../../README.md");

/// The fenced block of language `lang` right after `<!-- readme-test: NAME -->`.
pub fn block(name: &str, lang: &str) -> String {
    let marker = format!("<!-- readme-test: {name} -->");
    let start = README
        .find(&marker)
        .unwrap_or_else(|| panic!("README.md has no {marker}"));
    let rest = &README[start + marker.len()..];
    let fence = format!("```{lang}\n");
    let open = rest.find(&fence).unwrap() + fence.len();
    let close = rest[open..].find("\n```").unwrap();
    rest[open..open + close].to_string()
}

/// Runs `script` with bash (`-euo pipefail -x`, at most `secs` seconds) in `cwd`, with `bin_dir`
/// (where `poseidon` is) first on the PATH and `env` added; panics with its output if it fails.
/// Returns its stdout, and stdout and stderr together for messages.
pub fn run_script_with(
    script: &str,
    cwd: &Path,
    bin_dir: &Path,
    env: &[(&str, &str)],
    secs: u32,
) -> (String, String) {
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("timeout")
        .arg(secs.to_string())
        .args(["bash", "-euo", "pipefail", "-x", "-c", script])
        .current_dir(cwd)
        .env("PATH", path)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let log = format!(
        "--- stdout\n{stdout}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "README block failed ({}):\n{log}",
        out.status
    );
    eprintln!("{log}");
    (stdout, log)
}

/// [`run_script_with`] with no extra environment and two minutes.
pub fn run_script(script: &str, cwd: &Path, bin_dir: &Path) {
    run_script_with(script, cwd, bin_dir, &[], 120);
}
