//! Helpers for tests that need a real Docker engine, shared by this crate's tests and the root
//! crate's integration tests.
//!
//! - [`docker_or_skip`]: a client when the engine answers; otherwise a loud skip, or a panic under
//!   `CI=true`, because a CI run that silently skipped every real test would prove nothing.
//! - [`ensure_test_image`]: the tiny image [`TEST_IMAGE`], built on the spot from the host's static
//!   busybox (no registry is reachable here) and imported with [`DockerRuntime::import_image`].
//! - [`unique_name`] and [`Cleanup`]: container names that cannot collide between test processes,
//!   and a guard that force-removes the containers a test made, even when the test panics.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::docker::DockerRuntime;
use crate::image_ref::ImageRef;
use crate::Runtime;

/// The image the real-engine tests run: busybox with `sh`, `sleep`, `echo`, `cat`, `httpd`, `nc`,
/// `true`, `false`, `ls`, `env` and `wget`, a `/www/index.html` that says `hello from poseidon`, and
/// a `/tmp`. Run `sh -c 'echo hi; exit 3'` for exit codes, `httpd -f -p 8080 -h /www` for HTTP.
pub const TEST_IMAGE: &str = "poseidon-test/busybox:latest";

/// What `/www/index.html` in [`TEST_IMAGE`] holds.
pub const TEST_PAGE: &str = "hello from poseidon";

/// The busybox applets linked in `/bin` of [`TEST_IMAGE`].
const APPLETS: &[&str] = &[
    "sh", "sleep", "echo", "cat", "httpd", "nc", "true", "false", "ls", "env", "wget",
];

/// Where Debian's busybox-static puts the binary.
const BUSYBOX_PATHS: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

/// A client for the engine of `$DOCKER_HOST` (or the default socket) when it answers `/_ping`.
///
/// When it does not: under `CI=true` this panics, so that CI fails rather than passes on nothing;
/// elsewhere it prints `SKIPPED <test_name>: docker unreachable` to stderr and returns `None`.
pub async fn docker_or_skip(test_name: &str) -> Option<DockerRuntime> {
    let reason = match DockerRuntime::new(None) {
        Ok(rt) => match rt.ping().await {
            Ok(()) => return Some(rt),
            Err(e) => e.to_string(),
        },
        Err(e) => e.to_string(),
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "\n\n*** {test_name}: docker is unreachable and CI=true, so this is a failure, \
             not a skip: {reason} ***\n\n"
        );
    }
    // Written to stderr directly rather than with `eprintln!`, which the test harness captures and
    // hides for a passing test: a skip must be seen.
    let notice = format!("\n*** SKIPPED {test_name}: docker unreachable ({reason}) ***\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), notice.as_bytes());
    None
}

/// Makes sure [`TEST_IMAGE`] exists, building and importing it when it does not, and returns its
/// name. The error says what to install when the host has no static busybox.
///
/// Safe when several tests or test binaries call it at once: one builds while the others wait on a
/// lock, then find the image and return.
pub async fn ensure_test_image(rt: &DockerRuntime) -> Result<String, String> {
    let exists = |rt: &DockerRuntime| {
        let rt = rt.clone();
        async move {
            rt.image_exists(TEST_IMAGE)
                .await
                .map_err(|e| format!("cannot look up {TEST_IMAGE}: {e}"))
        }
    };
    if exists(rt).await? {
        return Ok(TEST_IMAGE.to_string());
    }
    // Tests of one binary run at once: one builds, the others wait and then find the image. Other
    // test binaries are kept out by a file lock, which the kernel releases if a holder dies.
    static BUILDING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _in_process = BUILDING.lock().await;
    let _across_processes = tokio::task::spawn_blocking(lock_file)
        .await
        .map_err(|e| format!("locking the test image build failed: {e}"))??;
    if exists(rt).await? {
        return Ok(TEST_IMAGE.to_string());
    }
    let busybox = find_static_busybox()?;
    let dir = scratch_dir();
    let built = build_rootfs(&dir, &busybox);
    let tar = match built {
        Ok(()) => tar_dir(&dir).await,
        Err(e) => Err(e),
    };
    // The tarball is in memory now; the directory is not needed whatever happened.
    let _ = std::fs::remove_dir_all(&dir);
    let tar = tar?;
    if exists(rt).await? {
        return Ok(TEST_IMAGE.to_string());
    }
    let r = ImageRef::parse(TEST_IMAGE).map_err(|e| e.to_string())?;
    rt.import_image(tar, &r.repo, &r.tag)
        .await
        .map_err(|e| format!("importing {TEST_IMAGE} failed: {e}"))?;
    Ok(TEST_IMAGE.to_string())
}

/// A container name no other test, in this process or another, will use:
/// `poseidon-test-<label>-<pid>-<n>`.
pub fn unique_name(label: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let label: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("poseidon-test-{label}-{}-{n}", std::process::id())
}

/// Force-removes, when dropped, every container it was told about (by name or id), so that a test
/// that fails halfway leaves nothing running. Track a name before creating the container, so that
/// even a panic right after `create` is covered.
#[derive(Debug)]
pub struct Cleanup {
    rt: DockerRuntime,
    containers: Vec<String>,
}

impl Cleanup {
    /// A guard that removes containers through `rt`.
    pub fn new(rt: &DockerRuntime) -> Self {
        Cleanup {
            rt: rt.clone(),
            containers: Vec::new(),
        }
    }

    /// Adds a container name or id to remove on drop; returns it for convenience.
    pub fn track(&mut self, name_or_id: impl Into<String>) -> String {
        let name = name_or_id.into();
        self.containers.push(name.clone());
        name
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if self.containers.is_empty() {
            return;
        }
        let host = self.rt.host().to_string();
        let timeouts = self.rt.timeouts().clone();
        let containers = std::mem::take(&mut self.containers);
        // Drop cannot await, and may run inside a runtime that cannot block, so the removals run
        // on a thread of their own with a small runtime of their own. They need a client of their
        // own too: a pooled connection of the test's client is driven by a task on the test's
        // runtime, which is blocked right here waiting for this thread.
        let worker = std::thread::spawn(move || {
            let Ok(rt) = DockerRuntime::new(Some(&host)) else {
                return;
            };
            let rt = rt.with_timeouts(timeouts);
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                for c in containers {
                    // Already gone is fine: the test may have removed it itself.
                    let _ = rt.remove(&c, true).await;
                }
            });
        });
        let _ = worker.join();
    }
}

/// Takes the machine-wide lock on building the test image; it is held until the file is dropped.
fn lock_file() -> Result<std::fs::File, String> {
    let path = std::env::temp_dir().join("poseidon-test-image.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    file.lock()
        .map_err(|e| format!("cannot lock {}: {e}", path.display()))?;
    Ok(file)
}

/// The host's busybox, if it is statically linked (a dynamic one cannot run in an empty rootfs).
fn find_static_busybox() -> Result<PathBuf, String> {
    let install = "install Debian's busybox-static (apt-get install -y busybox-static)";
    for candidate in BUSYBOX_PATHS {
        let path = Path::new(candidate);
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        return if has_interpreter(&bytes) {
            Err(format!(
                "{candidate} is dynamically linked and cannot run alone in an image: {install}"
            ))
        } else {
            Ok(path.to_path_buf())
        };
    }
    Err(format!(
        "no busybox found at {}: {install}",
        BUSYBOX_PATHS.join(" or ")
    ))
}

/// True when a 64-bit little-endian ELF file names a program interpreter (is dynamically linked).
fn has_interpreter(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        elf.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a)
        })
    };
    if elf.get(..5) != Some(b"\x7fELF\x02".as_slice()) {
        // Not a 64-bit ELF: let the import and the first container tell.
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38))
    else {
        return false;
    };
    (0..usize::from(phnum)).any(|i| {
        let at = usize::try_from(phoff)
            .unwrap_or(usize::MAX)
            .saturating_add(i * usize::from(phentsize));
        u32_at(at) == Some(PT_INTERP)
    })
}

/// A fresh directory under the system's temporary directory, unique to this process and moment.
fn scratch_dir() -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!(
        "poseidon-test-rootfs-{}-{nanos}",
        std::process::id()
    ))
}

/// Lays out the test image's root filesystem in `dir`.
fn build_rootfs(dir: &Path, busybox: &Path) -> Result<(), String> {
    let io = |what: &str, e: std::io::Error| format!("building the test rootfs: {what}: {e}");
    for sub in ["bin", "www", "tmp", "etc"] {
        std::fs::create_dir_all(dir.join(sub)).map_err(|e| io(sub, e))?;
    }
    std::fs::copy(busybox, dir.join("bin/busybox")).map_err(|e| io("copying busybox", e))?;
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet))
            .map_err(|e| io(applet, e))?;
    }
    std::fs::write(dir.join("www/index.html"), format!("{TEST_PAGE}\n"))
        .map_err(|e| io("index.html", e))?;
    // Some applets look users up; a minimal passwd keeps them quiet.
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n")
        .map_err(|e| io("passwd", e))?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("tmp"), std::fs::Permissions::from_mode(0o1777))
            .map_err(|e| io("tmp", e))?;
    }
    Ok(())
}

/// Tars `dir` with the system's `tar`, owned by root whoever runs the tests.
async fn tar_dir(dir: &Path) -> Result<Vec<u8>, String> {
    let output = tokio::process::Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(["--owner=0", "--group=0", "--numeric-owner", "-cf", "-", "."])
        .output()
        .await
        .map_err(|e| format!("running tar failed: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "tar failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(output.stdout)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ_and_are_valid_docker_names() {
        let a = unique_name("exit code");
        let b = unique_name("exit code");
        assert_ne!(a, b);
        assert!(a.starts_with("poseidon-test-exit-code-"));
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)));
    }

    #[test]
    fn elf_interpreters_are_detected() {
        assert!(!has_interpreter(b"not an elf"));
        // /bin/sh on any Debian host is dynamic; the check must see that.
        if let Ok(sh) = std::fs::read("/bin/sh") {
            assert!(has_interpreter(&sh));
        }
    }
}
