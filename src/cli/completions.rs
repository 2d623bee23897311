//! `poseidon completions bash|zsh|fish`: shell completion scripts written from one table of the
//! binary's subcommands and flags ([`ROOT`]).
//!
//! argh has no completion generator, so the table is written by hand. It cannot drift from the
//! parser unnoticed: `tests/completions.rs` runs `poseidon ... --help` for every command in the
//! table and compares the subcommands, flags, short forms and whether each flag takes a value.
//! A command added to `Command` without a row here fails that test.

use super::Failure;

/// What a flag or a positional argument takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Takes {
    /// Nothing: a switch (for a positional: no completion offered).
    Nothing,
    /// A path, completed from the file system.
    File,
    /// One of a fixed set of words.
    Choice(&'static [&'static str]),
    /// Free text (a name, a number, a URL): nothing to complete.
    Text,
}

/// One flag of a command.
#[derive(Debug, Clone, Copy)]
pub struct Flag {
    /// The long form, without the dashes.
    pub long: &'static str,
    /// The one-letter form, if any.
    pub short: Option<char>,
    /// What follows it.
    pub takes: Takes,
    /// A few words for shells that show descriptions.
    pub help: &'static str,
}

/// One command: the binary itself or a subcommand.
#[derive(Debug, Clone, Copy)]
pub struct Cmd {
    /// Its name on the command line.
    pub name: &'static str,
    /// A few words for shells that show descriptions.
    pub about: &'static str,
    /// Its flags (`--help` is added to every command by the scripts).
    pub flags: &'static [Flag],
    /// What its first positional argument takes.
    pub positional: Takes,
    /// Its subcommands.
    pub subcommands: &'static [Cmd],
}

const fn flag(long: &'static str, short: Option<char>, takes: Takes, help: &'static str) -> Flag {
    Flag {
        long,
        short,
        takes,
        help,
    }
}

const fn cmd(
    name: &'static str,
    about: &'static str,
    flags: &'static [Flag],
    positional: Takes,
) -> Cmd {
    Cmd {
        name,
        about,
        flags,
        positional,
        subcommands: &[],
    }
}

const JSON: Flag = flag("json", None, Takes::Nothing, "print JSON");
const MANAGER: Flag = flag("manager", None, Takes::Text, "manager URL");
const DETACH: Flag = flag("detach", Some('d'), Takes::Nothing, "return at once");
const CONFIG: Flag = flag("config", Some('c'), Takes::File, "cluster file");

/// The shells `poseidon completions` writes for.
pub const SHELLS: &[&str] = &["bash", "zsh", "fish"];

/// Every command and flag of the binary.
pub const ROOT: Cmd = Cmd {
    name: "poseidon",
    about: "a small, readable container orchestrator",
    flags: &[
        CONFIG,
        flag(
            "log-format",
            None,
            Takes::Choice(&["text", "json"]),
            "log format",
        ),
        flag("version", Some('V'), Takes::Nothing, "print the version"),
        flag("token", None, Takes::Text, "ACL token for the manager"),
    ],
    positional: Takes::Nothing,
    subcommands: &[
        cmd("manager", "start the manager", &[CONFIG], Takes::Nothing),
        cmd(
            "worker",
            "start one worker",
            &[CONFIG, flag("name", None, Takes::Text, "which worker")],
            Takes::Nothing,
        ),
        cmd(
            "run",
            "submit a task",
            &[
                flag("file", Some('f'), Takes::File, "a task file"),
                flag("image", None, Takes::Text, "the image to run"),
                flag("name", None, Takes::Text, "the task's name"),
                flag("port", Some('p'), Takes::Text, "a port to publish"),
                flag("env", Some('e'), Takes::Text, "KEY=VALUE"),
                flag("cpus", None, Takes::Text, "cpu cores"),
                flag("memory", None, Takes::Text, "memory"),
                flag(
                    "restart",
                    None,
                    Takes::Choice(&["never", "on-failure", "always"]),
                    "restart policy",
                ),
                DETACH,
                JSON,
                MANAGER,
            ],
            Takes::Nothing,
        ),
        cmd(
            "status",
            "show tasks",
            &[
                flag(
                    "state",
                    None,
                    Takes::Choice(&["pending", "scheduled", "running", "completed", "failed"]),
                    "only tasks in this state",
                ),
                flag("watch", Some('w'), Takes::Nothing, "follow changes"),
                JSON,
                MANAGER,
            ],
            Takes::Text,
        ),
        cmd(
            "stop",
            "stop a task",
            &[
                flag("purge", None, Takes::Nothing, "forget a finished task"),
                DETACH,
                JSON,
                MANAGER,
            ],
            Takes::Text,
        ),
        Cmd {
            name: "node",
            about: "show, drain or set the eligibility of nodes",
            flags: &[JSON, MANAGER],
            positional: Takes::Nothing,
            subcommands: &[
                cmd("drain", "drain a node", &[JSON, MANAGER], Takes::Text),
                cmd(
                    "eligibility",
                    "let new tasks go to a node, or not",
                    &[
                        flag("enable", None, Takes::Nothing, "place tasks on it"),
                        flag("disable", None, Takes::Nothing, "place nothing new on it"),
                        JSON,
                        MANAGER,
                    ],
                    Takes::Text,
                ),
            ],
        },
        cmd(
            "logs",
            "show a task's logs",
            &[
                flag("tail", None, Takes::Text, "only the last N lines"),
                flag("follow", Some('f'), Takes::Nothing, "follow the output"),
                flag("since", None, Takes::Text, "since a time or a duration ago"),
                flag(
                    "timestamps",
                    Some('t'),
                    Takes::Nothing,
                    "prefix lines with times",
                ),
                flag(
                    "previous",
                    None,
                    Takes::Nothing,
                    "the run before the restart",
                ),
                JSON,
                MANAGER,
            ],
            Takes::Text,
        ),
        cmd(
            "version",
            "client and manager versions",
            &[JSON, MANAGER],
            Takes::Nothing,
        ),
        cmd(
            "events",
            "follow the event stream",
            &[
                flag("index", None, Takes::Text, "replay after this index"),
                JSON,
                MANAGER,
            ],
            Takes::Nothing,
        ),
        cmd(
            "exec",
            "run a command in a task",
            &[
                flag("timeout", None, Takes::Text, "how long it may run"),
                JSON,
                MANAGER,
            ],
            Takes::Text,
        ),
        Cmd {
            name: "service",
            about: "manage services",
            flags: &[],
            positional: Takes::Nothing,
            subcommands: &[
                cmd(
                    "run",
                    "create a service from a file",
                    &[
                        flag("file", Some('f'), Takes::File, "the service file"),
                        JSON,
                        MANAGER,
                    ],
                    Takes::Nothing,
                ),
                cmd("ls", "list services", &[JSON, MANAGER], Takes::Nothing),
                cmd("status", "show a service", &[JSON, MANAGER], Takes::Text),
                cmd(
                    "scale",
                    "change a service's count",
                    &[JSON, MANAGER],
                    Takes::Text,
                ),
                cmd(
                    "update",
                    "roll out a new version",
                    &[
                        flag("file", Some('f'), Takes::File, "the service file"),
                        DETACH,
                        JSON,
                        MANAGER,
                    ],
                    Takes::Text,
                ),
                cmd(
                    "rollback",
                    "roll back to the previous version",
                    &[JSON, MANAGER],
                    Takes::Text,
                ),
                cmd(
                    "rm",
                    "stop a service",
                    &[
                        flag("purge", None, Takes::Nothing, "forget a stopped service"),
                        JSON,
                        MANAGER,
                    ],
                    Takes::Text,
                ),
            ],
        },
        Cmd {
            name: "acl",
            about: "manage ACL tokens",
            flags: &[],
            positional: Takes::Nothing,
            subcommands: &[
                cmd(
                    "bootstrap",
                    "print the first management token",
                    &[JSON, MANAGER],
                    Takes::Nothing,
                ),
                Cmd {
                    name: "token",
                    about: "create, list or revoke tokens",
                    flags: &[],
                    positional: Takes::Nothing,
                    subcommands: &[
                        cmd(
                            "create",
                            "create a token",
                            &[
                                flag(
                                    "policy",
                                    None,
                                    Takes::Choice(&["read", "submit", "manage"]),
                                    "its policy",
                                ),
                                JSON,
                                MANAGER,
                            ],
                            Takes::Nothing,
                        ),
                        cmd("list", "list tokens", &[JSON, MANAGER], Takes::Nothing),
                        cmd("revoke", "revoke a token", &[MANAGER], Takes::Text),
                    ],
                },
                cmd(
                    "join-token",
                    "print a new join token",
                    &[JSON, MANAGER],
                    Takes::Nothing,
                ),
            ],
        },
        cmd(
            "completions",
            "print a shell completion script",
            &[],
            Takes::Choice(SHELLS),
        ),
    ],
};

/// Print a shell completion script (bash, zsh or fish).
//
// Use: `source <(poseidon completions bash)`, or save the output where the shell loads
// completions from (zsh: a file `_poseidon` on `$fpath`; fish:
// `~/.config/fish/completions/poseidon.fish`).
#[derive(argh::FromArgs, Debug)]
#[argh(subcommand, name = "completions")]
pub struct CompletionsCmd {
    /// the shell: bash, zsh or fish
    #[argh(positional)]
    pub shell: String,
}

/// Prints the script for the asked shell.
pub(super) fn completions(c: CompletionsCmd) -> Result<(), Failure> {
    let script = script(&c.shell).ok_or_else(|| {
        Failure::usage(format!(
            "unknown shell {:?} (valid: {})",
            c.shell,
            SHELLS.join(", ")
        ))
    })?;
    print!("{script}");
    Ok(())
}

/// The completion script for `shell`, or `None` for a shell not in [`SHELLS`].
pub fn script(shell: &str) -> Option<String> {
    match shell {
        "bash" => Some(bash()),
        "zsh" => Some(zsh()),
        "fish" => Some(fish()),
        _ => None,
    }
}

/// Every command with its path from the root (`["poseidon", "node", "drain"]`), depth first.
fn walk() -> Vec<(Vec<&'static str>, &'static Cmd)> {
    fn go(
        path: &mut Vec<&'static str>,
        c: &'static Cmd,
        out: &mut Vec<(Vec<&'static str>, &'static Cmd)>,
    ) {
        path.push(c.name);
        out.push((path.clone(), c));
        for s in c.subcommands {
            go(path, s, out);
        }
        path.pop();
    }
    let mut out = Vec::new();
    go(&mut Vec::new(), &ROOT, &mut out);
    out
}

/// The spellings of a flag: `--long` and `-s`.
fn spellings(f: &Flag) -> Vec<String> {
    let mut v = vec![format!("--{}", f.long)];
    if let Some(s) = f.short {
        v.push(format!("-{s}"));
    }
    v
}

/// The shell functions both bash and zsh use: which subcommands, flags and flag values each
/// command path has. The path is the command words seen so far joined by spaces.
fn shared_functions() -> String {
    let cmds = walk();
    let mut subs = String::new();
    let mut flags = String::new();
    let mut values = String::new();
    let mut positional = String::new();
    for (path, c) in &cmds {
        let key = path.join(" ");
        if !c.subcommands.is_empty() {
            let names: Vec<&str> = c.subcommands.iter().map(|s| s.name).collect();
            subs.push_str(&format!("        '{key}') echo '{}' ;;\n", names.join(" ")));
        }
        let mut all: Vec<String> = c.flags.iter().flat_map(spellings).collect();
        all.push("--help".into());
        flags.push_str(&format!("        '{key}') echo '{}' ;;\n", all.join(" ")));
        for f in c.flags {
            let answer = match f.takes {
                Takes::Nothing => continue,
                Takes::File => "@file".to_string(),
                Takes::Text => "@text".to_string(),
                Takes::Choice(words) => words.join(" "),
            };
            let pats: Vec<String> = spellings(f)
                .iter()
                .map(|s| format!("'{key} {s}'"))
                .collect();
            values.push_str(&format!("        {}) echo '{answer}' ;;\n", pats.join("|")));
        }
        if let Takes::Choice(words) = c.positional {
            positional.push_str(&format!("        '{key}') echo '{}' ;;\n", words.join(" ")));
        }
    }
    format!(
        r#"# The subcommands of a command path.
_poseidon_subs() {{
    case "$1" in
{subs}    esac
}}
# The flags of a command path.
_poseidon_flags() {{
    case "$1" in
{flags}    esac
}}
# What the flag $2 of the command path $1 takes: words, @file or @text; nothing for a switch.
_poseidon_value() {{
    case "$1 $2" in
{values}    esac
}}
# The words a command path's positional argument may be.
_poseidon_positional() {{
    case "$1" in
{positional}    esac
}}
# The command path of the words before the cursor ("poseidon node drain"): the words are the
# arguments, the last one (the word being completed) left out.
_poseidon_path() {{
    local cmdpath=poseidon w skip=0 sub
    shift
    while (($# > 1)); do
        w="$1"
        shift
        if ((skip)); then skip=0; continue; fi
        [[ "$w" == "--" ]] && break
        if [[ "$w" == -* ]]; then
            [[ -n "$(_poseidon_value "$cmdpath" "$w")" ]] && skip=1
            continue
        fi
        for sub in $(_poseidon_subs "$cmdpath"); do
            if [[ "$w" == "$sub" ]]; then cmdpath="$cmdpath $w"; break; fi
        done
    done
    echo "$cmdpath"
}}
"#
    )
}

/// The bash script: `complete -F _poseidon poseidon`.
fn bash() -> String {
    format!(
        r#"# bash completion for poseidon (written by `poseidon completions bash`)
{shared}
_poseidon() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="" cmdpath value
    ((COMP_CWORD > 0)) && prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    cmdpath="$(_poseidon_path "${{COMP_WORDS[@]:0:COMP_CWORD+1}}")"
    COMPREPLY=()
    if [[ "$prev" == -* ]]; then
        value="$(_poseidon_value "$cmdpath" "$prev")"
        case "$value" in
            "") ;;
            @file) COMPREPLY=($(compgen -f -- "$cur")); return 0 ;;
            @text) return 0 ;;
            *) COMPREPLY=($(compgen -W "$value" -- "$cur")); return 0 ;;
        esac
    fi
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$(_poseidon_flags "$cmdpath")" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$(_poseidon_subs "$cmdpath") $(_poseidon_positional "$cmdpath")" -- "$cur"))
    fi
    return 0
}}
complete -o default -F _poseidon poseidon
"#,
        shared = shared_functions()
    )
}

/// The zsh script: a `#compdef` function using the same helpers as bash.
fn zsh() -> String {
    format!(
        r#"#compdef poseidon
# zsh completion for poseidon (written by `poseidon completions zsh`)
{shared}
_poseidon() {{
    local cur="${{words[CURRENT]}}" prev="${{words[CURRENT-1]}}" cmdpath value
    cmdpath="$(_poseidon_path "${{(@)words[1,CURRENT]}}")"
    if [[ "$prev" == -* ]]; then
        value="$(_poseidon_value "$cmdpath" "$prev")"
        case "$value" in
            "") ;;
            @file) _files; return ;;
            @text) return 1 ;;
            *) compadd -- ${{=value}}; return ;;
        esac
    fi
    if [[ "$cur" == -* ]]; then
        compadd -- $(_poseidon_flags "$cmdpath")
    else
        compadd -- $(_poseidon_subs "$cmdpath") $(_poseidon_positional "$cmdpath")
    fi
}}
if [[ "$funcstack[1]" == "_poseidon" ]]; then
    _poseidon "$@"
else
    compdef _poseidon poseidon
fi
"#,
        shared = shared_functions()
    )
}

/// The fish script: one `complete` line per subcommand and flag.
fn fish() -> String {
    let mut out = String::from(
        "# fish completion for poseidon (written by `poseidon completions fish`)\n\
         complete -c poseidon -f\n",
    );
    for (path, c) in walk() {
        // The words after `poseidon` that lead to this command.
        let words = &path[1..];
        let seen: Vec<String> = words
            .iter()
            .map(|w| format!("__fish_seen_subcommand_from {w}"))
            .collect();
        let here = if seen.is_empty() {
            String::new()
        } else {
            seen.join("; and ")
        };
        // Subcommands are offered while none of them has been typed yet.
        if !c.subcommands.is_empty() {
            let names: Vec<&str> = c.subcommands.iter().map(|s| s.name).collect();
            let none_yet = format!("not __fish_seen_subcommand_from {}", names.join(" "));
            let cond = if here.is_empty() {
                none_yet
            } else {
                format!("{here}; and {none_yet}")
            };
            for s in c.subcommands {
                out.push_str(&format!(
                    "complete -c poseidon -n '{cond}' -a {} -d '{}'\n",
                    s.name,
                    s.about.replace('\'', "\\'")
                ));
            }
        }
        // The binary's own flags go before any subcommand.
        let cond = if here.is_empty() {
            " -n '__fish_use_subcommand'".to_string()
        } else {
            format!(" -n '{here}'")
        };
        for f in c.flags {
            let mut line = format!("complete -c poseidon{cond} -l {}", f.long);
            if let Some(s) = f.short {
                line.push_str(&format!(" -s {s}"));
            }
            match f.takes {
                Takes::Nothing => {}
                Takes::File => line.push_str(" -r -F"),
                Takes::Text => line.push_str(" -x"),
                Takes::Choice(words) => line.push_str(&format!(" -x -a '{}'", words.join(" "))),
            }
            line.push_str(&format!(" -d '{}'\n", f.help.replace('\'', "\\'")));
            out.push_str(&line);
        }
        if let Takes::Choice(words) = c.positional {
            out.push_str(&format!(
                "complete -c poseidon{cond} -a '{}'\n",
                words.join(" ")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shell_in_the_list_has_a_script_and_others_have_none() {
        for shell in ["bash", "zsh", "fish"] {
            let s = script(shell).expect("a script");
            assert!(s.contains("poseidon"), "{shell}");
        }
        assert!(script("powershell").is_none());
    }

    #[test]
    fn no_command_repeats_a_flag_or_a_short_form() {
        for (path, c) in walk() {
            let mut seen = std::collections::BTreeSet::new();
            for f in c.flags {
                for s in spellings(f) {
                    assert!(seen.insert(s.clone()), "{path:?} repeats {s}");
                }
            }
        }
    }

    #[test]
    fn the_fish_script_offers_node_subcommands_only_after_node() {
        let s = fish();
        assert!(s.contains(
            "complete -c poseidon -n '__fish_seen_subcommand_from node; and not \
             __fish_seen_subcommand_from drain eligibility' -a drain"
        ));
        assert!(s.contains(
            "complete -c poseidon -n '__fish_seen_subcommand_from run' -l restart -x -a \
             'never on-failure always'"
        ));
    }
}
