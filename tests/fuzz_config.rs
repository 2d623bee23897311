//! Bounded fuzzing of the config parser: 10,000 config files mutated from `config/three-workers.toml`
//! (lines removed, cut, swapped, values replaced by hostile tokens) must each give a config or a
//! one-line error that names the file, and never a panic. The generator is a seeded xorshift, so a
//! failure names its case and can be replayed.
#![allow(clippy::unwrap_used)]

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

#[test]
fn ten_thousand_mutated_config_files_get_an_error_or_a_config_and_no_panic() {
    let base = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/three-workers.toml"
    ))
    .unwrap();
    let lines: Vec<&str> = base.lines().collect();
    let tokens = [
        "\"\"",
        "0",
        "-1",
        "1e999",
        "\"5x\"",
        "\"-1s\"",
        "\"0ms\"",
        "\"99999999999h\"",
        "true",
        "[1, \"a\"]",
        "{ cpus = -1 }",
        "{ cpus = 1e308, memory = \"1t\" }",
        "\"podman\"",
        "\"fastest\"",
        "\"256.1.1.1:80\"",
        "\"127.0.0.1:99999\"",
        "\"[::1]:0\"",
        "\"http://\"",
        "\"a\\u0000b\"",
        "\"\u{fffd}\"",
        "[[worker]]",
        "[manager]",
        "=",
    ];
    let mut r = Rng(0xdead_beef_cafe_f00d);
    let mut errors = 0;
    for case in 0..10_000 {
        let mut doc: Vec<String> = lines.iter().map(|s| s.to_string()).collect();
        for _ in 0..=r.below(3) {
            let i = r.below(doc.len());
            match r.below(5) {
                0 => {
                    doc.remove(i);
                }
                1 => {
                    if let Some((k, _)) = doc[i].clone().split_once('=') {
                        doc[i] = format!("{k}= {}", r.pick(&tokens));
                    }
                }
                2 => doc.insert(
                    i,
                    format!(
                        "{} = {}",
                        r.pick(&["colour", "name", "listen", "scheduler", "capacity"]),
                        r.pick(&tokens)
                    ),
                ),
                3 => {
                    let cut = r.below(doc[i].len() + 1);
                    doc[i] = doc[i].chars().take(cut).collect();
                }
                _ => {
                    let j = r.below(doc.len());
                    doc.swap(i, j);
                }
            }
            if doc.is_empty() {
                doc.push(String::new());
            }
        }
        let text = doc.join("\n");
        let out = std::panic::catch_unwind(|| poseidon::config::parse(&text, "fuzz.toml"));
        match out {
            Err(_) => panic!("case {case}: the config parser panicked on:\n{text}"),
            Ok(Err(e)) => {
                errors += 1;
                let msg = e.to_string();
                assert!(
                    msg.starts_with("fuzz.toml"),
                    "case {case}: the error names the file: {msg}"
                );
                assert_eq!(msg.lines().count(), 1, "case {case}: one line: {msg}");
            }
            Ok(Ok(_)) => {}
        }
    }
    assert!(errors > 5_000, "most mutations are mistakes: {errors}");
}
