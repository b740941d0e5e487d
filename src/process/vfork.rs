//! Starting a command on Linux as glibc's `posix_spawn` does, with `clone(CLONE_VM |
//! CLONE_VFORK)`, minus what a run does not need: glibc's parent maps and unmaps a stack and
//! asks `getrlimit` twice per descriptor on every spawn, and a pidfd is a call more (here
//! `CLONE_PIDFD` gives it). This child resets signals 1-31, as libuv's does for Node's `spawn`,
//! and real-time ones that have a handler, as glibc's does.

use std::ffi::{c_char, c_int, c_void, CString};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::ptr;

use super::spawn::{defaulted, Exec, Spawned};

/// glibc gives its child 32 KiB (plus the arguments' size, for its `execvp`).
const STACK: usize = 32 * 1024;
/// The kernel's signal set: 64 bits.
const SIGSET: usize = 8;

/// All the child uses, prepared by the parent: sharing the parent's memory until `execve`, the
/// child may not allocate or take a lock.
struct Plan {
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    cwd: *const c_char,
    /// What become descriptors 0, 1 and 2.
    fds: [c_int; 3],
    /// The errno of the step that failed in the child.
    error: c_int,
}

/// Descriptors 0, 1 and 2 from `fds`. `None` when `clone` itself failed (a sandbox may forbid
/// it): the caller starts the command another way, which reports any error as usual.
pub fn spawn(exec: &Exec, fds: [c_int; 3]) -> Option<io::Result<Spawned>> {
    let (argv, envp) = (pointers(&exec.args), pointers(&exec.env));
    let (path, cwd) = (exec.path.as_ptr(), exec.cwd.as_ptr());
    let (argv, envp) = (argv.as_ptr(), envp.as_ptr());
    let mut plan = Plan {
        path,
        argv,
        envp,
        cwd,
        fds,
        error: 0,
    };
    let mut stack = Vec::<u8>::with_capacity(STACK);
    // The stack grows down on every Linux target; the ABI wants its top 16-byte aligned.
    let top = ((stack.as_mut_ptr() as usize + STACK) & !15) as *mut c_void;
    let (mut pid, mut pidfd, mut mask) = (-1, -1, 0);
    // SAFETY: signal handlers must not run in the child before it resets them: they would run
    // in the parent's memory.
    unsafe { set_mask(&!0, &mut mask) };
    // Kernels before 5.2 ignore CLONE_PIDFD (the pidfd stays -1); a sandbox may refuse it.
    let vfork = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    for flags in [vfork | libc::CLONE_PIDFD, vfork] {
        let arg = ptr::addr_of_mut!(plan).cast();
        // SAFETY: `child` touches nothing but `plan`, whose pointers outlive the call: with
        // CLONE_VFORK this thread resumes once the child has called `execve` or exited.
        pid = unsafe { libc::clone(child, top, flags, arg, &mut pidfd) };
        if pid > 0 {
            break;
        }
    }
    // SAFETY: restores the mask saved above.
    unsafe { set_mask(&mask, ptr::null_mut()) };
    drop(stack);
    if pid <= 0 {
        return None;
    }
    // SAFETY: CLONE_PIDFD has just made this descriptor for this caller.
    let pidfd = (pidfd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(pidfd) });
    // SAFETY: the child wrote `error` behind the compiler's back.
    match unsafe { ptr::read_volatile(&plan.error) } {
        0 => Some(Ok(Spawned { pid, pidfd })),
        error => {
            // It has exited, and is no one's to wait for but ours.
            let _ = super::sys::reap(pid);
            Some(Err(io::Error::from_raw_os_error(error)))
        }
    }
}

extern "C" fn child(plan: *mut c_void) -> c_int {
    let plan = plan.cast::<Plan>();
    // SAFETY: `plan` is the parent's, which waits until this child has exec'd or exited.
    unsafe {
        let error = exec(&*plan);
        ptr::write_volatile(ptr::addr_of_mut!((*plan).error), error);
        libc::_exit(127)
    }
}

/// Returns only on failure, with its errno.
///
/// # Safety
/// Only in the vfork child, with every pointer of `plan` valid.
unsafe fn exec(plan: &Plan) -> c_int {
    // SAFETY: async-signal-safe calls on memory that the parent prepared.
    unsafe {
        // The kernel's `struct sigaction`, zeroed: SIG_DFL. Not libc's wrapper: musl's takes a
        // lock for SIGABRT.
        let (default, mut old) = ([0u64; 8], [0u64; 8]);
        let sigaction = libc::SYS_rt_sigaction;
        for signal in defaulted() {
            libc::syscall(sigaction, signal, &default, ptr::null_mut::<u64>(), SIGSET);
        }
        // Real-time signals keep their dispositions, as in Node's commands, but a handler (a
        // native library's) must not run here once the mask is emptied: one sent to the group
        // before `setpgid` is pending. Reset, as glibc's `posix_spawn` does. The handler is
        // the first word of the kernel's struct; above SIG_IGN (1) it is a function.
        for signal in 32..=64 {
            libc::syscall(sigaction, signal, ptr::null::<u64>(), &mut old, SIGSET);
            if old[0] > 1 {
                libc::syscall(sigaction, signal, &default, ptr::null_mut::<u64>(), SIGSET);
            }
        }
        if libc::setpgid(0, 0) != 0 {
            return errno();
        }
        if place(plan.fds) != 0 {
            return errno();
        }
        if libc::chdir(plan.cwd) != 0 {
            return errno();
        }
        set_mask(&0, ptr::null_mut());
        libc::execve(plan.path, plan.argv, plan.envp);
        errno()
    }
}

/// Descriptors 0, 1 and 2 from `fds`; -1 on failure. A source an earlier `dup2` would
/// overwrite is first moved up; one that is its own target loses its close-on-exec flag,
/// which `dup2` would keep. Neither needs a descriptor more in the usual case, where the
/// table may be full.
///
/// # Safety
/// Only in a child about to `execve`: it overwrites descriptors 0-2.
unsafe fn place(mut fds: [c_int; 3]) -> c_int {
    // SAFETY: descriptor calls, as the caller allows.
    unsafe {
        for (target, fd) in (0..).zip(fds.iter_mut()) {
            if *fd < target {
                *fd = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3);
            }
        }
        for (target, fd) in (0..).zip(fds) {
            let placed = if fd == target {
                libc::fcntl(fd, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, target)
            };
            if placed < 0 {
                return -1;
            }
        }
        0
    }
}

fn errno() -> c_int {
    let errno = io::Error::last_os_error().raw_os_error();
    errno.filter(|&e| e != 0).unwrap_or(libc::EINVAL)
}

/// `rt_sigprocmask` itself: libc's wrappers keep their own signals unblocked.
///
/// # Safety
/// `old` is null or valid for a write.
unsafe fn set_mask(mask: &u64, old: *mut u64) {
    let how = libc::SIG_SETMASK;
    // SAFETY: per the caller; `mask` is a kernel signal set.
    unsafe { libc::syscall(libc::SYS_rt_sigprocmask, how, mask, old, SIGSET) };
}

/// NULL-terminated, as `execve` takes them.
fn pointers(strings: &[CString]) -> Vec<*const c_char> {
    let pointers = strings.iter().map(|s| s.as_ptr());
    pointers.chain([ptr::null()]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;
    use std::os::fd::AsRawFd;

    fn spawn_sh(path: &CStr, script: &str) -> io::Result<Spawned> {
        let exec = Exec {
            path: path.to_owned(),
            args: vec![c"sh".to_owned(), c"-c".to_owned(), CString::new(script)?],
            env: Vec::new(),
            cwd: c"/".to_owned(),
        };
        let null = std::fs::File::open("/dev/null")?;
        let fd = null.as_raw_fd();
        spawn(&exec, [fd, fd, fd]).expect("clone works here")
    }

    /// A failure between `clone` and `execve` comes back as that step's error, and the child
    /// that met it is reaped, not left a zombie.
    #[test]
    fn a_failed_exec_is_the_callers_error_and_leaves_no_child() {
        let err = spawn_sh(c"/", "true").err().unwrap();
        assert_eq!(err.raw_os_error(), Some(libc::EACCES));
        let err = spawn_sh(c"/no/such/program", "true").err().unwrap();
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
        // This test's thread started no other child.
        let children = std::fs::read_to_string("/proc/thread-self/children").unwrap();
        assert_eq!(children, "");
    }

    /// The pidfd comes with the pid (Linux 5.2+) and becomes readable when the command exits.
    #[test]
    fn the_pidfd_watches_the_command() {
        let started = spawn_sh(c"/bin/sh", "exit 3").unwrap();
        let pidfd = started.pidfd.expect("this kernel has CLONE_PIDFD");
        let mut poll = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        assert_eq!(unsafe { libc::poll(&mut poll, 1, 10_000) }, 1);
        let mut status = 0;
        // SAFETY: reaps our own child.
        assert_eq!(
            unsafe { libc::waitpid(started.pid, &mut status, 0) },
            started.pid
        );
        assert_eq!(libc::WEXITSTATUS(status), 3);
    }

    static PARENT: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
    static IN_CHILD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

    extern "C" fn on_signal(_: c_int) {
        use std::sync::atomic::Ordering::Relaxed;
        // SAFETY: getpid is async-signal-safe.
        if unsafe { libc::getpid() } != PARENT.load(Relaxed) {
            IN_CHILD.fetch_add(1, Relaxed);
        }
    }

    /// A real-time signal sent to the process group while a child is still in it stays pending
    /// there: its handler (a native library's, say) must not run in the child, in this memory.
    #[test]
    fn no_handler_of_this_process_runs_in_a_child() {
        use std::os::unix::process::CommandExt;
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "process::vfork::tests::signals_at_the_group"])
            .args(["--ignored", "--test-threads=1"])
            .process_group(0)
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[test]
    #[ignore = "run by no_handler_of_this_process_runs_in_a_child, in a group of its own"]
    fn signals_at_the_group() {
        use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
        // SAFETY: plain queries of this process.
        let (pid, group) = unsafe { (libc::getpid(), libc::getpgrp()) };
        if pid != group {
            return; // never signal a group that is not this test's own
        }
        PARENT.store(pid, Relaxed);
        // SAFETY: a zeroed sigaction with a handler that only makes async-signal-safe calls.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as usize;
            assert_eq!(libc::sigaction(40, &action, ptr::null_mut()), 0);
        }
        static STOP: AtomicBool = AtomicBool::new(false);
        let storm = std::thread::spawn(|| {
            while !STOP.load(Relaxed) {
                // SAFETY: signals this test's own process group.
                unsafe { libc::kill(0, 40) };
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        });
        for _ in 0..400 {
            let started = spawn_sh(c"/bin/sh", "exit 0").unwrap();
            let mut status = 0;
            // SAFETY: reaps our own child.
            unsafe { libc::waitpid(started.pid, &mut status, 0) };
        }
        STOP.store(true, Relaxed);
        storm.join().unwrap();
        assert_eq!(IN_CHILD.load(Relaxed), 0, "the handler ran in a child");
    }

    fn inode(fd: c_int) -> u64 {
        // SAFETY: fstat fills in a zeroed stat.
        unsafe {
            let mut stat: libc::stat = std::mem::zeroed();
            if libc::fstat(fd, &mut stat) != 0 {
                return 0;
            }
            stat.st_ino
        }
    }

    /// `place` in a forked child (this process's 0-2 are the harness's); 0 when 0-2 then are
    /// `want`, none close-on-exec.
    fn placed(setup: impl FnOnce(), fds: [c_int; 3], want: [u64; 3]) -> i32 {
        // SAFETY: the child makes only async-signal-safe calls, then exits.
        unsafe {
            let pid = libc::fork();
            if pid == 0 {
                setup();
                let mut code = 10 * (place(fds) != 0) as i32;
                for (fd, want) in (0..).zip(want) {
                    code += (inode(fd) != want || libc::fcntl(fd, libc::F_GETFD) != 0) as i32;
                }
                libc::_exit(code);
            }
            let mut status = 0;
            libc::waitpid(pid, &mut status, 0);
            libc::WEXITSTATUS(status)
        }
    }

    /// A source that is its own target needs no descriptor more (the table may be full), and
    /// one that an earlier placement would overwrite is moved first.
    #[test]
    fn descriptors_below_3_are_placed_right() {
        let ((_, out), (_, err)) = (
            super::super::sys::pipe().unwrap(),
            super::super::sys::pipe().unwrap(),
        );
        let null = std::fs::File::open("/dev/null").unwrap();
        let (null, out, err) = (null.as_raw_fd(), out.as_raw_fd(), err.as_raw_fd());
        let want = [inode(null), inode(out), inode(err)];
        // SAFETY (both setups): descriptor calls in the forked child.
        let full_table = || unsafe {
            libc::dup2(out, 1);
            libc::dup2(err, 2);
            libc::fcntl(1, libc::F_SETFD, libc::FD_CLOEXEC);
            libc::fcntl(2, libc::F_SETFD, libc::FD_CLOEXEC);
            let limit = libc::rlimit {
                rlim_cur: 3,
                rlim_max: libc::RLIM_INFINITY,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        };
        assert_eq!(placed(full_table, [null, 1, 2], want), 0);
        let stderr_at_0 = || unsafe {
            libc::dup2(err, 0);
        };
        assert_eq!(placed(stderr_at_0, [null, out, 0], want), 0);
    }
}
