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

/// What one attempt sends, and to whom: the adapter that built `call` for `target`.
#[derive(Clone, Copy)]
pub(super) struct Outbound<'a> {
    pub(super) adapter: &'static dyn Adapter,
    pub(super) call: &'a HttpCall,
    pub(super) target: &'a Target,
}

impl Outbound<'_> {
    /// The provider's request timeout.
    fn timeout(&self) -> Duration {
        self.target.provider.request_timeout
    }

    /// The request timeout fired during `what`.
    fn timed_out(&self, what: &'static str) -> Error {
        Error::Timeout {
            provider: self.target.provider.name.clone(),
            after: self.timeout(),
            what,
        }
    }

    /// A `reqwest` failure of this exchange.
    fn failed(&self, e: reqwest::Error) -> Error {
        transport_error(&self.target.provider.name, e, self.timeout())
    }
}

impl Client {
    /// Send the request and read the whole answer, within the provider's request timeout.
    pub(super) async fn fetch_answer(&self, out: Outbound<'_>) -> Result<ChatResponse> {
        let Outbound {
            adapter, target, ..
        } = out;
        let fut = async {
            let resp = self.send(out).await?;
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp.bytes().await.map_err(|e| out.failed(e))?;
            if (200..300).contains(&status) {
                adapter.parse_response(&body, target)
            } else {
                Err(adapter.parse_error(status, &headers, &body, target))
            }
        };
        tokio::time::timeout(out.timeout(), fut)
            .await
            .unwrap_or_else(|_| Err(out.timed_out("request")))
    }

    /// Send the request and return the response once its status is 2xx (the body is the
    /// stream); the start is bounded by the request timeout, an error body too.
    pub(super) async fn open_stream(&self, out: Outbound<'_>) -> Result<reqwest::Response> {
        let resp = tokio::time::timeout(out.timeout(), self.send(out))
            .await
            .map_err(|_| out.timed_out("stream start"))??;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let headers: HeaderMap = resp.headers().clone();
        let body = tokio::time::timeout(out.timeout(), resp.bytes())
            .await
            .map_err(|_| out.timed_out("error body"))?
            .map_err(|e| out.failed(e))?;
        Err(out.adapter.parse_error(status, &headers, &body, out.target))
    }

    /// POST the adapter's request (no timeout of its own beyond the client's connect one).
    async fn send(&self, out: Outbound<'_>) -> Result<reqwest::Response> {
        let call = out.call;
        let mut rb = self.inner.http.post(&call.url).json(&call.body);
        for (k, v) in &call.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        rb.send().await.map_err(|e| out.failed(e))
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::providers::adapter_for;

    use crate::client::testing::{ask, offline_client as client};

    /// A server that accepts connections and never answers.
    async fn silent_server() -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((sock, _)) = listener.accept().await {
                held.push(sock);
            }
        });
        (format!("http://{addr}"), task)
    }

    #[tokio::test]
    async fn a_reqwest_timeout_becomes_a_timeout_error() {
        let (url, server) = silent_server().await;
        let _ = client(); // installs the TLS crypto provider reqwest needs
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(50))
            .build()
            .unwrap();
        let e = http.get(&url).send().await.unwrap_err();
        assert!(e.is_timeout());
        let mapped = transport_error("openai", e, Duration::from_secs(7));
        assert_eq!(mapped.kind(), ErrorKind::Timeout);
        match mapped {
            Error::Timeout {
                provider,
                after,
                what,
            } => {
                assert_eq!(provider, "openai");
                assert_eq!(after, Duration::from_secs(7));
                assert_eq!(what, "request");
            }
            other => panic!("{other:?}"),
        }
        server.abort();
    }

    #[tokio::test]
    async fn a_refused_connection_is_an_outage_without_the_url() {
        // Port 9 (discard) is closed on test machines: the connection is refused.
        let c = client();
        let e = c
            .inner
            .http
            .get("http://127.0.0.1:9/v1/chat?key=sk-secret")
            .send()
            .await
            .unwrap_err();
        let mapped = transport_error("openai", e, Duration::from_secs(1));
        assert_eq!(mapped.kind(), ErrorKind::ProviderUnavailable);
        let text = mapped.to_string();
        assert!(text.contains("cannot connect"), "{text}");
        assert!(!text.contains("sk-secret"), "{text}");
    }

    #[tokio::test]
    async fn a_provider_that_does_not_answer_times_out_at_its_request_timeout() {
        let (url, server) = silent_server().await;
        let c = client();
        let mut target = c.resolve("openai/gpt-4o-mini").unwrap();
        target.provider.base_url = url;
        target.provider.request_timeout = Duration::from_millis(100);
        let adapter = adapter_for(target.provider.kind);
        let req = ask("openai/gpt-4o-mini");
        let call = adapter.build_request(&req, &target, false).unwrap();
        let out = Outbound {
            adapter,
            call: &call,
            target: &target,
        };
        let e = c.fetch_answer(out).await.unwrap_err();
        assert!(
            matches!(e, Error::Timeout { what: "request", after, .. } if after == Duration::from_millis(100)),
            "{e:?}"
        );
        let call = adapter.build_request(&req, &target, true).unwrap();
        let out = Outbound { call: &call, ..out };
        let e = c.open_stream(out).await.unwrap_err();
        assert!(
            matches!(
                e,
                Error::Timeout {
                    what: "stream start",
                    ..
                }
            ),
            "{e:?}"
        );
        server.abort();
    }

    #[tokio::test]
    async fn a_silent_stream_ends_with_an_idle_timeout() {
        let c = client();
        let target = c.resolve("openai/gpt-4o-mini").unwrap();
        let decoder = adapter_for(target.provider.kind).stream_decoder(&target);
        let body = futures_util::stream::pending::<reqwest::Result<Bytes>>();
        let chunks = sse_chunks(body, decoder, "openai".into(), Duration::from_millis(20));
        let items: Vec<_> = Box::pin(chunks).collect().await;
        assert_eq!(items.len(), 1, "the error ends the stream");
        match &items[0] {
            Err(Error::Timeout { what, after, .. }) => {
                assert_eq!(*what, "stream idle");
                assert_eq!(*after, Duration::from_millis(20));
            }
            other => panic!("{other:?}"),
        }
    }
}
