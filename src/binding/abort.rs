//! `options.signal`: an `AbortSignal` whose abort trips the run's [`CancelToken`].
//!
//! napi's own `AbortSignal` type only cancels queued `AsyncTask`s; a run is a future that has
//! long started, so the listener is added here and removed again when the run settles (a
//! signal reused across many runs must not collect listeners).

use napi::bindgen_prelude::*;
use napi::{Env, JsValue, UnknownRef, ValueType};

use super::values;
use crate::cancel::CancelToken;
use crate::error::Error;

/// Holds the signal and its listener until the run settles.
pub struct AbortHook {
    signal: UnknownRef,
    listener: Option<UnknownRef>,
}

impl AbortHook {
    /// Check `value` is an `AbortSignal` and wire it to `token`. An already aborted signal
    /// trips the token at once.
    pub fn attach(
        env: &Env,
        value: &Unknown,
        token: &CancelToken,
    ) -> std::result::Result<Self, Error> {
        let not_a_signal =
            || values::wrong_type("options.signal", "an instance of AbortSignal", value);
        if value.get_type().ok() != Some(ValueType::Object) {
            return Err(not_a_signal());
        }
        let obj: Object = unsafe { value.cast() }.map_err(|_| not_a_signal())?;
        let aborted = values::property(&obj, "aborted")?;
        let add = values::property(&obj, "addEventListener")?;
        if aborted.get_type().ok() != Some(ValueType::Boolean) || !values::is_function(&add) {
            return Err(not_a_signal());
        }
        let internal =
            |e: napi::Error| Error::Internal(format!("cannot listen to options.signal: {e}"));
        let signal = value.create_ref().map_err(internal)?;
        if unsafe { aborted.cast::<bool>() }.map_err(internal)? {
            token.cancel();
            return Ok(AbortHook {
                signal,
                listener: None,
            });
        }
        let on_abort = {
            let token = token.clone();
            env.create_function_from_closure::<(), (), _>("onAbort", move |_| {
                token.cancel();
                Ok(())
            })
            .map_err(internal)?
        };
        let add: Function<FnArgs<(&str, Unknown, Object)>, Unknown> =
            unsafe { add.cast() }.map_err(internal)?;
        let mut once = Object::new(env).map_err(internal)?;
        once.set_named_property("once", true).map_err(internal)?;
        let listener = on_abort.to_unknown();
        add.apply(obj, FnArgs::from(("abort", listener, once)))
            .map_err(internal)?;
        Ok(AbortHook {
            signal,
            listener: Some(listener.create_ref().map_err(internal)?),
        })
    }

    /// Remove the listener and release the signal. Returns `signal.reason`, for the
    /// `AbortError`'s `cause`, when the run was aborted.
    pub fn detach(self, env: &Env, aborted: bool) -> Option<napi::Error> {
        let signal = self.signal.get_value(env).ok();
        let mut reason = None;
        if let Some(signal) = signal.and_then(|s| unsafe { s.cast::<Object>() }.ok()) {
            if let (Some(listener), Ok(remove)) = (
                self.listener.as_ref().and_then(|l| l.get_value(env).ok()),
                signal.get_named_property::<Unknown>("removeEventListener"),
            ) {
                if values::is_function(&remove) {
                    if let Ok(remove) =
                        unsafe { remove.cast::<Function<FnArgs<(&str, Unknown)>, Unknown>>() }
                    {
                        let _ = remove.apply(signal, FnArgs::from(("abort", listener)));
                    }
                }
            }
            if aborted {
                reason = signal
                    .get_named_property::<Unknown>("reason")
                    .ok()
                    .filter(|r| r.get_type().ok() != Some(ValueType::Undefined))
                    .map(napi::Error::from_unknown_without_coercion);
            }
        }
        if let Some(listener) = self.listener {
            let _ = listener.unref(env);
        }
        let _ = self.signal.unref(env);
        reason
    }
}
