//! `run()`: load → validate → assets → find chunk → execute, in the order the TypeScript
//! runtime reports its errors.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::command::parse_command;
use crate::error::{Error, ExternalError};
use crate::fetch::FetchConfig;
use crate::job;
use crate::process::{self, BoxFuture, Controls, Outcome, OutputSink};
use crate::source::{JobSource, Loader};

/// Downloads a job's asset bundle into the workspace (the user's `ArtifactStorage`).
pub trait AssetStore: Send + Sync {
    fn download_asset_bundle(
        &self,
        job_id: Option<Value>,
        remote_url: String,
        target_dir: PathBuf,
    ) -> BoxFuture<'static, Result<(), ExternalError>>;
}

/// A runtime: one workspace, and one HTTP client for every run.
pub struct Runtime {
    workspace: PathBuf,
    loader: Loader,
}

/// What a run needs beyond its controls.
#[derive(Default)]
pub struct RunExtras {
    pub storage: Option<Arc<dyn AssetStore>>,
    pub sink: Option<Arc<dyn OutputSink>>,
    pub cancel: CancellationToken,
}

impl Runtime {
    pub fn new(workspace: PathBuf, fetch: FetchConfig) -> Self {
        Runtime {
            workspace,
            loader: Loader::new(fetch),
        }
    }

    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// Run chunk `chunk_id` of the spec at `source`.
    pub async fn run(
        &self,
        source: JobSource,
        chunk_id: i64,
        controls: Controls,
        extras: RunExtras,
    ) -> Result<Outcome, Error> {
        let cancel = &extras.cancel;
        if cancel.is_cancelled() {
            return Err(Error::Aborted);
        }
        // The timeout covers the whole run: what is left of it when the command starts is
        // the command's.
        let deadline = controls.timeout.map(|t| Instant::now() + t);
        let stage = AtomicU8::new(LOADING);
        let prepare = async {
            let plan = self
                .loader
                .load(&source, move |bytes, name| job::plan(bytes, name, chunk_id))
                .await?;
            let mut workspace_ready = false;
            if let Some(url) = plan.assets_url {
                let storage = extras.storage.as_ref().ok_or(Error::StorageRequired)?;
                ensure_workspace(&self.workspace)?;
                workspace_ready = true;
                stage.store(DOWNLOADING, Ordering::Relaxed);
                storage
                    .download_asset_bundle(plan.job_id, url, self.workspace.clone())
                    .await
                    .map_err(Error::Storage)?;
            }
            let command = parse_command(&plan.command?)?;
            if !workspace_ready {
                ensure_workspace(&self.workspace)?;
            }
            Ok::<_, Error>(command)
        };
        let expired = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
                None => std::future::pending().await,
            }
        };
        let command = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(Error::Aborted),
            command = prepare => command?,
            _ = expired => return Err(Error::RunTimeout {
                ms: controls.timeout.unwrap_or_default().as_millis(),
                stage: STAGES[usize::from(stage.load(Ordering::Relaxed))],
            }),
        };
        let controls = Controls {
            timeout: deadline.map(|d| d.saturating_duration_since(Instant::now())),
            ..controls
        };
        process::run(process::Command {
            program: &command.program,
            args: &command.args,
            cwd: &self.workspace,
            controls: &controls,
            sink: extras.sink.as_deref(),
            cancel,
        })
        .await
    }
}

/// A run's whole environment: `inherited` when given (a worker thread's own copy), else this
/// process's, with `overlays` laid over it (`None` removes a variable). Call it on the
/// JavaScript thread only: Node writes the process's environment from that thread, so reading
/// it there cannot race with a write, while reading it from another thread can, and crashes.
pub fn environment<'a>(
    inherited: Option<HashMap<String, String>>,
    overlays: impl Iterator<Item = (&'a String, &'a Option<String>)>,
) -> Vec<(OsString, OsString)> {
    let mut env: HashMap<OsString, OsString> = match inherited {
        Some(given) => given
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
        None => std::env::vars_os().collect(),
    };
    for (key, value) in overlays {
        match value {
            Some(value) => env.insert(key.into(), value.into()),
            None => env.remove(OsStr::new(key)),
        };
    }
    env.into_iter().collect()
}

const LOADING: u8 = 0;
const DOWNLOADING: u8 = 1;
/// What a run was doing when its timeout passed before its command started.
const STAGES: [&str; 2] = [
    "loading the job spec",
    "waiting for storage.downloadAssetBundle",
];

/// Create the workspace (and its parents) when missing; refuse a path that is not a directory.
fn ensure_workspace(dir: &Path) -> Result<(), Error> {
    let shown = dir.display().to_string();
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(Error::Io {
            code: "ENOTDIR".into(),
            errno: -20,
            syscall: "mkdir",
            path: shown,
            detail: ": the workspaceDir exists and is not a directory".into(),
        }),
        Err(_) => std::fs::create_dir_all(dir).map_err(|e| {
            let mut err = Error::io(&e, "mkdir", shown);
            if let Error::Io { detail, .. } = &mut err {
                *detail = ": cannot create the workspaceDir".into();
            }
            err
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A scratch directory, removed again when the test is done with it.
    struct Scratch(PathBuf);

    impl std::ops::Deref for Scratch {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn temp_dir(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("hwr-runtime-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write_spec(dir: &Path, json: &str) -> JobSource {
        let path = dir.join("job.json");
        std::fs::write(&path, json).unwrap();
        JobSource::File {
            shown: path.display().to_string(),
            path,
        }
    }

    struct RecordingStore(Mutex<Vec<(Option<Value>, String, PathBuf)>>);

    impl AssetStore for RecordingStore {
        fn download_asset_bundle(
            &self,
            job_id: Option<Value>,
            remote_url: String,
            target_dir: PathBuf,
        ) -> BoxFuture<'static, Result<(), ExternalError>> {
            self.0
                .lock()
                .unwrap()
                .push((job_id, remote_url, target_dir.clone()));
            Box::pin(async move {
                std::fs::write(target_dir.join("asset.txt"), "from storage")?;
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn runs_the_chunk_in_a_created_workspace_after_the_assets() {
        let dir = temp_dir("assets");
        let source = write_spec(
            &dir,
            r#"{"id":"job-7","assetsUrl":"s3://b/a.zip","chunks":[{"id":1,"command":"cat asset.txt"}]}"#,
        );
        let workspace = dir.join("deep/work");
        let store = Arc::new(RecordingStore(Mutex::default()));
        let runtime = Runtime::new(workspace.clone(), FetchConfig::default());
        let extras = RunExtras {
            storage: Some(store.clone()),
            ..RunExtras::default()
        };
        let outcome = runtime
            .run(source, 1, Controls::default(), extras)
            .await
            .unwrap();
        assert_eq!(outcome.stdout, "from storage");
        let calls = store.0.lock().unwrap().clone();
        assert_eq!(
            calls,
            [(
                Some(Value::from("job-7")),
                "s3://b/a.zip".to_owned(),
                workspace
            )]
        );
    }

    #[tokio::test]
    async fn assets_without_storage_are_refused_before_the_chunk_is_looked_up() {
        let dir = temp_dir("nostorage");
        let source = write_spec(&dir, r#"{"assetsUrl":"s3://x","chunks":[]}"#);
        let runtime = Runtime::new(dir.join("w"), FetchConfig::default());
        let err = runtime
            .run(source, 3, Controls::default(), RunExtras::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "ERR_STORAGE_REQUIRED");
    }

    #[tokio::test]
    async fn a_workspace_that_is_a_file_is_refused() {
        let dir = temp_dir("notdir");
        let source = write_spec(&dir, r#"{"chunks":[{"id":0,"command":"true"}]}"#);
        let file = dir.join("file");
        std::fs::write(&file, "").unwrap();
        let runtime = Runtime::new(file.clone(), FetchConfig::default());
        let err = runtime
            .run(source, 0, Controls::default(), RunExtras::default())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "ENOTDIR");
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn the_environment_is_the_inherited_one_with_the_overlays() {
        let inherited = HashMap::from([
            ("A".to_owned(), "1".to_owned()),
            ("B".to_owned(), "2".to_owned()),
        ]);
        let defaults = HashMap::from([
            ("B".to_owned(), None),
            ("C".to_owned(), Some("3".to_owned())),
        ]);
        let run = HashMap::from([("C".to_owned(), Some("4".to_owned()))]);
        let mut env = environment(Some(inherited), defaults.iter().chain(run.iter()));
        env.sort();
        assert_eq!(env, [("A".into(), "1".into()), ("C".into(), "4".into())]);
    }

    #[tokio::test]
    async fn an_already_cancelled_run_does_nothing() {
        let dir = temp_dir("cancelled");
        let marker = dir.join("ran");
        let source = write_spec(
            &dir,
            &format!(
                r#"{{"chunks":[{{"id":0,"command":"touch {}"}}]}}"#,
                marker.display()
            ),
        );
        let runtime = Runtime::new(dir.to_path_buf(), FetchConfig::default());
        let extras = RunExtras::default();
        extras.cancel.cancel();
        let err = runtime
            .run(source, 0, Controls::default(), extras)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Aborted));
        assert!(!marker.exists());
    }
}
