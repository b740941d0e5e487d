//! No run outlives the process that started it.
//!
//! Every command runs in a process group of its own, and each live group is registered as an
//! empty file named after its id in a private directory. A small watcher process, started once
//! per process on first use, holds the read end of a pipe whose only write end this process
//! holds, and does nothing else. When this process dies — even by SIGKILL, when no code of ours
//! runs — the kernel closes that write end, the watcher's read returns end-of-file, and it
//! kills every group still registered, and with them the helpers the commands started.
//!
//! Registering costs a file creation and a removal per run, and never wakes the watcher.
//!
//! Why not `PR_SET_PDEATHSIG`: it fires when the *thread* that spawned the child exits (a
//! pooled worker thread, long before the process dies), it is not inherited by the command's
//! own children, and setting it needs a `pre_exec` hook, which makes every spawn a full
//! `fork` of this (large) process instead of a `posix_spawn`.
//!
//! The watcher is a POSIX shell script: every image that renders video has `/bin/sh`. Where
//! there is none (or no writable temporary directory), runs still work and still clean up
//! after themselves; only the parent-death guarantee is lost.

// The portable process backend (a test-only feature on Unix) has no process groups to watch.
#![cfg_attr(feature = "portable-process", allow(dead_code))]

use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

const SHELL: &str = "/bin/sh";

/// Waits for end-of-file on stdin, then kills the group of every file in the registry and
/// removes it. Terminal and container signals are ignored: the watcher must outlive its
/// parent to do its work.
const SCRIPT: &str = r#"trap '' INT TERM HUP QUIT
read -r _
for f in "$1"/*; do
  [ -e "$f" ] && kill -s KILL -- "-${f##*/}" 2>/dev/null
done
rm -rf "$1"
"#;

struct Watcher {
    child: Child,
    /// Never written: its closing, when this process dies, is the message.
    _pipe: ChildStdin,
    registry: PathBuf,
}

static WATCHER: Mutex<Option<Watcher>> = Mutex::new(None);

impl Watcher {
    fn start(registry: Option<PathBuf>) -> Option<Watcher> {
        let registry = match registry {
            Some(dir) => dir,
            None => {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos());
                let name = format!("helios-worker-runtime-{}-{stamp:x}", std::process::id());
                // Memory-backed when there is one: a file per run costs less there.
                [PathBuf::from("/dev/shm"), std::env::temp_dir()]
                    .into_iter()
                    .map(|base| base.join(&name))
                    .find(|dir| create_private_dir(dir).is_ok())?
            }
        };
        let mut command = Command::new(SHELL);
        command
            .args(["-c", SCRIPT, "helios-worker-runtime-watcher"])
            .arg(&registry)
            // Never read this process's environment from here: Node may be writing it.
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // Its own group, so that a signal to this process's group does not take it too.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let Ok(mut child) = command.spawn() else {
            let _ = std::fs::remove_dir(&registry);
            return None;
        };
        let pipe = child.stdin.take()?;
        Some(Watcher {
            child,
            _pipe: pipe,
            registry,
        })
    }

    /// Whether the watcher is still there to do its job (someone may have killed it).
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// The registry directory of a running watcher, starting (or restarting) it when needed.
fn registry() -> Option<PathBuf> {
    let mut guard = WATCHER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(watcher) = guard.as_mut() {
        if watcher.alive() {
            return Some(watcher.registry.clone());
        }
        // Restarted on the same registry, so the groups already in it stay covered.
        let registry = watcher.registry.clone();
        *guard = Watcher::start(Some(registry));
    } else {
        *guard = Watcher::start(None);
    }
    guard.as_ref().map(|w| w.registry.clone())
}

/// Register the process group `pgid`: it is killed if this process dies.
pub fn watch(pgid: i32) {
    if let Some(dir) = registry() {
        let _ = std::fs::File::create(dir.join(pgid.to_string()));
    }
}

/// Forget `pgid`; called once the group has been killed, before its leader is reaped (so the
/// id cannot have been reused meanwhile).
pub fn unwatch(pgid: i32) {
    let dir = WATCHER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .as_ref()
        .map(|w| w.registry.clone());
    if let Some(dir) = dir {
        let _ = std::fs::remove_file(dir.join(pgid.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn alive(pid: i32) -> bool {
        // SAFETY: signal 0 only checks for existence.
        unsafe { libc::kill(pid, 0) == 0 }
    }

    #[test]
    fn the_watcher_kills_registered_groups_at_end_of_file() {
        // A private watcher, so that the shared one is left alone.
        let mut w = Watcher::start(None).expect("a watcher starts");
        let mut group = Command::new("sleep");
        group.arg("30");
        std::os::unix::process::CommandExt::process_group(&mut group, 0);
        let mut kept = group.spawn().unwrap();
        let mut released = group.spawn().unwrap();
        std::fs::File::create(w.registry.join(kept.id().to_string())).unwrap();
        std::fs::File::create(w.registry.join(released.id().to_string())).unwrap();
        std::fs::remove_file(w.registry.join(released.id().to_string())).unwrap();
        assert!(w.alive());
        drop(w._pipe);
        w.child.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while kept.try_wait().unwrap().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            kept.try_wait().unwrap().is_some(),
            "the registered group was killed"
        );
        assert!(
            alive(released.id() as i32),
            "the unregistered group was left alone"
        );
        assert!(!w.registry.exists(), "the registry is removed");
        released.kill().unwrap();
        released.wait().unwrap();
    }
}
