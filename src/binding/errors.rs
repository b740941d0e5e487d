//! Core errors to JavaScript error objects, built on the JS thread: the right class, the
//! `code`, and the extra properties Node puts on the same kind of error.

use napi::bindgen_prelude::*;
use napi::{Env, JsValue};

use crate::error::{Error, ErrorClass, ExternalError};

/// An error that came from JavaScript (a storage adapter's rejection, a throwing callback),
/// carried through Rust so that the caller gets the very same value back.
#[derive(Debug)]
pub struct FromJs(pub napi::Error);

impl std::fmt::Display for FromJs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.reason)
    }
}

impl std::error::Error for FromJs {}

/// Turn a core error into the `napi::Error` that rejects (or throws) with the right JS object.
pub fn to_napi(env: &Env, err: Error, abort_reason: Option<napi::Error>) -> napi::Error {
    match err {
        Error::Storage(inner) | Error::Callback(inner) => pass_through(inner),
        err => match build(env, &err, abort_reason) {
            Ok(obj) => napi::Error::from(obj.to_unknown()),
            Err(e) => e,
        },
    }
}

fn pass_through(inner: ExternalError) -> napi::Error {
    match inner.downcast::<FromJs>() {
        Ok(js) => js.0,
        Err(other) => napi::Error::from_reason(other.to_string()),
    }
}

fn build<'env>(
    env: &'env Env,
    err: &Error,
    abort_reason: Option<napi::Error>,
) -> Result<Object<'env>> {
    let global = env.get_global()?;
    let class = match err.class() {
        ErrorClass::Error => "Error",
        ErrorClass::TypeError => "TypeError",
    };
    let ctor: Function<String, Unknown> = global.get_named_property(class)?;
    let mut obj: Object = unsafe { ctor.new_instance(err.to_string())?.cast()? };
    obj.set_named_property("code", err.code())?;
    if let Some(name) = err.name() {
        obj.set_named_property("name", name)?;
    }
    match err {
        Error::Io {
            errno,
            syscall,
            path,
            ..
        } => {
            obj.set_named_property("errno", *errno)?;
            obj.set_named_property("syscall", *syscall)?;
            obj.set_named_property("path", path.as_str())?;
        }
        Error::Spawn { program, errno, .. } => {
            obj.set_named_property("errno", *errno)?;
            obj.set_named_property("syscall", format!("spawn {program}"))?;
            obj.set_named_property("path", program.as_str())?;
        }
        Error::HttpStatus { status, url, .. } => {
            obj.set_named_property("status", *status)?;
            obj.set_named_property("url", url.as_str())?;
        }
        Error::Network { url, .. } => {
            obj.set_named_property("url", url.as_str())?;
        }
        Error::InvalidJson { line, column, .. } => {
            obj.set_named_property("line", *line as u32)?;
            obj.set_named_property("column", *column as u32)?;
        }
        Error::Aborted => {
            if let Some(reason) = abort_reason {
                obj.set_named_property("cause", reason)?;
            }
        }
        _ => {}
    }
    Ok(obj)
}
