//! The napi side: JavaScript values in, core calls, JavaScript values and errors out.

pub mod errors;
pub mod options;
pub mod storage;
pub mod values;

pub use storage::JsStorage;
