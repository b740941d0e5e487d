//! No run outlives the process that started it.
//!
//! Every command runs in a process group of its own, and each live group is registered as an
//! empty file named after its id in a private directory. A small watcher process, started once
//! per process on first use, holds the read end of a pipe whose only write end this process
//! holds, and does nothing else. When this process dies — even by SIGKILL, when no code of ours
//! runs — the kernel closes that write end, the watcher's read returns end-of-file, and it
//! kills every group still registered, and with them the helpers the commands started.
//!
//! Registering costs a file creation and a removal per run, and never wakes the watcher. A
//! thread waits for the watcher; should it die while this process lives (someone killed it),
//! the thread starts another on the same registry, so the runs already in flight stay covered.
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
use std::time::Duration;

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

/// The running watcher: the write end of its pipe and the registry it watches.
struct Watcher {
    /// Never written: its closing, when this process dies, is the message.
    pipe: ChildStdin,
    registry: PathBuf,
    pid: u32,
}

type Slot = Mutex<Option<Watcher>>;

static WATCHER: Slot = Mutex::new(None);

fn lock(slot: &Slot) -> std::sync::MutexGuard<'_, Option<Watcher>> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Start a watcher on `registry` and keep it in `slot`. A thread waits for it; should it die
/// while this process lives (someone killed it), the thread starts another on the same
/// registry, so the groups already registered stay covered.
fn start(registry: PathBuf, slot: &'static Slot) -> Option<Watcher> {
    let (child, pipe) = spawn_watcher(&registry)?;
    let pid = child.id();
    let dir = registry.clone();
    let thread = std::thread::Builder::new()
        .name("helios-orphan-watcher".into())
        .spawn(move || keep_watching(child, dir, slot));
    if thread.is_err() {
        let _ = std::fs::remove_dir(&registry);
        return None;
    }
    Some(Watcher {
        pipe,
        registry,
        pid,
    })
}

fn keep_watching(mut child: Child, registry: PathBuf, slot: &'static Slot) {
    loop {
        let _ = child.wait();
        // Not in a tight loop, should a watcher die as soon as it starts.
        std::thread::sleep(Duration::from_millis(10));
        let mut guard = lock(slot);
        let Some(watcher) = guard.as_mut().filter(|w| w.registry == registry) else {
            return; // Released on purpose: nothing left to watch.
        };
        match spawn_watcher(&registry) {
            Some((next, pipe)) => {
                watcher.pipe = pipe;
                watcher.pid = next.id();
                child = next;
            }
            None => {
                guard.take();
                return;
            }
        }
    }
}

fn spawn_watcher(registry: &Path) -> Option<(Child, ChildStdin)> {
    let mut command = Command::new(SHELL);
    command
        .args(["-c", SCRIPT, "helios-worker-runtime-watcher"])
        .arg(registry)
        // Never read this process's environment from here: Node may be writing it.
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Its own group, so that a signal to this process's group does not take it too.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().ok()?;
    let pipe = child.stdin.take()?;
    Some((child, pipe))
}

/// A new private registry directory: memory-backed when there is one (a file per run costs
/// less there), else `/tmp` (not `$TMPDIR`: the environment is Node's to write).
fn new_registry() -> Option<PathBuf> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!("helios-worker-runtime-{}-{stamp:x}", std::process::id());
    ["/dev/shm", "/tmp"]
        .into_iter()
        .map(|base| Path::new(base).join(&name))
        .find(|dir| create_private_dir(dir).is_ok())
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// The registry directory of the running watcher, starting one when there is none.
fn registry() -> Option<PathBuf> {
    let mut guard = lock(&WATCHER);
    if guard.is_none() {
        *guard = start(new_registry()?, &WATCHER);
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
    let dir = lock(&WATCHER).as_ref().map(|w| w.registry.clone());
    if let Some(dir) = dir {
        let _ = std::fs::remove_file(dir.join(pgid.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn alive(pid: i32) -> bool {
        // SAFETY: signal 0 only checks that the process exists; no memory is involved.
        unsafe { libc::kill(pid, 0) == 0 }
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(done(), "{what}");
    }

    #[test]
    fn a_killed_watcher_is_replaced_and_the_replacement_kills_registered_groups() {
        // A private slot and registry, so that the shared watcher is left alone.
        static SLOT: Slot = Mutex::new(None);
        let registry = new_registry().expect("a registry");
        *lock(&SLOT) = start(registry.clone(), &SLOT);
        let first = lock(&SLOT)
            .as_ref()
            .map(|w| w.pid)
            .expect("a watcher starts");
        let mut group = Command::new("sleep");
        group.arg("30");
        std::os::unix::process::CommandExt::process_group(&mut group, 0);
        let mut kept = group.spawn().unwrap();
        let mut released = group.spawn().unwrap();
        std::fs::File::create(registry.join(kept.id().to_string())).unwrap();
        std::fs::File::create(registry.join(released.id().to_string())).unwrap();
        std::fs::remove_file(registry.join(released.id().to_string())).unwrap();

        // SAFETY: kill(2) on the watcher's pid; no memory is involved.
        unsafe { libc::kill(first as i32, libc::SIGKILL) };
        let pid = || lock(&SLOT).as_ref().map_or(first, |w| w.pid);
        wait_for("another watcher took over", || {
            pid() != first && alive(pid() as i32)
        });

        // This process "dies": the pipe closes.
        let last = pid();
        lock(&SLOT).take();
        wait_for("the replacement ended", || {
            !alive(last as i32) || {
                // A zombie until the thread reaps it.
                std::fs::read_to_string(format!("/proc/{last}/stat"))
                    .is_ok_and(|s| s.contains(") Z"))
            }
        });
        wait_for("the registered group was killed", || {
            kept.try_wait().unwrap().is_some()
        });
        assert!(
            alive(released.id() as i32),
            "the unregistered group was left alone"
        );
        wait_for("the registry is removed", || !registry.exists());
        released.kill().unwrap();
        released.wait().unwrap();
    }
}
