//! Fetching a spec over HTTP(S) from a network that drops connections, answers 503 under
//! load and sometimes hangs: one client per runtime (keep-alive), retries with exponential
//! backoff and full jitter for transient failures only, per-attempt and idle timeouts, and a
//! size limit enforced while the body arrives.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};

use crate::error::Error;

/// How specs are fetched (`WorkerRuntimeConfig.fetch`).
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// Retries after the first attempt, for transient failures only.
    pub retries: u32,
    /// The first backoff; each later one doubles, with full jitter.
    pub retry_base: Duration,
    /// No backoff (nor `Retry-After` wait) is longer than this.
    pub retry_max: Duration,
    pub connect_timeout: Duration,
    /// The most one attempt may take, body included.
    pub timeout: Duration,
    /// The longest the body may stall between two pieces.
    pub idle_timeout: Duration,
    /// The largest spec accepted, from the network (after decompression) or from a file.
    pub max_spec_bytes: u64,
    pub headers: HeaderMap,
    /// Extra trusted roots, as PEM, on top of the system's.
    pub ca_certificates: Vec<reqwest::Certificate>,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            retries: 3,
            retry_base: Duration::from_millis(200),
            retry_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(30),
            max_spec_bytes: 64 * 1024 * 1024,
            headers: HeaderMap::new(),
            ca_certificates: Vec::new(),
        }
    }
}

impl FetchConfig {
    /// Add a request header, refusing names and values HTTP does not allow.
    pub fn add_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| "is not a valid header name".to_owned())?;
        let value =
            HeaderValue::from_str(value).map_err(|_| "is not a valid header value".to_owned())?;
        self.headers.append(name, value);
        Ok(())
    }

    /// Trust the certificates of a PEM document (one or more).
    pub fn add_ca_pem(&mut self, pem: &str) -> Result<(), String> {
        let certs =
            reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|e| e.to_string())?;
        if certs.is_empty() {
            return Err("holds no PEM certificate".into());
        }
        self.ca_certificates.extend(certs);
        Ok(())
    }
}

/// Why one attempt failed.
#[derive(Debug)]
enum Failure {
    Status {
        status: StatusCode,
        reason: String,
        retry_after: Option<Duration>,
    },
    Network {
        cause: String,
        retryable: bool,
    },
    /// Not worth another attempt, whatever it is (a spec over the size limit).
    Final(Error),
}

impl Failure {
    fn retryable(&self) -> bool {
        match self {
            Failure::Status { status, .. } => {
                matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
            }
            Failure::Network { retryable, .. } => *retryable,
            Failure::Final(_) => false,
        }
    }

    fn summary(&self) -> String {
        match self {
            Failure::Status { status, .. } => format!("HTTP {}", status.as_u16()),
            Failure::Network { cause, .. } => cause.clone(),
            Failure::Final(e) => e.to_string(),
        }
    }
}

pub struct HttpFetcher {
    /// Built on first use: loading the TLS roots takes tens of milliseconds, which a runtime
    /// that only ever reads files should not pay.
    client: OnceLock<Result<reqwest::Client, String>>,
    config: FetchConfig,
}

impl HttpFetcher {
    pub fn new(config: FetchConfig) -> Self {
        HttpFetcher {
            client: OnceLock::new(),
            config,
        }
    }

    pub fn config(&self) -> &FetchConfig {
        &self.config
    }

    fn client(&self) -> Result<&reqwest::Client, Error> {
        let config = &self.config;
        self.client
            .get_or_init(|| {
                let mut builder = reqwest::Client::builder()
                    .user_agent(concat!("helios-worker-runtime/", env!("CARGO_PKG_VERSION")))
                    .default_headers(config.headers.clone())
                    .connect_timeout(config.connect_timeout)
                    .redirect(reqwest::redirect::Policy::limited(10));
                if !config.ca_certificates.is_empty() {
                    builder = builder.tls_certs_merge(config.ca_certificates.iter().cloned());
                }
                builder.build().map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(|e| Error::Internal(format!("cannot build the HTTP client: {e}")))
    }

    /// GET `url`, retrying transient failures. The final error says how many attempts were
    /// made and what each failed with.
    /// The body is read into `buffer` (emptied first), so a caller can reuse one.
    pub async fn fetch(&self, url: &Url, mut buffer: Vec<u8>) -> Result<Vec<u8>, Error> {
        let mut history = Vec::new();
        let mut attempt = 0;
        loop {
            let failure = match self.attempt(url, &mut buffer).await {
                Ok(()) => return Ok(buffer),
                Err(failure) => failure,
            };
            history.push(failure.summary());
            if !failure.retryable() || attempt >= self.config.retries {
                return Err(final_error(failure, url, &history));
            }
            let wait = match &failure {
                Failure::Status {
                    retry_after: Some(after),
                    ..
                } => (*after).min(self.config.retry_max),
                _ => full_jitter(self.config.retry_base, self.config.retry_max, attempt),
            };
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    async fn attempt(&self, url: &Url, body: &mut Vec<u8>) -> Result<(), Failure> {
        let client = self.client().map_err(Failure::Final)?;
        let timeout = self.config.timeout;
        body.clear();
        match tokio::time::timeout(timeout, self.request(client, url, body)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Network {
                cause: format!(
                    "timed out after {} ms (fetch.timeoutMs)",
                    timeout.as_millis()
                ),
                retryable: true,
            }),
        }
    }

    async fn request(
        &self,
        client: &reqwest::Client,
        url: &Url,
        body: &mut Vec<u8>,
    ) -> Result<(), Failure> {
        let mut response = client
            .get(url.clone())
            .send()
            .await
            .map_err(network_failure)?;
        let status = response.status();
        if !status.is_success() {
            let reason = response
                .extensions()
                .get::<hyper::ext::ReasonPhrase>()
                .and_then(|r| std::str::from_utf8(r.as_bytes()).ok().map(str::to_owned))
                .or_else(|| status.canonical_reason().map(str::to_owned))
                .unwrap_or_default();
            let retry_after = matches!(status.as_u16(), 429 | 503)
                .then(|| parse_retry_after(response.headers()))
                .flatten();
            return Err(Failure::Status {
                status,
                reason,
                retry_after,
            });
        }
        let limit = self.config.max_spec_bytes;
        let too_large = || Failure::Final(crate::source::too_large(url.as_str(), limit));
        if response.content_length().is_some_and(|len| len > limit) {
            return Err(too_large());
        }
        body.reserve(response.content_length().unwrap_or(0).min(limit) as usize);
        let idle = self.config.idle_timeout;
        loop {
            let piece = match tokio::time::timeout(idle, response.chunk()).await {
                Ok(piece) => piece.map_err(network_failure)?,
                Err(_) => {
                    return Err(Failure::Network {
                        cause: format!(
                            "the body stalled: no data for {} ms (fetch.idleTimeoutMs)",
                            idle.as_millis()
                        ),
                        retryable: true,
                    })
                }
            };
            let Some(piece) = piece else { return Ok(()) };
            if body.len() as u64 + piece.len() as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&piece);
        }
    }
}

fn final_error(failure: Failure, url: &Url, history: &[String]) -> Error {
    let attempts = if history.len() > 1 {
        format!(", after {} attempts: {}", history.len(), history.join("; "))
    } else {
        String::new()
    };
    match failure {
        Failure::Status { status, reason, .. } => Error::HttpStatus {
            status: status.as_u16(),
            reason,
            url: url.to_string(),
            attempts,
        },
        Failure::Network { cause, .. } => Error::Network {
            url: url.to_string(),
            cause,
            attempts,
        },
        Failure::Final(e) => e,
    }
}

/// A random wait in `[0, min(max, base * 2^attempt)]`: spreads out the retries of many
/// workers that failed together.
fn full_jitter(base: Duration, max: Duration, attempt: u32) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(20)).min(max);
    let random = RandomState::new().hash_one(Instant::now());
    ceiling.mul_f64((random % 1_000_001) as f64 / 1_000_000.0)
}

/// `Retry-After` as seconds or as an HTTP date.
fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = parse_http_date(value)?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form HTTP requires senders to use.
fn parse_http_date(text: &str) -> Option<SystemTime> {
    let rest = text.split_once(", ")?.1;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts[..] else {
        return None;
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| *m == month)? as i64
        + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = hms[..] else { return None };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + m * 60 + s;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Classify a failed request: a few words on the cause, whether another attempt may help.
fn network_failure(e: reqwest::Error) -> Failure {
    let mut chain = Vec::new();
    let mut io_kind = None;
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            io_kind = Some(io.kind());
        }
        chain.push(s.to_string());
        source = s.source();
    }
    let detail = chain.last().cloned().unwrap_or_else(|| e.to_string());
    let lower = chain.join(": ").to_ascii_lowercase();
    use std::io::ErrorKind::*;
    let (what, retryable) = if e.is_redirect() {
        ("too many redirects (more than 10)", false)
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        ("TLS error", false)
    } else if e.is_timeout() {
        ("timed out", true)
    } else if io_kind == Some(ConnectionRefused) {
        ("connection refused", true)
    } else if matches!(
        io_kind,
        Some(ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof)
    ) || lower.contains("connection reset")
        || lower.contains("connection closed")
        || lower.contains("incomplete")
    {
        ("connection reset", true)
    } else if lower.contains("dns error") || lower.contains("failed to lookup address") {
        ("DNS lookup failed", true)
    } else if e.is_body() || e.is_decode() {
        ("the response body could not be read", true)
    } else if e.is_connect() {
        ("could not connect", true)
    } else {
        ("request failed", false)
    };
    let cause = if e.is_redirect() || detail.eq_ignore_ascii_case(what) {
        what.to_owned()
    } else {
        format!("{what} ({detail})")
    };
    Failure::Network { cause, retryable }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_the_exponential_ceiling() {
        let base = Duration::from_millis(200);
        let max = Duration::from_secs(5);
        for attempt in 0..10 {
            let ceiling = (base * 2u32.pow(attempt)).min(max);
            for _ in 0..50 {
                assert!(full_jitter(base, max, attempt) <= ceiling);
            }
        }
        let spread: std::collections::HashSet<_> =
            (0..50).map(|_| full_jitter(base, max, 3)).collect();
        assert!(spread.len() > 10, "the waits are random");
    }

    #[test]
    fn retry_after_in_seconds_and_as_a_date() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(parse_retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(
            parse_retry_after(&headers),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
        assert_eq!(
            parse_http_date("Thu, 29 Feb 2024 00:00:00 GMT"),
            Some(UNIX_EPOCH + Duration::from_secs(1_709_164_800))
        );
        assert_eq!(parse_http_date("tomorrow"), None);
    }

    #[test]
    fn only_transient_statuses_are_retried() {
        for (code, retry) in [
            (408, true),
            (429, true),
            (500, true),
            (502, true),
            (503, true),
            (504, true),
            (404, false),
            (400, false),
            (401, false),
            (501, false),
        ] {
            let failure = Failure::Status {
                status: StatusCode::from_u16(code).unwrap(),
                reason: String::new(),
                retry_after: None,
            };
            assert_eq!(failure.retryable(), retry, "{code}");
        }
    }

    #[test]
    fn headers_and_certificates_are_checked() {
        let mut config = FetchConfig::default();
        assert!(config.add_header("Authorization", "Bearer x").is_ok());
        assert!(config.add_header("bad header", "x").is_err());
        assert!(config.add_header("X-Ok", "line\nbreak").is_err());
        assert!(config.add_ca_pem("not a certificate").is_err());
    }
}
