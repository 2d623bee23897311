//! Shell completions: the table behind `poseidon completions` matches what the binary's own
//! `--help` says for every command (subcommands, flags, short forms, which flags take a value),
//! and the scripts complete as a user would see it in bash (and zsh and fish where installed).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::process::Command;

use poseidon::cli::completions::{Cmd, Takes, ROOT};

const BIN: &str = env!("CARGO_BIN_EXE_poseidon");

/// What `--help` says about one command.
#[derive(Debug, Default)]
struct Help {
    usage: String,
    /// Every flag spelling in "Options:" (`--file`, `-f`), without `--help`.
    flags: BTreeSet<String>,
    /// The names in "Commands:", in order.
    commands: Vec<String>,
}

fn help(path: &[&str]) -> Help {
    let out = Command::new(BIN).args(path).arg("--help").output().unwrap();
    assert!(out.status.success(), "{path:?} --help failed");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut h = Help::default();
    let mut section = "";
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("Usage: ") {
            h.usage = rest.to_string();
            continue;
        }
        if !line.starts_with(' ') && line.ends_with(':') {
            section = line;
            continue;
        }
        // Entries start with two spaces; wrapped descriptions with many more.
        let Some(entry) = line.strip_prefix("  ").filter(|e| !e.starts_with(' ')) else {
            continue;
        };
        let names = entry.split("  ").next().unwrap_or("");
        match section {
            "Options:" => {
                for n in names.split(", ") {
                    if n.starts_with('-') && n != "--help" {
                        h.flags.insert(n.to_string());
                    }
                }
            }
            "Commands:" => h.commands.push(names.trim().to_string()),
            _ => {}
        }
    }
    h
}

fn check(path: &mut Vec<&'static str>, c: &'static Cmd, checked: &mut usize) {
    let h = help(&path[1..]);
    let mut table = BTreeSet::new();
    for f in c.flags {
        table.insert(format!("--{}", f.long));
        if let Some(s) = f.short {
            table.insert(format!("-{s}"));
        }
        // argh's usage line names a flag that takes a value as `-f <file>` (short form if any).
        let shown = f
            .short
            .map(|s| format!("-{s}"))
            .unwrap_or(format!("--{}", f.long));
        let takes_value = h.usage.contains(&format!("{shown} <"));
        assert_eq!(
            takes_value,
            f.takes != Takes::Nothing,
            "{path:?} {shown}: the table and `--help` disagree on whether it takes a value \
             (usage: {})",
            h.usage
        );
    }
    assert_eq!(table, h.flags, "{path:?}: flags in the table vs `--help`");
    let subs: Vec<String> = c.subcommands.iter().map(|s| s.name.to_string()).collect();
    assert_eq!(
        subs, h.commands,
        "{path:?}: subcommands in the table vs `--help`"
    );
    *checked += 1;
    for s in c.subcommands {
        path.push(s.name);
        check(path, s, checked);
        path.pop();
    }
}

#[test]
fn the_completion_table_matches_every_commands_help() {
    let mut checked = 0;
    check(&mut vec![ROOT.name], &ROOT, &mut checked);
    // The binary, its 13 subcommands, node's 2, service's 7, acl's 3 and acl token's 3.
    assert_eq!(checked, 29);
}

#[test]
fn the_help_parser_sees_flags_and_commands() {
    // Guards the test above against a parser that finds nothing and so agrees with anything.
    let h = help(&["run"]);
    for f in ["--file", "-f", "--restart", "--detach", "-d", "--manager"] {
        assert!(h.flags.contains(f), "{f} missing from {:?}", h.flags);
    }
    let root = help(&[]);
    assert!(root.commands.contains(&"completions".to_string()));
    assert!(root.commands.contains(&"node".to_string()));
}

fn script(shell: &str) -> String {
    let out = Command::new(BIN)
        .args(["completions", shell])
        .output()
        .unwrap();
    assert!(out.status.success(), "completions {shell}");
    String::from_utf8(out.stdout).unwrap()
}

/// What bash offers for the words `line` (the last one is being completed).
fn bash_complete(file: &std::path::Path, line: &[&str]) -> Vec<String> {
    let words: Vec<String> = line.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "source '{}'; COMP_WORDS=({}); COMP_CWORD={}; _poseidon; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display(),
        words.join(" "),
        line.len() - 1
    );
    let out = Command::new("bash")
        .args(["-c", &program])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn bash_completes_subcommands_flags_and_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("poseidon.bash");
    std::fs::write(&file, script("bash")).unwrap();
    assert_eq!(bash_complete(&file, &["poseidon", "lo"]), ["logs"]);
    assert_eq!(
        bash_complete(&file, &["poseidon", "node", ""]),
        ["drain", "eligibility"]
    );
    // A flag's value is not taken for a subcommand.
    assert_eq!(
        bash_complete(&file, &["poseidon", "-c", "node", "st"]),
        ["status", "stop"]
    );
    assert_eq!(
        bash_complete(&file, &["poseidon", "run", "--restart", ""]),
        ["never", "on-failure", "always"]
    );
    assert_eq!(
        bash_complete(&file, &["poseidon", "status", "--state", "r"]),
        ["running"]
    );
    assert_eq!(
        bash_complete(&file, &["poseidon", "node", "eligibility", "--"]),
        ["--enable", "--disable", "--json", "--manager", "--help"]
    );
    assert_eq!(
        bash_complete(&file, &["poseidon", "completions", ""]),
        ["bash", "zsh", "fish"]
    );
    assert!(bash_complete(&file, &["poseidon", "logs", "--tail", ""]).is_empty());
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown shell \"tcsh\""));
}

fn installed(shell: &str) -> bool {
    let found = Command::new(shell)
        .args(["-c", "exit 0"])
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("SKIPPED: {shell} is not installed; its completion script is not exercised");
    }
    found
}

#[test]
fn zsh_loads_the_script_and_finds_the_command_path() {
    if !installed("zsh") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("_poseidon");
    std::fs::write(&file, script("zsh")).unwrap();
    let program = format!(
        "autoload -U compinit && compinit -u -d '{}/zcompdump' && source '{}' && \
         _poseidon_path poseidon -c f.toml node drain x && _poseidon_value 'poseidon run' --restart",
        dir.path().display(),
        file.display()
    );
    let out = Command::new("zsh").args(["-c", &program]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["poseidon node drain", "never on-failure always"]
    );
}

#[test]
fn fish_completes_node_subcommands_and_flag_values() {
    if !installed("fish") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("poseidon.fish");
    std::fs::write(&file, script("fish")).unwrap();
    let complete = |line: &str| -> Vec<String> {
        let program = format!("source '{}'; complete -C '{line}'", file.display());
        let out = Command::new("fish")
            .args(["-c", &program])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.split('\t').next().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(complete("poseidon node "), ["drain", "eligibility"]);
    assert_eq!(
        complete("poseidon run --restart "),
        ["always", "never", "on-failure"]
    );
    // Only the subcommand's flags, not the binary's own.
    assert!(!complete("poseidon logs --").contains(&"--config".to_string()));
    assert!(complete("poseidon logs --").contains(&"--follow".to_string()));
}
