//! Starting a command without `std::process::Command`: std would copy the environment into a
//! sorted map and out again on every run, open `/dev/null` each time, and leave every signal but
//! `SIGPIPE` as Node has it (libuv gives a command the default disposition of signals 1-31, as
//! this does). On Linux through `clone` (`vfork.rs`), else through `posix_spawn` (nix's).

use std::ffi::{c_char, c_int, CString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;

use nix::errno::Errno;
use nix::spawn::{PosixSpawnAttr, PosixSpawnFileActions, PosixSpawnFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;

use super::Start;

type AddChdir = unsafe extern "C" fn(*mut libc::posix_spawn_file_actions_t, *const c_char) -> c_int;

/// A started command's leader.
pub struct Spawned {
    pub pid: i32,
    /// Its pidfd, when the way it was started gave one.
    pub pidfd: Option<OwnedFd>,
}

/// Start `start` in its own process group, stdin from `/dev/null`, stdout and stderr to the
/// given write ends.
pub fn spawn(start: &Start<'_>, stdout: &OwnedFd, stderr: &OwnedFd) -> io::Result<Spawned> {
    let Some(null) = dev_null() else {
        return spawn_with_std(start, stdout, stderr);
    };
    let fds = [null.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()];
    let exec = Exec::new(start)?;
    #[cfg(target_os = "linux")]
    if let Some(spawned) = super::vfork::spawn(&exec, fds) {
        return spawned;
    }
    match add_chdir() {
        Some(add_chdir) => posix_spawn(add_chdir, &exec, fds),
        None => spawn_with_std(start, stdout, stderr),
    }
}

/// A command as `execve` takes it (`argv[0]` as written, `KEY=value`), and where it runs.
pub struct Exec {
    pub path: CString,
    pub args: Vec<CString>,
    pub env: Vec<CString>,
    pub cwd: CString,
}

impl Exec {
    fn new(start: &Start<'_>) -> io::Result<Self> {
        let args = std::iter::once(start.program).chain(start.args.iter().map(String::as_str));
        let args = args.map(|a| c_string(a.as_bytes()));
        Ok(Exec {
            path: c_string(start.path.as_os_str().as_bytes())?,
            args: args.collect::<io::Result<_>>()?,
            env: environment(start)?,
            cwd: c_string(start.cwd.as_os_str().as_bytes())?,
        })
    }
}

/// Descriptors 0, 1 and 2 from `fds`.
fn posix_spawn(add_chdir: AddChdir, exec: &Exec, fds: [c_int; 3]) -> io::Result<Spawned> {
    let mut actions = PosixSpawnFileActions::init()?;
    for (target, fd) in (0..).zip(fds) {
        actions.add_dup2(fd, target)?;
    }
    let raw = (&mut actions as *mut PosixSpawnFileActions).cast();
    // SAFETY: `PosixSpawnFileActions` is `repr(transparent)` over the initialised
    // `posix_spawn_file_actions_t`; `cwd` is a NUL-terminated string, copied by the call.
    Errno::result(unsafe { add_chdir(raw, exec.cwd.as_ptr()) })?;

    let mut attrs = PosixSpawnAttr::init()?;
    attrs.set_sigmask(&SigSet::empty())?;
    let defaulted = defaulted().filter_map(|signal| Signal::try_from(signal).ok());
    attrs.set_sigdefault(&defaulted.collect())?;
    attrs.set_pgroup(Pid::from_raw(0))?;
    attrs.set_flags(
        PosixSpawnFlags::POSIX_SPAWN_SETPGROUP
            | PosixSpawnFlags::POSIX_SPAWN_SETSIGMASK
            | PosixSpawnFlags::POSIX_SPAWN_SETSIGDEF,
    )?;
    let (path, args, env) = (exec.path.as_c_str(), &exec.args, &exec.env);
    let pid = nix::spawn::posix_spawn(path, &actions, &attrs, args, env)?.as_raw();
    Ok(Spawned { pid, pidfd: None })
}

/// `posix_spawn_file_actions_addchdir_np`, looked up at run time as std does: glibc has it
/// from 2.29, and the published builds link against an older one.
fn add_chdir() -> Option<AddChdir> {
    static FOUND: OnceLock<Option<AddChdir>> = OnceLock::new();
    *FOUND.get_or_init(|| {
        let name = c"posix_spawn_file_actions_addchdir_np";
        // SAFETY: dlsym only looks a NUL-terminated name up.
        let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        // SAFETY: the symbol of that name is the C function whose signature `AddChdir` states.
        (!found.is_null()).then(|| unsafe { std::mem::transmute::<*mut _, AddChdir>(found) })
    })
}

/// Every command's stdin, opened once (close-on-exec: each command gets its own copy).
fn dev_null() -> Option<&'static File> {
    static NULL: OnceLock<Option<File>> = OnceLock::new();
    NULL.get_or_init(|| File::open("/dev/null").ok()).as_ref()
}

/// Without those: std, which then forks (to reset the signals as above).
fn spawn_with_std(start: &Start<'_>, stdout: &OwnedFd, stderr: &OwnedFd) -> io::Result<Spawned> {
    use std::os::unix::process::CommandExt;
    let reset = || {
        for signal in defaulted() {
            // SAFETY: signal(2) is async-signal-safe, as the forked child requires.
            unsafe { libc::signal(signal, libc::SIG_DFL) };
        }
        Ok(())
    };
    let mut command = std::process::Command::new(start.path);
    command
        .arg0(start.program)
        .args(start.args)
        .current_dir(start.cwd);
    if let Some(env) = start.env {
        command.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
    }
    command.envs(start.marker).process_group(0);
    // SAFETY: `reset` only makes async-signal-safe calls and allocates nothing.
    unsafe { command.pre_exec(reset) };
    command.stdin(std::process::Stdio::null());
    command
        .stdout(stdout.try_clone()?)
        .stderr(stderr.try_clone()?);
    let pid = command.spawn()?.id() as i32;
    Ok(Spawned { pid, pidfd: None })
}

/// Signals 1-31 but those no disposition can be set for (called in the vfork child too: it
/// allocates nothing).
pub fn defaulted() -> impl Iterator<Item = c_int> {
    (1..32).filter(|&s| s != libc::SIGKILL && s != libc::SIGSTOP)
}

/// `KEY=value` strings; `marker` replaces a variable of its name.
fn environment(start: &Start<'_>) -> io::Result<Vec<CString>> {
    let inherited;
    let env = match start.env {
        Some(env) => env,
        None => {
            inherited = std::env::vars_os().collect::<Vec<_>>();
            &inherited
        }
    };
    let marker = start.marker.map(|(k, v)| (k.as_bytes(), v.as_bytes()));
    let env = env.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes()));
    let env = env.filter(|(k, _)| marker.is_none_or(|(name, _)| *k != name));
    env.chain(marker)
        .map(|(key, value)| c_string([key, b"=", value].concat()))
        .collect()
}

fn c_string(bytes: impl Into<Vec<u8>>) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "nul byte found in provided data",
        )
    })
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Read;
    use std::path::Path;

    /// Both ways, a command gets signals 1-31 at their defaults and `argv[0]` as written.
    #[test]
    fn either_way_a_command_starts_as_node_starts_one() {
        // SAFETY: ignoring SIGXFSZ, as Node does, harms no other test.
        unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
        let args = [
            "-c".to_owned(),
            "grep ^SigIgn /proc/self/status; echo $0".to_owned(),
        ];
        let start = Start {
            program: "sh",
            path: Path::new("/bin/sh"),
            args: &args,
            cwd: Path::new("/"),
            env: None,
            marker: None,
        };
        type Way = fn(&Start<'_>, &OwnedFd, &OwnedFd) -> io::Result<Spawned>;
        let posix: Way = |start, stdout, stderr| {
            let null = dev_null().unwrap().as_raw_fd();
            let fds = [null, stdout.as_raw_fd(), stderr.as_raw_fd()];
            posix_spawn(add_chdir().unwrap(), &Exec::new(start)?, fds)
        };
        for way in [spawn as Way, posix, spawn_with_std] {
            let (read, write) = super::super::sys::pipe().unwrap();
            let read = File::from(read);
            let pid = way(&start, &write, &write).unwrap().pid;
            drop(write);
            let mut out = String::new();
            (&read).read_to_string(&mut out).unwrap();
            // SAFETY: reaps the child just started.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
            let ignored = out.split_whitespace().nth(1).unwrap();
            let ignored = u64::from_str_radix(ignored, 16).unwrap();
            assert_eq!(
                (ignored & 0x7fff_ffff, out.lines().nth(1)),
                (0, Some("sh")),
                "{out}"
            );
        }
    }
}
