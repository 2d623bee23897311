//! The `poseidon` binary: parses arguments, installs the log subscriber (`RUST_LOG`, `--log-format`)
//! and hands over to [`poseidon::cli::run`].

use argh::FromArgs;

/// mimalloc instead of glibc's malloc: the manager and the worker allocate and free many small
/// buffers a request (bodies, JSON, task copies) across threads, where glibc's malloc, free and
/// consolidation took 16 % of the mock cluster's CPU under `wrk` (BENCHMARKS.md, "Issue 17").
/// Built without transparent huge pages (`no_thp` in Cargo.toml; on a host whose THP setting is
/// `always` rather than `madvise`, `MIMALLOC_ALLOW_THP=0` in the environment turns them off for the
/// process, as the systemd unit and the image do).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let strs: Vec<&str> = argv.iter().map(String::as_str).collect();
    let (cmd, rest) = strs
        .split_first()
        .map_or(("poseidon", &[][..]), |(c, r)| (*c, r));
    let args = match poseidon::cli::Args::from_args(&[cmd], rest) {
        Ok(a) => a,
        Err(early) => {
            // Help goes to stdout with 0; a usage error to stderr with 2.
            match early.status {
                Ok(()) => {
                    println!("{}", early.output);
                    std::process::exit(0);
                }
                Err(()) => {
                    eprintln!("poseidon: {}", early.output.trim_end());
                    std::process::exit(2);
                }
            }
        }
    };
    poseidon::logging::init(args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("poseidon: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(poseidon::cli::run(args));
    // Background tasks (heartbeats, long polls) must not hold the process open after a clean stop.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    std::process::exit(code);
}
