mod output;
mod signal;
#[cfg(all(unix, not(feature = "portable-process")))]
mod spawn;
#[cfg(any(not(unix), feature = "portable-process"))]
#[path = "portable.rs"]
mod sys;
#[cfg(all(unix, not(feature = "portable-process")))]
#[path = "unix.rs"]
mod sys;
#[cfg(all(target_os = "linux", not(feature = "portable-process")))]
mod vfork;
#[cfg(all(unix, not(feature = "portable-process")))]
pub mod watched;

use std::ffi::OsString;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use crate::error::Error;
pub use output::{Queued, TailBuffer, Utf8Stream};
pub use signal::Signal;

/// Output is read this long after exit, for helpers that flush late; then the group is killed.
pub const DRAIN_GRACE: Duration = Duration::from_millis(1000);
/// Then how long the pipes may take to close (a process outside the group may hold them).
const DRAIN_AFTER_KILL: Duration = Duration::from_millis(250);
/// Read buffers start small (most commands say little, and hundreds may run) and grow.
const READ_BUFFER_FIRST: usize = 4 * 1024;
const READ_BUFFER_MAX: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

type Pipe = Box<dyn tokio::io::AsyncRead + Send + Unpin>;

/// Past this much output waiting for the callbacks, pipes are not read: the command blocks.
pub const OUTPUT_QUEUE_BYTES: usize = 1024 * 1024;

/// `piece` must not block; reading waits while `queued` is full; `flush` waits for delivery.
pub trait OutputSink: Send + Sync {
    fn piece(&self, stream: Stream, text: String);
    fn queued(&self) -> &Queued;
    fn flush(&self) -> BoxFuture<'_, ()>;
}

#[derive(Debug, Clone)]
pub struct Controls {
    pub timeout: Option<Duration>,
    pub kill_signal: Signal,
    pub kill_grace: Duration,
    pub max_buffer: usize,
    /// From `runtime::environment`; `None` (tests only) inherits this process's.
    pub env: Option<Vec<(OsString, OsString)>>,
}

pub fn millis(ms: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(ms / 1000.0).ok()
}

/// A time limit in milliseconds; `None` for no limit: Infinity, or 0 as in child_process.
pub fn limit(ms: f64) -> Option<Duration> {
    millis(ms).filter(|t| !t.is_zero())
}

impl Default for Controls {
    fn default() -> Self {
        Controls {
            timeout: None,
            kill_signal: Signal::TERM,
            kill_grace: Duration::from_millis(5000),
            max_buffer: 16 * 1024 * 1024,
            env: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub max_rss_bytes: u64,
    pub user_ms: f64,
    pub system_ms: f64,
}

#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub exit_code: i32,
    pub signal: Option<Signal>,
    pub stdout: String,
    pub stderr: String,
    pub duration: Duration,
    pub timed_out: bool,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub usage: Option<Usage>,
    pub output_path: Option<PathBuf>,
    pub output_bytes: Option<u64>,
}

/// What `sys::Child::spawn` starts: `program` as the command wrote it (its `argv[0]`, as in
/// Node), found at `path`.
pub struct Start<'a> {
    pub program: &'a str,
    pub path: &'a Path,
    pub args: &'a [String],
    pub cwd: &'a Path,
    /// `None` (tests only) inherits this process's.
    pub env: Option<&'a [(OsString, OsString)]>,
    /// A variable set over `env` (see `orphans`).
    pub marker: Option<(&'a str, &'a str)>,
}

pub struct Command<'a> {
    pub program: &'a str,
    pub args: &'a [String],
    pub cwd: &'a Path,
    pub controls: &'a Controls,
    pub sink: Option<&'a dyn OutputSink>,
    pub cancel: &'a CancellationToken,
    pub group: &'a Group,
}

/// The command's process group as seen from outside its run, for signals sent from there.
#[derive(Debug, Default)]
pub struct Group {
    /// Its id while the command runs, 0 otherwise.
    id: AtomicI32,
    /// Until then the group is not drain-killed: a stop passed on with a grace gets all of it.
    grace_until: Mutex<Option<Instant>>,
}

impl Group {
    /// Signal the group, with `grace` to end; `false` when not running, or without groups.
    pub fn signal(&self, signal: Signal, grace: Duration) -> bool {
        let id = self.id.load(Ordering::SeqCst);
        if id <= 0 || !sys::signal_group(id, signal) {
            return false;
        }
        // Past what an `Instant` can hold, a grace is as good as for ever.
        let grace = grace.min(Duration::from_secs(u32::MAX.into()));
        let mut until = crate::lock(&self.grace_until);
        *until = (*until).max(Some(Instant::now() + grace));
        true
    }

    fn grace_until(&self) -> Option<Instant> {
        crate::lock(&self.grace_until).filter(|&until| until > Instant::now())
    }
}

struct Capture<'a> {
    pipe: Option<Pipe>,
    /// Read into spare capacity: no zeroing of buffers most runs barely touch.
    buf: Vec<u8>,
    kept: TailBuffer,
    decoder: Utf8Stream,
    stream: Stream,
    sink: Option<&'a dyn OutputSink>,
}

impl Capture<'_> {
    /// Read once the sink can take more: `false` at the end (or an error); pending once closed.
    async fn read(&mut self) -> bool {
        let Some(pipe) = &mut self.pipe else {
            return std::future::pending().await;
        };
        if let Some(sink) = self.sink {
            sink.queued().ready().await;
        }
        if self.buf.len() == self.buf.capacity() && self.buf.capacity() < READ_BUFFER_MAX {
            self.buf.reserve_exact(READ_BUFFER_MAX - self.buf.len());
        }
        self.buf.clear();
        matches!(pipe.read_buf(&mut self.buf).await, Ok(n) if n > 0)
    }

    fn accept(&mut self, more: bool) {
        match more {
            true => self.kept.push(&self.buf),
            false => self.pipe = None,
        }
        let Some(sink) = self.sink else { return };
        let text = match more {
            true => self.decoder.decode(&self.buf),
            false => self.decoder.finish(),
        };
        if !text.is_empty() {
            sink.piece(self.stream, text);
        }
    }
}

pub async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// Errors are for what prevented the run (spawn, cancellation); a non-zero exit is an Outcome.
pub async fn run(cmd: Command<'_>) -> Result<Outcome, Error> {
    let controls = cmd.controls;
    let path = program_path(&cmd)?;
    let start = Start {
        program: cmd.program,
        path: &path,
        args: cmd.args,
        cwd: cmd.cwd,
        env: controls.env.as_deref(),
        // Marked, so that the command and its helpers die with this process (see `orphans`).
        #[cfg(all(unix, not(feature = "portable-process")))]
        marker: crate::orphans::marker(),
        #[cfg(any(not(unix), feature = "portable-process"))]
        marker: None,
    };
    let started = Instant::now();
    // Pipes that cannot be set up (the child is killed) read as Node's `spawn <program> EMFILE`.
    let (mut child, stdout, stderr) =
        sys::Child::spawn(&start).map_err(|e| Error::spawn(&e, cmd.program))?;
    // Cleared before the leader is reaped, after which its id may name another process.
    cmd.group.id.store(child.group(), Ordering::SeqCst);
    let capture = |pipe, stream| Capture {
        pipe,
        buf: Vec::with_capacity(READ_BUFFER_FIRST),
        kept: TailBuffer::new(controls.max_buffer),
        decoder: Utf8Stream::default(),
        stream,
        sink: cmd.sink,
    };
    let mut out = capture(stdout, Stream::Stdout);
    let mut err = capture(stderr, Stream::Stderr);

    let timeout_at = controls.timeout.and_then(|t| started.checked_add(t));
    let mut timed_out = false;
    let mut hard_kill_at: Option<Instant> = None;
    let mut exited_at: Option<Instant> = None;
    let mut drain_until: Option<Instant> = None;
    let mut drain_killed = false;

    while exited_at.is_none() || out.pipe.is_some() || err.pipe.is_some() {
        tokio::select! {
            biased;
            _ = cmd.cancel.cancelled() => {
                child.signal(Signal::KILL);
                if exited_at.is_none() {
                    child.exited().await;
                }
                cmd.group.id.store(0, Ordering::SeqCst);
                let _ = child.finish();
                return Err(Error::Aborted);
            }
            more = out.read() => out.accept(more),
            more = err.read() => err.accept(more),
            _ = child.exited(), if exited_at.is_none() => {
                let now = Instant::now();
                exited_at = Some(now);
                drain_until = Some(now + DRAIN_GRACE);
            }
            _ = until(timeout_at), if !timed_out && exited_at.is_none() => {
                timed_out = true;
                child.signal(controls.kill_signal);
                if controls.kill_signal != Signal::KILL {
                    hard_kill_at = Instant::now().checked_add(controls.kill_grace);
                }
            }
            _ = until(hard_kill_at), if exited_at.is_none() => {
                hard_kill_at = None;
                child.signal(Signal::KILL);
            }
            _ = until(drain_until) => {
                if let Some(later) = cmd.group.grace_until() {
                    drain_until = Some(later);
                } else if cmd.sink.is_some_and(|sink| !sink.queued().is_ready()) {
                    // The callbacks are behind, not the pipes: the grace starts once they catch up.
                    drain_until = Some(Instant::now() + Duration::from_millis(50));
                } else if drain_killed {
                    out.accept(false);
                    err.accept(false);
                } else {
                    // A helper left behind holds a pipe: kill the group, collect its output.
                    drain_killed = true;
                    child.signal(Signal::KILL);
                    drain_until = Some(Instant::now() + DRAIN_AFTER_KILL);
                }
            }
        }
    }
    let exited_at = exited_at.unwrap_or_else(Instant::now);

    cmd.group.id.store(0, Ordering::SeqCst);
    let (status, usage) = child.finish().map_err(|e| {
        Error::Internal(format!(
            "cannot collect the exit status of {}: {e}",
            cmd.program
        ))
    })?;

    if let Some(sink) = cmd.sink {
        sink.flush().await;
    }
    #[cfg(unix)]
    let signal = std::os::unix::process::ExitStatusExt::signal(&status).map(Signal);
    #[cfg(not(unix))]
    let signal = None;
    let (exit_code, signal) = match signal {
        None if !timed_out => (status.code().unwrap_or(-1), None),
        None => (-1, Some(controls.kill_signal)),
        signal => (-1, signal),
    };
    Ok(Outcome {
        exit_code,
        signal,
        stdout_truncated: out.kept.truncated(),
        stderr_truncated: err.kept.truncated(),
        stdout: out.kept.into_string(),
        stderr: err.kept.into_string(),
        duration: exited_at - started,
        timed_out,
        usage,
        ..Outcome::default()
    })
}

/// Looked up in the command's `PATH` here, as libuv's `execvpe` would in the command: that of
/// its environment, or without one `/usr/bin:/bin`; this process's when it inherits it (tests).
fn program_path(cmd: &Command<'_>) -> Result<PathBuf, Error> {
    let inherited;
    let path = match &cmd.controls.env {
        Some(env) => (env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.as_os_str()))
        .or(cfg!(unix).then_some("/usr/bin:/bin".as_ref())),
        None => {
            inherited = std::env::var_os("PATH");
            inherited.as_deref()
        }
    };
    match path {
        Some(path) if !cmd.program.contains(std::path::is_separator) => {
            which::which_in(cmd.program, Some(path), cmd.cwd).map_err(|_| {
                // As execvp: EACCES if a directory has such a file (not runnable), else ENOENT.
                let found = std::env::split_paths(path).any(|dir| dir.join(cmd.program).is_file());
                #[cfg(unix)]
                let err = std::io::Error::from_raw_os_error(match found {
                    true => libc::EACCES,
                    false => libc::ENOENT,
                });
                #[cfg(not(unix))]
                let err = std::io::Error::from(match found {
                    true => std::io::ErrorKind::PermissionDenied,
                    false => std::io::ErrorKind::NotFound,
                });
                Error::spawn(&err, cmd.program)
            })
        }
        _ => Ok(cmd.program.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    async fn sh(script: &str, controls: &Controls) -> Result<Outcome, Error> {
        let args = args(&["-c", script]);
        run(Command {
            program: "sh",
            args: &args,
            cwd: Path::new("/"),
            controls,
            sink: None,
            cancel: &CancellationToken::new(),
            group: &Group::default(),
        })
        .await
    }

    #[tokio::test]
    async fn captures_both_streams_and_the_exit_code() {
        let o = sh("echo out; echo err >&2; exit 3", &Controls::default())
            .await
            .unwrap();
        assert_eq!(
            (o.exit_code, o.stdout.as_str(), o.stderr.as_str()),
            (3, "out\n", "err\n")
        );
        assert_eq!(o.signal, None);
        // Resource use comes from wait4, which the portable backend does not have.
        assert_eq!(
            o.usage.is_some(),
            cfg!(all(unix, not(feature = "portable-process")))
        );
    }

    #[tokio::test]
    async fn a_signal_gives_exit_code_minus_one() {
        let o = sh("kill -9 $$", &Controls::default()).await.unwrap();
        assert_eq!((o.exit_code, o.signal), (-1, Some(Signal::KILL)));
    }

    #[tokio::test]
    async fn unknown_programs_fail_like_node() {
        let err = run(Command {
            program: "no-such-program-xyz",
            args: &[],
            cwd: Path::new("/"),
            controls: &Controls::default(),
            sink: None,
            cancel: &CancellationToken::new(),
            group: &Group::default(),
        })
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), "spawn no-such-program-xyz ENOENT");
    }

    #[tokio::test]
    async fn a_timeout_escalates_to_sigkill() {
        let controls = Controls {
            timeout: Some(Duration::from_millis(100)),
            kill_grace: Duration::from_millis(100),
            ..Controls::default()
        };
        let o = sh("trap '' TERM; sleep 5", &controls).await.unwrap();
        assert!(o.timed_out);
        assert_eq!((o.exit_code, o.signal), (-1, Some(Signal::KILL)));
    }

    #[tokio::test]
    async fn a_helper_holding_the_pipe_does_not_hang_the_run() {
        // The helper would hold stdout for 10 minutes; the run must end long before the
        // test's own limit would give up on it.
        let controls = Controls::default();
        let run = sh("sleep 600 & echo $!", &controls);
        let o = tokio::time::timeout(Duration::from_secs(120), run)
            .await
            .expect("the run did not wait for the helper")
            .unwrap();
        let helper: i32 = o.stdout.trim().parse().unwrap();
        // Running, as opposed to gone or a zombie its new parent has yet to reap.
        let alive = || {
            std::fs::read_to_string(format!("/proc/{helper}/stat")).is_ok_and(|stat| {
                let state = stat
                    .rsplit(") ")
                    .next()
                    .and_then(|rest| rest.chars().next());
                !matches!(state, Some('Z' | 'X'))
            })
        };
        if cfg!(all(unix, not(feature = "portable-process"))) {
            let deadline = Instant::now() + Duration::from_secs(5);
            while alive() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            assert!(
                !alive(),
                "the helper, in the run's process group, was killed"
            );
        } else {
            // Without process groups the helper outlives the run (the documented limit).
            // SAFETY: kill(2) on the helper's pid; no memory is involved.
            unsafe { libc::kill(helper, libc::SIGKILL) };
        }
    }

    /// Run `sh -c script` with `group` published, alongside `meanwhile`.
    async fn sh_with_group(
        script: &str,
        token: &CancellationToken,
        group: &Group,
        meanwhile: impl Future<Output = ()>,
    ) -> Result<Outcome, Error> {
        let controls = Controls::default();
        let args = args(&["-c", script]);
        let command = Command {
            program: "sh",
            args: &args,
            cwd: Path::new("/"),
            controls: &controls,
            sink: None,
            cancel: token,
            group,
        };
        tokio::join!(run(command), meanwhile).0
    }

    #[tokio::test]
    async fn cancellation_kills_and_reports_aborted() {
        let (token, group) = (CancellationToken::new(), Group::default());
        let result = sh_with_group("sleep 30", &token, &group, async {
            // Proof that the command runs: its group is published.
            while group.id.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            token.cancel();
        })
        .await;
        assert!(matches!(result, Err(Error::Aborted)));
        assert_eq!(
            group.id.load(Ordering::SeqCst),
            0,
            "cleared before the reap"
        );
    }

    #[cfg(all(unix, not(feature = "portable-process")))]
    #[tokio::test]
    async fn a_stop_passed_on_with_a_grace_lets_a_helper_outlive_the_drain() {
        let dir = std::env::temp_dir().join(format!("hwr-grace-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ready, done) = (dir.join("ready"), dir.join("done"));
        // The shell dies of SIGTERM at once; its helper takes longer than DRAIN_GRACE to end.
        let script = format!(
            "(trap 'sleep 1.5; touch {done}; exit' TERM; touch {ready}; while :; do sleep 0.02; done) & wait",
            done = done.display(),
            ready = ready.display()
        );
        let (token, group) = (CancellationToken::new(), Group::default());
        let result = sh_with_group(&script, &token, &group, async {
            while !ready.exists() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert!(group.signal(Signal::TERM, Duration::from_secs(5)));
        })
        .await;
        let done_exists = done.exists();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(result.unwrap().signal, Some(Signal::TERM));
        assert!(done_exists, "the helper had its grace");
    }

    #[cfg(all(unix, not(feature = "portable-process")))]
    #[tokio::test]
    async fn a_signal_from_outside_reaches_the_running_group() {
        let dir = std::env::temp_dir().join(format!("hwr-signal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ready = dir.join("ready");
        let script = format!(
            "trap 'exit 7' USR1; touch '{}'; while :; do sleep 0.01; done",
            ready.display()
        );
        let (token, group) = (CancellationToken::new(), Group::default());
        let result = sh_with_group(&script, &token, &group, async {
            while !ready.exists() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // Signal 0 only checks the group; a grace past what an `Instant` holds is no panic.
            assert!(group.signal(Signal(0), Duration::MAX));
            assert!(group.signal(Signal(libc::SIGUSR1), Duration::ZERO));
        })
        .await;
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(result.unwrap().exit_code, 7, "the trap ran");
        assert_eq!(group.id.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn limits_too_far_for_an_instant_are_no_limits() {
        let controls = Controls {
            timeout: Some(Duration::MAX),
            ..Controls::default()
        };
        assert_eq!(sh("exit 3", &controls).await.unwrap().exit_code, 3);
        let controls = Controls {
            timeout: Some(Duration::from_millis(50)),
            kill_grace: Duration::MAX,
            ..Controls::default()
        };
        let o = sh("exec sleep 5", &controls).await.unwrap();
        assert!(o.timed_out);
    }

    #[tokio::test]
    async fn max_buffer_keeps_the_tail() {
        let controls = Controls {
            max_buffer: 10,
            ..Controls::default()
        };
        let o = sh("seq 1 1000", &controls).await.unwrap();
        assert!(o.stdout_truncated && !o.stderr_truncated);
        assert_eq!(o.stdout, "\n999\n1000\n");
    }

    #[tokio::test]
    async fn the_environment_is_exactly_the_one_given() {
        let controls = Controls {
            env: Some(vec![
                ("HWR_TEST_VAR".into(), "set".into()),
                ("PATH".into(), "/usr/bin:/bin".into()),
            ]),
            ..Controls::default()
        };
        let o = sh("echo $HWR_TEST_VAR:$PATH:${HOME-unset}", &controls)
            .await
            .unwrap();
        assert_eq!(
            o.stdout, "set:/usr/bin:/bin:unset\n",
            "exactly the given environment"
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn without_a_path_a_program_is_found_where_execvp_looks() {
        let controls = Controls {
            env: Some(vec![("HWR_TEST_VAR".into(), "set".into())]),
            ..Controls::default()
        };
        let o = sh("echo $HWR_TEST_VAR", &controls).await.unwrap();
        assert_eq!(o.stdout, "set\n");
    }
}
