//! Calendar helpers (UTC), so month buckets are computed once at ingest as `yyyymm`.

// The calendar arithmetic is the core's (budgets use the same UTC windows).
pub use gaterouter::accounts::{civil_from_days, days_from_civil};

/// `yyyymm` of a Unix-ms instant (UTC).
pub fn month_of_ms(ms: u64) -> i64 {
    let (y, m, _) = civil_from_days((ms / 86_400_000) as i64);
    y * 100 + i64::from(m)
}

/// Unix ms of the first instant of month `yyyymm`.
pub fn month_start_ms(yyyymm: i64) -> i64 {
    days_from_civil(yyyymm / 100, (yyyymm % 100) as u32, 1) * 86_400_000
}

/// ISO-8601 UTC text of a Unix-ms instant (`2026-11-25T03:00:00Z`).
pub fn iso(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000) / 1000;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Parse a time filter: Unix ms digits, `YYYY-MM-DD`, or `YYYY-MM-DDTHH:MM:SSZ`.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let b = s.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y: i64 = s.get(0..4)?.parse().ok()?;
    let m: u32 = s.get(5..7)?.parse().ok()?;
    let d: u32 = s.get(8..10)?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let mut ms = days_from_civil(y, m, d) * 86_400_000;
    if b.len() > 10 {
        let t = s.get(11..)?.trim_end_matches('Z');
        let mut parts = t.split(':');
        let h: i64 = parts.next()?.parse().ok()?;
        let mi: i64 = parts.next().unwrap_or("0").parse().ok()?;
        let sec: i64 = parts.next().unwrap_or("0").parse().ok()?;
        ms += (h * 3600 + mi * 60 + sec) * 1000;
    }
    Some(ms)
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
        for d in [-800_000i64, -1, 0, 59, 11_016, 20_000, 2_932_896] {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
        }
        assert_eq!(parse_time("1700000000000"), Some(1_700_000_000_000));
        assert_eq!(parse_time("2024-13-01"), None);
    }
}
