//! Calendar helpers (UTC), so month buckets are computed once at ingest as `yyyymm`.
//! The calendar is `jiff`'s; instants outside its range (years -9999..=9999) are clamped
//! to its ends. And the collector's [`Clock`]: what "now" is to all of it.

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::Offset;

fn utc(ms: i64) -> DateTime {
    let t = Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    });
    Offset::UTC.to_datetime(t)
}

fn ms_of(d: Date) -> i64 {
    Offset::UTC
        .to_timestamp(d.to_datetime(jiff::civil::Time::midnight()))
        .map_or(i64::MAX, |t| t.as_millisecond())
}

/// `yyyymm` of a Unix-ms instant (UTC).
pub fn month_of_ms(ms: u64) -> i64 {
    let d = utc(i64::try_from(ms).unwrap_or(i64::MAX));
    i64::from(d.year()) * 100 + i64::from(d.month())
}

/// Unix ms of the first instant of month `yyyymm`.
pub fn month_start_ms(yyyymm: i64) -> i64 {
    let (y, m) = (yyyymm.div_euclid(100), yyyymm.rem_euclid(100));
    // In range by the clamps, so `Date::new` cannot fail.
    let y = y.clamp(-9999, 9999) as i16;
    let m = m.clamp(1, 12) as i8;
    Date::new(y, m, 1).map_or(0, ms_of)
}

/// ISO-8601 UTC text of a Unix-ms instant, whole seconds (`2026-11-25T03:00:00Z`).
pub fn iso(ms: i64) -> String {
    utc(ms).strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parse a time filter: Unix ms digits, `YYYY-MM-DD`, or `YYYY-MM-DDTHH[:MM[:SS]][Z]`.
/// The date must exist (`2024-02-30` is refused).
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let date: Date = s.get(0..10)?.parse().ok()?;
    let mut ms = ms_of(date);
    if s.len() > 10 {
        let t = s.get(11..)?.trim_end_matches('Z');
        let mut parts = t.split(':');
        let h: i64 = parts.next()?.parse().ok()?;
        let mi: i64 = parts.next().unwrap_or("0").parse().ok()?;
        let sec: i64 = parts.next().unwrap_or("0").parse().ok()?;
        ms += (h * 3600 + mi * 60 + sec) * 1000;
    }
    Some(ms)
}

/// The collector's wall clock in Unix milliseconds: the system clock plus an offset only
/// tests move ([`Clock::advance`]), so expiries, lapses and time windows are tested
/// without sleeping. One per collector: its [`crate::db::Db`] carries it
/// ([`crate::db::Db::clock`]), and every "now" of handlers, the store and the learner
/// is read from it.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl Clock {
    /// Now, Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        i64::try_from(gaterouter::usage::unix_ms_now())
            .unwrap_or(i64::MAX)
            .saturating_add(self.offset_ms.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Now, Unix milliseconds, unsigned (as the core's types count time).
    pub fn now_u64(&self) -> u64 {
        u64::try_from(self.now_ms()).unwrap_or(0)
    }

    /// Move this clock (and every clone) forward: tests only.
    pub fn advance(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms
            .fetch_add(ms, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(month_of_ms(0), 197001);
        // 2024-02-29T12:00:00Z
        let ms = parse_time("2024-02-29T12:00:00Z").unwrap();
        assert_eq!(ms, 1_709_208_000_000);
        assert_eq!(month_of_ms(ms as u64), 202402);
        assert_eq!(iso(ms), "2024-02-29T12:00:00Z");
        assert_eq!(month_start_ms(202403), parse_time("2024-03-01").unwrap());
        for ms in [-1i64, 0, 59, 11_016 * 86_400_000, 1_709_208_000_999] {
            let t = parse_time(&iso(ms)).unwrap();
            assert_eq!(t, ms.div_euclid(1000) * 1000, "{ms}");
        }
        assert_eq!(month_start_ms(202412), parse_time("2024-12-01").unwrap());
        assert_eq!(month_start_ms(197001), 0);
        assert_eq!(month_of_ms(u64::MAX), 999912);
        assert_eq!(parse_time("2024-02-30"), None);
        assert_eq!(parse_time("1700000000000"), Some(1_700_000_000_000));
        assert_eq!(parse_time("2024-13-01"), None);
    }
}
