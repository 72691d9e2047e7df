//! A small typed client for the node API: every call turns non-2xx answers
//! into the server's [`ApiError`] message, and connection failures into a
//! hint about `--api`/`SKEIN_ADDR`.

use anyhow::{anyhow, Context, Result};
use reqwest::{Method, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use skein_protocol::api::ApiError;

/// Client for one node's API.
pub struct Client {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
}

impl Client {
    /// A client for `addr` (`host:port` or a full `http://` URL).
    pub fn new(addr: &str, token: Option<&str>) -> Result<Self> {
        let base = if addr.starts_with("http://") || addr.starts_with("https://") {
            addr.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", addr.trim_end_matches('/'))
        };
        let http = reqwest::Client::builder()
            .connect_timeout(std::time::Duration::from_secs(5))
            .build()?;
        Ok(Self {
            base,
            http,
            token: token.map(str::to_string),
        })
    }

    /// Sends a request and returns the raw response if it succeeded.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        let resp = req.send().await.map_err(|e| {
            anyhow!(
                "cannot reach the skein node at {}: {e}\n  (is `skein agent` running? set --api or SKEIN_ADDR to its API address)",
                self.base
            )
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        match serde_json::from_str::<ApiError>(&text) {
            Ok(e) => Err(anyhow!("{e}")),
            Err(_) if status == StatusCode::NOT_FOUND && text.is_empty() => {
                Err(anyhow!("{url}: not found (is this a skein node?)"))
            }
            Err(_) => Err(anyhow!("{status}: {text}")),
        }
    }

    /// GET a JSON document.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let resp = self.send(Method::GET, path, None).await?;
        resp.json()
            .await
            .with_context(|| format!("unexpected answer to GET {path}"))
    }

    /// POST (or other method) with a JSON body; returns the raw response.
    pub async fn call<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<Response> {
        self.send(method, path, Some(serde_json::to_vec(body)?))
            .await
    }
}
