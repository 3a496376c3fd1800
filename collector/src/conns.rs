//! The open connections (issue 18, item 3): each one's requests in progress, the
//! connection cap, and the eviction of the oldest idle connection at the cap.

use std::sync::Arc;

use crate::metrics::Metrics;

/// One open connection.
#[derive(Debug, Default)]
pub struct ConnState {
    pub(crate) in_flight: std::sync::atomic::AtomicUsize,
    pub(crate) kill: tokio::sync::Notify,
}

/// The open connections, oldest first (issue 18, item 3): the connection cap and the
/// eviction of idle connections.
#[derive(Debug, Default)]
pub struct ConnTrack {
    next: std::sync::atomic::AtomicU64,
    open: std::sync::Mutex<std::collections::BTreeMap<u64, Arc<ConnState>>>,
}

impl ConnTrack {
    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<u64, Arc<ConnState>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
    /// Open connections.
    pub fn len(&self) -> usize {
        self.lock().len()
    }
    /// No open connection.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Register a new connection, or `None` when the cap is reached and no connection
    /// is idle. At the cap the oldest idle connection (no request in progress: idle
    /// keep-alive, or still sending its headers) is closed to make room, so idle and
    /// slow connections cannot lock out `/healthz` or ingest.
    pub(crate) fn admit(&self, max: usize, metrics: &Metrics) -> Option<(u64, Arc<ConnState>)> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut open = self.lock();
        if open.len() >= max {
            let victim = open
                .iter()
                .find(|(_, c)| c.in_flight.load(Relaxed) == 0)
                .map(|(id, _)| *id)?;
            if let Some(c) = open.remove(&victim) {
                c.kill.notify_one();
                metrics.connections_evicted.inc();
            }
        }
        let id = self.next.fetch_add(1, Relaxed);
        let c = Arc::new(ConnState::default());
        open.insert(id, c.clone());
        Some((id, c))
    }
    pub(crate) fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }
}
