//! Starting a command with `posix_spawn` itself, not through `std::process::Command`: std would
//! copy the environment into a sorted map and out again on every run, open `/dev/null` here,
//! and leave every signal but `SIGPIPE` as Node has it (libuv gives a command the default
//! disposition of signals 1-31, as this does, in one call each instead of a query and a call).

use std::ffi::{c_char, c_int, CString, OsString};
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;

use super::Start;

type AddChdir = unsafe extern "C" fn(*mut libc::posix_spawn_file_actions_t, *const c_char) -> c_int;

/// Start `start` in its own process group, stdin from `/dev/null`, stdout and stderr to the
/// given write ends; its pid.
pub fn spawn(start: &Start<'_>, stdout: &OwnedFd, stderr: &OwnedFd) -> io::Result<i32> {
    let Some(add_chdir) = add_chdir() else {
        return spawn_with_std(start, stdout, stderr);
    };
    let path = c_string(start.path.as_os_str().as_bytes())?;
    let cwd = c_string(start.cwd.as_os_str().as_bytes())?;
    let args = std::iter::once(start.program).chain(start.args.iter().map(String::as_str));
    let args = args
        .map(|a| c_string(a.as_bytes()))
        .collect::<io::Result<Vec<_>>>()?;
    let argv = pointers(args.iter().map(|a| a.as_ptr()));
    let (_block, envp) = match start.env {
        Some(env) => env_block(env.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())), start)?,
        None => {
            let env: Vec<(OsString, OsString)> = std::env::vars_os().collect();
            env_block(env.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())), start)?
        }
    };
    let mut actions = MaybeUninit::<libc::posix_spawn_file_actions_t>::uninit();
    let mut attrs = MaybeUninit::<libc::posix_spawnattr_t>::uninit();
    // SAFETY: each object is initialised before use and destroyed once (the guards), in place;
    // every pointer handed to posix_spawn (strings, arrays of them ending in null) outlives it.
    unsafe {
        check(libc::posix_spawn_file_actions_init(actions.as_mut_ptr()))?;
        let actions = Actions(actions.as_mut_ptr());
        check(libc::posix_spawnattr_init(attrs.as_mut_ptr()))?;
        let attrs = Attrs(attrs.as_mut_ptr());
        let null = c"/dev/null".as_ptr();
        check(libc::posix_spawn_file_actions_addopen(
            actions.0,
            0,
            null,
            libc::O_RDONLY,
            0,
        ))?;
        check(libc::posix_spawn_file_actions_adddup2(
            actions.0,
            stdout.as_raw_fd(),
            1,
        ))?;
        check(libc::posix_spawn_file_actions_adddup2(
            actions.0,
            stderr.as_raw_fd(),
            2,
        ))?;
        check(add_chdir(actions.0, cwd.as_ptr()))?;
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        libc::sigemptyset(set.as_mut_ptr());
        check(libc::posix_spawnattr_setsigmask(attrs.0, set.as_ptr()))?;
        for signal in (1..32).filter(|&s| s != libc::SIGKILL && s != libc::SIGSTOP) {
            libc::sigaddset(set.as_mut_ptr(), signal);
        }
        check(libc::posix_spawnattr_setsigdefault(attrs.0, set.as_ptr()))?;
        check(libc::posix_spawnattr_setpgroup(attrs.0, 0))?;
        let flags = libc::POSIX_SPAWN_SETPGROUP
            | libc::POSIX_SPAWN_SETSIGMASK
            | libc::POSIX_SPAWN_SETSIGDEF;
        check(libc::posix_spawnattr_setflags(attrs.0, flags as _))?;
        let mut pid = 0;
        let (argv, envp) = (argv.as_ptr(), envp.as_ptr());
        check(libc::posix_spawn(
            &mut pid,
            path.as_ptr(),
            actions.0,
            attrs.0,
            argv,
            envp,
        ))?;
        Ok(pid)
    }
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

/// Without `addchdir`: std, which then forks.
fn spawn_with_std(start: &Start<'_>, stdout: &OwnedFd, stderr: &OwnedFd) -> io::Result<i32> {
    use std::os::unix::process::CommandExt;
    let mut command = std::process::Command::new(start.path);
    command
        .arg0(start.program)
        .args(start.args)
        .current_dir(start.cwd);
    if let Some(env) = start.env {
        command.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
    }
    command.envs(start.marker).process_group(0);
    command.stdin(std::process::Stdio::null());
    command
        .stdout(stdout.try_clone()?)
        .stderr(stderr.try_clone()?);
    Ok(command.spawn()?.id() as i32)
}

/// `KEY=value` strings in one allocation, and the null-terminated array of them; `marker`
/// replaces a variable of its name.
fn env_block<'a>(
    env: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    start: &'a Start<'_>,
) -> io::Result<(Vec<u8>, Vec<*mut c_char>)> {
    let marker = start.marker.map(|(k, v)| (k.as_bytes(), v.as_bytes()));
    let env = env.filter(|(k, _)| marker.is_none_or(|(name, _)| *k != name));
    let (mut block, mut starts) = (Vec::with_capacity(4096), Vec::with_capacity(64));
    for (key, value) in env.chain(marker) {
        if key.contains(&0) || value.contains(&0) {
            return Err(nul_byte());
        }
        starts.push(block.len());
        block.extend_from_slice(key);
        block.push(b'=');
        block.extend_from_slice(value);
        block.push(0);
    }
    let base = block.as_ptr();
    // SAFETY: every start is an offset inside `block`, which is not changed after this.
    let envp = pointers(starts.into_iter().map(|at| unsafe { base.add(at).cast() }));
    Ok((block, envp))
}

fn pointers(items: impl Iterator<Item = *const c_char>) -> Vec<*mut c_char> {
    let items = items.map(<*const c_char>::cast_mut);
    items.chain(std::iter::once(std::ptr::null_mut())).collect()
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| nul_byte())
}

fn nul_byte() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "nul byte found in provided data",
    )
}

/// posix_spawn's functions return an error number rather than setting errno.
fn check(status: c_int) -> io::Result<()> {
    match status {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

struct Actions(*mut libc::posix_spawn_file_actions_t);

impl Drop for Actions {
    fn drop(&mut self) {
        // SAFETY: initialised, and destroyed only here.
        unsafe { libc::posix_spawn_file_actions_destroy(self.0) };
    }
}

struct Attrs(*mut libc::posix_spawnattr_t);

impl Drop for Attrs {
    fn drop(&mut self) {
        // SAFETY: initialised, and destroyed only here.
        unsafe { libc::posix_spawnattr_destroy(self.0) };
    }
}
