//! One HTTP client per connection settings, shared by every runtime (README, "Design").

use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use crate::error::Error;

/// What makes two clients differ; its environment values were read on the JavaScript thread.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Connection {
    pub headers: Vec<(String, String)>,
    pub ca_certificates: Vec<Vec<u8>>,
    pub connect_timeout: Option<Duration>,
    /// `HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY` (or their lower-case forms).
    pub http_proxy: Option<String>,
    pub https_proxy: Option<String>,
    pub no_proxy: Option<String>,
    /// `NODE_EXTRA_CA_CERTS`: read when the client is built, once per process, not per runtime.
    pub extra_ca_file: Option<String>,
    /// A connection per request, for retries: a pooled one the server closed silently fails too.
    pub fresh_connections: bool,
}

/// Past this many settings (a token header per tenant, say), the oldest client is dropped.
const MAX_CLIENTS: usize = 16;

static CLIENTS: LazyLock<Mutex<Vec<(Connection, reqwest::Client)>>> = LazyLock::new(Mutex::default);

/// Built on the blocking pool the first time: loading the system's roots takes milliseconds.
pub async fn client(connection: &Connection) -> Result<reqwest::Client, Error> {
    let find = |clients: &[(Connection, reqwest::Client)]| {
        let found = clients.iter().find(|(c, _)| c == connection);
        found.map(|(_, client)| client.clone())
    };
    if let Some(client) = find(&crate::lock(&CLIENTS)) {
        return Ok(client);
    }
    let settings = connection.clone();
    let built = tokio::task::spawn_blocking(move || build(&settings))
        .await
        .map_err(|e| Error::Internal(format!("building the HTTP client failed: {e}")))??;
    let mut clients = crate::lock(&CLIENTS);
    // Another run may have built one meanwhile: one client per setting.
    if let Some(client) = find(&clients) {
        return Ok(client);
    }
    if clients.len() >= MAX_CLIENTS {
        clients.remove(0);
    }
    clients.push((connection.clone(), built.clone()));
    Ok(built)
}

fn build(c: &Connection) -> Result<reqwest::Client, Error> {
    let internal =
        |e: reqwest::Error| Error::Internal(format!("cannot build the HTTP client: {e}"));
    let headers: reqwest::header::HeaderMap = (c.headers.iter())
        .filter_map(|(name, value)| Some((name.parse().ok()?, value.parse().ok()?)))
        .collect();
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("helios-worker-runtime/", env!("CARGO_PKG_VERSION")))
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::limited(10))
        // hyper stops at 100 header lines; Node takes any number that fits its 16 KiB head.
        .http1_max_headers(4096)
        // Proxies only from the settings: Node may be writing this process's environment.
        .no_proxy();
    if let Some(limit) = c.connect_timeout {
        builder = builder.connect_timeout(limit);
    }
    if c.fresh_connections {
        builder = builder.pool_max_idle_per_host(0);
    }
    let no_proxy = || reqwest::NoProxy::from_string(c.no_proxy.as_deref().unwrap_or(""));
    let bad_proxy = |name: &'static str, url: &str| {
        let url = url.to_owned();
        move |e: reqwest::Error| {
            Error::Internal(format!(
                "the proxy {name} ('{url}') from the environment is not a proxy URL: {e}"
            ))
        }
    };
    // `*` bypasses every host, IP addresses too (the matcher applies it to names only).
    let bypass_all = (c.no_proxy.iter()).any(|list| list.split(',').any(|e| e.trim() == "*"));
    if let Some(url) = c.http_proxy.as_ref().filter(|_| !bypass_all) {
        let proxy = reqwest::Proxy::http(url).map_err(bad_proxy("http_proxy", url))?;
        builder = builder.proxy(proxy.no_proxy(no_proxy()));
    }
    if let Some(url) = c.https_proxy.as_ref().filter(|_| !bypass_all) {
        let proxy = reqwest::Proxy::https(url).map_err(bad_proxy("https_proxy", url))?;
        builder = builder.proxy(proxy.no_proxy(no_proxy()));
    }
    let extra = c.extra_ca_file.as_deref().and_then(read_extra_cas);
    let extra: Vec<_> = certificates(&extra.unwrap_or_default()).flatten().collect();
    if !c.ca_certificates.is_empty() || !extra.is_empty() {
        let certs = c
            .ca_certificates
            .iter()
            .chain(&extra)
            .map(|der| reqwest::Certificate::from_der(der))
            .collect::<Result<Vec<_>, _>>()
            .map_err(internal)?;
        builder = builder.tls_certs_merge(certs);
    }
    builder.build().map_err(internal)
}

/// Only a regular file of sane size: a FIFO or device named there would hang us or fill memory.
fn read_extra_cas(path: &str) -> Option<String> {
    use std::io::Read;
    const MAX_BYTES: u64 = 16 * 1024 * 1024;
    let mut options = std::fs::OpenOptions::new();
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.read(true).open(path).ok()?;
    let meta = file.metadata().ok()?;
    (meta.is_file() && meta.len() <= MAX_BYTES).then_some(())?;
    std::io::read_to_string(file.take(MAX_BYTES)).ok()
}

fn certificates(pem: &str) -> impl Iterator<Item = Result<Vec<u8>, String>> + '_ {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .enumerate()
        .map(|(i, der)| {
            let which = format!("certificate {} of the document", i + 1);
            let der = der.map_err(|e| format!("{which} is not valid PEM ({e})"))?;
            rustls::RootCertStore::empty()
                .add(der.clone())
                .map_err(|e| format!("{which} does not parse ({e})"))?;
            Ok(der.to_vec())
        })
}

pub fn parse_pem(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    let found = certificates(pem).collect::<Result<Vec<_>, _>>()?;
    if found.is_empty() {
        return Err("holds no PEM certificate".into());
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn the_extra_ca_file_is_read_only_when_it_is_a_regular_file() {
        let dir = std::env::temp_dir().join(format!("hwr-extra-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (fifo, file) = (dir.join("fifo"), dir.join("ca.pem"));
        std::fs::write(&file, "pem text").unwrap();
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        assert_eq!(read_extra_cas("/dev/zero"), None, "a device");
        assert_eq!(
            read_extra_cas(fifo.to_str().unwrap()),
            None,
            "a FIFO, without hanging"
        );
        assert_eq!(
            read_extra_cas(file.to_str().unwrap()).as_deref(),
            Some("pem text")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn runtimes_with_the_same_settings_share_one_client() {
        let a = Connection {
            headers: vec![("x-test".into(), "shared".into())],
            ..Connection::default()
        };
        client(&a).await.unwrap();
        client(&a.clone()).await.unwrap();
        assert_eq!(
            crate::lock(&CLIENTS)
                .iter()
                .filter(|(c, _)| *c == a)
                .count(),
            1
        );
        let b = Connection {
            headers: vec![("x-test".into(), "other".into())],
            ..Connection::default()
        };
        client(&b).await.unwrap();
        assert_eq!(
            crate::lock(&CLIENTS)
                .iter()
                .filter(|(c, _)| *c == a || *c == b)
                .count(),
            2
        );
    }

    #[test]
    fn certificates_and_proxies_are_checked() {
        assert!(parse_pem("not a certificate").is_err());
        assert!(certificates("not a certificate").flatten().next().is_none());
    }
}
