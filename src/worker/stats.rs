//! Host statistics for heartbeats and `GET /stats`, read with sysinfo.
//!
//! Sampling is cheap but not free (disks walk every mount), so samples are cached briefly: a burst of
//! heartbeats or requests does not re-read `/proc` each time.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use sysinfo::{Disks, System};

use super::Worker;
use crate::task::{State, TaskId};
use crate::wire::{Capacity, NodeStats};

/// How long a host sample is reused.
const SAMPLE_TTL: Duration = Duration::from_millis(500);
/// How long a disk sample is reused.
const DISK_TTL: Duration = Duration::from_secs(10);

struct Cache {
    sys: System,
    disks: Disks,
    at: Option<Instant>,
    disks_at: Option<Instant>,
    last: NodeStats,
}

/// Samples host CPU, memory, load and disk, caching each sample briefly.
pub struct SysSampler {
    cache: Mutex<Cache>,
}

impl Default for SysSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl SysSampler {
    /// A sampler with nothing read yet.
    pub fn new() -> Self {
        SysSampler {
            cache: Mutex::new(Cache {
                sys: System::new(),
                disks: Disks::new(),
                at: None,
                disks_at: None,
                last: NodeStats::default(),
            }),
        }
    }

    /// A fresh (or at most [`SAMPLE_TTL`] old) sample.
    pub fn sample(&self) -> NodeStats {
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if c.at.is_some_and(|at| now.duration_since(at) < SAMPLE_TTL) {
            return c.last.clone();
        }
        // CPU usage is the change since the previous refresh, so the first sample reads 0.
        c.sys.refresh_cpu_usage();
        c.sys.refresh_memory();
        if c.disks_at
            .is_none_or(|at| now.duration_since(at) >= DISK_TTL)
        {
            c.disks.refresh(true);
            c.disks_at = Some(now);
        }
        let (disk_total, disk_available) = c
            .disks
            .list()
            .iter()
            .find(|d| d.mount_point() == std::path::Path::new("/"))
            .or_else(|| c.disks.list().first())
            .map(|d| (d.total_space(), d.available_space()))
            .unwrap_or((0, 0));
        c.last = NodeStats {
            cpu_percent: f64::from(c.sys.global_cpu_usage()),
            load_one: System::load_average().one,
            memory_used: c.sys.used_memory(),
            memory_total: c.sys.total_memory(),
            disk_available,
            disk_total,
            tasks: 0,
        };
        c.at = Some(now);
        c.last.clone()
    }
}

/// The capacity of this host as sysinfo reads it: every core and all memory.
pub fn host_capacity() -> Capacity {
    let mut sys = System::new();
    sys.refresh_memory();
    Capacity {
        cpus: std::thread::available_parallelism()
            .map(|n| n.get() as f64)
            .unwrap_or(1.0),
        memory: sys.total_memory(),
    }
}

pub use crate::wire::{ContainerStats, Load, WorkerStats};

/// Collects host and per-container statistics; containers are sampled concurrently, each bounded.
pub async fn collect(w: &Worker) -> WorkerStats {
    let tasks = w.tasks();
    let mut host = w.inner.sys.sample();
    host.tasks = tasks.len();
    let running: Vec<(TaskId, String)> = tasks
        .iter()
        .filter(|t| t.state == State::Running)
        .filter_map(|t| t.container_id.clone().map(|c| (t.id, c)))
        .collect();
    let mut handles = Vec::new();
    for (id, cid) in running.iter().cloned() {
        let rt = w.runtime().clone();
        handles.push(tokio::spawn(async move {
            let s = tokio::time::timeout(Duration::from_secs(5), rt.stats(&cid)).await;
            match s {
                Ok(Ok(s)) => Some(ContainerStats {
                    task_id: id,
                    container_id: cid,
                    cpu_cores: s.cpu_cores,
                    memory_bytes: s.memory_bytes,
                    memory_limit_bytes: s.memory_limit_bytes,
                }),
                _ => None,
            }
        }));
    }
    let mut containers = Vec::new();
    for h in handles {
        if let Ok(Some(c)) = h.await {
            containers.push(c);
        }
    }
    let l = System::load_average();
    WorkerStats {
        node: w.name().to_string(),
        runtime: w.runtime().kind().to_string(),
        engine_ok: w.engine_ok(),
        capacity: w.inner.opts.capacity,
        host,
        load: Load {
            one: l.one,
            five: l.five,
            fifteen: l.fifteen,
        },
        tasks: tasks.len(),
        running: running.len(),
        containers,
    }
}
