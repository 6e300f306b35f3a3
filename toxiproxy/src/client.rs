//! HTTP calls, timeouts and retries.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use chaoslab_core::toxic::Toxic;
use reqwest::{Method, StatusCode};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

use crate::{
    error::Error,
    model::{NewProxy, Proxy},
};

/// How hard one call tries: `attempts` tries in all, each bounded by `timeout`, with a doubling pause.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub timeout: Duration,
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        // Toxiproxy's own server-side timeout is 25 s; a healthy admin call takes milliseconds.
        Self { attempts: 3, timeout: Duration::from_secs(5), backoff: Duration::from_millis(100) }
    }
}

#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    policy: RetryPolicy,
}

/// reqwest is built without a default TLS provider (no aws-lc C build): install ring, as kube uses,
/// before building any reqwest client. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Client {
    /// A client of the Toxiproxy admin API at `url`, e.g. `http://127.0.0.1:8474`.
    pub fn new(url: &str) -> Result<Self, Error> {
        Self::with_policy(url, RetryPolicy::default())
    }

    pub fn with_policy(url: &str, policy: RetryPolicy) -> Result<Self, Error> {
        let http = Self::http(policy).map_err(|e| Error::BadUrl { url: url.to_string(), detail: e.to_string() })?;
        Self::sharing(url, policy, http)
    }

    /// The HTTP client behind [`Client::with_policy`], to share among the clients of many
    /// Toxiproxies ([`Client::sharing`]): building one loads the system's CA certificates, which
    /// cost an operator more CPU than the Toxiproxy calls when it built one per reconcile, and a
    /// shared one keeps its connections open between calls.
    pub fn http(policy: RetryPolicy) -> Result<reqwest::Client, reqwest::Error> {
        install_crypto_provider();
        reqwest::Client::builder()
            .timeout(policy.timeout)
            .connect_timeout(policy.timeout)
            // Toxiproxy answers 403 to user agents that look like browsers.
            .user_agent(concat!("chaoslab/", env!("CARGO_PKG_VERSION")))
            .build()
    }

    /// A client of the Toxiproxy at `url` over `http`, made by [`Client::http`] with the same policy.
    pub fn sharing(url: &str, policy: RetryPolicy, http: reqwest::Client) -> Result<Self, Error> {
        let bad = |detail: &str| Error::BadUrl { url: url.to_string(), detail: detail.to_string() };
        let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(bad("expected http://HOST:PORT"));
        }
        Ok(Self { base: url.trim_end_matches('/').to_string(), http, policy })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// One API call with retries. Returns the parsed body, or None for 204.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<T>, Error> {
        let call = format!("{method} {path}");
        let mut last = String::new();
        let mut pause = self.policy.backoff;
        for attempt in 1..=self.policy.attempts.max(1) {
            if attempt > 1 {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            let mut req = self.http.request(method.clone(), format!("{}{path}", self.base));
            if let Some(b) = body {
                req = req.json(b);
            }
            let started = Instant::now();
            let reply = match req.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    resp.text().await.map(|text| (status, text))
                }
                Err(e) => Err(e),
            };
            let outcome = match &reply {
                Ok((status, _)) => status.to_string(),
                Err(e) => describe(e, self.policy.timeout),
            };
            note_attempt(&self.base, &call, attempt, started.elapsed(), &outcome, reply.is_err());
            let Ok((status, text)) = reply else {
                last = outcome;
                continue;
            };
            if matches!(status, StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT)
            {
                last = outcome;
                continue;
            }
            if !status.is_success() {
                return Err(Error::Api {
                    url: self.base.clone(),
                    call,
                    status: status.as_u16(),
                    message: error_message(&text),
                });
            }
            if status == StatusCode::NO_CONTENT || text.trim().is_empty() {
                return Ok(None);
            }
            return serde_json::from_str(&text).map(Some).map_err(|e| Error::Decode {
                url: self.base.clone(),
                call,
                detail: format!("{e} in {}", snippet(&text)),
            });
        }
        Err(Error::Unreachable { url: self.base.clone(), call, attempts: self.policy.attempts.max(1), detail: last })
    }

    async fn expect<T: DeserializeOwned>(&self, method: Method, path: &str, body: Option<&Value>) -> Result<T, Error> {
        let call = format!("{method} {path}");
        self.call(method, path, body).await?.ok_or_else(|| Error::Decode {
            url: self.base.clone(),
            call,
            detail: "empty body".into(),
        })
    }

    pub async fn version(&self) -> Result<String, Error> {
        let v: Value = self.expect(Method::GET, "/version", None).await?;
        // Old servers answer a bare string.
        Ok(v.get("version").and_then(Value::as_str).or(v.as_str()).unwrap_or_default().to_string())
    }

    pub async fn proxies(&self) -> Result<BTreeMap<String, Proxy>, Error> {
        self.expect(Method::GET, "/proxies", None).await
    }

    pub async fn proxy(&self, name: &str) -> Result<Proxy, Error> {
        self.expect(Method::GET, &format!("/proxies/{}", seg(name)), None).await
    }

    pub async fn create_proxy(&self, proxy: &NewProxy) -> Result<Proxy, Error> {
        self.expect(Method::POST, "/proxies", Some(&to_value(proxy))).await
    }

    /// Creates or keeps proxies; an unchanged proxy keeps its toxics (Toxiproxy's semantics).
    pub async fn populate(&self, proxies: &[NewProxy]) -> Result<Vec<Proxy>, Error> {
        #[derive(serde::Deserialize)]
        struct Populated {
            proxies: Vec<Proxy>,
        }
        let p: Populated = self.expect(Method::POST, "/populate", Some(&to_value(proxies))).await?;
        Ok(p.proxies)
    }

    pub async fn set_enabled(&self, name: &str, enabled: bool) -> Result<Proxy, Error> {
        self.expect(Method::PATCH, &format!("/proxies/{}", seg(name)), Some(&json!({ "enabled": enabled }))).await
    }

    pub async fn delete_proxy(&self, name: &str) -> Result<(), Error> {
        self.call::<Value>(Method::DELETE, &format!("/proxies/{}", seg(name)), None).await.map(drop)
    }

    pub async fn toxics(&self, proxy: &str) -> Result<Vec<Toxic>, Error> {
        self.expect(Method::GET, &format!("/proxies/{}/toxics", seg(proxy)), None).await
    }

    pub async fn toxic(&self, proxy: &str, name: &str) -> Result<Toxic, Error> {
        self.expect(Method::GET, &format!("/proxies/{}/toxics/{}", seg(proxy), seg(name)), None).await
    }

    pub async fn create_toxic(&self, proxy: &str, toxic: &Toxic) -> Result<Toxic, Error> {
        self.expect(Method::POST, &format!("/proxies/{}/toxics", seg(proxy)), Some(&to_value(toxic))).await
    }

    /// Changes attributes and toxicity; name, type and stream are immutable in Toxiproxy.
    pub async fn update_toxic(&self, proxy: &str, toxic: &Toxic) -> Result<Toxic, Error> {
        let body = json!({ "attributes": toxic.attributes, "toxicity": toxic.toxicity });
        self.expect(Method::PATCH, &format!("/proxies/{}/toxics/{}", seg(proxy), seg(&toxic.name)), Some(&body)).await
    }

    pub async fn delete_toxic(&self, proxy: &str, name: &str) -> Result<(), Error> {
        self.call::<Value>(Method::DELETE, &format!("/proxies/{}/toxics/{}", seg(proxy), seg(name)), None)
            .await
            .map(drop)
    }

    /// Enables every proxy and removes every toxic, chaoslab's or not.
    pub async fn reset(&self) -> Result<(), Error> {
        self.call::<Value>(Method::POST, "/reset", None).await.map(drop)
    }
}

/// An attempt slower than this is logged at warn: an admin call takes milliseconds, so one this slow
/// (Toxiproxy starved or stuck, a connection lost) is what delays a phase change, and the log line
/// says which Toxiproxy and which call.
const SLOW_ATTEMPT: Duration = Duration::from_secs(1);

/// Logs one attempt: at warn if slow, at debug if it got no reply (as before slow ones were named),
/// else at trace.
fn note_attempt(url: &str, call: &str, attempt: u32, took: Duration, outcome: &str, failed: bool) {
    let ms = took.as_millis();
    if took >= SLOW_ATTEMPT {
        tracing::warn!(%url, %call, attempt, ms, %outcome, "slow toxiproxy call");
    } else if failed {
        tracing::debug!(%url, %call, attempt, ms, error = %outcome, "toxiproxy call failed");
    } else {
        tracing::trace!(%url, %call, attempt, ms, %outcome, "toxiproxy call");
    }
}

fn to_value<T: Serialize + ?Sized>(v: &T) -> Value {
    serde_json::to_value(v).expect("API bodies serialize")
}

/// Percent-encodes a path segment (proxy and toxic names are user input).
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Toxiproxy's error body is `{"error": msg, "status": code}` served as text/plain.
fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| snippet(body))
}

fn snippet(body: &str) -> String {
    let t = body.trim();
    if t.chars().count() > 200 { format!("{}…", t.chars().take(200).collect::<String>()) } else { t.to_string() }
}

fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        format!("no reply within {timeout:?}")
    } else if e.is_connect() {
        format!("cannot connect ({})", root_cause(e))
    } else {
        root_cause(e)
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_message_prefers_toxiproxys_words() {
        assert_eq!(error_message(r#"{"error":"proxy not found","status":404}"#), "proxy not found");
        assert_eq!(error_message("<html>timeout</html>"), "<html>timeout</html>");
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
        assert_eq!(seg("chaoslab-x_1.y"), "chaoslab-x_1.y");
    }

    #[test]
    fn bad_urls_are_rejected_with_the_url() {
        let e = Client::new("127.0.0.1:8474").unwrap_err();
        assert!(e.to_string().contains("127.0.0.1:8474"), "{e}");
        assert!(Client::new("ftp://x").is_err());
        assert!(Client::new("http://127.0.0.1:8474/").is_ok());
    }
}
