//! Transport: one HTTP exchange with a provider. Sends the adapter's request, bounds it
//! by the provider's `request_timeout`, turns `reqwest` failures into [`Error`]s
//! ([`transport_error`]: timeouts, connection failures, broken bodies, never the URL),
//! and decodes a streamed answer (bytes -> SSE events -> chunks, with an idle timeout).
//! No retries, fallbacks or records here: [`super::execution`] decides what to do next.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::HeaderMap;

use super::Client;
use crate::error::{Error, Result};
use crate::providers::{Adapter, HttpCall, StreamDecoder, Target};
use crate::sse::SseParser;
use crate::types::{ChatChunk, ChatResponse};

impl Client {
    /// Send `call` and read the whole answer, within the provider's request timeout.
    pub(super) async fn fetch_answer(
        &self,
        adapter: &dyn Adapter,
        call: &HttpCall,
        target: &Target,
    ) -> Result<ChatResponse> {
        let timeout = target.provider.request_timeout;
        let fut = async {
            let resp = self.send(call, target).await?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp
                .bytes()
                .await
                .map_err(|e| transport_error(&target.provider.name, e, timeout))?;
            if (200..300).contains(&status) {
                adapter.parse_response(&body, target)
            } else {
                Err(adapter.parse_error(status, &headers, &body, target))
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                provider: target.provider.name.clone(),
                after: timeout,
                what: "request",
            }),
        }
    }

    /// Send `call` and return the response once its status is 2xx (the body is the
    /// stream); the start is bounded by the request timeout, an error body too.
    pub(super) async fn open_stream(
        &self,
        adapter: &dyn Adapter,
        call: &HttpCall,
        target: &Target,
    ) -> Result<reqwest::Response> {
        let timeout = target.provider.request_timeout;
        let resp = tokio::time::timeout(timeout, self.send(call, target))
            .await
            .map_err(|_| Error::Timeout {
                provider: target.provider.name.clone(),
                after: timeout,
                what: "stream start",
            })??;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let headers: HeaderMap = resp.headers().clone();
        let body = tokio::time::timeout(timeout, resp.bytes())
            .await
            .map_err(|_| Error::Timeout {
                provider: target.provider.name.clone(),
                after: timeout,
                what: "error body",
            })?
            .map_err(|e| transport_error(&target.provider.name, e, timeout))?;
        Err(adapter.parse_error(status, &headers, &body, target))
    }

    /// POST the adapter's request (no timeout of its own beyond the client's connect one).
    async fn send(&self, call: &HttpCall, target: &Target) -> Result<reqwest::Response> {
        let mut rb = self.inner.http.post(&call.url).json(&call.body);
        for (k, v) in &call.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        rb.send()
            .await
            .map_err(|e| transport_error(&target.provider.name, e, target.provider.request_timeout))
    }
}

pub(super) fn transport_error(provider: &str, e: reqwest::Error, timeout: Duration) -> Error {
    if e.is_timeout() {
        return Error::Timeout {
            provider: provider.to_owned(),
            after: timeout,
            what: "request",
        };
    }
    let what = if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "connection broke while reading"
    } else {
        "transport error"
    };
    // The whole source chain, without the URL (keys may travel in `?key=`).
    let e = e.without_url();
    let mut msg = format!("{what}: {e}");
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    Error::ProviderUnavailable {
        provider: provider.to_owned(),
        status: None,
        message: msg,
    }
}

/// State of a streaming response being decoded.
struct SseState<S> {
    body: S,
    parser: SseParser,
    decoder: Box<dyn StreamDecoder>,
    pending: VecDeque<Result<ChatChunk>>,
    provider: String,
    idle: Duration,
    ended: bool,
}

/// Bytes -> SSE events -> normalized chunks, with an idle timeout between reads.
pub(super) fn sse_chunks<S>(
    body: S,
    decoder: Box<dyn StreamDecoder>,
    provider: String,
    idle: Duration,
) -> impl Stream<Item = Result<ChatChunk>> + Send
where
    S: Stream<Item = reqwest::Result<Bytes>> + Send + Unpin + 'static,
{
    let state = SseState {
        body,
        parser: SseParser::new(),
        decoder,
        pending: VecDeque::new(),
        provider,
        idle,
        ended: false,
    };
    futures_util::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(item) = st.pending.pop_front() {
                if item.is_err() {
                    // An error ends the stream: nothing after it is meaningful.
                    st.pending.clear();
                    st.ended = true;
                }
                return Some((item, st));
            }
            if st.ended {
                return None;
            }
            match tokio::time::timeout(st.idle, st.body.next()).await {
                Err(_) => {
                    st.pending.push_back(Err(Error::Timeout {
                        provider: st.provider.clone(),
                        after: st.idle,
                        what: "stream idle",
                    }));
                }
                Ok(Some(Ok(bytes))) => match st.parser.feed(&bytes) {
                    Ok(events) => {
                        for ev in events {
                            match st.decoder.on_event(&ev) {
                                Ok(chunks) => st.pending.extend(chunks.into_iter().map(Ok)),
                                Err(e) => {
                                    st.pending.push_back(Err(e));
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => st.pending.push_back(Err(Error::invalid_response(
                        &st.provider,
                        Some(200),
                        e.to_string(),
                    ))),
                },
                Ok(Some(Err(e))) => {
                    st.pending.push_back(Err(Error::StreamInterrupted {
                        provider: st.provider.clone(),
                        message: format!("the connection broke mid-stream: {}", e.without_url()),
                    }));
                }
                Ok(None) => {
                    st.ended = true;
                    let tail = st.parser.finish().map_err(|e| {
                        Error::invalid_response(&st.provider, Some(200), e.to_string())
                    });
                    let tail_chunks = tail.and_then(|ev| match ev {
                        Some(ev) => st.decoder.on_event(&ev),
                        None => Ok(Vec::new()),
                    });
                    match tail_chunks.and_then(|mut c| {
                        c.extend(st.decoder.finish()?);
                        Ok(c)
                    }) {
                        Ok(chunks) => st.pending.extend(chunks.into_iter().map(Ok)),
                        Err(e) => st.pending.push_back(Err(e)),
                    }
                }
            }
        }
    })
}
