//! Reading JavaScript arguments and options strictly: a wrong type is a `TypeError` naming
//! the argument and what it received (in Node's words), never a silent coercion.

use napi::bindgen_prelude::*;
use napi::{JsValue, ValueType};

use crate::error::{ArgProblem, Error};

/// Node's "Received …" suffix for a value of the wrong type.
pub fn received(value: &Unknown) -> String {
    let shown = |v: &Unknown| {
        v.coerce_to_string()
            .and_then(|s| s.into_utf8())
            .and_then(|s| s.into_owned())
            .unwrap_or_default()
    };
    match value.get_type() {
        Ok(ValueType::Undefined) => "Received undefined".into(),
        Ok(ValueType::Null) => "Received null".into(),
        Ok(ValueType::String) => {
            let s: String = unsafe { value.cast() }.unwrap_or_default();
            let s = if s.chars().count() > 28 {
                format!("{}...", s.chars().take(25).collect::<String>())
            } else {
                s
            };
            format!("Received type string ('{s}')")
        }
        Ok(ValueType::Number) => format!("Received type number ({})", shown(value)),
        Ok(ValueType::Boolean) => format!("Received type boolean ({})", shown(value)),
        Ok(ValueType::BigInt) => format!("Received type bigint ({}n)", shown(value)),
        Ok(ValueType::Symbol) => "Received type symbol".into(),
        Ok(ValueType::Function) => {
            let name = unsafe { value.cast::<Object>() }
                .and_then(|f| f.get_named_property::<Unknown>("name"))
                .map(|n| shown(&n))
                .unwrap_or_default();
            if name.is_empty() {
                "Received function".into()
            } else {
                format!("Received function {name}")
            }
        }
        Ok(ValueType::Object) => {
            let ctor = unsafe { value.cast::<Object>() }
                .and_then(|o| o.get_named_property::<Unknown>("constructor"))
                .ok()
                .filter(|c| c.get_type().ok() == Some(ValueType::Function))
                .and_then(|c| unsafe { c.cast::<Object>() }.ok())
                .and_then(|c| c.get_named_property::<Unknown>("name").ok())
                .map(|n| shown(&n))
                .unwrap_or_default();
            if ctor.is_empty() {
                "Received [object Object]".into()
            } else {
                format!("Received an instance of {ctor}")
            }
        }
        _ => "Received an unsupported value".into(),
    }
}

/// `The "name" argument must be …` (or `property` for a dotted option name).
pub fn wrong_type(name: &str, expected: &str, value: &Unknown) -> Error {
    let what = if name.contains('.') {
        "property"
    } else {
        "argument"
    };
    Error::invalid_arg(
        ArgProblem::Type,
        format!(
            "The \"{name}\" {what} must be {expected}. {}",
            received(value)
        ),
    )
}

pub fn out_of_range(name: &str, range: &str, value: &Unknown) -> Error {
    let shown = value
        .coerce_to_string()
        .and_then(|s| s.into_utf8())
        .and_then(|s| s.into_owned())
        .unwrap_or_default();
    Error::invalid_arg(
        ArgProblem::Range,
        format!("The value of \"{name}\" is out of range. It must be {range}. Received {shown}"),
    )
}

pub fn invalid_value(name: &str, why: &str, value: &Unknown) -> Error {
    let shown = match value.get_type() {
        Ok(ValueType::String) => format!(
            "'{}'",
            unsafe { value.cast::<String>() }.unwrap_or_default()
        ),
        _ => value
            .coerce_to_string()
            .and_then(|s| s.into_utf8())
            .and_then(|s| s.into_owned())
            .unwrap_or_default(),
    };
    Error::invalid_arg(
        ArgProblem::Value,
        format!(
            "The {} '{name}' {why}. Received {shown}",
            if name.contains('.') {
                "property"
            } else {
                "argument"
            }
        ),
    )
}

/// `undefined` and `null` both mean "not given": callers pass either.
pub fn is_absent(value: &Unknown) -> bool {
    matches!(value.get_type(), Ok(ValueType::Undefined | ValueType::Null))
}

pub fn string(value: &Unknown, name: &str) -> std::result::Result<String, Error> {
    match value.get_type() {
        Ok(ValueType::String) => {
            unsafe { value.cast::<String>() }.map_err(|e| Error::Internal(e.to_string()))
        }
        _ => Err(wrong_type(name, "of type string", value)),
    }
}

pub fn number(value: &Unknown, name: &str) -> std::result::Result<f64, Error> {
    match value.get_type() {
        Ok(ValueType::Number) => {
            unsafe { value.cast::<f64>() }.map_err(|e| Error::Internal(e.to_string()))
        }
        _ => Err(wrong_type(name, "of type number", value)),
    }
}

/// A whole number of milliseconds or bytes, `>= 0`; `Infinity` when `allow_infinity`.
pub fn non_negative(
    value: &Unknown,
    name: &str,
    allow_infinity: bool,
) -> std::result::Result<f64, Error> {
    let n = number(value, name)?;
    let ok = n >= 0.0 && (n.is_finite() || (allow_infinity && n == f64::INFINITY));
    if ok {
        Ok(n)
    } else {
        let range = if allow_infinity {
            ">= 0 (or Infinity)"
        } else {
            "a finite number >= 0"
        };
        Err(out_of_range(name, range, value))
    }
}

pub fn object<'env>(value: &Unknown<'env>, name: &str) -> std::result::Result<Object<'env>, Error> {
    match value.get_type() {
        Ok(ValueType::Object) if !value.is_array().unwrap_or(false) => {
            unsafe { value.cast::<Object>() }.map_err(|e| Error::Internal(e.to_string()))
        }
        _ => Err(wrong_type(name, "of type object", value)),
    }
}

pub fn is_function(value: &Unknown) -> bool {
    value.get_type().ok() == Some(ValueType::Function)
}

/// A property of `obj`, as an `Unknown` (getters run, as they would in JavaScript).
pub fn property<'env>(obj: &Object<'env>, key: &str) -> std::result::Result<Unknown<'env>, Error> {
    obj.get_named_property::<Unknown>(key)
        .map_err(|e| Error::Internal(format!("cannot read property '{key}': {e}")))
}

/// The own enumerable keys of `obj` (named `name` in messages).
pub fn own_keys(obj: &Object, name: &str) -> std::result::Result<Vec<String>, Error> {
    obj.get_property_names()
        .and_then(|keys| unsafe { keys.to_unknown().cast::<Vec<String>>() })
        .map_err(|e| Error::Internal(format!("cannot list the keys of {name}: {e}")))
}
