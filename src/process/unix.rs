use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use super::watched::Watched;
use super::{Pipe, Signal, Start, Usage};

/// A running command and its process group (the group id is the leader's pid).
pub struct Child {
    pid: i32,
    exit: ExitWatch,
    /// This side's copies of the pipes' write ends, closed once the leader has exited: its exit
    /// then wakes the JavaScript thread once, not first for each pipe that it closes on its
    /// way out, each time taking the CPU from the exiting command.
    writers: Vec<OwnedFd>,
    /// The pipes, to be read as soon as the writers are closed (see `Watched::expect_ready`).
    readers: Vec<super::watched::Slot>,
    /// Until `finish`, dropping the child kills its group (a run cancelled from outside).
    finished: bool,
}

impl Child {
    pub fn spawn(start: &Start<'_>) -> io::Result<(Child, Option<Pipe>, Option<Pipe>)> {
        let (out, out_writer) = pipe()?;
        let (err, err_writer) = pipe()?;
        let spawned = super::spawn::spawn(start, &out_writer, &err_writer)?;
        let pid = spawned.pid;
        let mut child = Child {
            pid,
            exit: ExitWatch::new(pid, spawned.pidfd),
            writers: vec![out_writer, err_writer],
            readers: Vec::new(),
            finished: false,
        };
        let (out, err) = (Watched::new(out)?, Watched::new(err)?);
        child
            .readers
            .extend([&out, &err].into_iter().filter_map(|w| w.slot()));
        // Only for the run on the JavaScript thread (one at a time): runs on tokio's workers,
        // a hundred at once, would hold two more descriptors each.
        if child.readers.is_empty() {
            child.writers.clear();
        }
        Ok((child, Some(Box::new(out)), Some(Box::new(err))))
    }

    /// Resolves once the leader has exited (it stays unreaped until `finish`). Cancel-safe.
    pub async fn exited(&mut self) {
        match &mut self.exit {
            // An exited process stays readable.
            ExitWatch::Pidfd(fd) => fd.readable().await,
            ExitWatch::Poll { pid, interval } => loop {
                if has_exited(*pid) {
                    break;
                }
                tokio::time::sleep(*interval).await;
                *interval = (*interval * 2).min(Duration::from_millis(25));
            },
        }
        self.writers.clear();
        // Most often at their end now: read them at once, not after another turn of the loop.
        self.readers.drain(..).for_each(|slot| slot.expect_ready());
    }

    pub fn group(&self) -> i32 {
        self.pid
    }

    pub fn signal(&mut self, signal: Signal) {
        signal_group(self.pid, signal);
    }

    /// Kill what is left of the group, then reap the leader: till then a zombie, its pid (the
    /// group id) cannot name an unrelated process. Call after `exited`.
    pub fn finish(mut self) -> io::Result<(ExitStatus, Option<Usage>)> {
        self.finished = true;
        release(self.pid).map(|(status, usage)| (status, Some(usage)))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.finished {
            let pid = self.pid;
            // The leader dies at once from SIGKILL; reap it off this thread all the same.
            signal_group(pid, Signal::KILL);
            std::thread::spawn(move || release(pid));
        }
    }
}

/// Both ends close on `exec`; the command gets its own copy of the write end.
pub(super) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into the array on success.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn release(pid: i32) -> io::Result<(ExitStatus, Usage)> {
    signal_group(pid, Signal::KILL);
    reap(pid)
}

pub fn signal_group(pgid: i32, signal: Signal) -> bool {
    // SAFETY: kill(2) with a negative pid addresses a process group; no memory is involved.
    unsafe { libc::kill(-pgid, signal.0) };
    true
}

/// Ready once a child has exited, unreaped (see `Child::finish`): a pidfd needs Linux 5.3+.
enum ExitWatch {
    Pidfd(Watched),
    Poll { pid: i32, interval: Duration },
}

impl ExitWatch {
    /// `pidfd` when the spawn gave one, else one opened here.
    fn new(pid: i32, pidfd: Option<OwnedFd>) -> Self {
        #[cfg(target_os = "linux")]
        let pidfd = pidfd.or_else(|| {
            // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
            // SAFETY: the descriptor was just created and is owned by nobody else.
            (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
        });
        if let Some(fd) = pidfd.and_then(|fd| Watched::new(fd).ok()) {
            return ExitWatch::Pidfd(fd);
        }
        let interval = Duration::from_micros(500);
        ExitWatch::Poll { pid, interval }
    }
}

fn has_exited(pid: i32) -> bool {
    // SAFETY: siginfo_t is plain data; waitid fills it in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: valid pointer to a zeroed siginfo_t.
    let rc = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) };
    // With WNOHANG, si_pid stays 0 while the child runs; an error means it is gone already.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: waitid filled in the child fields (or left the zeroed struct).
    let pid = unsafe { info.si_pid() };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let pid = info.si_pid;
    rc != 0 || pid != 0
}

pub(super) fn reap(pid: i32) -> io::Result<(ExitStatus, Usage)> {
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to a status int and a rusage.
    while unsafe { libc::wait4(pid, &mut status, 0, &mut ru) } != pid {
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    let ms = |tv: libc::timeval| tv.tv_sec as f64 * 1000.0 + tv.tv_usec as f64 / 1000.0;
    // Linux and most BSDs report ru_maxrss in KiB; macOS reports bytes.
    let rss_unit = if cfg!(target_os = "macos") { 1 } else { 1024 };
    let usage = Usage {
        max_rss_bytes: (ru.ru_maxrss as u64).saturating_mul(rss_unit),
        user_ms: ms(ru.ru_utime),
        system_ms: ms(ru.ru_stime),
    };
    Ok((ExitStatus::from_raw(status), usage))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::watched::Reactor;
    use std::future::Future;
    use std::task::{Context, Poll, Waker};
    use tokio::io::AsyncReadExt;

    fn start(args: &[String]) -> Start<'_> {
        Start {
            program: "sh",
            path: std::path::Path::new("/bin/sh"),
            args,
            cwd: std::path::Path::new("/"),
            env: None,
            marker: None,
        }
    }

    /// Polls `f` as the JavaScript thread would, turning `reactor`, for at most `limit`.
    fn drive<T>(reactor: &Reactor, f: impl Future<Output = T>, limit: Duration) -> Option<T> {
        let mut f = std::pin::pin!(f);
        let mut cx = Context::from_waker(Waker::noop());
        let until = std::time::Instant::now() + limit;
        while std::time::Instant::now() < until {
            if let Poll::Ready(value) = f.as_mut().poll(&mut cx) {
                return Some(value);
            }
            reactor.turn();
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// On the JavaScript thread the pipes end with the leader, not when it closes them: its
    /// exit wakes that thread once.
    #[test]
    fn the_pipes_end_no_sooner_than_the_leader() {
        let args = ["-c".to_owned(), "exec >&- 2>&-; sleep 0.3".to_owned()];
        let reactor = Reactor::new().unwrap();
        let (mut child, stdout, stderr) = reactor.enter(|| Child::spawn(&start(&args))).unwrap();
        let (mut stdout, mut stderr) = (stdout.unwrap(), stderr.unwrap());
        let mut buf = [0; 16];
        let early = drive(&reactor, stdout.read(&mut buf), Duration::from_millis(150));
        assert!(
            early.is_none(),
            "stdout ended while its writer ran: {early:?}"
        );
        drive(&reactor, child.exited(), Duration::from_secs(10)).unwrap();
        let forever = Duration::from_secs(10);
        assert_eq!(
            drive(&reactor, stdout.read(&mut buf), forever)
                .unwrap()
                .unwrap(),
            0
        );
        assert_eq!(
            drive(&reactor, stderr.read(&mut buf), forever)
                .unwrap()
                .unwrap(),
            0
        );
        assert!(child.finish().unwrap().0.success());
    }

    /// On tokio's workers (a hundred runs at once) no copies are held: three descriptors a run.
    #[tokio::test]
    async fn runs_on_tokio_hold_no_copies() {
        let args = ["-c".to_owned(), "exec >&- 2>&-; sleep 0.3".to_owned()];
        let (mut child, stdout, _stderr) = Child::spawn(&start(&args)).unwrap();
        let mut stdout = stdout.unwrap();
        let mut buf = [0; 16];
        let early = tokio::time::timeout(Duration::from_secs(10), stdout.read(&mut buf)).await;
        assert_eq!(
            early.unwrap().unwrap(),
            0,
            "stdout ends when the command closes it"
        );
        assert!(child.writers.is_empty());
        child.exited().await;
        assert!(child.finish().unwrap().0.success());
    }
}
