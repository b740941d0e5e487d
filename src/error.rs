use std::io;

use crate::command::CommandError;

/// An error from code the runtime calls but does not own (the storage adapter), passed through.
pub type ExternalError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An option JavaScript cannot check (a header, a PEM certificate).
    #[error("{0}")]
    InvalidArgument(String),

    #[error("Invalid URL '{input}': {reason}")]
    InvalidUrl { input: String, reason: String },

    #[error(
        "Unsupported URL scheme '{scheme}:' in '{input}': a job spec is loaded from an http:, https: or file: URL, or from a file path"
    )]
    UnsupportedScheme { scheme: String, input: String },

    /// `attempts` is empty after one attempt, else `, after N attempts: <each failure>`.
    #[error("Failed to fetch job spec: {reason} (HTTP {status} from {url}{attempts})")]
    HttpStatus {
        status: u16,
        reason: String,
        url: String,
        attempts: String,
    },

    #[error("Failed to fetch job spec from {url}: {cause}{attempts}")]
    Network {
        url: String,
        cause: String,
        attempts: String,
    },

    /// Worded as Node's `fs` words it; the JavaScript entry swaps in libuv's text.
    #[error("{code}: {}, {syscall} '{path}'{detail}", describe_errno(*errno))]
    Io {
        code: String,
        errno: i32,
        syscall: &'static str,
        path: String,
        detail: String,
    },

    #[error(
        "Invalid JobSpec: {source_name} is not valid JSON: {detail} at line {line} column {column}"
    )]
    InvalidJson {
        source_name: String,
        detail: String,
        line: usize,
        column: usize,
    },

    #[error("Invalid JobSpec: {source_name} is larger than maxSpecBytes ({limit} bytes); raise fetch.maxSpecBytes if the spec is really that big")]
    TooLarge { source_name: String, limit: u64 },

    #[error("Invalid JobSpec: missing chunks array")]
    MissingChunks,

    #[error("Invalid JobSpec: {0}")]
    InvalidSpec(String),

    #[error("Worker was not configured with an ArtifactStorage adapter, but the job requires remote assets.")]
    StorageRequired,

    /// The storage adapter rejected or threw: its own error, unchanged.
    #[error("{0}")]
    Storage(ExternalError),

    #[error("Chunk with ID {0} not found in job spec")]
    ChunkNotFound(i64),

    #[error("{0}")]
    InvalidCommand(#[from] CommandError),

    #[error("spawn {program} {code}")]
    Spawn {
        program: String,
        code: String,
        errno: i32,
    },

    #[error("The operation was aborted")]
    Aborted,

    #[error("The run timed out after {ms} ms while {stage}; its command never started")]
    RunTimeout { ms: u128, stage: &'static str },

    #[error("Internal error in the worker runtime: {0}")]
    Internal(String),
}

impl Error {
    pub fn code(&self) -> &str {
        match self {
            Error::InvalidArgument(_) => "ERR_INVALID_ARG_VALUE",
            Error::InvalidUrl { .. } => "ERR_INVALID_URL",
            Error::UnsupportedScheme { .. } => "ERR_INVALID_URL_SCHEME",
            Error::HttpStatus { .. } | Error::Network { .. } => "ERR_JOB_SPEC_FETCH",
            Error::Io { code, .. } | Error::Spawn { code, .. } => code,
            Error::InvalidJson { .. }
            | Error::TooLarge { .. }
            | Error::MissingChunks
            | Error::InvalidSpec(_) => "ERR_INVALID_JOB_SPEC",
            Error::StorageRequired => "ERR_STORAGE_REQUIRED",
            Error::Storage(_) => "ERR_STORAGE",
            Error::ChunkNotFound(_) => "ERR_CHUNK_NOT_FOUND",
            Error::InvalidCommand(_) => "ERR_INVALID_COMMAND",
            Error::Aborted => "ABORT_ERR",
            Error::RunTimeout { .. } => "ERR_RUN_TIMEOUT",
            Error::Internal(_) => "ERR_INTERNAL",
        }
    }

    pub fn io(err: &io::Error, syscall: &'static str, path: impl Into<String>) -> Self {
        let (code, errno) = errno_code(err);
        Error::Io {
            code,
            errno,
            syscall,
            path: path.into(),
            detail: String::new(),
        }
    }

    pub fn too_large(source_name: impl Into<String>, limit: u64) -> Self {
        Error::TooLarge {
            source_name: source_name.into(),
            limit,
        }
    }

    /// A program that could not be started, worded as Node's `child_process` words it.
    pub fn spawn(err: &io::Error, program: &str) -> Self {
        let (code, errno) = errno_code(err);
        Error::Spawn {
            program: program.to_owned(),
            code,
            errno,
        }
    }
}

/// The symbolic name of an OS error (`ENOENT`) and its number, negated, as Node reports them.
pub fn errno_code(err: &io::Error) -> (String, i32) {
    #[cfg(unix)]
    if let Some(errno) = err.raw_os_error() {
        let name = match nix::errno::Errno::from_raw(errno) {
            nix::errno::Errno::UnknownErrno => "EUNKNOWN".to_owned(),
            known => format!("{known:?}"),
        };
        return (name, -errno);
    }
    let code = match err.kind() {
        io::ErrorKind::NotFound => "ENOENT",
        io::ErrorKind::PermissionDenied => "EACCES",
        io::ErrorKind::IsADirectory => "EISDIR",
        io::ErrorKind::NotADirectory => "ENOTDIR",
        _ => "EUNKNOWN",
    };
    (code.to_owned(), 0)
}

/// The C library's description of an error number, in lower case as libuv writes it.
fn describe_errno(errno: i32) -> String {
    #[cfg(unix)]
    let text = nix::errno::Errno::from_raw(-errno).desc();
    #[cfg(not(unix))]
    let text = "unknown error";
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_lowercase().chain(chars).collect()
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn io_errors_read_like_node_fs() {
        let err = io::Error::from_raw_os_error(libc::ENOENT);
        let e = Error::io(&err, "open", "/tmp/missing.json");
        assert_eq!(
            e.to_string(),
            "ENOENT: no such file or directory, open '/tmp/missing.json'"
        );
        assert_eq!(e.code(), "ENOENT");
    }

    #[test]
    fn spawn_errors_read_like_child_process() {
        let err = io::Error::from_raw_os_error(libc::EACCES);
        let e = Error::spawn(&err, "./render.sh");
        assert_eq!(e.to_string(), "spawn ./render.sh EACCES");
        assert_eq!(e.code(), "EACCES");
    }

    #[test]
    fn exact_contract_messages() {
        assert_eq!(
            Error::MissingChunks.to_string(),
            "Invalid JobSpec: missing chunks array"
        );
        assert_eq!(
            Error::ChunkNotFound(7).to_string(),
            "Chunk with ID 7 not found in job spec"
        );
        assert_eq!(
            Error::StorageRequired.to_string(),
            "Worker was not configured with an ArtifactStorage adapter, but the job requires remote assets."
        );
        let http = Error::HttpStatus {
            status: 404,
            reason: "Not Found".into(),
            url: "http://127.0.0.1/x".into(),
            attempts: String::new(),
        };
        assert!(http
            .to_string()
            .starts_with("Failed to fetch job spec: Not Found"));
    }
}
