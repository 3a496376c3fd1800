//! What became of the records handed to the collector: delivered and refused counts,
//! the refusal reasons, and the hook the client uses to release the reservations of
//! refused records.
//!
//! Refusals are never silent: each distinct reason is logged once at `warn` (the first
//! time a record is refused for it), counted, and queued for the bindings, which turn it
//! into their ecosystem's warning (Python `warnings` + `logging`, Node
//! `process.emitWarning`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// Distinct refusal reasons remembered; further new reasons are counted under
/// [`OTHER_REASONS`].
pub const MAX_REASONS: usize = 64;
/// The bucket for reasons beyond [`MAX_REASONS`].
pub const OTHER_REASONS: &str = "(other reasons)";

/// How many records were refused for one reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalCount {
    /// The collector's reason (or why the SDK gave up on the record).
    pub reason: String,
    /// Records refused for it since the client started.
    pub count: u64,
}

/// Records the collector accepted or refused in one answer (ids).
#[derive(Debug, Clone, Default)]
pub struct DeliveryEvent {
    /// Stored (or already stored) by the collector.
    pub delivered: Vec<String>,
    /// Refused for good, with the reason: dead-lettered.
    pub refused: Vec<(String, String)>,
}

/// Called by the reporter after each resolved batch (from the reporter's task).
pub type DeliveryListener = Arc<dyn Fn(&DeliveryEvent) + Send + Sync>;

#[derive(Default)]
struct State {
    by_reason: BTreeMap<String, u64>,
    last_refusal: Option<String>,
    /// Reasons not yet taken by [`Delivery::take_new_refusals`].
    unseen: Vec<String>,
}

/// Shared between the recorder (which reports) and the reporter (which counts).
#[derive(Default)]
pub struct Delivery {
    delivered: AtomicU64,
    refused: AtomicU64,
    state: Mutex<State>,
    listener: Mutex<Option<DeliveryListener>>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("delivered", &self.delivered)
            .field("refused", &self.refused)
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// Count one resolved batch, warn once per new refusal reason, tell the listener.
    pub fn note(&self, event: &DeliveryEvent) {
        self.delivered
            .fetch_add(event.delivered.len() as u64, Ordering::AcqRel);
        if !event.refused.is_empty() {
            self.refused
                .fetch_add(event.refused.len() as u64, Ordering::AcqRel);
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            for (id, reason) in &event.refused {
                let known = st.by_reason.contains_key(reason);
                let key = if known || st.by_reason.len() < MAX_REASONS {
                    reason.clone()
                } else {
                    OTHER_REASONS.to_owned()
                };
                let new = !st.by_reason.contains_key(&key);
                *st.by_reason.entry(key).or_insert(0) += 1;
                if new {
                    tracing::warn!(
                        record = %id,
                        reason = %reason,
                        "the collector refused a usage record (dead-lettered; further records refused for this reason are counted, not logged): see Client::usage_status() or `gaterouter spool status`"
                    );
                    st.unseen.push(reason.clone());
                }
                st.last_refusal = Some(reason.clone());
            }
        }
        let listener = self
            .listener
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(l) = listener {
            l(event);
        }
    }

    /// Install the listener (replaces any previous one).
    pub fn set_listener(&self, l: Option<DeliveryListener>) {
        *self.listener.lock().unwrap_or_else(|p| p.into_inner()) = l;
    }

    /// Records the collector stored since start.
    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Acquire)
    }

    /// Records refused since start.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Acquire)
    }

    /// The latest refusal reason.
    pub fn last_refusal(&self) -> Option<String> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_refusal
            .clone()
    }

    /// Refusal counts per reason, most frequent first.
    pub fn refusals(&self) -> Vec<RefusalCount> {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<RefusalCount> = st
            .by_reason
            .iter()
            .map(|(r, c)| RefusalCount {
                reason: r.clone(),
                count: *c,
            })
            .collect();
        v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
        v
    }

    /// Reasons seen for the first time since the last call (each reason once, ever):
    /// what bindings turn into their own warnings.
    pub fn take_new_refusals(&self) -> Vec<String> {
        std::mem::take(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()).unseen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_reason_and_queues_each_reason_once() {
        let d = Delivery::default();
        let seen = Arc::new(AtomicU64::new(0));
        let s = seen.clone();
        d.set_listener(Some(Arc::new(move |e: &DeliveryEvent| {
            s.fetch_add(e.refused.len() as u64, Ordering::AcqRel);
        })));
        d.note(&DeliveryEvent {
            delivered: vec!["a".into()],
            refused: vec![("b".into(), "scope".into()), ("c".into(), "scope".into())],
        });
        d.note(&DeliveryEvent {
            delivered: vec![],
            refused: vec![("d".into(), "bad signature".into())],
        });
        assert_eq!(
            (d.delivered(), d.refused(), seen.load(Ordering::Acquire)),
            (1, 3, 3)
        );
        assert_eq!(
            d.refusals(),
            vec![
                RefusalCount {
                    reason: "scope".into(),
                    count: 2
                },
                RefusalCount {
                    reason: "bad signature".into(),
                    count: 1
                }
            ]
        );
        assert_eq!(d.last_refusal().as_deref(), Some("bad signature"));
        assert_eq!(
            d.take_new_refusals(),
            vec!["scope".to_owned(), "bad signature".to_owned()]
        );
        d.note(&DeliveryEvent {
            delivered: vec![],
            refused: vec![("e".into(), "scope".into())],
        });
        assert!(
            d.take_new_refusals().is_empty(),
            "a known reason is not queued again"
        );
    }

    #[test]
    fn reasons_are_bounded() {
        let d = Delivery::default();
        for i in 0..(MAX_REASONS + 10) {
            d.note(&DeliveryEvent {
                delivered: vec![],
                refused: vec![(format!("r{i}"), format!("reason {i}"))],
            });
        }
        let r = d.refusals();
        assert_eq!(r.len(), MAX_REASONS + 1);
        assert_eq!(
            r.iter()
                .find(|c| c.reason == OTHER_REASONS)
                .map(|c| c.count),
            Some(10)
        );
        assert_eq!(d.refused(), (MAX_REASONS + 10) as u64);
    }
}
