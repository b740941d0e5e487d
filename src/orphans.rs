//! No run outlives the process that started it.
//!
//! Every command runs in a process group of its own. A small watcher process, started once
//! per process on first use, reads `+<pgid>` / `-<pgid>` lines from a pipe whose only write
//! end this process holds. When this process dies — even by SIGKILL, when no code of ours
//! runs — the kernel closes that write end, the watcher reads end-of-file and kills every
//! group still registered, and with them the helpers the commands started.
//!
//! Why not `PR_SET_PDEATHSIG`: it fires when the *thread* that spawned the child exits (a
//! pooled worker thread, long before the process dies), it is not inherited by the command's
//! own children, and setting it needs a `pre_exec` hook, which makes every spawn a full
//! `fork` of this (large) process instead of a `posix_spawn`. The watcher costs one spawn per
//! process and two short writes per run.
//!
//! The watcher is a POSIX shell script: every image that renders video has `/bin/sh`. Where
//! there is none, runs still work and still clean up after themselves; only the
//! parent-death guarantee is lost.

use std::io::Write;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;

const SHELL: &str = "/bin/sh";

/// Registered groups are kept in a space-separated string; removal uses parameter expansion
/// so that the watcher forks nothing per run. Terminal and container signals are ignored:
/// the watcher must outlive its parent to do its work, and ends by itself on end-of-file.
const SCRIPT: &str = r#"trap '' INT TERM HUP QUIT
groups=' '
while IFS= read -r line; do
  case $line in
    +*) groups="$groups${line#+} " ;;
    -*) g=${line#-}
        case $groups in *" $g "*) groups="${groups%% $g *} ${groups#* $g }" ;; esac ;;
  esac
done
for g in $groups; do kill -s KILL -- "-$g" 2>/dev/null; done
"#;

struct Watcher {
    child: Child,
    stdin: ChildStdin,
}

static WATCHER: Mutex<Option<Watcher>> = Mutex::new(None);

fn start() -> Option<Watcher> {
    let mut command = Command::new(SHELL);
    command
        .args(["-c", SCRIPT, "helios-worker-runtime-watcher"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Its own group, so that a signal to this process's group does not take it too.
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().ok()?;
    let stdin = child.stdin.take()?;
    Some(Watcher { child, stdin })
}

fn send(line: &str) {
    let mut guard = WATCHER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for _ in 0..2 {
        if guard.is_none() {
            *guard = start();
        }
        let Some(watcher) = guard.as_mut() else {
            return;
        };
        // One write of a short line is atomic on a pipe.
        if watcher.stdin.write_all(line.as_bytes()).is_ok() {
            return;
        }
        // The watcher died (someone killed it): reap it and start another.
        if let Some(mut dead) = guard.take() {
            let _ = dead.child.kill();
            let _ = dead.child.wait();
        }
    }
}

/// Register the process group `pgid`: it is killed if this process dies.
pub fn watch(pgid: i32) {
    send(&format!("+{pgid}\n"));
}

/// Forget `pgid`; called once the group has been killed, before its leader is reaped.
pub fn unwatch(pgid: i32) {
    send(&format!("-{pgid}\n"));
}

/// The watcher's pid, for tests.
pub fn watcher_pid() -> Option<u32> {
    WATCHER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .as_ref()
        .map(|w| w.child.id())
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
        let mut w = start().expect("a watcher starts");
        let mut group = Command::new("sleep");
        group.arg("30");
        std::os::unix::process::CommandExt::process_group(&mut group, 0);
        let mut kept = group.spawn().unwrap();
        let mut released = group.spawn().unwrap();
        writeln!(w.stdin, "+{}", kept.id()).unwrap();
        writeln!(w.stdin, "+{}", released.id()).unwrap();
        writeln!(w.stdin, "-{}", released.id()).unwrap();
        drop(w.stdin);
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
        released.kill().unwrap();
        released.wait().unwrap();
    }
}
