#![deny(clippy::all)]
//! The native `WorkerRuntime` of the Helios renderer; README.md, "Design", maps the modules.

pub mod clients;
pub mod command;
pub mod error;
pub mod fetch;
pub mod job;
#[cfg(unix)]
pub mod orphans;
pub mod process;
pub mod runs;
pub mod runtime;
pub mod source;

pub mod binding;

/// A mutex's guard, poisoned or not: no lock here guards a value a panic could leave half-made.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
