//! Runs polled on the JavaScript thread, by its event loop. Loading a local spec, starting the
//! command and waiting for its pipes and exit then wake that thread and no other: from tokio, a
//! run hopped to a worker and back, and its spawning worker waited behind the command (`vfork`
//! wakes it on the command's CPU). What a run awaits elsewhere (HTTP, timers, the blocking
//! pool, the storage adapter) still runs there and wakes this loop. Without libuv's symbols,
//! runs go to tokio as before.

use std::alloc::Layout;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::ffi::c_void;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::ptr::null_mut;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use napi::bindgen_prelude::*;
use napi::sys;

use super::uv::{self, Uv};
use crate::lock;
use crate::process::watched::Reactor;

type Task = Pin<Box<dyn Future<Output = ()>>>;

const POLLS_PER_TURN: usize = 8;

/// One JavaScript environment's runs and the two libuv handles that poll them.
pub struct Local {
    uv: &'static Uv,
    env: sys::napi_env,
    reactor: Arc<Reactor>,
    tasks: RefCell<HashMap<u64, Task>>,
    next: Cell<u64>,
    woken: Arc<Woken>,
    /// A wake from any thread, then the reactor's descriptor.
    handles: [*mut uv::Handle; 2],
    context: sys::napi_async_context,
}

/// Tasks woken since the loop last polled, and the handle that tells it (gone at teardown).
struct Woken(Mutex<(Vec<u64>, Option<AsyncHandle>)>);

struct AsyncHandle(*mut uv::Handle, &'static Uv);

// SAFETY: `uv_async_send`, the one call made through it, is libuv's call for other threads.
unsafe impl Send for AsyncHandle {}

struct TaskWaker {
    id: u64,
    woken: Arc<Woken>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let turning = TURNING.with(|t| t.get() == Arc::as_ptr(&self.woken));
        let mut woken = lock(&self.woken.0);
        woken.0.push(self.id);
        if let (Some(AsyncHandle(handle, uv)), false) = (&woken.1, turning) {
            // SAFETY: the handle is open while it is here: teardown takes it out under this lock.
            unsafe { (uv.async_send)(*handle) };
        }
    }
}

thread_local! {
    /// By environment; `None` where setting up failed (its runs go to tokio).
    static LOCALS: RefCell<HashMap<usize, Option<Rc<Local>>>> = RefCell::default();
    /// The Local whose reactor this thread is turning: what that wakes, the drain right after
    /// polls, with no turn of the loop in between.
    static TURNING: Cell<*const Woken> = const { Cell::new(std::ptr::null()) };
}

/// `env`'s runs on its own thread, set up on first use; `None` where libuv cannot be reached.
pub fn get(env: &Env) -> Option<Rc<Local>> {
    let key = env.raw() as usize;
    if let Some(local) = LOCALS.with(|l| l.borrow().get(&key).cloned()) {
        return local;
    }
    let local = Local::new(env.raw()).map(Rc::new);
    LOCALS.with(|l| l.borrow_mut().insert(key, local.clone()));
    local
}

impl Local {
    fn new(env: sys::napi_env) -> Option<Local> {
        let uv = uv::get()?;
        let reactor = Reactor::new().ok()?;
        let (mut event_loop, mut context) = (null_mut(), null_mut());
        let hook = Some(teardown as unsafe extern "C" fn(_, _));
        // SAFETY: N-API calls on `env`'s own thread, with out-pointers to locals. Should the
        // handles fail below, the hook finds no Local and removes itself.
        unsafe {
            check(sys::napi_get_uv_event_loop(env, &mut event_loop)).ok()?;
            let name = Env::from_raw(env).create_string("HeliosRun").ok()?.raw();
            check(sys::napi_async_init(env, null_mut(), name, &mut context)).ok()?;
            let arg = env as *mut c_void;
            check(sys::napi_add_async_cleanup_hook(env, hook, arg, null_mut())).ok()?;
        }
        // SAFETY: both handles are allocated at the larger of libuv's sizes for the two types,
        // and freed once closed (`on_closed`, `on_closed_alone`) or when never initialised.
        let handles = unsafe {
            let event_loop = event_loop.cast::<c_void>();
            let handles = [alloc(uv), alloc(uv)];
            let opened = (uv.async_init)(event_loop, handles[0], on_wake) == 0;
            let polling = opened && (uv.poll_init)(event_loop, handles[1], reactor.fd()) == 0;
            if !(polling && (uv.poll_start)(handles[1], uv::READABLE, on_ready) == 0) {
                for (handle, initialised) in handles.into_iter().zip([opened, polling]) {
                    match initialised {
                        true => (uv.close)(handle, on_closed_alone),
                        false => free(uv, handle),
                    }
                }
                sys::napi_async_destroy(env, context);
                return None;
            }
            for handle in handles {
                *handle.cast::<usize>() = env as usize;
                // Pending runs keep the loop alive (`keep_alive`), not the handles.
                (uv.unref)(handle);
            }
            handles
        };
        let woken = Woken(Mutex::new((Vec::new(), Some(AsyncHandle(handles[0], uv)))));
        Some(Local {
            uv,
            env,
            reactor,
            tasks: RefCell::default(),
            next: Cell::new(0),
            woken: Arc::new(woken),
            handles,
            context,
        })
    }

    /// Polls `work` now, then whenever it is woken; its promise settles with its output.
    pub fn spawn<'env, T: ToNapiValue + 'static>(
        &self,
        env: &'env Env,
        work: impl Future<Output = Result<T>> + 'static,
    ) -> Result<PromiseRaw<'env, T>> {
        let (mut deferred, mut promise) = (null_mut(), null_mut());
        // SAFETY: on `env`'s thread, inside its call into this addon.
        check(unsafe { sys::napi_create_promise(env.raw(), &mut deferred, &mut promise) })?;
        let raw = env.raw();
        let settle = async move {
            let result = work.await;
            settle(
                raw,
                deferred,
                result.and_then(|value| {
                    // SAFETY: polled on `env`'s thread, with a handle scope open (`drain`, or the call).
                    unsafe { T::to_napi_value(raw, value) }
                }),
            );
        };
        let id = self.next.replace(self.next.get() + 1);
        let mut task: Task = Box::pin(tokio::task::coop::cooperative(Guarded(
            Box::pin(settle),
            Some((raw, deferred)),
        )));
        if self.poll(id, &mut task).is_pending() {
            self.tasks.borrow_mut().insert(id, task);
            self.keep_alive();
        }
        Ok(PromiseRaw::new(env.raw(), promise))
    }

    fn poll(&self, id: u64, task: &mut Task) -> Poll<()> {
        let waker = Waker::from(Arc::new(TaskWaker {
            id,
            woken: self.woken.clone(),
        }));
        let mut cx = Context::from_waker(&waker);
        self.reactor
            .enter(|| within_runtime_if_available(|| task.as_mut().poll(&mut cx)))
    }

    /// Polls the tasks woken since last time, in a callback scope (promise jobs run after).
    fn drain(&self) {
        let ids = {
            let mut woken = lock(&self.woken.0);
            // A few at a time, so that a hundred commands ending at once do not stall the loop.
            let first = woken.0.len().min(POLLS_PER_TURN);
            let later = woken.0.split_off(first);
            let now = std::mem::replace(&mut woken.0, later);
            if let (Some(AsyncHandle(handle, uv)), false) = (&woken.1, woken.0.is_empty()) {
                // SAFETY: as in `wake_by_ref`.
                unsafe { (uv.async_send)(*handle) };
            }
            now
        };
        if ids.is_empty() {
            return;
        }
        let env = self.env;
        let (mut handles, mut resource, mut scope) = (null_mut(), null_mut(), null_mut());
        // SAFETY: on `env`'s thread, from its event loop, outside any JavaScript.
        unsafe {
            sys::napi_open_handle_scope(env, &mut handles);
            sys::napi_create_object(env, &mut resource);
            sys::napi_open_callback_scope(env, resource, self.context, &mut scope);
        }
        for id in ids {
            let Some(mut task) = self.tasks.borrow_mut().remove(&id) else {
                continue;
            };
            if self.poll(id, &mut task).is_pending() {
                self.tasks.borrow_mut().insert(id, task);
            }
        }
        self.keep_alive();
        // SAFETY: the scopes opened above, closed in reverse order.
        unsafe {
            sys::napi_close_callback_scope(env, scope);
            sys::napi_close_handle_scope(env, handles);
        }
    }

    /// The loop (and so Node) stays alive while a run is pending, as for any pending I/O.
    fn keep_alive(&self) {
        let pending = !self.tasks.borrow().is_empty();
        // SAFETY: the async handle is open until teardown, which takes this Local out first.
        unsafe { (if pending { self.uv.ref_ } else { self.uv.unref })(self.handles[0]) };
    }
}

/// Rejects the promise with an internal error should the run panic.
struct Guarded(Task, Option<(sys::napi_env, sys::napi_deferred)>);

impl Future for Guarded {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) => {
                self.1 = None;
                Poll::Ready(())
            }
            Err(_) => {
                if let Some((env, deferred)) = self.1.take() {
                    let reason = "the run failed inside the addon (a panic)";
                    settle(env, deferred, Err(Error::from_reason(reason)));
                }
                Poll::Ready(())
            }
        }
    }
}

fn settle(env: sys::napi_env, deferred: sys::napi_deferred, value: Result<sys::napi_value>) {
    // SAFETY: on `env`'s thread with a handle scope open; `deferred` is settled once (its
    // Guarded forgets it once the settling future has run).
    unsafe {
        let status = match value.map_err(|e| ToNapiValue::to_napi_value(env, e)) {
            Ok(value) => sys::napi_resolve_deferred(env, deferred, value),
            Err(Ok(error)) => sys::napi_reject_deferred(env, deferred, error),
            Err(Err(_)) => sys::Status::napi_pending_exception,
        };
        if status == sys::Status::napi_ok {
            return;
        }
        // User code ran while the result was built (a setter on `Object.prototype`, a replaced
        // `Error`) and threw: the promise rejects with that, and the exception is not left
        // pending for whatever N-API call comes next.
        let (mut pending, mut error) = (false, null_mut());
        sys::napi_is_exception_pending(env, &mut pending);
        if pending {
            sys::napi_get_and_clear_last_exception(env, &mut error);
        } else {
            let mut text = null_mut();
            let reason = c"the run's result could not be handed to JavaScript";
            sys::napi_create_string_utf8(env, reason.as_ptr(), usize::MAX as isize, &mut text);
            sys::napi_create_error(env, null_mut(), text, &mut error);
        }
        sys::napi_reject_deferred(env, deferred, error);
    }
}

fn check(status: sys::napi_status) -> Result<()> {
    match status {
        sys::Status::napi_ok => Ok(()),
        status => Err(Error::new(Status::from(status), "N-API call failed")),
    }
}

/// One size for both handle types: a handle is freed without knowing which it is.
fn layout(uv: &Uv) -> Layout {
    // SAFETY: uv_handle_size takes a handle type and returns a size.
    let size = unsafe { (uv.handle_size)(uv::ASYNC).max((uv.handle_size)(uv::POLL)) };
    Layout::from_size_align(size.max(64), 16).expect("libuv handle sizes are small")
}

unsafe fn alloc(uv: &Uv) -> *mut uv::Handle {
    // SAFETY: a non-zero size; the caller frees it with `free`.
    let handle = unsafe { std::alloc::alloc_zeroed(layout(uv)) };
    if handle.is_null() {
        std::alloc::handle_alloc_error(layout(uv));
    }
    handle.cast()
}

unsafe fn free(uv: &Uv, handle: *mut uv::Handle) {
    // SAFETY: allocated by `alloc`, and no longer known to libuv.
    unsafe { std::alloc::dealloc(handle.cast(), layout(uv)) }
}

/// The `Local` a handle belongs to: its `data`, the first field of every libuv handle, holds
/// its environment.
fn local_of(handle: *mut uv::Handle) -> Option<Rc<Local>> {
    // SAFETY: libuv passes back a handle set up in `Local::new`, `data` set there.
    let env = unsafe { *handle.cast::<usize>() };
    LOCALS.with(|l| l.borrow().get(&env).cloned().flatten())
}

unsafe extern "C" fn on_wake(handle: *mut uv::Handle) {
    if let Some(local) = local_of(handle) {
        local.drain();
    }
}

unsafe extern "C" fn on_ready(handle: *mut uv::Handle, _status: i32, _events: i32) {
    if let Some(local) = local_of(handle) {
        TURNING.with(|t| t.set(Arc::as_ptr(&local.woken)));
        local.reactor.turn();
        TURNING.with(|t| t.set(std::ptr::null()));
        local.drain();
    }
}

unsafe extern "C" fn on_closed_alone(handle: *mut uv::Handle) {
    if let Some(uv) = uv::get() {
        // SAFETY: closed, so libuv is done with it.
        unsafe { free(uv, handle) };
    }
}

/// What is left to free once both handles have closed.
struct Closing {
    local: Rc<Local>,
    hook: sys::napi_async_cleanup_hook_handle,
    left: usize,
}

/// The environment is going away (a worker ending, Node exiting): its unfinished runs are
/// dropped, which kills their commands, then the handles close and Node may go on.
unsafe extern "C" fn teardown(hook: sys::napi_async_cleanup_hook_handle, env: *mut c_void) {
    let Some(local) = LOCALS
        .with(|l| l.borrow_mut().remove(&(env as usize)))
        .flatten()
    else {
        // SAFETY: the hook Node handed to this call.
        unsafe { sys::napi_remove_async_cleanup_hook(hook) };
        return;
    };
    let tasks = std::mem::take(&mut *local.tasks.borrow_mut());
    local
        .reactor
        .enter(|| within_runtime_if_available(|| drop(tasks)));
    lock(&local.woken.0).1 = None;
    let (handles, uv) = (local.handles, local.uv);
    // SAFETY: the async context made in `Local::new`, on its environment's thread.
    unsafe { sys::napi_async_destroy(local.env, local.context) };
    let closing = Box::into_raw(Box::new(Closing {
        local,
        hook,
        left: 2,
    }));
    for handle in handles {
        // SAFETY: open handles of this Local; from now on `data` holds the Closing.
        unsafe {
            *handle.cast::<*mut Closing>() = closing;
            (uv.close)(handle, on_closed);
        }
    }
}

unsafe extern "C" fn on_closed(handle: *mut uv::Handle) {
    // SAFETY: `teardown` set `data` to the Closing, freed below once, by the last handle.
    let closing = unsafe { &mut **handle.cast::<*mut Closing>() };
    // SAFETY: closed, so libuv is done with it.
    unsafe { free(closing.local.uv, handle) };
    closing.left -= 1;
    if closing.left == 0 {
        // SAFETY: the last handle: nothing refers to the Closing any more.
        let closing = unsafe { Box::from_raw(closing) };
        // SAFETY: the hook Node handed to `teardown`; Node may go on once it is removed.
        unsafe { sys::napi_remove_async_cleanup_hook(closing.hook) };
    }
}
