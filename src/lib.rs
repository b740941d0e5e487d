#![deny(clippy::all)]
//! The native `WorkerRuntime` of the Helios distributed video renderer.
//!
//! Every module but `binding` is free of napi and tested with `cargo test`. The binding takes
//! typed values that the JavaScript entry (`index.js`) has already checked, and only converts
//! values and errors.

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
