//! The `poseidon service` commands: `run -f FILE`, `ls`, `status NAME`, `scale NAME N`,
//! `update NAME -f FILE` (following the rollout), `rollback NAME`, `rm NAME`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use argh::FromArgs;

use super::{manager_client, print_json, Failure};
use crate::client::ManagerClient;
use crate::http::ClientError;
use crate::service::ServiceState;
use crate::spec::service_body;
use crate::wire::ServiceView;

/// Manage services: replicated, versioned tasks with rolling updates.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "service")]
pub struct ServiceCmd {
    #[argh(subcommand)]
    /// what to do
    pub command: ServiceSub,
}

/// The service subcommands.
#[derive(FromArgs, Debug)]
#[argh(subcommand)]
pub enum ServiceSub {
    /// Create a service from a file.
    Run(SvcRun),
    /// List services.
    Ls(SvcLs),
    /// Show one service and its tasks.
    Status(SvcStatus),
    /// Change how many copies run (nothing restarts).
    Scale(SvcScale),
    /// Roll out a new version from a file and follow it.
    Update(SvcUpdate),
    /// Roll back to the previous healthy version.
    Rollback(SvcRollback),
    /// Stop a service's tasks (with --purge, forget a stopped service).
    Rm(SvcRm),
}

/// Create a service from a JSON file (the body of POST /services).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "run")]
pub struct SvcRun {
    /// the service file
    #[argh(option, short = 'f')]
    pub file: PathBuf,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// manager URL (default: $POSEIDON_MANAGER, then http://127.0.0.1:5555)
    #[argh(option)]
    pub manager: Option<String>,
}

/// List services.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "ls")]
pub struct SvcLs {
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// manager URL (default: $POSEIDON_MANAGER, then http://127.0.0.1:5555)
    #[argh(option)]
    pub manager: Option<String>,
}

/// Show one service and its tasks.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "status")]
pub struct SvcStatus {
    /// the service
    #[argh(positional)]
    pub name: String,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// manager URL (default: $POSEIDON_MANAGER, then http://127.0.0.1:5555)
    #[argh(option)]
    pub manager: Option<String>,
}

/// Change how many copies of a service run.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "scale")]
pub struct SvcScale {
    /// the service
    #[argh(positional)]
    pub name: String,
    /// how many copies
    #[argh(positional)]
    pub count: u32,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// manager URL (default: $POSEIDON_MANAGER, then http://127.0.0.1:5555)
    #[argh(option)]
    pub manager: Option<String>,
}

/// Roll out a new version of a service and follow it until it is healthy (or fails).
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "update")]
pub struct SvcUpdate {
    /// the service
    #[argh(positional)]
    pub name: String,
    /// the service file (the body of PUT /services/NAME)
    #[argh(option, short = 'f')]
    pub file: PathBuf,
    /// return once stored instead of following the rollout
    #[argh(switch, short = 'd')]
    pub detach: bool,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// manager URL (default: $POSEIDON_MANAGER, then http://127.0.0.1:5555)
    #[argh(option)]
    pub manager: Option<String>,
}

/// Roll a service back to its previous healthy version.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "rollback")]
pub struct SvcRollback {
    /// the service
    #[argh(positional)]
    pub name: String,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// manager URL (default: $POSEIDON_MANAGER, then http://127.0.0.1:5555)
    #[argh(option)]
    pub manager: Option<String>,
}

/// Stop a service's tasks; with --purge, forget a stopped service.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "rm")]
pub struct SvcRm {
    /// the service
    #[argh(positional)]
    pub name: String,
    /// forget a stopped service whose tasks have ended
    #[argh(switch)]
    pub purge: bool,
    /// print JSON
    #[argh(switch)]
    pub json: bool,
    /// manager URL (default: $POSEIDON_MANAGER, then http://127.0.0.1:5555)
    #[argh(option)]
    pub manager: Option<String>,
}

/// How long `update` follows a rollout at most.
const FOLLOW_LIMIT: Duration = Duration::from_secs(600);

/// Bad input (400) is the user's to fix: a usage error, like the other commands.
fn failure(e: ClientError) -> Failure {
    match e {
        e @ ClientError::Status { status: 400, .. } => Failure::usage(e.to_string()),
        e => e.into(),
    }
}

fn read(file: &PathBuf) -> Result<Vec<u8>, Failure> {
    std::fs::read(file).map_err(|e| Failure::usage(format!("cannot read {}: {e}", file.display())))
}

fn summary(s: &ServiceView) -> String {
    format!(
        "service {} version {}: {} ({}/{} healthy)",
        s.name, s.version, s.state, s.healthy, s.count
    )
}

/// Runs a `poseidon service` subcommand.
pub(super) async fn service(c: ServiceCmd) -> Result<(), Failure> {
    match c.command {
        ServiceSub::Run(c) => {
            let m = manager_client(&c.manager);
            let s = m.create_service(read(&c.file)?).await.map_err(failure)?;
            show(&s, c.json, true);
            Ok(())
        }
        ServiceSub::Ls(c) => {
            let list = manager_client(&c.manager).services().await?;
            if c.json {
                print_json(&list);
                return Ok(());
            }
            println!(
                "{:<20}  {:>7}  {:<9}  {:>9}  IMAGE",
                "NAME", "VERSION", "STATE", "HEALTHY"
            );
            for s in list {
                println!(
                    "{:<20}  {:>7}  {:<9}  {:>9}  {}",
                    s.name,
                    s.version,
                    s.state.as_str(),
                    format!("{}/{}", s.healthy, s.count),
                    s.spec.task.image
                );
            }
            Ok(())
        }
        ServiceSub::Status(c) => {
            let s = manager_client(&c.manager)
                .service(&c.name)
                .await
                .map_err(failure)?;
            if c.json {
                print_json(&s);
                return Ok(());
            }
            println!("{}", summary(&s));
            println!("image:    {}", s.spec.task.image);
            for v in &s.versions {
                let mark = if v.version == s.version { "*" } else { " " };
                println!(
                    "  {mark}v{:<4} {:<12} count {:<5} {}{}",
                    v.version,
                    v.spec.task.image,
                    v.spec.count,
                    v.cause,
                    if v.stable { " (was healthy)" } else { "" }
                );
            }
            println!(
                "{:<36}  {:>7}  {:<9}  {:<9}  {:<8}  REASON",
                "TASK", "VERSION", "STATE", "HEALTH", "NODE"
            );
            for t in &s.tasks {
                println!(
                    "{:<36}  {:>7}  {:<9}  {:<9}  {:<8}  {}",
                    t.id,
                    t.version.map(|v| v.to_string()).unwrap_or_default(),
                    t.state.as_str(),
                    t.health.as_deref().unwrap_or("-"),
                    t.node.as_deref().unwrap_or("-"),
                    t.reason.as_deref().unwrap_or("")
                );
            }
            Ok(())
        }
        ServiceSub::Scale(c) => {
            let m = manager_client(&c.manager);
            let mut spec = m.service(&c.name).await.map_err(failure)?.spec;
            spec.count = c.count;
            let body = serde_json::to_vec(&service_body(&spec))
                .map_err(|e| Failure::op(format!("cannot encode the service: {e}")))?;
            let s = m.update_service(&c.name, body).await.map_err(failure)?;
            show(&s, c.json, false);
            Ok(())
        }
        ServiceSub::Update(c) => {
            let m = manager_client(&c.manager);
            let s = m
                .update_service(&c.name, read(&c.file)?)
                .await
                .map_err(failure)?;
            if c.detach {
                show(&s, c.json, false);
                return Ok(());
            }
            follow(&m, s, c.json).await
        }
        ServiceSub::Rollback(c) => {
            let m = manager_client(&c.manager);
            let s = m.rollback_service(&c.name).await.map_err(failure)?;
            if c.json {
                print_json(&s);
                return Ok(());
            }
            println!("{}", summary(&s));
            follow(&m, s, false).await
        }
        ServiceSub::Rm(c) => {
            let m = manager_client(&c.manager);
            if c.purge {
                let p = m.purge_service(&c.name).await.map_err(failure)?;
                if c.json {
                    print_json(&p);
                } else {
                    println!("service {} purged", p.purged);
                }
                return Ok(());
            }
            let s = m.stop_service(&c.name).await.map_err(failure)?;
            show(&s, c.json, false);
            Ok(())
        }
    }
}

fn show(s: &ServiceView, json: bool, created: bool) {
    if json {
        print_json(s);
    } else if created {
        println!(
            "service {} created ({} x {})",
            s.name, s.count, s.spec.task.image
        );
    } else {
        println!("{}", summary(s));
    }
}

/// Prints how many copies of the new version are healthy, as it changes, until the rollout is
/// done (exit 0) or the version failed or was reverted (exit 1).
async fn follow(m: &ManagerClient, first: ServiceView, json: bool) -> Result<(), Failure> {
    let version = first.version;
    let deadline = Instant::now() + FOLLOW_LIMIT;
    let mut last = String::new();
    loop {
        let s = m.service(&first.name).await?;
        let line = format!(
            "version {}: {}/{} healthy ({})",
            s.version, s.healthy, s.count, s.state
        );
        if !json && line != last {
            println!("{line}");
            last = line;
        }
        let done = s.state == ServiceState::Running && s.healthy >= s.count as usize;
        let bad = s.version != version
            || matches!(s.state, ServiceState::Failed | ServiceState::Stopped)
            || (s.state == ServiceState::Reverted && first.state != ServiceState::Reverted);
        if done || bad {
            if json {
                print_json(&s);
            }
            if bad {
                return Err(Failure::op(format!(
                    "version {version} did not roll out: {}",
                    summary(&s)
                )));
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Failure::op(format!(
                "gave up following after {} s: {}",
                FOLLOW_LIMIT.as_secs(),
                summary(&s)
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
