//! The Linux/Unix system calls behind a run: process-group signals, exit notification
//! without reaping, and `wait4` for the exit status and resource use.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use super::{ExitStatus, Signal, Usage};

/// Send `signal` to every process in the group led by `pgid`. A group that is already gone
/// is not an error.
pub fn kill_group(pgid: i32, signal: Signal) {
    // SAFETY: kill(2) with a negative pid addresses a process group; no memory is involved.
    unsafe {
        libc::kill(-pgid, signal.0);
    }
}

/// Becomes ready when a child has exited, without reaping it: while the exited leader is a
/// zombie its pid, and so its process-group id, cannot be reused, which keeps every later
/// group kill aimed at the right processes.
pub enum ExitWatch {
    /// Linux 5.3+: a pidfd is readable once the process has exited.
    Pidfd(AsyncFd<OwnedFd>),
    /// Elsewhere: poll `waitid(WNOWAIT)` with a growing interval.
    Poll { pid: i32, interval: Duration },
}

impl ExitWatch {
    pub fn new(pid: i32) -> Self {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
            if fd >= 0 {
                // SAFETY: the descriptor was just created and is owned by nobody else.
                let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
                // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open for as
                // long as it is registered.
                if let Ok(fd) =
                    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
                {
                    return ExitWatch::Pidfd(fd);
                }
            }
        }
        ExitWatch::Poll {
            pid,
            interval: Duration::from_micros(500),
        }
    }

    /// Resolves once the process has exited. Cancel-safe.
    pub async fn exited(&mut self) {
        match self {
            ExitWatch::Pidfd(fd) => {
                // Readiness is level-triggered here: an exited process stays readable.
                let _ = fd.readable().await.map(|mut guard| guard.retain_ready());
            }
            ExitWatch::Poll { pid, interval } => loop {
                if has_exited(*pid) {
                    return;
                }
                tokio::time::sleep(*interval).await;
                *interval = (*interval * 2).min(Duration::from_millis(25));
            },
        }
    }
}

/// Whether `pid` has exited, leaving it unreaped.
fn has_exited(pid: i32) -> bool {
    // SAFETY: siginfo_t is plain data; waitid fills it in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: valid pointer to a zeroed siginfo_t.
    let rc = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) };
    // With WNOHANG, si_pid stays 0 while the child runs; an error means it is gone already.
    rc != 0 || unsafe { info.si_pid() } != 0
}

/// Reap `pid` (blocking until it exits) and return its status and resource use.
pub fn reap(pid: i32) -> io::Result<(ExitStatus, Usage)> {
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointers to a status int and a rusage.
        let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if rc == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    let exit = if libc::WIFSIGNALED(status) {
        ExitStatus::Signaled(Signal(libc::WTERMSIG(status)))
    } else {
        ExitStatus::Exited(libc::WEXITSTATUS(status))
    };
    let ms = |tv: libc::timeval| tv.tv_sec as f64 * 1000.0 + tv.tv_usec as f64 / 1000.0;
    // Linux and most BSDs report ru_maxrss in KiB; macOS reports bytes.
    let rss_unit = if cfg!(target_os = "macos") { 1 } else { 1024 };
    let usage = Usage {
        max_rss_bytes: (ru.ru_maxrss as u64).saturating_mul(rss_unit),
        user_ms: ms(ru.ru_utime),
        system_ms: ms(ru.ru_stime),
    };
    Ok((exit, usage))
}
