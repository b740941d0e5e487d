use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use super::watched::Watched;
use super::{Pipe, Signal, Usage};

/// A running command and its process group (the group id is the leader's pid).
pub struct Child {
    pid: i32,
    exit: ExitWatch,
    /// Until `finish`, dropping the child kills its group (a run cancelled from outside).
    finished: bool,
}

impl Child {
    pub fn spawn(
        mut command: std::process::Command,
    ) -> io::Result<(Child, Option<Pipe>, Option<Pipe>)> {
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut spawned = command.spawn()?;
        let pid = spawned.id() as i32;
        let child = Child {
            pid,
            exit: ExitWatch::new(pid),
            finished: false,
        };
        let pipe = |fd: OwnedFd| io::Result::Ok(Box::new(Watched::new(fd)?) as Pipe);
        let stdout = spawned.stdout.take().map(|p| pipe(p.into())).transpose()?;
        let stderr = spawned.stderr.take().map(|p| pipe(p.into())).transpose()?;
        Ok((child, stdout, stderr))
    }

    /// Resolves once the leader has exited (it stays unreaped until `finish`). Cancel-safe.
    pub async fn exited(&mut self) {
        match &mut self.exit {
            // An exited process stays readable.
            ExitWatch::Pidfd(fd) => fd.readable().await,
            ExitWatch::Poll { pid, interval } => loop {
                if has_exited(*pid) {
                    return;
                }
                tokio::time::sleep(*interval).await;
                *interval = (*interval * 2).min(Duration::from_millis(25));
            },
        }
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
    fn new(pid: i32) -> Self {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
            if fd >= 0 {
                // SAFETY: the descriptor was just created and is owned by nobody else.
                let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
                if let Ok(fd) = Watched::new(fd) {
                    return ExitWatch::Pidfd(fd);
                }
            }
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

fn reap(pid: i32) -> io::Result<(ExitStatus, Usage)> {
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
