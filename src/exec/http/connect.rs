//! How a backend's client reaches its server: the proxy (chosen here from Flightdeck's
//! environment, never by reqwest from the process's) and the trusted roots (`ca_file`,
//! `SSL_CERT_FILE`, `SSL_CERT_DIR`).

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use reqwest::{Certificate, Client, Url};

use super::describe;
use crate::config::{HttpBackend, ProxyMode};
use crate::exec::ExecError;
use crate::exec::env::EnvSource;

/// Builds one HTTP client of a backend. `pooled: false` keeps no idle connection, so every
/// request opens a fresh one (used to resend a request the server never answered).
pub(super) fn client(
    backend: &str,
    config: &HttpBackend,
    url: &Url,
    env: &EnvSource,
    pooled: bool,
) -> Result<Client, ExecError> {
    // Proxies are chosen here from `env`, never by reqwest from the process environment.
    let mut builder = Client::builder().connect_timeout(Duration::from_secs(30)).no_proxy();
    if !pooled {
        builder = builder.pool_max_idle_per_host(0);
    }
    if let Some(proxy) = proxy_for(backend, url, config.proxy, env)? {
        builder = builder.proxy(proxy);
    }
    for certificate in extra_roots(backend, config.ca_file.as_deref(), env)? {
        builder = builder.add_root_certificate(certificate);
    }
    builder.build().map_err(|e| {
        ExecError::Config(format!(
            "backends.{backend}: cannot set up the HTTP client: {}",
            describe(&e)
        ))
    })
}

/// The proxy requests to `url` go through, if any. `auto` takes the environment's proxy
/// (`HTTPS_PROXY` or `HTTP_PROXY` by scheme, else `ALL_PROXY`; lower-case names too) except
/// for loopback hosts and hosts `NO_PROXY` names; `always` takes it for every host;
/// `never` takes none.
fn proxy_for(
    backend: &str,
    url: &Url,
    mode: ProxyMode,
    env: &EnvSource,
) -> Result<Option<reqwest::Proxy>, ExecError> {
    if mode == ProxyMode::Never || (mode == ProxyMode::Auto && is_loopback(url)) {
        return Ok(None);
    }
    let names: &[&str] = if url.scheme() == "https" {
        &["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"]
    } else {
        &["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"]
    };
    let Some((name, value)) = names
        .iter()
        .find_map(|name| env.get(name).filter(|v| !v.trim().is_empty()).map(|v| (*name, v)))
    else {
        return Ok(None);
    };
    // The value may carry proxy credentials, so it is not quoted.
    let proxy = reqwest::Proxy::all(value.trim()).map_err(|_| {
        ExecError::Config(format!("backends.{backend}: the proxy in {name} is not a valid URL"))
    })?;
    if mode == ProxyMode::Always {
        return Ok(Some(proxy));
    }
    let no_proxy = env.get("NO_PROXY").or_else(|| env.get("no_proxy")).unwrap_or_default();
    Ok(Some(proxy.no_proxy(reqwest::NoProxy::from_string(&no_proxy))))
}

/// 127.0.0.0/8, `::1`, `localhost` and `*.localhost`.
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost"
                || name.ends_with(".localhost")
                || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

/// Certificates trusted on top of the built-in roots: the backend's `ca_file`, the file
/// named by `SSL_CERT_FILE` and the PEM files in the folders of `SSL_CERT_DIR`
/// (`:`-separated). A file that cannot be read or holds no certificate is an error naming it.
fn extra_roots(
    backend: &str,
    ca_file: Option<&Path>,
    env: &EnvSource,
) -> Result<Vec<Certificate>, ExecError> {
    let mut roots = Vec::new();
    if let Some(file) = ca_file {
        roots.extend(pem_file(file, &format!("backends.{backend}.ca_file"))?);
    }
    if let Some(file) = env.get("SSL_CERT_FILE").filter(|f| !f.trim().is_empty()) {
        roots.extend(pem_file(Path::new(file.trim()), "SSL_CERT_FILE")?);
    }
    let dirs = env.get("SSL_CERT_DIR").unwrap_or_default();
    for dir in dirs.split(':').map(str::trim).filter(|d| !d.is_empty()) {
        let entries = std::fs::read_dir(dir).map_err(|e| {
            ExecError::Config(format!("SSL_CERT_DIR: cannot read the folder `{dir}`: {e}"))
        })?;
        for entry in entries.flatten() {
            let path = entry.path();
            // Folders prepared by `c_rehash` also hold other files: only PEM certificates count.
            if let Ok(text) = std::fs::read(&path)
                && let Ok(found) = Certificate::from_pem_bundle(&text)
            {
                roots.extend(found);
            }
        }
    }
    Ok(roots)
}

fn pem_file(file: &Path, setting: &str) -> Result<Vec<Certificate>, ExecError> {
    let shown = file.display();
    let text = std::fs::read(file)
        .map_err(|e| ExecError::Config(format!("{setting}: cannot read `{shown}`: {e}")))?;
    let certificates = Certificate::from_pem_bundle(&text).map_err(|e| {
        ExecError::Config(format!("{setting}: `{shown}` is not a PEM certificate file: {e}"))
    })?;
    if certificates.is_empty() {
        return Err(ExecError::Config(format!(
            "{setting}: `{shown}` holds no `BEGIN CERTIFICATE` block"
        )));
    }
    Ok(certificates)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        for url in [
            "http://127.0.0.1:8080/v1",
            "http://127.1.2.3/v1",
            "http://[::1]:11434/v1",
            "http://localhost:8080/v1",
            "http://LOCALHOST./v1",
            "http://llama.localhost/v1",
        ] {
            assert!(is_loopback(&Url::parse(url).unwrap()), "{url}");
        }
        for url in ["http://10.0.0.1/v1", "https://api.openai.com/v1", "http://localhost.example/"]
        {
            assert!(!is_loopback(&Url::parse(url).unwrap()), "{url}");
        }
    }

    #[test]
    fn proxy_mode_and_variables_decide() {
        let env = EnvSource::fixed([("HTTPS_PROXY", "http://proxy.internal:3128")]);
        let remote = Url::parse("https://api.openai.com/v1").unwrap();
        let local = Url::parse("https://127.0.0.1:8443/v1").unwrap();
        assert!(proxy_for("b", &remote, ProxyMode::Auto, &env).unwrap().is_some());
        assert!(proxy_for("b", &local, ProxyMode::Auto, &env).unwrap().is_none());
        assert!(proxy_for("b", &local, ProxyMode::Always, &env).unwrap().is_some());
        assert!(proxy_for("b", &remote, ProxyMode::Never, &env).unwrap().is_none());
        let http_only = Url::parse("http://api.example/v1").unwrap();
        assert!(proxy_for("b", &http_only, ProxyMode::Auto, &env).unwrap().is_none());
        let bad = EnvSource::fixed([("HTTPS_PROXY", "http://user:secret@[bad")]);
        let error = proxy_for("b", &remote, ProxyMode::Auto, &bad).unwrap_err();
        assert!(error.is_permanent());
        assert!(!error.to_string().contains("secret"), "{error}");
    }
}
