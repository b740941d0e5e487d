//! A command's pipes and pidfd, waited on by whichever loop polls its run: tokio's, or a
//! [`Reactor`] that the JavaScript thread's event loop turns (`binding::local`), so that a
//! command's exit wakes that thread itself rather than a tokio worker that then wakes it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use mio::unix::SourceFd;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, ReadBuf};

/// Readiness of the descriptors registered while a run is polled on its thread. Locks that
/// thread alone takes: a run's future must be `Send` for tokio, whichever loop polls it.
pub struct Reactor {
    poll: Mutex<(mio::Poll, mio::Events)>,
    slots: Mutex<HashMap<usize, Readiness>>,
    next: AtomicUsize,
}

#[derive(Default)]
struct Readiness {
    ready: bool,
    waker: Option<Waker>,
}

/// A descriptor's readiness on a [`Reactor`], kept apart from the descriptor.
pub struct Slot(Arc<Reactor>, usize);

impl Slot {
    /// Have the next read try at once, before the reactor has said so: a read that would block
    /// clears it again.
    pub fn expect_ready(self) {
        if let Some(readiness) = crate::lock(&self.0.slots).get_mut(&self.1) {
            readiness.ready = true;
        }
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Reactor>>> = const { RefCell::new(None) };
}

impl Reactor {
    pub fn new() -> io::Result<Arc<Self>> {
        Ok(Arc::new(Reactor {
            poll: Mutex::new((mio::Poll::new()?, mio::Events::with_capacity(64))),
            slots: Mutex::default(),
            next: AtomicUsize::new(0),
        }))
    }

    /// Readable when [`turn`](Self::turn) has something to do.
    pub fn fd(&self) -> i32 {
        crate::lock(&self.poll).0.as_raw_fd()
    }

    /// Runs `f` with descriptors made meanwhile (`Watched::new`) registered here.
    pub fn enter<T>(self: &Arc<Self>, f: impl FnOnce() -> T) -> T {
        let outer = CURRENT.with(|c| c.replace(Some(self.clone())));
        struct Restore(Option<Arc<Reactor>>);
        impl Drop for Restore {
            fn drop(&mut self) {
                CURRENT.with(|c| *c.borrow_mut() = self.0.take());
            }
        }
        let _restore = Restore(outer);
        f()
    }

    /// Marks what became ready and wakes its tasks; never blocks.
    pub fn turn(&self) {
        let mut guard = crate::lock(&self.poll);
        let (poll, events) = &mut *guard;
        if poll.poll(events, Some(Duration::ZERO)).is_err() {
            return;
        }
        let mut woken = Vec::new();
        let mut slots = crate::lock(&self.slots);
        for event in events.iter() {
            if let Some(slot) = slots.get_mut(&event.token().0) {
                slot.ready = true;
                woken.extend(slot.waker.take());
            }
        }
        drop((slots, guard));
        woken.into_iter().for_each(Waker::wake);
    }
}

/// A descriptor whose readiness the polling loop reports.
pub enum Watched {
    Tokio(AsyncFd<OwnedFd>),
    Local(Arc<Reactor>, usize, OwnedFd),
}

impl Watched {
    /// Registered with the current [`Reactor`] when there is one, else with tokio's.
    pub fn new(fd: OwnedFd) -> io::Result<Self> {
        set_nonblocking(&fd)?;
        let raw = fd.as_raw_fd();
        Ok(match CURRENT.with(|c| c.borrow().clone()) {
            Some(reactor) => {
                let token = reactor.next.fetch_add(1, Ordering::Relaxed);
                let interest = mio::Interest::READABLE;
                (crate::lock(&reactor.poll).0.registry()).register(
                    &mut SourceFd(&raw),
                    mio::Token(token),
                    interest,
                )?;
                crate::lock(&reactor.slots).insert(token, Readiness::default());
                Watched::Local(reactor, token, fd)
            }
            // SAFETY: the AsyncFd owns the fd, so it stays open while it is registered.
            None => Watched::Tokio(unsafe {
                AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)?
            }),
        })
    }

    /// Its readiness on the JavaScript thread's reactor; `None` on tokio's.
    pub fn slot(&self) -> Option<Slot> {
        match self {
            Watched::Local(reactor, token, _) => Some(Slot(reactor.clone(), *token)),
            Watched::Tokio(_) => None,
        }
    }

    /// Ready once readable; it stays so until a read says otherwise (an exited pidfd, for ever).
    pub async fn readable(&mut self) {
        std::future::poll_fn(|cx| match self {
            // An error (the runtime shutting down) ends the wait too: the caller finds out.
            Watched::Tokio(fd) => fd.poll_read_ready(cx).map(|_| ()),
            Watched::Local(reactor, token, _) => poll_local(reactor, *token, cx),
        })
        .await
    }
}

fn poll_local(reactor: &Reactor, token: usize, cx: &mut Context<'_>) -> Poll<()> {
    let mut slots = crate::lock(&reactor.slots);
    let slot = slots.entry(token).or_default();
    if slot.ready {
        return Poll::Ready(());
    }
    slot.waker = Some(cx.waker().clone());
    Poll::Pending
}

/// One `read(2)` into `buf`'s unfilled part, not zeroed first (most runs barely touch it).
fn read_into(fd: i32, buf: &mut ReadBuf<'_>) -> io::Result<()> {
    loop {
        // SAFETY: read(2) writes at most `len` bytes there; only what it wrote is marked filled.
        let n = unsafe {
            let unfilled = buf.unfilled_mut();
            libc::read(fd, unfilled.as_mut_ptr().cast(), unfilled.len())
        };
        if n >= 0 {
            // SAFETY: the first `n` bytes were just written.
            unsafe { buf.assume_init(n as usize) };
            buf.advance(n as usize);
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // A command that writes without pause must not hold the loop: reads share tokio's budget.
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        let read = match &mut *self {
            // The readiness cleared on `WouldBlock` is the one this read saw, never a later one.
            Watched::Tokio(fd) => loop {
                let mut guard = ready!(fd.poll_read_ready(cx))?;
                if let Ok(read) = guard.try_io(|fd| read_into(fd.as_raw_fd(), buf)) {
                    break read;
                }
            },
            Watched::Local(reactor, token, fd) => loop {
                ready!(poll_local(reactor, *token, cx));
                match read_into(fd.as_raw_fd(), buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // Set again only by a `turn` after this, on this same thread.
                        if let Some(slot) = crate::lock(&reactor.slots).get_mut(token) {
                            slot.ready = false;
                        }
                    }
                    read => break read,
                }
            },
        };
        if read.is_ok() {
            coop.made_progress();
        }
        Poll::Ready(read)
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        // Closing the descriptor, right after this, takes it out of the epoll set; a copy that a
        // command being spawned holds until its `exec` can only report a token no longer used.
        if let Watched::Local(reactor, token, _) = self {
            crate::lock(&reactor.slots).remove(token);
        }
    }
}

fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // A new pipe or pidfd has no other status flags to keep.
    // SAFETY: fcntl on a descriptor we own; no memory is involved.
    match unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}
