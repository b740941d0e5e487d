//! Starting a command on Linux as glibc's `posix_spawn` does, with `clone(CLONE_VM |
//! CLONE_VFORK)`, minus what a run does not need: glibc's child makes a `sigaction` call for
//! each of the 64 signals and its parent maps a stack each time, all while the spawning thread
//! waits (about 40 µs of a 0.6 ms run of `true` here). This child resets signals 1-31, as
//! libuv's does for Node's `spawn`, and `CLONE_PIDFD` returns the pidfd in the same call.

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
            reap(pid);
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
        let default = [0u64; 8];
        for signal in defaulted() {
            let sigaction = libc::SYS_rt_sigaction;
            libc::syscall(sigaction, signal, &default, ptr::null_mut::<u64>(), SIGSET);
        }
        if libc::setpgid(0, 0) != 0 {
            return errno();
        }
        // A source below 3 could be overwritten by an earlier dup2, or be its own target (whose
        // close-on-exec flag dup2 keeps): moved up first, each can then be placed.
        let mut fds = plan.fds;
        for fd in fds.iter_mut().filter(|fd| **fd < 3) {
            *fd = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, 3);
        }
        for (target, fd) in (0..).zip(fds) {
            if libc::dup2(fd, target) < 0 {
                return errno();
            }
        }
        if libc::chdir(plan.cwd) != 0 {
            return errno();
        }
        set_mask(&0, ptr::null_mut());
        libc::execve(plan.path, plan.argv, plan.envp);
        errno()
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

/// A child that failed before `execve` has exited; it is no one's to wait for but ours.
fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: waits for our own child, writing its status into a local.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
    {}
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
}
