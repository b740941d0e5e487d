//! `WorkerRuntimeConfig` and `RunOptions`: the run controls, read and checked before
//! anything runs. Config values are the defaults; a run's options override them one by one.

use std::ffi::OsString;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi::{JsValue, ValueType};

use super::values;
use crate::error::{ArgProblem, Error};
use crate::fetch::FetchConfig;
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
    let keys = values::own_keys(&obj, name)?;
    let mut vars = Vec::with_capacity(keys.len());
    for key in keys {
        let entry = format!("{name}.{key}");
        if key.is_empty() || key.contains(['=', '\0']) {
            return Err(Error::invalid_arg(
                ArgProblem::Value,
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

/// `config.fetch`: how specs are fetched over HTTP and how large they may be.
pub fn fetch(config: &Object) -> std::result::Result<FetchConfig, Error> {
    let mut fetch = FetchConfig::default();
    let value = values::property(config, "fetch")?;
    if values::is_absent(&value) {
        return Ok(fetch);
    }
    let obj = values::object(&value, "config.fetch")?;
    let name = |key: &str| format!("config.fetch.{key}");
    // 0 means "no limit" for a timeout, as it does for `timeout` in child_process.
    let millis = |ms: f64| {
        if ms == 0.0 || ms.is_infinite() {
            Duration::from_secs(u64::from(u32::MAX))
        } else {
            Duration::from_secs_f64(ms / 1000.0)
        }
    };
    let retries = values::property(&obj, "retries")?;
    if !values::is_absent(&retries) {
        let n = values::non_negative(&retries, &name("retries"), false)?;
        if n.fract() != 0.0 || n > 100.0 {
            return Err(values::out_of_range(
                &name("retries"),
                "an integer from 0 to 100",
                &retries,
            ));
        }
        fetch.retries = n as u32;
    }
    for (key, slot, zero_is_none) in [
        ("retryBaseMs", &mut fetch.retry_base, false),
        ("retryMaxMs", &mut fetch.retry_max, false),
        ("connectTimeoutMs", &mut fetch.connect_timeout, true),
        ("timeoutMs", &mut fetch.timeout, true),
        ("idleTimeoutMs", &mut fetch.idle_timeout, true),
    ] {
        let value = values::property(&obj, key)?;
        if !values::is_absent(&value) {
            let ms = values::non_negative(&value, &name(key), zero_is_none)?;
            *slot = if zero_is_none {
                millis(ms)
            } else {
                Duration::from_secs_f64(ms / 1000.0)
            };
        }
    }
    let max = values::property(&obj, "maxSpecBytes")?;
    if !values::is_absent(&max) {
        let bytes = values::non_negative(&max, &name("maxSpecBytes"), true)?;
        fetch.max_spec_bytes = if bytes.is_finite() {
            bytes as u64
        } else {
            u64::MAX
        };
    }
    let headers = values::property(&obj, "headers")?;
    if !values::is_absent(&headers) {
        for (key, value) in string_entries(&headers, &name("headers"))? {
            let entry = format!("{}.{key}", name("headers"));
            fetch.add_header(&key, &value).map_err(|why| {
                Error::invalid_arg(ArgProblem::Value, format!("The property '{entry}' {why}"))
            })?;
        }
    }
    let cas = values::property(&obj, "caCertificates")?;
    if !values::is_absent(&cas) {
        let list: Vec<Unknown> = if cas.is_array().unwrap_or(false) {
            unsafe { cas.cast::<Vec<Unknown>>() }.map_err(|e| Error::Internal(e.to_string()))?
        } else {
            vec![cas]
        };
        for (i, pem) in list.iter().enumerate() {
            let entry = format!("{}[{i}]", name("caCertificates"));
            let text = values::string(pem, &entry)?;
            fetch.add_ca_pem(&text).map_err(|why| {
                Error::invalid_arg(
                    ArgProblem::Value,
                    format!("The property '{entry}' is not a PEM certificate: {why}"),
                )
            })?;
        }
    }
    Ok(fetch)
}

/// The own enumerable string-valued entries of an object.
fn string_entries(
    value: &Unknown,
    name: &str,
) -> std::result::Result<Vec<(String, String)>, Error> {
    let obj = values::object(value, name)?;
    let keys = values::own_keys(&obj, name)?;
    let mut entries = Vec::with_capacity(keys.len());
    for key in keys {
        let v = values::property(&obj, &key)?;
        entries.push((key.clone(), values::string(&v, &format!("{name}.{key}"))?));
    }
    Ok(entries)
}
