//! Poseidon: a small, readable container orchestrator.
//!
//! A manager accepts tasks over a REST API, stores them durably in RocksDB, places each on a worker with
//! a pluggable scheduler and pushes it there at once. Workers run tasks as containers through the
//! [`poseidon_runtimes::Runtime`] trait (Docker over its Unix socket, or a mock), watch them, and report
//! every change back. Both sides reconcile desired with observed state, so a lost message or a crash is
//! repaired by the next pass. ARCHITECTURE.md has the bird's-eye view.
//!
//! Parts, from the bottom up:
//! - [`util`]: clocks, durations, sizes.
//! - [`task`]: the task model and the one [`task::transition`] function guarding every state change.
//! - [`placement`]: constraints, node labels and `distinct_hosts` groups as users write them.
//! - [`spec`]: turning user input (Poseidon's JSON, or the Go original's TaskEvent) into a [`task::TaskSpec`].
//! - [`config`]: the TOML cluster file.
//! - [`store`]: the durable store (RocksDB, grouped synced writes) behind a small trait.
//! - [`histogram`]: lock-free Prometheus histograms for `/metrics`.
//! - [`http`]: the shared HTTP plumbing (server loop, JSON errors, a small client).
//! - [`wire`]: every body that crosses HTTP, one type for both sides.
//! - [`client`]: typed clients of the manager and worker APIs (used by the manager, the CLI, tests and benches).
//! - [`worker`]: the agent on each host, and its REST API.
//! - [`mesh`]: the routing mesh each worker runs: published ports proxied to a service's endpoints.
//! - [`service`]: the service model (versioned replicas of one task template).
//! - [`manager`]: placement, dispatch, node liveness, and its REST API.
//! - [`cluster`]: starting the roles a config file declares, in one process.
//! - [`cli`]: the `poseidon` command line.
//! - [`security`]: ACL tokens, node identities, TLS, key files.
//! - [`logging`]: structured logs (`RUST_LOG`, `--log-format text|json`) for the binary.

pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod dns;
pub mod histogram;
pub mod http;
pub mod logging;
pub mod manager;
pub mod mesh;
pub mod placement;
pub mod security;
pub mod service;
pub mod spec;
pub mod store;
pub mod task;
pub mod util;
pub mod wire;
pub mod worker;
