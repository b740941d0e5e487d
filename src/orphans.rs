//! No run outlives this process (README.md, "Design"), unless `/bin/sh` or `grep` is missing.

// The portable process backend (a test-only feature on Unix) has no process groups to watch.
#![cfg_attr(feature = "portable-process", allow(dead_code))]

use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use crate::lock;

pub const MARKER: &str = "HELIOS_WORKER_RUNTIME_WATCH";

/// Once stdin ends, kills (twice, for a process forked meanwhile) each process holding token
/// `$1`, and its group. Ignores terminal and container signals: it must outlive its parent.
const SCRIPT: &str = include_str!("orphan-watcher.sh");

struct Watcher {
    /// Never written: its closing, when this process dies, is the message.
    pipe: ChildStdin,
    pid: u32,
}

type Slot = Mutex<Option<Watcher>>;

static WATCHER: Slot = Mutex::new(None);

/// This process's token: its pid and start time, unique on this machine.
static TOKEN: LazyLock<String> = LazyLock::new(|| {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{}-{stamp:x}", std::process::id())
});

/// The marker to put in a command's environment, once a watcher is there to honour it.
pub fn marker() -> Option<(&'static str, &'static str)> {
    let mut guard = lock(&WATCHER);
    if guard.is_none() {
        *guard = start(&TOKEN, &WATCHER);
    }
    guard.as_ref().map(|_| (MARKER, TOKEN.as_str()))
}

/// Start a watcher; should it die while this process lives, a thread starts another.
fn start(token: &'static str, slot: &'static Slot) -> Option<Watcher> {
    let (mut child, pipe) = spawn_watcher(token)?;
    let pid = child.id();
    // Without the thread only the restart is lost; keep the pipe anyway: dropping it fires it.
    let _ = std::thread::Builder::new()
        .name("helios-orphan-watcher".into())
        .spawn(move || loop {
            let _ = child.wait();
            // Not in a tight loop, should a watcher die as soon as it starts.
            std::thread::sleep(Duration::from_millis(10));
            let mut guard = lock(slot);
            // Released on purpose (`None`): nothing left to watch.
            let Some(watcher) = guard.as_mut() else {
                return;
            };
            let Some((next, pipe)) = spawn_watcher(token) else {
                guard.take();
                return;
            };
            (watcher.pipe, watcher.pid, child) = (pipe, next.id(), next);
        });
    Some(Watcher { pipe, pid })
}

fn spawn_watcher(token: &str) -> Option<(Child, ChildStdin)> {
    let mut command = Command::new("/bin/sh");
    command
        .args(["-c", SCRIPT, "helios-worker-runtime-watcher", token])
        // Not this process's environment (Node may be writing it); unmarked, not to kill itself.
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Its own group, so that a signal to this process's group does not take it too.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command.spawn().ok()?;
    let pipe = child.stdin.take()?;
    Some((child, pipe))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn alive(pid: i32) -> bool {
        // A zombie (dead, not yet reaped) does not count.
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z"))
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(done(), "{what}");
    }

    #[test]
    fn a_killed_watcher_is_replaced_and_the_replacement_kills_marked_processes() {
        // A private slot and token, so that the shared watcher is left alone.
        static SLOT: Slot = Mutex::new(None);
        let token = "test-token-for-the-orphan-watcher";
        *lock(&SLOT) = start(token, &SLOT);
        let first = lock(&SLOT)
            .as_ref()
            .map(|w| w.pid)
            .expect("a watcher starts");
        let mut sleeper = Command::new("sleep");
        sleeper.arg("30");
        std::os::unix::process::CommandExt::process_group(&mut sleeper, 0);
        let mut marked = sleeper.env(MARKER, token).spawn().unwrap();
        let mut other = sleeper.env(MARKER, "another-process").spawn().unwrap();

        // SAFETY: kill(2) on the watcher's pid; no memory is involved.
        unsafe { libc::kill(first as i32, libc::SIGKILL) };
        let pid = || lock(&SLOT).as_ref().map_or(first, |w| w.pid);
        wait_for("another watcher took over", || {
            pid() != first && alive(pid() as i32)
        });

        // This process "dies": the pipe closes.
        lock(&SLOT).take();
        wait_for("the marked process was killed", || {
            marked.try_wait().unwrap().is_some()
        });
        assert!(
            alive(other.id() as i32),
            "an unmarked process was left alone"
        );
        other.kill().unwrap();
        other.wait().unwrap();
    }

    #[test]
    fn a_process_name_crafted_to_look_like_stat_fields_cannot_aim_the_watcher_elsewhere() {
        static SLOT: Slot = Mutex::new(None);
        let token = "test-token-for-hostile-names";
        let mut group = Command::new("sleep");
        group.arg("30");
        std::os::unix::process::CommandExt::process_group(&mut group, 0);
        let mut victim = group.spawn().unwrap();
        // Its name (comm) claims the victim's group as its own, across a newline.
        let name = format!("a) S 1 {}\n", victim.id());
        let mut marked = Command::new("python3");
        marked
            .args(["-c", "import ctypes, sys, time; ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0); print(flush=True); time.sleep(30)"])
            .arg(&name)
            .env(MARKER, token)
            .stdout(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut marked, 0);
        let Ok(mut marked) = marked.spawn() else {
            eprintln!("skipped: no python3 to set a process name with");
            victim.kill().unwrap();
            victim.wait().unwrap();
            return;
        };
        // Wait until it has renamed itself.
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(marked.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        *lock(&SLOT) = start(token, &SLOT);
        lock(&SLOT).take();
        wait_for("the marked process was killed", || {
            marked.try_wait().unwrap().is_some()
        });
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            alive(victim.id() as i32),
            "the group its name pointed at was left alone"
        );
        victim.kill().unwrap();
        victim.wait().unwrap();
    }
}
