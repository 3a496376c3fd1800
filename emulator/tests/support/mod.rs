//! Shared helpers for the emulator's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::SocketAddr;

use gaterouter_emulator::EmulatorHandle;
use serde_json::Value;

pub struct Ctx {
    pub handle: EmulatorHandle,
    pub client: reqwest::Client,
    pub base: String,
}

/// Starts a fresh emulator on a free port plus a client.
pub async fn start() -> Ctx {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let handle = gaterouter_emulator::start(addr).await.unwrap();
    let base = handle.base_url();
    let client = reqwest::Client::builder().build().unwrap();
    Ctx {
        handle,
        client,
        base,
    }
}

/// The token rule, reimplemented independently: ceil(chars / 4).
pub fn tok(s: &str) -> u64 {
    (s.chars().count() as u64).div_ceil(4)
}

/// One parsed SSE event.
#[derive(Debug, Clone)]
pub struct Event {
    pub event: Option<String>,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("bad JSON {e}: {}", self.data))
    }
}

/// Parses an SSE body by hand: blank-line separated events with `event:` / `data:` lines.
pub fn parse_sse(body: &str) -> Vec<Event> {
    assert!(
        body.ends_with("\n\n"),
        "SSE body must end with a blank line: {body:?}"
    );
    let mut out = Vec::new();
    for block in body.split("\n\n") {
        if block.trim().is_empty() {
            continue;
        }
        let mut event = None;
        let mut data = Vec::new();
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event: ") {
                event = Some(v.to_string());
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push(v.to_string());
            } else {
                panic!("unexpected SSE line {line:?}");
            }
        }
        out.push(Event {
            event,
            data: data.join("\n"),
        });
    }
    out
}

impl Ctx {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn openai(&self, body: Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/chat/completions"))
            .bearer_auth("sk-test")
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn deepseek(&self, body: Value) -> reqwest::Response {
        self.client
            .post(self.url("/deepseek/v1/chat/completions"))
            .bearer_auth("sk-test")
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn anthropic(&self, body: Value) -> reqwest::Response {
        self.client
            .post(self.url("/anthropic/v1/messages"))
            .header("x-api-key", "sk-ant-test")
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn gemini(&self, model: &str, stream: bool, body: Value) -> reqwest::Response {
        let path = if stream {
            format!("/gemini/v1beta/models/{model}:streamGenerateContent?alt=sse")
        } else {
            format!("/gemini/v1beta/models/{model}:generateContent")
        };
        self.client
            .post(self.url(&path))
            .header("x-goog-api-key", "AIza-test")
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        self.client
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// Status and JSON body.
pub async fn json_of(r: reqwest::Response) -> (u16, Value) {
    let s = r.status().as_u16();
    let t = r.text().await.unwrap();
    let v = serde_json::from_str(&t).unwrap_or_else(|e| panic!("not JSON ({e}): {t}"));
    (s, v)
}

/// A long text of exactly `chars` ASCII chars (deterministic).
pub fn long_text(chars: usize) -> String {
    let unit = "The quick brown fox jumps over the lazy dog. ";
    unit.repeat(chars / unit.len() + 1)[..chars].to_string()
}
