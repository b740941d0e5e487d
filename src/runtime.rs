//! `run()`: load → validate → assets → find chunk → execute, in the TypeScript runtime's order.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::command::parse_command;
use crate::error::{Error, ExternalError};
use crate::fetch::FetchConfig;
use crate::job::{self, Target};
use crate::process::{self, BoxFuture, Controls, Outcome, OutputSink};
use crate::source::{self, JobSource};

pub trait AssetStore: Send + Sync {
    fn download_asset_bundle(
        &self,
        job_id: Option<String>,
        remote_url: String,
        target_dir: PathBuf,
    ) -> BoxFuture<'static, Result<(), ExternalError>>;
}

pub struct Runtime {
    pub workspace: PathBuf,
    pub per_job: bool,
    pub fetch: FetchConfig,
}

#[derive(Default)]
pub struct RunExtras {
    pub storage: Option<Arc<dyn AssetStore>>,
    pub sink: Option<Arc<dyn OutputSink>>,
    pub cancel: CancellationToken,
    pub group: Arc<process::Group>,
    /// When the run was asked for, if it was held back: its timeout counts from then.
    pub asked: Option<Instant>,
}

impl Runtime {
    pub async fn run(
        &self,
        source: JobSource,
        target: Target,
        controls: Controls,
        extras: RunExtras,
    ) -> Result<Outcome, Error> {
        let cancel = &extras.cancel;
        // The timeout covers the whole run; the command gets what is left of it.
        let asked = extras.asked.unwrap_or_else(Instant::now);
        let deadline = controls.timeout.and_then(|t| asked.checked_add(t));
        let downloading = AtomicBool::new(false);
        let prepare = async {
            let plan = source::load(&self.fetch, &source, move |bytes, name| {
                job::plan(bytes, name, target)
            })
            .await?;
            let cwd = match self.per_job {
                true => self.workspace.join(job_dir_name(plan.job_id.as_deref())?),
                false => self.workspace.clone(),
            };
            if let Some(url) = &plan.assets_url {
                let storage = extras.storage.as_ref().ok_or(Error::StorageRequired)?;
                ensure_workspace(&cwd)?;
                downloading.store(true, Ordering::Relaxed);
                let download =
                    || storage.download_asset_bundle(plan.job_id, url.clone(), cwd.clone());
                match self.per_job {
                    true => download_once(&cwd, url, download).await?,
                    false => download().await.map_err(Error::Storage)?,
                }
            }
            let command = parse_command(&plan.command?)?;
            if plan.assets_url.is_none() {
                ensure_workspace(&cwd)?;
            }
            Ok::<_, Error>((command, cwd, plan.output_file))
        };
        let timed_out = |stage| Error::RunTimeout {
            ms: controls.timeout.unwrap_or_default().as_millis(),
            stage,
        };
        // A held run may be past it already: its spec is not loaded, its adapter not called.
        let past = || deadline.is_some_and(|d| d <= Instant::now());
        if past() {
            return Err(timed_out("held back behind the runs started before it"));
        }
        let stage = || match downloading.load(Ordering::Relaxed) {
            true => "waiting for storage.downloadAssetBundle",
            false => "loading the job spec",
        };
        let (command, cwd, output_file) = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Err(Error::Aborted),
            command = prepare => command?,
            _ = process::until(deadline) => return Err(timed_out(stage())),
        };
        // Ready at once (a spec read on this thread) after the deadline: the command never starts.
        if past() {
            return Err(timed_out(stage()));
        }
        let controls = Controls {
            timeout: deadline.map(|d| d.saturating_duration_since(Instant::now())),
            ..controls
        };
        let mut outcome = process::run(process::Command {
            program: &command.program,
            args: &command.args,
            cwd: &cwd,
            controls: &controls,
            sink: extras.sink.as_deref(),
            cancel,
            group: &extras.group,
        })
        .await?;
        if let Some(file) = output_file {
            if let Some((path, bytes)) = find_output(&cwd, &file).await {
                (outcome.output_path, outcome.output_bytes) = (Some(path), bytes);
            }
        }
        Ok(outcome)
    }
}

/// `outputFile`, normalised lexically; `None` for a URL of another scheme (the command uploads).
fn local_path(cwd: &Path, file: &str) -> Option<PathBuf> {
    let path = match file {
        "" => return None,
        _ if file.starts_with("file:") => reqwest::Url::parse(file).ok()?.to_file_path().ok()?,
        _ if file.contains("://") => return None,
        _ => cwd.join(file),
    };
    let mut clean = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => drop(clean.pop()),
            std::path::Component::CurDir => {}
            part => clean.push(part),
        }
    }
    Some(clean)
}

/// `outputFile`'s path and size: as `path.resolve` names it, else (a name with `..`) as the file
/// system resolves it, where `..` after a symlinked directory leads to the link target's parent.
async fn find_output(cwd: &Path, file: &str) -> Option<(PathBuf, Option<u64>)> {
    let path = local_path(cwd, file)?;
    let bytes = file_size(&path).await;
    if bytes.is_some() || !file.contains("..") || file.starts_with("file:") {
        return Some((path, bytes));
    }
    let physical = cwd.join(file);
    let (Some(bytes), Some(dir), Some(name)) = (
        file_size(&physical).await,
        physical.parent(),
        physical.file_name(),
    ) else {
        return Some((path, None));
    };
    let dir = tokio::fs::canonicalize(dir)
        .await
        .unwrap_or_else(|_| dir.to_owned());
    Some((dir.join(name), Some(bytes)))
}

async fn file_size(path: &Path) -> Option<u64> {
    let meta = tokio::fs::metadata(path).await.ok();
    meta.filter(|m| m.is_file()).map(|m| m.len())
}

/// The job's id, made safe for a file name. A changed id, or a number (`42` is not `"42"`), gets a
/// hash of the original after a `~` (never kept), so that two jobs never share a directory.
fn job_dir_name(id: Option<&str>) -> Result<String, Error> {
    let raw = id.unwrap_or_default();
    let (id, number) = match raw.starts_with('"') {
        // A lone surrogate, which a Rust string cannot hold, as U+FFFD.
        true => (job::without_lone_surrogates(raw).as_deref().or(Some(raw)))
            .and_then(|raw| serde_json::from_str(raw).ok())
            .map(|id: String| (id, false)),
        false => raw.parse::<f64>().ok().map(|n| (job::js_number(n), true)),
    }
    .filter(|(id, _)| !id.is_empty())
    .ok_or_else(|| {
        Error::InvalidSpec(
            "perJobWorkspace needs the spec's id, a non-empty string or a number".into(),
        )
    })?;
    let safe: String = id
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
            _ => '_',
        })
        .take(100)
        .collect();
    if safe == id && !id.starts_with('.') && !number {
        return Ok(safe);
    }
    // FNV-1a: stable across builds, so a restarted worker finds the same directory.
    let hash = (id.bytes().chain(number.then_some(b'#'))).fold(0xcbf29ce484222325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
    });
    Ok(format!("{}~{hash:016x}", safe.trim_start_matches('.')))
}

/// Download once for all runs of the job: a lock file serialises them, a marker says it is done.
async fn download_once<F>(dir: &Path, url: &str, download: impl FnOnce() -> F) -> Result<(), Error>
where
    F: std::future::Future<Output = Result<(), ExternalError>> + Send + 'static,
{
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
        move |e| Error::io(&e, "open", path.display().to_string())
    }
    let (lock_path, marker) = (dir.join(".helios-assets.lock"), dir.join(".helios-assets"));
    let done = |marker: PathBuf| async move {
        tokio::fs::read(marker)
            .await
            .is_ok_and(|done| done == url.as_bytes())
    };
    // Most runs find it done, and need no lock (nor a directory they may write to).
    if done(marker.clone()).await {
        return Ok(());
    }
    // No write through a symlink a bundle or command left: O_NOFOLLOW, and a new marker.
    let mut open_lock = std::fs::OpenOptions::new();
    open_lock.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut open_lock, libc::O_NOFOLLOW);
    let lock = tokio::fs::OpenOptions::from(open_lock)
        .open(&lock_path)
        .await
        .map_err(io(&lock_path))?
        .into_std()
        .await;
    // Polled rather than waited for, so that an abort or a timeout ends the wait.
    loop {
        match lock.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
    }
    if done(marker.clone()).await {
        return Ok(());
    }
    // The lock goes with the download, not the run: an adapter may write on after an abort.
    let (work, url) = (download(), url.to_owned());
    tokio::spawn(async move {
        work.await.map_err(Error::Storage)?;
        let _ = tokio::fs::remove_file(&marker).await;
        let written = async {
            tokio::fs::File::create_new(&marker)
                .await?
                .write_all(url.as_bytes())
                .await
        };
        let written = written.await.map_err(io(&marker));
        drop(lock);
        written
    })
    .await
    .map_err(|e| Error::Internal(format!("the asset download task failed: {e}")))?
}

/// JavaScript thread only, under Node's lock (`binding::environ`) when `inherited` is `None`.
pub fn environment<'a>(
    inherited: Option<&str>,
    overlays: impl Iterator<Item = (&'a String, &'a Option<String>)>,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = match inherited {
        Some(pairs) => pairs
            .split('\0')
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
        // As `process.env` shows it: a value decoded as Node does; a name's first entry (as
        // `getenv`); no name that Node cannot look up (not UTF-8, or empty as libuv splits `=x`).
        None => {
            let text = |s: OsString| s.into_string().unwrap_or_else(|s| s.display().to_string());
            let named = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v)));
            let named: Vec<_> = named.filter(|(k, _)| !k.starts_with('=')).collect();
            let first: Vec<bool> = {
                let mut seen = std::collections::HashSet::with_capacity(named.len());
                named.iter().map(|(k, _)| seen.insert(k.as_str())).collect()
            };
            (named.into_iter().zip(first))
                .filter_map(|((k, v), first)| first.then(|| (k.into(), text(v).into())))
                .collect()
        }
    };
    for (key, value) in overlays {
        env.retain(|(k, _)| k != key.as_str());
        env.extend(value.as_ref().map(|v| (key.into(), v.into())));
    }
    env
}

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

    fn new_runtime(workspace: PathBuf, fetch: FetchConfig, per_job: bool) -> Runtime {
        Runtime {
            workspace,
            fetch,
            per_job,
        }
    }

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

    struct RecordingStore(Mutex<Vec<(Option<String>, String, PathBuf)>>);

    impl AssetStore for RecordingStore {
        fn download_asset_bundle(
            &self,
            job_id: Option<String>,
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
        let runtime = new_runtime(workspace.clone(), FetchConfig::default(), false);
        let extras = RunExtras {
            storage: Some(store.clone()),
            ..RunExtras::default()
        };
        let outcome = runtime
            .run(source, Target::Chunk(1), Controls::default(), extras)
            .await
            .unwrap();
        assert_eq!(outcome.stdout, "from storage");
        let calls = store.0.lock().unwrap().clone();
        assert_eq!(
            calls,
            [(
                Some(r#""job-7""#.to_owned()),
                "s3://b/a.zip".to_owned(),
                workspace
            )]
        );
    }

    #[tokio::test]
    async fn assets_without_storage_are_refused_before_the_chunk_is_looked_up() {
        let dir = temp_dir("nostorage");
        let source = write_spec(&dir, r#"{"assetsUrl":"s3://x","chunks":[]}"#);
        let runtime = new_runtime(dir.join("w"), FetchConfig::default(), false);
        let err = runtime
            .run(
                source,
                Target::Chunk(3),
                Controls::default(),
                RunExtras::default(),
            )
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
        let runtime = new_runtime(file.clone(), FetchConfig::default(), false);
        let err = runtime
            .run(
                source,
                Target::Chunk(0),
                Controls::default(),
                RunExtras::default(),
            )
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
        let inherited = "A=1\0B=2\0=C\0D==x\0";
        use std::collections::HashMap;
        let defaults = HashMap::from([
            ("B".to_owned(), None),
            ("C".to_owned(), Some("3".to_owned())),
        ]);
        let run = HashMap::from([("C".to_owned(), Some("4".to_owned()))]);
        let env = environment(Some(inherited), defaults.iter().chain(run.iter()));
        let expected = [("A", "1"), ("", "C"), ("D", "=x"), ("C", "4")];
        assert_eq!(env, expected.map(|(k, v)| (k.into(), v.into())));
    }

    /// Counts its downloads; the first `fail` of them fail.
    struct CountingStore {
        calls: std::sync::atomic::AtomicUsize,
        fail: usize,
    }

    impl AssetStore for CountingStore {
        fn download_asset_bundle(
            &self,
            _: Option<String>,
            _: String,
            target_dir: PathBuf,
        ) -> BoxFuture<'static, Result<(), ExternalError>> {
            let call = self.calls.fetch_add(1, Ordering::SeqCst);
            let fail = call < self.fail;
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if fail {
                    return Err("bucket unreachable".into());
                }
                std::fs::write(target_dir.join("asset.txt"), "a")?;
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn per_job_workspaces_download_once_per_job_and_retry_a_failure() {
        let dir = temp_dir("perjob");
        let spec = |id: &str| {
            let path = dir.join(format!("{}.json", id.replace('/', "-")));
            std::fs::write(&path, format!(r#"{{"id":"{id}","assetsUrl":"s3://b","chunks":[{{"id":0,"command":"cat asset.txt"}}]}}"#)).unwrap();
            JobSource::File {
                shown: path.display().to_string(),
                path,
            }
        };
        let store = Arc::new(CountingStore {
            calls: 0.into(),
            fail: 1,
        });
        let extras = || RunExtras {
            storage: Some(store.clone()),
            ..RunExtras::default()
        };
        let runtime = new_runtime(dir.join("w"), FetchConfig::default(), true);
        let err = runtime
            .run(spec("a/b"), Target::Chunk(0), Controls::default(), extras())
            .await;
        assert_eq!(err.unwrap_err().code(), "ERR_STORAGE");
        let run = || runtime.run(spec("a/b"), Target::Chunk(0), Controls::default(), extras());
        let (a, b, c) = tokio::join!(run(), run(), run());
        for outcome in [a, b, c] {
            assert_eq!(outcome.unwrap().stdout, "a");
        }
        assert_eq!(
            store.calls.load(Ordering::SeqCst),
            2,
            "one failure, then one download for three runs at once"
        );
        // Another runtime (or a restart) finds it done; another job downloads its own.
        let again = new_runtime(dir.join("w"), FetchConfig::default(), true);
        again
            .run(spec("a/b"), Target::Chunk(0), Controls::default(), extras())
            .await
            .unwrap();
        again
            .run(spec("c"), Target::Chunk(0), Controls::default(), extras())
            .await
            .unwrap();
        assert_eq!(store.calls.load(Ordering::SeqCst), 3);
        let mut names: Vec<_> = std::fs::read_dir(dir.join("w"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["a_b~e620c3190468cf61", "c"].map(std::ffi::OsString::from),
            "{names:?}"
        );
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_download_marks_are_never_written_through_a_symlink() {
        let dir = temp_dir("perjob-links");
        let victim = dir.join("victim.txt");
        std::fs::write(&victim, "precious").unwrap();
        let source = write_spec(
            &dir,
            r#"{"id":"j","assetsUrl":"s3://b","chunks":[{"id":0,"command":"cat asset.txt"}]}"#,
        );
        let job = dir.join("w/j");
        std::fs::create_dir_all(&job).unwrap();
        std::os::unix::fs::symlink(&victim, job.join(".helios-assets")).unwrap();
        let store = Arc::new(CountingStore {
            calls: 0.into(),
            fail: 0,
        });
        let runtime = new_runtime(dir.join("w"), FetchConfig::default(), true);
        let run = || {
            let extras = RunExtras {
                storage: Some(store.clone()),
                ..RunExtras::default()
            };
            runtime.run(
                source.clone(),
                Target::Chunk(0),
                Controls::default(),
                extras,
            )
        };
        assert_eq!(run().await.unwrap().stdout, "a");
        assert_eq!(
            std::fs::read_to_string(job.join(".helios-assets")).unwrap(),
            "s3://b"
        );
        std::fs::remove_file(job.join(".helios-assets")).unwrap();
        std::fs::remove_file(job.join(".helios-assets.lock")).unwrap();
        std::os::unix::fs::symlink(&victim, job.join(".helios-assets.lock")).unwrap();
        assert_eq!(run().await.unwrap_err().code(), "ELOOP");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    }

    #[test]
    fn job_directories_are_safe_names_and_never_shared() {
        let name = |json: &str| job_dir_name(Some(json)).unwrap();
        assert_eq!(name(r#""job-7.v2""#), "job-7.v2");
        assert!(name("42").starts_with("42~"), "a number is not the string");
        assert_eq!(name("42"), name("42.0"), "the same number");
        assert_ne!(name("42"), name(r#""42""#));
        assert!(name("1e400").starts_with("Infinity~"));
        assert!(name(r#""..""#).starts_with('~'));
        assert_ne!(name(r#""a/b""#), name(r#""a:b""#));
        assert!(!name(r#""../../etc""#).contains('/'));
        assert_eq!(name(r#""\ud800""#), name(r#""\ufffd""#));
        for bad in [None, Some(r#""""#), Some("null"), Some("true"), Some("[1]")] {
            assert!(job_dir_name(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn the_result_names_the_chunks_output_file_and_its_size() {
        let dir = temp_dir("output");
        let source = write_spec(
            &dir,
            r#"{"chunks":[{"id":0,"outputFile":"o.txt","command":"sh -c 'printf abc > o.txt'"},{"id":1,"outputFile":"s3://b/o","command":"true"},{"id":2,"outputFile":"none","command":"true"},{"id":3,"outputFile":"link/../d.txt","command":"sh -c 'printf abcd > link/../d.txt'"}]}"#,
        );
        let runtime = new_runtime(dir.to_path_buf(), FetchConfig::default(), false);
        let run = |id| {
            runtime.run(
                source.clone(),
                Target::Chunk(id),
                Controls::default(),
                RunExtras::default(),
            )
        };
        let outcome = run(0).await.unwrap();
        assert_eq!(outcome.output_path, Some(dir.join("o.txt")));
        assert_eq!(outcome.output_bytes, Some(3));
        assert_eq!(run(1).await.unwrap().output_path, None);
        assert_eq!(local_path(&dir, "a/../b:1.mp4"), Some(dir.join("b:1.mp4")));
        assert_eq!(local_path(&dir, "file:///x/y"), Some(PathBuf::from("/x/y")));
        assert_eq!(local_path(&dir, ""), None);
        let missing = run(2).await.unwrap();
        assert_eq!(
            (missing.output_path, missing.output_bytes),
            (Some(dir.join("none")), None)
        );
        // `..` after a symlinked directory: the file the command wrote, where the file system
        // put it, and not the lexical `<dir>/d.txt`.
        #[cfg(unix)]
        {
            std::fs::create_dir_all(dir.join("elsewhere/renders")).unwrap();
            std::os::unix::fs::symlink(dir.join("elsewhere/renders"), dir.join("link")).unwrap();
            let through_link = run(3).await.unwrap();
            let written = dir.join("elsewhere").canonicalize().unwrap().join("d.txt");
            assert_eq!(through_link.output_path, Some(written));
            assert_eq!(through_link.output_bytes, Some(4));
            assert!(!dir.join("d.txt").exists());
        }
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
        let runtime = new_runtime(dir.to_path_buf(), FetchConfig::default(), false);
        let extras = RunExtras::default();
        extras.cancel.cancel();
        let err = runtime
            .run(source, Target::Chunk(0), Controls::default(), extras)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Aborted));
        assert!(!marker.exists());
    }
}
