//! The napi side: JavaScript values in, core calls, JavaScript values and errors out.

pub mod abort;
pub mod errors;
pub mod options;
pub mod output;
pub mod storage;
pub mod values;

pub use abort::AbortHook;
pub use output::JsOutput;
pub use storage::JsStorage;
