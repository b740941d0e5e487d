//! The storage bridge: `storage.downloadAssetBundle(jobId, remoteUrl, targetDir)` called as a
//! method of the user's object, from any thread, its promise awaited from Rust.

use std::path::PathBuf;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, JsValue};
use tokio::sync::oneshot;

use super::errors::FromJs;
use super::values;
use crate::error::{Error, ExternalError};
use crate::process::BoxFuture;
use crate::runtime::AssetStore;

type DownloadArgs = (Either<String, ()>, String, String);

/// `downloadAssetBundle` bound to its object. Weak: a runtime kept in a module-level
/// variable must not keep Node alive once the work is done.
type DownloadFn =
    ThreadsafeFunction<DownloadArgs, Unknown<'static>, FnArgs<DownloadArgs>, Status, false, true>;

pub struct JsStorage {
    download: DownloadFn,
}

impl JsStorage {
    /// Check `storage` (at construction, so a bad adapter fails fast) and bind its method.
    pub fn from_js(storage: &Unknown) -> std::result::Result<Option<Self>, Error> {
        if values::is_absent(storage) {
            return Ok(None);
        }
        let obj = values::object(storage, "config.storage")?;
        let method = values::property(&obj, "downloadAssetBundle")?;
        if !values::is_function(&method) {
            return Err(values::wrong_type(
                "config.storage.downloadAssetBundle",
                "of type function",
                &method,
            ));
        }
        let internal = |e: napi::Error| {
            Error::Internal(format!(
                "cannot bind config.storage.downloadAssetBundle: {e}"
            ))
        };
        let method: Function<FnArgs<DownloadArgs>, Unknown<'static>> =
            unsafe { method.cast() }.map_err(internal)?;
        let bound: Function<FnArgs<DownloadArgs>, Unknown<'static>> =
            method.bind(obj).map_err(internal)?;
        let download = bound
            .build_threadsafe_function::<DownloadArgs>()
            .callee_handled::<false>()
            .weak::<true>()
            // Spread the tuple into three arguments (a bare tuple would arrive as one array).
            .build_callback(|ctx| Ok(FnArgs::from(ctx.value)))
            .map_err(internal)?;
        Ok(Some(JsStorage { download }))
    }
}

/// Accepts whatever the adapter's promise resolves with.
struct Settled;

impl TypeName for Settled {
    fn type_name() -> &'static str {
        "unknown"
    }
    fn value_type() -> ValueType {
        ValueType::Unknown
    }
}

impl ValidateNapiValue for Settled {}

impl FromNapiValue for Settled {
    unsafe fn from_napi_value(_: napi::sys::napi_env, _: napi::sys::napi_value) -> Result<Self> {
        Ok(Settled)
    }
}

/// `Promise.resolve(value)`, so an adapter that returns a plain value (or nothing) is
/// awaited the way `await` would, then handed to Rust as a future.
fn as_promise(env: &Env, value: Unknown) -> Result<Promise<Settled>> {
    let global = env.get_global()?;
    // `Promise` is a function, which the typed getter would refuse as an `Object`.
    let promise_ctor: Unknown = global.get_named_property("Promise")?;
    let promise_ctor: Object = unsafe { promise_ctor.cast()? };
    let resolve: Function<Unknown, Unknown> = promise_ctor.get_named_property("resolve")?;
    let promise = resolve.apply(promise_ctor, value)?;
    unsafe { Promise::<Settled>::from_napi_value(env.raw(), promise.raw()) }
}

impl AssetStore for JsStorage {
    fn download_asset_bundle(
        &self,
        job_id: Option<String>,
        remote_url: String,
        target_dir: PathBuf,
    ) -> BoxFuture<'static, std::result::Result<(), ExternalError>> {
        let (tx, rx) = oneshot::channel::<Result<Promise<Settled>>>();
        let job_id = match job_id {
            Some(id) => Either::A(id),
            None => Either::B(()),
        };
        let args = (job_id, remote_url, target_dir.display().to_string());
        let status = self.download.call_with_return_value(
            args,
            ThreadsafeFunctionCallMode::NonBlocking,
            move |returned: Result<Unknown<'static>>, env: Env| {
                // A synchronous throw arrives as Err, carrying the thrown value.
                let _ = tx.send(returned.and_then(|value| as_promise(&env, value)));
                Ok(())
            },
        );
        Box::pin(async move {
            if status != Status::Ok {
                return Err(
                    format!("cannot call config.storage.downloadAssetBundle: {status}").into(),
                );
            }
            let promise = rx
                .await
                .map_err(|_| {
                    "config.storage.downloadAssetBundle was never called: Node is shutting down"
                })?
                .map_err(|e| Box::new(FromJs(e)) as ExternalError)?;
            promise
                .await
                .map(|Settled| ())
                .map_err(|e| Box::new(FromJs(e)) as ExternalError)
        })
    }
}
