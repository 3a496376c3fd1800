//! Lifecycle: what the client owns from build to [`Client::close`], so no binding has to.
//!
//! - Every call and stream is *in flight* from its start until it ends (a stream: until
//!   it ends, fails, is cancelled or dropped). The count is what `close` waits on.
//! - Every call has a cancellation token, a child of the client's root token: a caller
//!   cancels one call with a [`Cancel`] handle, `close` cancels them all. A cancelled call
//!   drops its provider request (and connection) at once and ends with
//!   [`Error::Cancelled`] ([`Error::ClientClosed`] when the close did it); its usage
//!   record says `cancelled`, as for any call dropped mid-way.
//! - After `close` starts, every new call is refused with [`Error::ClientClosed`].
//!
//! A stream's chunks live in a *slot* the lifecycle can empty from outside: `close` (and
//! [`Cancel::cancel`]) drop the chunks of a stream nobody is reading, which writes its
//! `cancelled` record before the spool is drained, without waiting for the reader.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::error::{Error, Result};
use crate::types::ChatChunk;
use crate::usage::DeliveryReport;

/// Longest `close` waits, after cancelling, for cancelled calls to unwind (their
/// `cancelled` records written) before it drains the spool. Unwinding is a drop on the
/// runtime's workers: milliseconds, unless a worker is blocked.
const UNWIND: Duration = Duration::from_secs(2);

/// Chunks of one stream; `None` once ended, failed or cancelled.
type Chunks = Pin<Box<dyn Stream<Item = Result<ChatChunk>> + Send>>;
/// Where a stream's chunks live, with the stream's in-flight mark (both dropped
/// together).
type Slot = Mutex<Option<(Chunks, InFlight)>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Cancels one call or stream: pass it to [`crate::Client::chat_cancellable`] or
/// [`crate::Client::chat_stream_lazy`] and call [`Cancel::cancel`] from anywhere (another task, a
/// foreign thread, an abort signal). Cheap to clone; cancelling twice is harmless. Made
/// by [`crate::Client::cancel_handle`]: it is a child of the client, so closing the client
/// cancels it too.
#[derive(Debug, Clone)]
pub struct Cancel {
    token: CancellationToken,
    /// Streams opened with this handle, emptied on cancel.
    streams: Arc<Mutex<Vec<Weak<Slot>>>>,
}

impl Cancel {
    /// Cancel the call (or stream): its provider request is dropped now, and it ends
    /// with [`Error::Cancelled`]. A stream's unread chunks are dropped at once.
    pub fn cancel(&self) {
        self.token.cancel();
        for slot in std::mem::take(&mut *lock(&self.streams)) {
            if let Some(slot) = slot.upgrade() {
                lock(&slot).take();
            }
        }
    }

    /// True once cancelled (by this handle or by closing the client).
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }
}

/// The client's side: root token, closed flag, in-flight count, open streams, and the
/// report of the close.
#[derive(Debug)]
pub(super) struct Lifecycle {
    root: CancellationToken,
    closed: AtomicBool,
    in_flight: tokio::sync::watch::Sender<usize>,
    streams: Mutex<Vec<Weak<Slot>>>,
    /// What the first `close` reported (a second one returns it).
    closed_report: tokio::sync::OnceCell<DeliveryReport>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            root: CancellationToken::new(),
            closed: AtomicBool::new(false),
            in_flight: tokio::sync::watch::Sender::new(0),
            streams: Mutex::default(),
            closed_report: tokio::sync::OnceCell::new(),
        }
    }
}

/// One call in flight; dropping it ends the call for `close`.
#[derive(Debug)]
pub(super) struct InFlight {
    count: tokio::sync::watch::Sender<usize>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.count.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Lifecycle {
    /// A fresh cancel handle, child of the root.
    pub(super) fn cancel_handle(&self) -> Cancel {
        Cancel {
            token: self.root.child_token(),
            streams: Arc::default(),
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Refuse when closed.
    pub(super) fn check_open(&self) -> Result<()> {
        if self.is_closed() {
            return Err(Error::ClientClosed);
        }
        Ok(())
    }

    pub(super) fn in_flight(&self) -> usize {
        *self.in_flight.borrow()
    }

    /// Start a call: counted in flight, refused after close.
    pub(super) fn enter(&self) -> Result<InFlight> {
        self.check_open()?;
        self.in_flight.send_modify(|n| *n += 1);
        let guard = InFlight {
            count: self.in_flight.clone(),
        };
        // `close` sets the flag, then waits for zero: either it sees this call, or this
        // call sees the flag.
        self.check_open()?;
        Ok(guard)
    }

    /// What a cancelled call ends with: the close, or its own handle.
    fn cancel_error(root: &CancellationToken) -> Error {
        if root.is_cancelled() {
            Error::ClientClosed
        } else {
            Error::Cancelled
        }
    }

    /// Race one call's future against its token: cancelled, the future is dropped (with
    /// its provider request) and the call ends with the cancellation's error.
    pub(super) async fn race<T>(
        &self,
        cancel: &Cancel,
        fut: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        tokio::select! {
            biased;
            _ = cancel.token.cancelled() => Err(Self::cancel_error(&self.root)),
            r = fut => r,
        }
    }

    /// Wrap a stream's chunks so that `cancel` and `close` end it. `in_flight` is the
    /// mark taken when the stream started opening.
    pub(super) fn stream(
        &self,
        cancel: &Cancel,
        in_flight: InFlight,
        chunks: Chunks,
    ) -> GuardedStream {
        let slot = Arc::new(Mutex::new(Some((chunks, in_flight))));
        {
            let mut streams = lock(&self.streams);
            streams.retain(|w| w.strong_count() > 0);
            streams.push(Arc::downgrade(&slot));
        }
        {
            let mut mine = lock(&cancel.streams);
            mine.retain(|w| w.strong_count() > 0);
            mine.push(Arc::downgrade(&slot));
        }
        if cancel.is_cancelled() {
            // Cancelled while it was opening: nothing to read.
            lock(&slot).take();
        }
        GuardedStream {
            slot,
            cancelled: Box::pin(cancel.token.clone().cancelled_owned()),
            root: self.root.clone(),
            done: false,
        }
    }

    /// Close: refuse new calls, give the calls in flight `grace` to end, cancel the rest
    /// (dropping open streams), wait for them to unwind (bounded), then `drain` the
    /// usage records. Idempotent: later calls wait for the first and return its report.
    pub(super) async fn close<F, Fut>(&self, grace: Duration, drain: F) -> Result<DeliveryReport>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<DeliveryReport>>,
    {
        self.closed.store(true, Ordering::SeqCst);
        let report = self
            .closed_report
            .get_or_try_init(|| async {
                let mut rx = self.in_flight.subscribe();
                let idle = |n: &usize| *n == 0;
                if tokio::time::timeout(grace, rx.wait_for(idle)).await.is_err() {
                    self.root.cancel();
                    for slot in std::mem::take(&mut *lock(&self.streams)) {
                        if let Some(slot) = slot.upgrade() {
                            lock(&slot).take();
                        }
                    }
                    if tokio::time::timeout(UNWIND, rx.wait_for(idle)).await.is_err() {
                        tracing::warn!(
                            in_flight = self.in_flight(),
                            "close: cancelled calls did not unwind in time; draining the spool without their records"
                        );
                    }
                }
                // Cancel whatever is left (handles made but unused, streams drained).
                self.root.cancel();
                drain().await
            })
            .await?;
        Ok(report.clone())
    }
}

/// A stream's chunks as handed to the caller: ends with [`Error::Cancelled`] (or
/// [`Error::ClientClosed`]) once cancelled, then `None`.
pub(super) struct GuardedStream {
    slot: Arc<Slot>,
    cancelled: Pin<Box<WaitForCancellationFutureOwned>>,
    root: CancellationToken,
    done: bool,
}

impl Stream for GuardedStream {
    type Item = Result<ChatChunk>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        let cancelled = this.cancelled.as_mut().poll(cx).is_ready();
        let mut slot = lock(&this.slot);
        let item = match slot.as_mut() {
            Some((chunks, _)) if !cancelled => chunks.as_mut().poll_next(cx),
            // Cancelled (or emptied by close / the handle).
            _ => Poll::Ready(Some(Err(Lifecycle::cancel_error(&this.root)))),
        };
        match &item {
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                slot.take();
                this.done = true;
            }
            _ => {}
        }
        item
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
mod tests {
    use futures_util::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::Client;
    use crate::client::testing::{ask, offline_client, offline_config, records_config};
    use crate::config::Config;
    use crate::error::ErrorKind;

    /// A provider that takes requests and never answers (`stream_first`: it answers a
    /// stream's headers and first chunk, then holds the connection open).
    async fn silent_provider(stream_first: bool) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 65536];
                    let _ = sock.read(&mut buf).await;
                    if stream_first {
                        let chunk = r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":"hi"},"finish_reason":null}]}"#;
                        let body = format!("data: {chunk}\n\n");
                        let head = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n",
                            body.len()
                        );
                        let _ = sock.write_all(head.as_bytes()).await;
                    }
                    // Hold the connection until the client drops it.
                    let _ = sock.read(&mut buf).await;
                });
            }
        });
        format!("http://{addr}")
    }

    fn hanging_client(base: &str, cfg: Option<Config>) -> Client {
        let mut c = cfg.unwrap_or_else(offline_config);
        let emu = Config::for_emulator(base);
        c.providers = emu.providers;
        Client::new(c).unwrap()
    }

    const MODEL: &str = "openai/gpt-4o-mini";

    async fn wait_in_flight(c: &Client, n: usize) {
        for _ in 0..200 {
            if c.in_flight() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("in flight: {} (wanted {n})", c.in_flight());
    }

    #[tokio::test]
    async fn close_cancels_a_call_in_flight_after_the_grace() {
        let base = silent_provider(false).await;
        let c = hanging_client(&base, None);
        let call = tokio::spawn({
            let c = c.clone();
            async move { c.chat(ask(MODEL)).await }
        });
        wait_in_flight(&c, 1).await;
        let started = std::time::Instant::now();
        c.close(Duration::from_millis(150)).await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "the grace was given"
        );
        let e = call.await.unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ClientClosed, "{e}");
        assert_eq!(c.in_flight(), 0);
    }

    #[tokio::test]
    async fn a_call_that_ends_within_the_grace_is_not_cut() {
        let c = offline_client();
        // Nothing answers at port 9: the call fails fast on its own, within the grace.
        let call = tokio::spawn({
            let c = c.clone();
            async move { c.chat(ask(MODEL)).await }
        });
        tokio::time::sleep(Duration::from_millis(1)).await;
        c.close(Duration::from_secs(30)).await.unwrap();
        let e = call.await.unwrap().unwrap_err();
        assert_ne!(e.kind(), ErrorKind::ClientClosed, "{e}");
    }

    #[tokio::test]
    async fn calls_after_close_are_refused_and_close_is_idempotent() {
        let c = offline_client();
        let first = c.close(Duration::ZERO).await.unwrap();
        assert!(c.is_closed());
        let second = c.clone().close(Duration::ZERO).await.unwrap();
        assert_eq!(first, second);
        let refused = |e: Error| assert_eq!(e.kind(), ErrorKind::ClientClosed, "{e}");
        refused(c.chat(ask(MODEL)).await.unwrap_err());
        refused(c.chat_stream(ask(MODEL)).await.unwrap_err());
        refused(c.route(&ask(MODEL)).unwrap_err());
        refused(c.count_tokens(&ask(MODEL)).unwrap_err());
        refused(c.estimate_cost(&ask(MODEL)).unwrap_err());
        refused(c.flush(Duration::ZERO).await.unwrap_err());
        let mut lazy = c.chat_stream_lazy(ask(MODEL), &c.cancel_handle());
        refused(lazy.next().await.unwrap().unwrap_err());
        assert!(lazy.next().await.is_none());
        // Status still answers.
        assert!(c.usage_status().drained);
    }

    #[tokio::test]
    async fn close_cancels_open_streams_and_writes_their_records() {
        let dir = tempfile::tempdir().unwrap();
        let base = silent_provider(true).await;
        let c = hanging_client(&base, Some(records_config(dir.path())));
        let mut read = c.chat_stream(ask(MODEL)).await.unwrap();
        let first = read.next().await.unwrap().unwrap();
        assert_eq!(first.choices[0].delta.content.as_deref(), Some("hi"));
        // A second stream nobody reads: close must end it without its reader.
        let idle = c.chat_stream(ask(MODEL)).await.unwrap();
        assert_eq!(c.in_flight(), 2);
        let reader = tokio::spawn(async move { read.next().await });
        let report = c.close(Duration::from_millis(50)).await.unwrap();
        let e = reader.await.unwrap().unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ClientClosed, "{e}");
        assert_eq!(c.in_flight(), 0, "the idle stream was ended by close");
        // Both streams wrote their `cancelled` record before the spool was drained.
        assert_eq!(report.pending, 2, "{report:?}");
        drop(idle);
    }

    #[tokio::test]
    async fn a_cancel_handle_stops_one_call_and_one_stream() {
        let base = silent_provider(true).await;
        let c = hanging_client(&base, None);
        let cancel = c.cancel_handle();
        let call = tokio::spawn({
            let (c, cancel) = (c.clone(), cancel.clone());
            async move { c.chat_cancellable(ask(MODEL), &cancel).await }
        });
        wait_in_flight(&c, 1).await;
        cancel.cancel();
        let e = call.await.unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}");

        // A lazy stream: opens on first poll, cancelled while reading.
        let cancel = c.cancel_handle();
        let mut s = c.chat_stream_lazy(ask(MODEL), &cancel);
        assert!(s.next().await.unwrap().is_ok());
        cancel.cancel();
        assert_eq!(c.in_flight(), 0, "cancel dropped the unread stream at once");
        let e = s.next().await.unwrap().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Cancelled, "{e}");
        assert!(s.next().await.is_none());
        // The client is still open.
        assert!(!c.is_closed());
        c.route(&ask(MODEL)).unwrap();
    }
}
