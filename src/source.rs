use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use reqwest::Url;

use crate::error::Error;
use crate::fetch::FetchConfig;
use crate::lock;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobSource {
    Http(Url),
    /// `path` is absolute; `shown` is what the caller wrote, for messages (as Node's fs does).
    File {
        path: PathBuf,
        shown: String,
    },
}

impl JobSource {
    /// A regular file in a directory known to be local: `load` reads it at once, on the calling
    /// thread, and no later step waits for anything that thread might be blocked on.
    pub fn reads_at_once(&self) -> bool {
        matches!(self, JobSource::File { path, .. } if known_dir(path) == Some(true)
            && std::fs::symlink_metadata(path).is_ok_and(|meta| meta.is_file()))
    }

    /// Relative paths are resolved now, so that a later `process.chdir()` does not move the file.
    pub fn parse(input: &str, cwd: &Path) -> Result<Self, Error> {
        let Some(scheme) = url_scheme(input) else {
            return Ok(JobSource::File {
                path: cwd.join(input), // `input` itself when it is absolute
                shown: input.to_owned(),
            });
        };
        let invalid = |reason: &str| Error::InvalidUrl {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        match scheme.to_ascii_lowercase().as_str() {
            "http" | "https" => {
                // WHATWG reads `http:///x` as `http://x/`: here a mistake, not a shorthand.
                let rest = &input[scheme.len() + 3..];
                if rest.is_empty() || rest.starts_with(['/', '\\', '?', '#']) {
                    return Err(invalid("the URL has no host"));
                }
                let url = Url::parse(input).map_err(|e| invalid(&e.to_string()))?;
                if !url.username().is_empty() || url.password().is_some() {
                    return Err(invalid(
                        "credentials in the URL are not supported; send them as a request header instead",
                    ));
                }
                Ok(JobSource::Http(url))
            }
            "file" => {
                let url = Url::parse(input).map_err(|e| invalid(&e.to_string()))?;
                if let Some(host) = url
                    .host_str()
                    .filter(|&h| !h.is_empty() && h != "localhost")
                {
                    return Err(invalid(&format!(
                        "a file: URL must name a local path (file:///path), not the host '{host}'"
                    )));
                }
                // As `fileURLToPath` refuses it: `%2F` would name another file than the URL does.
                if url.path().to_ascii_lowercase().contains("%2f") {
                    return Err(invalid(
                        "the path must not include encoded / characters (%2F)",
                    ));
                }
                let path = url
                    .to_file_path()
                    .map_err(|()| invalid("the file: URL does not name an absolute path"))?;
                if path.as_os_str().as_encoded_bytes().contains(&0) {
                    return Err(invalid("the path must not include NUL bytes (%00)"));
                }
                let shown = path.display().to_string();
                Ok(JobSource::File { path, shown })
            }
            _ => Err(Error::UnsupportedScheme {
                scheme: scheme.to_owned(),
                input: input.to_owned(),
            }),
        }
    }
}

fn url_scheme(input: &str) -> Option<&str> {
    let (scheme, _) = input.split_once("://")?;
    let mut chars = scheme.chars();
    (chars.next()?.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(scheme)
}

/// Specs up to this size are parsed on the async worker: faster than a hop to the blocking pool.
const INLINE_BYTES: u64 = 256 * 1024;

/// The last large spec's buffer, for the next: faulting in tens of MB costs as much as parsing.
static SPARE: Mutex<Vec<u8>> = Mutex::new(Vec::new());

fn take_spare() -> Vec<u8> {
    std::mem::take(&mut *lock(&SPARE))
}

fn give_back(mut buffer: Vec<u8>) {
    buffer.clear();
    let mut spare = lock(&SPARE);
    if buffer.capacity() > spare.capacity() {
        *spare = buffer;
    }
}

/// Small specs parse here, other files on the blocking pool (NFS may hang), FIFOs without a thread.
pub async fn load<T: Send + 'static>(
    fetch: &FetchConfig,
    source: &JobSource,
    parse: impl FnOnce(&[u8], &str) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    match source {
        JobSource::Http(url) => {
            let (bytes, name) = (fetch.fetch(url, take_spare()).await?, url.to_string());
            if bytes.len() as u64 <= INLINE_BYTES {
                let result = parse(&bytes, &name);
                give_back(bytes);
                return result;
            }
            off_thread(bytes, move |bytes| parse(bytes, &name)).await
        }
        JobSource::File { path, shown } => {
            let limit = fetch.max_spec_bytes;
            let local = known_dir(path) == Some(true);
            if let Some((file, len)) = local.then(|| open_small(path)).flatten() {
                return parse(&read_to_end(file, len, shown, limit, Vec::new())?, shown);
            }
            let (file_path, file_shown) = (path.clone(), shown.clone());
            let loaded = off_thread(take_spare(), move |buffer| {
                learn_local_dir(&file_path);
                if is_fifo(&file_path) {
                    return Ok(Err(parse));
                }
                let (file, len) = open_file(&file_path, &file_shown, limit)?;
                *buffer = read_to_end(file, len, &file_shown, limit, std::mem::take(buffer))?;
                Ok(Ok(parse(buffer, &file_shown)))
            })
            .await?;
            match loaded {
                Ok(parsed) => parsed,
                Err(parse) => parse(&read_fifo(path, shown, limit).await?, shown),
            }
        }
    }
}

async fn off_thread<T: Send + 'static>(
    mut buffer: Vec<u8>,
    work: impl FnOnce(&mut Vec<u8>) -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    let (result, buffer) = tokio::task::spawn_blocking(move || (work(&mut buffer), buffer))
        .await
        .map_err(|e| Error::Internal(format!("spec loading task failed: {e}")))?;
    give_back(buffer);
    result
}

/// Directories known to be on a local file system, or not; the rest are learnt off-thread.
static DIRS: Mutex<BTreeMap<PathBuf, bool>> = Mutex::new(BTreeMap::new());
const MAX_DIRS: usize = 1024;

fn known_dir(path: &Path) -> Option<bool> {
    lock(&DIRS).get(path.parent()?).copied()
}

/// Called on the blocking pool: `statfs` of a hung network mount blocks too.
#[cfg(target_os = "linux")]
fn learn_local_dir(path: &Path) {
    use nix::sys::statfs::{self, statfs};
    let Some(dir) = path.parent().filter(|_| known_dir(path).is_none()) else {
        return;
    };
    let local = statfs(dir).is_ok_and(|fs| {
        [
            statfs::EXT4_SUPER_MAGIC,
            statfs::EXT3_SUPER_MAGIC,
            statfs::EXT2_SUPER_MAGIC,
            statfs::XFS_SUPER_MAGIC,
            statfs::BTRFS_SUPER_MAGIC,
            statfs::TMPFS_MAGIC,
            statfs::OVERLAYFS_SUPER_MAGIC,
            statfs::F2FS_SUPER_MAGIC,
            statfs::FsType(0x2fc1_2fc1), // ZFS, which nix does not name
        ]
        .contains(&fs.filesystem_type())
    });
    let mut dirs = lock(&DIRS);
    if dirs.len() >= MAX_DIRS {
        dirs.clear();
    }
    dirs.insert(dir.to_owned(), local);
}

#[cfg(not(target_os = "linux"))]
fn learn_local_dir(_: &Path) {}

/// A small regular file, not via a final symlink. Stat first: opening a FIFO would free its writer.
fn open_small(path: &Path) -> Option<(std::fs::File, u64)> {
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let meta = std::fs::symlink_metadata(path).ok()?;
    (meta.is_file() && meta.len() <= INLINE_BYTES).then_some(())?;
    let mut options = std::fs::OpenOptions::new();
    #[cfg(unix)]
    options.custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW);
    Some((options.read(true).open(path).ok()?, meta.len()))
}

#[cfg(unix)]
fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|meta| meta.file_type().is_fifo())
}

#[cfg(not(unix))]
fn is_fifo(_: &Path) -> bool {
    false
}

/// Opened non-blocking, a FIFO reads as ended until a writer opens it: an empty read means
/// "wait" until a writer showed itself (data, `WouldBlock` or a hang-up), the end after that.
#[cfg(unix)]
async fn read_fifo(path: &Path, shown: &str, limit: u64) -> Result<Vec<u8>, Error> {
    let pipe = tokio::net::unix::pipe::OpenOptions::new()
        .open_receiver(path)
        .map_err(|e| Error::io(&e, "open", shown))?;
    let (mut bytes, mut writer_seen) = (Vec::new(), false);
    let failed = |e: std::io::Error| Error::io(&e, "read", shown);
    loop {
        let ready = pipe.ready(tokio::io::Interest::READABLE).await;
        writer_seen |= ready.map_err(failed)?.is_read_closed();
        match pipe.try_read_buf(&mut bytes) {
            Ok(0) if writer_seen => return Ok(bytes),
            Ok(0) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            Ok(_) if bytes.len() as u64 > limit => return Err(Error::too_large(shown, limit)),
            Ok(_) => writer_seen = true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => writer_seen = true,
            Err(e) => return Err(failed(e)),
        }
    }
}

#[cfg(not(unix))]
async fn read_fifo(_: &Path, _: &str, _: u64) -> Result<Vec<u8>, Error> {
    unreachable!("`is_fifo` is always false here")
}

/// Open a spec file; its size when it is a regular file (0 otherwise: read until the end).
fn open_file(path: &Path, shown: &str, limit: u64) -> Result<(std::fs::File, u64), Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(&e, "open", shown))?;
    let len = match file.metadata() {
        Ok(meta) if meta.is_file() => meta.len(),
        _ => 0,
    };
    if len > limit {
        return Err(Error::too_large(shown, limit));
    }
    Ok((file, len))
}

fn read_to_end(
    mut file: std::fs::File,
    len: u64,
    shown: &str,
    limit: u64,
    mut bytes: Vec<u8>,
) -> Result<Vec<u8>, Error> {
    let failed = |e: std::io::Error| Error::io(&e, "read", shown);
    bytes.clear();
    bytes.reserve(len as usize);
    #[cfg(unix)]
    if len >= HALVES_BYTES {
        read_halves(&file, len as usize, &mut bytes).map_err(failed)?;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(bytes.len() as u64))
            .map_err(failed)?;
    }
    // One byte past the limit tells a file that grew while being read from one that fits.
    file.take(limit.saturating_add(1).saturating_sub(bytes.len() as u64))
        .read_to_end(&mut bytes)
        .map_err(failed)?;
    if bytes.len() as u64 > limit {
        return Err(Error::too_large(shown, limit));
    }
    Ok(bytes)
}

/// From this size on, a file is read in two halves at once: one core copies 20 MB out of the
/// page cache in 4-6 ms here, two in 3-4.
#[cfg(unix)]
const HALVES_BYTES: u64 = 4 * 1024 * 1024;

/// Reads the first `len` bytes into `bytes` (empty), its two halves at once, as far as the
/// file goes: a half that ends early (the file shrank) ends what is kept there.
#[cfg(unix)]
fn read_halves(file: &std::fs::File, len: usize, bytes: &mut Vec<u8>) -> std::io::Result<()> {
    use std::mem::MaybeUninit;
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let fill = |part: &mut [MaybeUninit<u8>], offset: usize| {
        let mut done = 0;
        while done < part.len() {
            let rest = &mut part[done..];
            let at = (offset + done) as libc::off_t;
            // SAFETY: pread writes at most `rest.len()` bytes into `rest`, memory this call
            // borrows mutably; nothing reads them before `set_len` below counts them.
            let n = unsafe { libc::pread(fd, rest.as_mut_ptr().cast(), rest.len(), at) };
            match n {
                0 => break,
                1.. => done += n as usize,
                _ => match std::io::Error::last_os_error() {
                    e if e.kind() == std::io::ErrorKind::Interrupted => {}
                    e => return Err(e),
                },
            }
        }
        Ok(done)
    };
    let (first, second) = bytes.spare_capacity_mut()[..len].split_at_mut(len / 2);
    let (got_first, got_second) = std::thread::scope(|scope| {
        // Without a thread (none can be made), the caller reads on from the first half's end.
        let other = std::thread::Builder::new().spawn_scoped(scope, || fill(second, len / 2));
        let got_first = fill(first, 0);
        let got_second = other.map_or(Ok(0), |other| other.join().unwrap_or(Ok(0)));
        (got_first, got_second)
    });
    let (got_first, got_second) = (got_first?, got_second?);
    // After a short first half, what the second read does not follow on from it.
    let filled = got_first + if got_first == len / 2 { got_second } else { 0 };
    // SAFETY: `fill` wrote the first `filled` bytes of the spare capacity (see above).
    unsafe { bytes.set_len(filled) };
    Ok(())
}

#[cfg(test)]
fn read_file(path: &Path, shown: &str, limit: u64) -> Result<Vec<u8>, Error> {
    let (file, len) = open_file(path, shown, limit)?;
    read_to_end(file, len, shown, limit, Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cwd() -> PathBuf {
        PathBuf::from("/work/dir")
    }

    #[test]
    fn http_and_https_urls() {
        assert!(matches!(
            JobSource::parse("http://127.0.0.1:8080/job.json", &cwd()),
            Ok(JobSource::Http(_))
        ));
        assert!(matches!(
            JobSource::parse("HTTPS://example.test/j", &cwd()),
            Ok(JobSource::Http(_))
        ));
    }

    #[test]
    fn paths_resolve_against_cwd() {
        assert_eq!(
            JobSource::parse("specs/job.json", &cwd()).unwrap(),
            JobSource::File {
                path: "/work/dir/specs/job.json".into(),
                shown: "specs/job.json".into()
            }
        );
        assert_eq!(
            JobSource::parse("/abs/job.json", &cwd()).unwrap(),
            JobSource::File {
                path: "/abs/job.json".into(),
                shown: "/abs/job.json".into()
            }
        );
        // A colon alone does not make a URL.
        assert!(matches!(
            JobSource::parse("C:/x/job.json", &cwd()),
            Ok(JobSource::File { .. })
        ));
    }

    #[test]
    fn file_urls_become_paths() {
        assert_eq!(
            JobSource::parse("file:///tmp/my%20job.json", &cwd()).unwrap(),
            JobSource::File {
                path: "/tmp/my job.json".into(),
                shown: "/tmp/my job.json".into()
            }
        );
        assert!(matches!(
            JobSource::parse("file://localhost/tmp/j.json", &cwd()),
            Ok(JobSource::File { .. })
        ));
        let err = JobSource::parse("file://server/share/j.json", &cwd()).unwrap_err();
        assert_eq!(err.code(), "ERR_INVALID_URL");
    }

    #[test]
    fn other_schemes_are_refused_by_name() {
        for (input, scheme) in [
            ("ftp://host/job.json", "ftp"),
            ("s3://bucket/job.json", "s3"),
        ] {
            let err = JobSource::parse(input, &cwd()).unwrap_err();
            assert_eq!(err.code(), "ERR_INVALID_URL_SCHEME");
            let msg = err.to_string();
            assert!(
                msg.contains(&format!("'{scheme}:'")) && msg.contains("http:, https: or file:"),
                "{msg}"
            );
        }
    }

    #[test]
    fn urls_without_a_host_or_with_credentials_are_invalid() {
        for input in [
            "http:///x",
            "http://",
            "https://?q",
            "http://user:pw@127.0.0.1/j",
            "http://[::1/j",
        ] {
            let err = JobSource::parse(input, &cwd()).unwrap_err();
            assert_eq!(err.code(), "ERR_INVALID_URL", "{input}");
        }
    }

    #[test]
    fn files_read_with_node_style_errors() {
        let dir = std::env::temp_dir().join(format!("hwr-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.json");
        let err = read_file(&missing, "missing.json", 1024).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ENOENT: no such file or directory, open 'missing.json'"
        );
        let err = read_file(&dir, "dir", 1024).unwrap_err();
        assert_eq!(err.code(), "EISDIR");
        let big = dir.join("big.json");
        std::fs::write(&big, vec![b' '; 2048]).unwrap();
        let err = read_file(&big, "big.json", 1024).unwrap_err();
        assert!(
            err.to_string().contains("maxSpecBytes (1024 bytes)"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_large_file_read_in_halves_is_the_file_even_if_it_changed_since_its_size_was_taken() {
        let dir = std::env::temp_dir().join(format!("hwr-halves-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("large.json");
        let content: Vec<u8> = (0..HALVES_BYTES as usize * 3 + 7)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &content).unwrap();
        let read = |len: u64, limit: u64| {
            let file = std::fs::File::open(&path).unwrap();
            read_to_end(file, len, "large.json", limit, Vec::new())
        };
        let all = content.len() as u64;
        assert!(read(all, u64::MAX).unwrap() == content);
        // Grown since: read on to the end, or past the limit.
        assert!(read(all - 1000, u64::MAX).unwrap() == content);
        let err = read(all - 1000, all - 1).unwrap_err();
        assert!(err.to_string().contains("maxSpecBytes"), "{err}");
        // Shrunk since, past its middle or before it.
        assert!(read(all + 1000, u64::MAX).unwrap() == content);
        assert!(read(all * 3, u64::MAX).unwrap() == content);
        // A reused buffer keeps nothing of what it held.
        let file = std::fs::File::open(&path).unwrap();
        let old = vec![b'x'; all as usize * 2];
        assert!(read_to_end(file, all, "large.json", u64::MAX, old).unwrap() == content);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
