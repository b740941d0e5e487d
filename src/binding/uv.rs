//! The libuv calls that `local` needs, looked up in the running Node, which exports libuv for
//! addons. No N-API call registers a descriptor or a cross-thread wake with the event loop.

use std::ffi::{c_int, c_void, CStr};
use std::sync::OnceLock;

pub type Handle = c_void;
pub type Callback = unsafe extern "C" fn(*mut Handle);
pub type PollCallback = unsafe extern "C" fn(*mut Handle, c_int, c_int);

pub const ASYNC: c_int = 1;
pub const POLL: c_int = 8;
pub const READABLE: c_int = 1;

pub struct Uv {
    pub handle_size: unsafe extern "C" fn(c_int) -> usize,
    pub async_init: unsafe extern "C" fn(*mut c_void, *mut Handle, Callback) -> c_int,
    pub async_send: unsafe extern "C" fn(*mut Handle) -> c_int,
    pub poll_init: unsafe extern "C" fn(*mut c_void, *mut Handle, c_int) -> c_int,
    pub poll_start: unsafe extern "C" fn(*mut Handle, c_int, PollCallback) -> c_int,
    pub close: unsafe extern "C" fn(*mut Handle, Callback),
    pub ref_: Callback,
    pub unref: Callback,
}

/// `None` in a host without libuv's symbols: runs then go to tokio.
pub fn get() -> Option<&'static Uv> {
    static UV: OnceLock<Option<Uv>> = OnceLock::new();
    // SAFETY: each is the libuv function of that name, whose C signature the field states
    // (libuv 1.x, which every Node since 0.12 carries).
    let find = || unsafe {
        Some(Uv {
            handle_size: symbol(c"uv_handle_size")?,
            async_init: symbol(c"uv_async_init")?,
            async_send: symbol(c"uv_async_send")?,
            poll_init: symbol(c"uv_poll_init")?,
            poll_start: symbol(c"uv_poll_start")?,
            close: symbol(c"uv_close")?,
            ref_: symbol(c"uv_ref")?,
            unref: symbol(c"uv_unref")?,
        })
    };
    UV.get_or_init(find).as_ref()
}

/// # Safety
/// `F` is the function pointer type of the C function `name`.
unsafe fn symbol<F>(name: &CStr) -> Option<F> {
    // SAFETY: dlsym only looks a NUL-terminated name up.
    let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
    // SAFETY: a function pointer is the size of a pointer; the caller vouches for the type.
    (!found.is_null()).then(|| unsafe { std::mem::transmute_copy::<*mut c_void, F>(&found) })
}
