//! Where a job spec comes from: an http(s) URL, a `file://` URL, or a file path.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::Url;

use crate::error::Error;

/// A parsed `jobPath`.
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
    /// Classify `input`. Relative paths are resolved against `cwd` now, so a later
    /// `process.chdir()` does not change which file a pending run reads.
    pub fn parse(input: &str, cwd: &Path) -> Result<Self, Error> {
        let Some(scheme) = url_scheme(input) else {
            let path = Path::new(input);
            return Ok(JobSource::File {
                path: if path.is_absolute() {
                    path.to_owned()
                } else {
                    cwd.join(path)
                },
                shown: input.to_owned(),
            });
        };
        let invalid = |reason: &str| Error::InvalidUrl {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        match scheme.to_ascii_lowercase().as_str() {
            "http" | "https" => {
                // WHATWG parsers accept `http:///x` as `http://x/`; a spec URL without a host
                // between the slashes is a mistake, not a shorthand.
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
                match url.host_str() {
                    None | Some("") | Some("localhost") => {}
                    Some(host) => {
                        return Err(invalid(&format!(
                        "a file: URL must name a local path (file:///path), not the host '{host}'"
                    )))
                    }
                }
                let path = url
                    .to_file_path()
                    .map_err(|()| invalid("the file: URL does not name an absolute path"))?;
                let shown = path.display().to_string();
                Ok(JobSource::File { path, shown })
            }
            _ => Err(Error::UnsupportedScheme {
                scheme: scheme.to_owned(),
                input: input.to_owned(),
            }),
        }
    }

    /// How messages name this source.
    pub fn name(&self) -> String {
        match self {
            JobSource::Http(url) => url.to_string(),
            JobSource::File { shown, .. } => shown.clone(),
        }
    }
}

/// The scheme of `input` when it starts like `scheme://`.
fn url_scheme(input: &str) -> Option<&str> {
    let end = input.find("://")?;
    let scheme = &input[..end];
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(scheme)
}

/// How specs are fetched. One per runtime: its HTTP client keeps connections alive across runs.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub max_spec_bytes: u64,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            max_spec_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Loads spec bytes from a [`JobSource`].
pub struct Loader {
    /// Built on first use: loading the TLS roots takes tens of milliseconds, which a runtime
    /// that only ever reads files should not pay at construction.
    client: OnceLock<Result<reqwest::Client, String>>,
    config: FetchConfig,
}

impl Loader {
    pub fn new(config: FetchConfig) -> Self {
        Loader {
            client: OnceLock::new(),
            config,
        }
    }

    fn client(&self) -> Result<&reqwest::Client, Error> {
        let config = &self.config;
        self.client
            .get_or_init(|| {
                reqwest::Client::builder()
                    .user_agent(concat!("helios-worker-runtime/", env!("CARGO_PKG_VERSION")))
                    .connect_timeout(config.connect_timeout)
                    .timeout(config.timeout)
                    .redirect(reqwest::redirect::Policy::limited(10))
                    .build()
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| Error::Internal(format!("cannot build the HTTP client: {e}")))
    }

    pub async fn load(&self, source: &JobSource) -> Result<Vec<u8>, Error> {
        match source {
            JobSource::Http(url) => self.fetch(url).await,
            JobSource::File { path, shown } => {
                let (path, shown, limit) =
                    (path.clone(), shown.clone(), self.config.max_spec_bytes);
                tokio::task::spawn_blocking(move || read_file(&path, &shown, limit))
                    .await
                    .map_err(|e| Error::Internal(format!("file read task failed: {e}")))?
            }
        }
    }

    async fn fetch(&self, url: &Url) -> Result<Vec<u8>, Error> {
        let network = |e: reqwest::Error| Error::Network {
            url: url.to_string(),
            cause: describe_reqwest_error(&e),
        };
        let mut response = self
            .client()?
            .get(url.clone())
            .send()
            .await
            .map_err(network)?;
        let status = response.status();
        if !status.is_success() {
            let reason = response
                .extensions()
                .get::<hyper::ext::ReasonPhrase>()
                .and_then(|r| std::str::from_utf8(r.as_bytes()).ok().map(str::to_owned))
                .or_else(|| status.canonical_reason().map(str::to_owned))
                .unwrap_or_default();
            return Err(Error::HttpStatus {
                status: status.as_u16(),
                reason,
                url: url.to_string(),
            });
        }
        let limit = self.config.max_spec_bytes;
        if response.content_length().is_some_and(|len| len > limit) {
            return Err(too_large(url.as_ref(), limit));
        }
        let mut body =
            Vec::with_capacity(response.content_length().unwrap_or(0).min(limit) as usize);
        while let Some(piece) = response.chunk().await.map_err(network)? {
            if body.len() as u64 + piece.len() as u64 > limit {
                return Err(too_large(url.as_ref(), limit));
            }
            body.extend_from_slice(&piece);
        }
        Ok(body)
    }
}

fn too_large(source: &str, limit: u64) -> Error {
    Error::InvalidSpec(format!(
        "{source} is larger than maxSpecBytes ({limit} bytes); raise fetch.maxSpecBytes if the spec is really that big"
    ))
}

fn read_file(path: &Path, shown: &str, limit: u64) -> Result<Vec<u8>, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(&e, "open", shown))?;
    let mut bytes = Vec::new();
    if let Ok(meta) = file.metadata() {
        if meta.is_file() && meta.len() > limit {
            return Err(too_large(shown, limit));
        }
        bytes.reserve(meta.len().min(limit) as usize);
    }
    // One byte past the limit tells a file that grew while being read from one that fits.
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(&e, "read", shown))?;
    if bytes.len() as u64 > limit {
        return Err(too_large(shown, limit));
    }
    Ok(bytes)
}

/// The cause of a failed request in a few words, then the lowest-level detail.
pub(crate) fn describe_reqwest_error(e: &reqwest::Error) -> String {
    let mut chain = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        chain.push(s.to_string());
        source = s.source();
    }
    let io_kind = {
        let mut source = std::error::Error::source(e);
        let mut kind = None;
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<std::io::Error>() {
                kind = Some(io.kind());
            }
            source = s.source();
        }
        kind
    };
    let detail = chain.last().cloned().unwrap_or_else(|| e.to_string());
    let lower = chain.join(": ").to_ascii_lowercase();
    let what = if e.is_timeout() {
        "timed out"
    } else if io_kind == Some(std::io::ErrorKind::ConnectionRefused) {
        "connection refused"
    } else if io_kind == Some(std::io::ErrorKind::ConnectionReset)
        || lower.contains("connection reset")
    {
        "connection reset"
    } else if lower.contains("dns error") || lower.contains("failed to lookup address") {
        "DNS lookup failed"
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        "TLS error"
    } else if e.is_body() || e.is_decode() {
        "the response body could not be read"
    } else if e.is_redirect() {
        "too many redirects"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    if detail.eq_ignore_ascii_case(what) {
        what.to_owned()
    } else {
        format!("{what} ({detail})")
    }
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
}
