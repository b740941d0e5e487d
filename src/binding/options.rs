//! `WorkerRuntimeConfig` and `RunOptions`: the run controls, read and checked before
//! anything runs. Config values are the defaults; a run's options override them one by one.

use std::ffi::OsString;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi::{JsValue, ValueType};

use super::values;
use crate::error::Error;
use crate::process::{Controls, Signal};

/// Lay the controls found in `obj` (named `prefix` in messages) over `base`.
pub fn controls(
    obj: &Object,
    prefix: &str,
    base: &Controls,
) -> std::result::Result<Controls, Error> {
    let mut controls = base.clone();
    let name = |key: &str| format!("{prefix}.{key}");

    let timeout = values::property(obj, "timeout")?;
    if !values::is_absent(&timeout) {
        let ms = values::non_negative(&timeout, &name("timeout"), true)?;
        // As in child_process: 0 (and Infinity) mean no timeout.
        controls.timeout =
            (ms > 0.0 && ms.is_finite()).then(|| Duration::from_secs_f64(ms / 1000.0));
    }

    let kill_signal = values::property(obj, "killSignal")?;
    if !values::is_absent(&kill_signal) {
        controls.kill_signal = signal(&kill_signal, &name("killSignal"))?;
    }

    let grace = values::property(obj, "killGracePeriod")?;
    if !values::is_absent(&grace) {
        let ms = values::non_negative(&grace, &name("killGracePeriod"), false)?;
        controls.kill_grace = Duration::from_secs_f64(ms / 1000.0);
    }

    let max_buffer = values::property(obj, "maxBuffer")?;
    if !values::is_absent(&max_buffer) {
        let bytes = values::non_negative(&max_buffer, &name("maxBuffer"), true)?;
        controls.max_buffer = if bytes.is_finite() {
            bytes as usize
        } else {
            usize::MAX
        };
    }

    let env = values::property(obj, "env")?;
    if !values::is_absent(&env) {
        controls.env = environment(&env, &name("env"))?;
    }
    Ok(controls)
}

fn signal(value: &Unknown, name: &str) -> std::result::Result<Signal, Error> {
    let found = match value.get_type() {
        Ok(ValueType::String) => Signal::from_name(&values::string(value, name)?),
        Ok(ValueType::Number) => {
            let n = values::number(value, name)?;
            if n.fract() == 0.0 {
                Signal::from_number(n as i64)
            } else {
                None
            }
        }
        _ => return Err(values::wrong_type(name, "of type string or number", value)),
    };
    found
        .ok_or_else(|| values::invalid_value(name, "is not a known signal (e.g. 'SIGTERM')", value))
}

/// `{ KEY: 'value' }` laid over the inherited environment. `undefined` is skipped (as
/// `child_process` skips it); `null` removes an inherited variable; numbers and booleans are
/// written as JavaScript would print them.
fn environment(
    value: &Unknown,
    name: &str,
) -> std::result::Result<Vec<(OsString, Option<OsString>)>, Error> {
    let obj = values::object(value, name)?;
    let keys = obj
        .get_property_names()
        .and_then(|keys| unsafe { keys.to_unknown().cast::<Vec<String>>() })
        .map_err(|e| Error::Internal(format!("cannot list the keys of {name}: {e}")))?;
    let mut vars = Vec::with_capacity(keys.len());
    for key in keys {
        let entry = format!("{name}.{key}");
        if key.is_empty() || key.contains(['=', '\0']) {
            return Err(Error::invalid_arg(
                crate::error::ArgProblem::Value,
                format!("The property '{entry}' is not a valid environment variable name"),
            ));
        }
        let v = values::property(&obj, &key)?;
        let v = match v.get_type() {
            Ok(ValueType::Undefined) => continue,
            Ok(ValueType::Null) => None,
            Ok(ValueType::String | ValueType::Number | ValueType::Boolean) => {
                let text = v
                    .coerce_to_string()
                    .and_then(|s| s.into_utf8())
                    .and_then(|s| s.into_owned())
                    .map_err(|e| Error::Internal(e.to_string()))?;
                if text.contains('\0') {
                    return Err(values::invalid_value(
                        &entry,
                        "must not contain NUL bytes",
                        &v,
                    ));
                }
                Some(OsString::from(text))
            }
            _ => return Err(values::wrong_type(&entry, "of type string", &v)),
        };
        vars.push((OsString::from(key), v));
    }
    Ok(vars)
}
