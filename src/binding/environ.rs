//! The main thread's `process.env` read natively, under Node's own lock on it: through Node's
//! accessors (an enumeration, then a query and a get per variable) it costs a run of `true` 7 %.

use std::ffi::c_void;
use std::sync::OnceLock;

type UvMutexFn = unsafe extern "C" fn(*mut c_void);

/// `node::per_process::env_var_mutex`, which `process.env` and a `SHARE_ENV` worker's writes
/// hold, with libuv's functions for it. Node exports it, but not as an API: it is used only
/// while its symbol's size says it is still a plain `uv_mutex_t` (a pthread mutex).
static NODE_ENV_LOCK: OnceLock<Option<(usize, UvMutexFn, UvMutexFn)>> = OnceLock::new();

#[cfg(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64"))]
fn find() -> Option<(usize, UvMutexFn, UvMutexFn)> {
    let symbol = |name: &std::ffi::CStr| {
        // SAFETY: dlsym only looks a NUL-terminated name up.
        let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
        (!found.is_null()).then_some(found)
    };
    let mutex = symbol(c"_ZN4node11per_process13env_var_mutexE")?;
    let (lock, unlock) = (symbol(c"uv_mutex_lock")?, symbol(c"uv_mutex_unlock")?);
    // SAFETY: Dl_info is plain data for dladdr1 to fill in; flag 1 (RTLD_DL_SYMENT) points
    // `entry` at the symbol's ELF entry, which is read only when it did.
    let size = unsafe {
        let (mut info, mut entry) = (std::mem::zeroed(), std::ptr::null_mut());
        let found = libc::dladdr1(mutex, &mut info, &mut entry, 1) != 0;
        (found && !entry.is_null()).then(|| (*entry.cast::<libc::Elf64_Sym>()).st_size)
    };
    (size == Some(size_of::<libc::pthread_mutex_t>() as u64)).then_some(())?;
    // SAFETY: both are libuv's `void (uv_mutex_t*)`, exported by the Node that loaded this.
    let as_fn = |f| unsafe { std::mem::transmute::<*mut c_void, UvMutexFn>(f) };
    Some((mutex as usize, as_fn(lock), as_fn(unlock)))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu", target_pointer_width = "64")))]
fn find() -> Option<(usize, UvMutexFn, UvMutexFn)> {
    None
}

/// Whether `locked` takes the lock: else the entry reads `process.env` itself.
pub fn readable() -> bool {
    NODE_ENV_LOCK.get_or_init(find).is_some()
}

/// `read` (of this process's environment) under Node's lock, when there is one.
pub fn locked<T>(read: impl FnOnce() -> T) -> T {
    struct Held(usize, UvMutexFn);
    impl Drop for Held {
        fn drop(&mut self) {
            // SAFETY: Node's mutex, which this thread locked below.
            unsafe { (self.1)(self.0 as *mut c_void) }
        }
    }
    let held = NODE_ENV_LOCK
        .get_or_init(find)
        .map(|(mutex, lock, unlock)| {
            // SAFETY: locked as Node's own accessors lock it.
            unsafe { lock(mutex as *mut c_void) };
            Held(mutex, unlock)
        });
    let read = read();
    drop(held);
    read
}
