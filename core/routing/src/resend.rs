//! Implicit feedback (off by default): the caller re-sends the same messages to a
//! stronger model shortly after `auto` answered them. That is a sign the router's
//! choice was not good enough, and the client turns it into a negative outcome (score 0,
//! label [`RESENT_STRONGER`], source `implicit`) for the `auto` call's usage record.
//!
//! Sans-IO: [`ResendWatch`] only remembers recent `auto` answers and decides; the
//! client computes the fingerprint and the strength, passes the clock, and sends the
//! feedback. Turned on with `[routing] implicit_feedback_window_ms` (0 = off).

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::time::{Duration, Instant};

use gaterouter_types::types::ChatRequest;

/// The label of an implicit negative outcome.
pub const RESENT_STRONGER: &str = "resent_stronger";

/// `auto` answers remembered at most (the oldest are forgotten first).
pub const MAX_REMEMBERED: usize = 1024;

/// A fingerprint of a request's conversation (the messages, not the model or the
/// parameters): equal messages give equal fingerprints within a process. Never leaves
/// the process.
pub fn fingerprint(req: &ChatRequest) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    // Serialization of the messages is the conversation as sent; a failure (which the
    // types make impossible) would only make re-sends go unnoticed.
    serde_json::to_vec(&req.messages)
        .unwrap_or_default()
        .hash(&mut h);
    h.finish()
}

#[derive(Debug, Clone, PartialEq)]
struct Answer {
    fingerprint: u64,
    record_id: String,
    strength: f64,
    at: Instant,
}

/// Recent `auto` answers, for spotting re-sends to a stronger model.
#[derive(Debug)]
pub struct ResendWatch {
    window: Duration,
    recent: std::sync::Mutex<VecDeque<Answer>>,
}

impl ResendWatch {
    /// Watch re-sends within `window`.
    pub fn new(window: Duration) -> Self {
        ResendWatch {
            window,
            recent: std::sync::Mutex::new(VecDeque::new()),
        }
    }

    /// An `auto` call with these messages was answered by a model of `strength`; its
    /// usage record is `record_id`.
    pub fn remember(&self, fingerprint: u64, record_id: String, strength: f64, now: Instant) {
        let mut q = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        q.retain(|a| {
            now.saturating_duration_since(a.at) <= self.window && a.fingerprint != fingerprint
        });
        if q.len() >= MAX_REMEMBERED {
            q.pop_front();
        }
        q.push_back(Answer {
            fingerprint,
            record_id,
            strength,
            at: now,
        });
    }

    /// The caller now sends the same messages to an explicit model of `strength`: when
    /// an `auto` answer to them within the window came from a weaker model, its record
    /// id (once: it is forgotten, so a third send does not count twice).
    pub fn resent(&self, fingerprint: u64, strength: f64, now: Instant) -> Option<String> {
        let mut q = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let i = q.iter().position(|a| a.fingerprint == fingerprint)?;
        let a = &q[i];
        if now.saturating_duration_since(a.at) > self.window || strength <= a.strength {
            return None;
        }
        q.remove(i).map(|a| a.record_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gaterouter_types::types::Message;

    fn req(text: &str) -> ChatRequest {
        ChatRequest::new("auto", vec![Message::user(text)])
    }

    #[test]
    fn a_resend_to_a_stronger_model_within_the_window_names_the_auto_record_once() {
        let w = ResendWatch::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let fp = fingerprint(&req("Prove it"));
        w.remember(fp, "r1".into(), 1.0, t0);
        assert_eq!(
            w.resent(fp, 1.0, t0 + Duration::from_secs(1)),
            None,
            "same strength: not a correction"
        );
        assert_eq!(
            w.resent(fp, 0.5, t0 + Duration::from_secs(1)),
            None,
            "weaker: not a correction"
        );
        assert_eq!(
            w.resent(fingerprint(&req("Other")), 3.0, t0),
            None,
            "other messages"
        );
        assert_eq!(
            w.resent(fp, 3.0, t0 + Duration::from_secs(2)),
            Some("r1".into())
        );
        assert_eq!(
            w.resent(fp, 3.0, t0 + Duration::from_secs(3)),
            None,
            "counted once"
        );
    }

    #[test]
    fn outside_the_window_it_is_a_new_question() {
        let w = ResendWatch::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let fp = fingerprint(&req("Prove it"));
        w.remember(fp, "r1".into(), 1.0, t0);
        assert_eq!(w.resent(fp, 3.0, t0 + Duration::from_secs(61)), None);
    }

    #[test]
    fn the_latest_answer_counts_and_memory_is_bounded() {
        let w = ResendWatch::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let fp = fingerprint(&req("Prove it"));
        w.remember(fp, "r1".into(), 1.0, t0);
        w.remember(fp, "r2".into(), 1.0, t0);
        assert_eq!(w.resent(fp, 3.0, t0), Some("r2".into()));
        for i in 0..(MAX_REMEMBERED as u64 + 10) {
            w.remember(i, format!("x{i}"), 1.0, t0);
        }
        assert_eq!(w.recent.lock().unwrap().len(), MAX_REMEMBERED);
        assert_eq!(w.resent(0, 3.0, t0), None, "the oldest were forgotten");
    }
}
