//! Core errors as the objects Node makes for their kind: class, `code`, extra properties.

use napi::bindgen_prelude::*;
use napi::{Env, JsValue};

use super::bridge::FromJs;
use crate::error::Error;

pub fn to_napi(env: &Env, err: Error) -> napi::Error {
    if let Error::Storage(inner) = err {
        return match inner.downcast::<FromJs>() {
            Ok(js) => js.0,
            Err(other) => napi::Error::from_reason(other.to_string()),
        };
    }
    build(env, &err).map_or_else(|e| thrown(env).unwrap_or(e), |obj| obj.to_unknown().into())
}

/// What user code threw while the error was built (a global `Error` replaced by one that
/// throws), taken, so that the run rejects with it: left pending, it made the rejection fail,
/// the promise never settled, and the next N-API call failed in its stead.
fn thrown(env: &Env) -> Option<napi::Error> {
    let (mut pending, mut value) = (false, std::ptr::null_mut());
    // SAFETY: N-API calls on `env`'s thread, with out-pointers to locals; the value is used
    // at once, in the handle scope this conversion runs in.
    unsafe {
        napi::sys::napi_is_exception_pending(env.raw(), &mut pending);
        if !pending || napi::sys::napi_get_and_clear_last_exception(env.raw(), &mut value) != 0 {
            return None;
        }
        Some(Unknown::from_raw_unchecked(env.raw(), value).into())
    }
}

fn build<'env>(env: &'env Env, err: &Error) -> Result<Object<'env>> {
    // Bad arguments and options are `TypeError`s, as the TypeScript runtime's callers expect.
    let class = match err {
        Error::InvalidArgument(_) | Error::InvalidUrl { .. } => "TypeError",
        _ => "Error",
    };
    let ctor: Function<String, Unknown> = env.get_global()?.get_named_property(class)?;
    let mut obj: Object = ctor.new_instance(err.to_string())?.coerce_to_object()?;
    obj.set_named_property("code", err.code())?;
    if matches!(err, Error::Aborted) {
        obj.set_named_property("name", "AbortError")?;
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
        Error::Network { url, .. } => obj.set_named_property("url", url.as_str())?,
        Error::InvalidJson { line, column, .. } => {
            obj.set_named_property("line", *line as u32)?;
            obj.set_named_property("column", *column as u32)?;
        }
        _ => {}
    }
    Ok(obj)
}
