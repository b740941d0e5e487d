//! Fetching a spec over HTTP(S) from a network that drops connections, answers 503 and hangs.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::BuildHasher;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};

use crate::clients::{self, Connection};
use crate::error::Error;

/// How specs are fetched (`WorkerRuntimeConfig.fetch`; the fields are documented there).
#[derive(Debug, Clone)]
pub struct FetchConfig {
    pub retries: u32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub connection: Connection,
    pub timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
    pub max_spec_bytes: u64,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            retries: 3,
            retry_base: Duration::from_millis(200),
            retry_max: Duration::from_secs(5),
            connection: Connection {
                connect_timeout: Some(Duration::from_secs(10)),
                ..Connection::default()
            },
            timeout: Some(Duration::from_secs(60)),
            idle_timeout: Some(Duration::from_secs(30)),
            max_spec_bytes: 64 * 1024 * 1024,
        }
    }
}

impl FetchConfig {
    pub fn add_header(&mut self, name: &str, value: &str) -> Result<(), String> {
        HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| "is not a valid header name".to_owned())?;
        HeaderValue::from_str(value).map_err(|_| "is not a valid header value".to_owned())?;
        let headers = &mut self.connection.headers;
        headers.push((name.to_owned(), value.to_owned()));
        headers.sort();
        Ok(())
    }

    /// GET `url` into `buffer` (reused), retrying transient failures; the error lists each try.
    pub async fn fetch(&self, url: &Url, mut buffer: Vec<u8>) -> Result<Vec<u8>, Error> {
        let mut history = Vec::new();
        loop {
            let retry = !history.is_empty();
            let Err(failure) = self.attempt(url, &mut buffer, retry).await else {
                return Ok(buffer);
            };
            let attempt = history.len() as u32;
            history.push(failure.summary());
            if !failure.retryable() || attempt >= self.retries {
                return Err(final_error(failure, url, &history));
            }
            let wait = match &failure {
                Failure::Status {
                    retry_after: Some(after),
                    ..
                } => (*after).min(self.retry_max),
                _ => full_jitter(self.retry_base, self.retry_max, attempt),
            };
            tokio::time::sleep(wait).await;
        }
    }

    async fn attempt(&self, url: &Url, body: &mut Vec<u8>, retry: bool) -> Result<(), Failure> {
        // The shared client, built on first use; a retry's opens a new connection per request
        // (its settings copied only then: the first attempt is every run's hot path).
        let fresh = retry.then(|| Connection {
            fresh_connections: true,
            ..self.connection.clone()
        });
        let client = clients::client(fresh.as_ref().unwrap_or(&self.connection)).await;
        let client = client.map_err(Failure::Final)?;
        body.clear();
        let timed_out = |ms| format!("timed out after {ms} ms (fetch.timeoutMs)");
        within(self.timeout, timed_out, self.request(&client, url, body)).await?
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
                .and_then(|r| std::str::from_utf8(r.as_bytes()).ok())
                // The HTTP parser drops a phrase that is not plain ASCII: say the standard one.
                .filter(|reason| !reason.trim().is_empty())
                .or(status.canonical_reason())
                .unwrap_or("Unknown Status")
                .to_owned();
            let retry_after = matches!(status.as_u16(), 429 | 503)
                .then(|| parse_retry_after(response.headers()))
                .flatten();
            return Err(Failure::Status {
                status,
                reason,
                retry_after,
            });
        }
        let limit = self.max_spec_bytes;
        let too_large = || Failure::Final(Error::too_large(url.as_str(), limit));
        if response.content_length().is_some_and(|len| len > limit) {
            return Err(too_large());
        }
        body.reserve(response.content_length().unwrap_or(0).min(limit) as usize);
        let stalled = |ms| format!("the body stalled: no data for {ms} ms (fetch.idleTimeoutMs)");
        loop {
            let piece = within(self.idle_timeout, stalled, response.chunk()).await?;
            let Some(piece) = piece.map_err(network_failure)? else {
                return Ok(());
            };
            if body.len() as u64 + piece.len() as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&piece);
        }
    }
}

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

fn final_error(failure: Failure, url: &Url, history: &[String]) -> Error {
    let attempts = match history.len() {
        0 | 1 => String::new(),
        n => format!(", after {n} attempts: {}", history.join("; ")),
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

/// A random wait in `[0, min(max, base * 2^attempt)]`, to spread out workers that failed together.
fn full_jitter(base: Duration, max: Duration, attempt: u32) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(20)).min(max);
    let random = RandomState::new().hash_one(Instant::now());
    ceiling.mul_f64((random % 1_000_001) as f64 / 1_000_000.0)
}

/// `Retry-After` as seconds or as an HTTP date (any of the three formats RFC 9110 accepts).
fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
}

async fn within<T>(
    limit: Option<Duration>,
    why: impl FnOnce(u128) -> String,
    work: impl Future<Output = T>,
) -> Result<T, Failure> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, work)
            .await
            .map_err(|_| Failure::Network {
                cause: why(limit.as_millis()),
                retryable: true,
            }),
        None => Ok(work.await),
    }
}

/// Classify a failed request by the types in its error chain, never by its text.
fn network_failure(e: reqwest::Error) -> Failure {
    use std::io::ErrorKind::*;
    let mut io_kind = None;
    let mut tls = false;
    let mut incomplete = false;
    let mut detail = None;
    // The source chain, and the error in each io::Error (which `source` skips): the real cause.
    let mut pending: Vec<&(dyn std::error::Error + 'static)> =
        std::error::Error::source(&e).into_iter().collect();
    while let Some(s) = pending.pop() {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() != Other {
                io_kind = Some(io.kind());
            }
            if let Some(inner) = io.get_ref() {
                pending.push(inner);
            }
        }
        tls |= s.downcast_ref::<rustls::Error>().is_some();
        incomplete |= s
            .downcast_ref::<hyper::Error>()
            .is_some_and(|h| h.is_incomplete_message() || h.is_closed());
        detail = Some(s.to_string());
        pending.extend(s.source());
    }
    let (what, retryable) = if e.is_redirect() {
        ("too many redirects (more than 10)", false)
    } else if tls {
        ("TLS error", false)
    } else if e.is_timeout() || io_kind == Some(TimedOut) {
        ("timed out", true)
    } else if io_kind == Some(ConnectionRefused) {
        ("connection refused", true)
    } else if incomplete
        || matches!(
            io_kind,
            Some(ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof)
        )
    {
        // A TLS peer that closes without close_notify lands here too: the body was cut off.
        ("connection reset", true)
    } else if e.is_connect() {
        ("could not connect", true)
    } else if e.is_body() || e.is_decode() {
        ("the response body could not be read", false)
    } else {
        ("request failed", false)
    };
    let detail = detail.unwrap_or_else(|| e.to_string());
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
        for obsolete in ["Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"] {
            headers.insert(RETRY_AFTER, HeaderValue::from_static(obsolete));
            assert_eq!(
                parse_retry_after(&headers),
                Some(Duration::ZERO),
                "{obsolete}"
            );
        }
        headers.insert(RETRY_AFTER, HeaderValue::from_static("tomorrow"));
        assert_eq!(parse_retry_after(&headers), None);
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
        assert!(clients::parse_pem("not a certificate").is_err());
    }
}
