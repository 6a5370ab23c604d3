//! Capture-date ranges for search filters. The index keeps EXIF capture times as
//! "YYYY-MM-DD HH:MM:SS" (the camera's local time, no zone), so a range is two
//! such strings compared as text: no time zone is guessed.

use crate::error::{IndexError, Result};

/// Files whose EXIF capture time lies between `from` and `to` (both inclusive;
/// either may be open). Files without a capture time are outside every range.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureRange {
    from: Option<String>,
    to: Option<String>,
}

impl CaptureRange {
    /// Parses the bounds: `YYYY-MM-DD`, optionally followed by ` HH:MM[:SS]` or
    /// `THH:MM[:SS]`. A bare `to` date includes that whole day. `None` when both
    /// bounds are absent or empty (no filter).
    pub fn parse(from: Option<&str>, to: Option<&str>) -> Result<Option<Self>> {
        let bound = |name: &str, v: Option<&str>, end_of_day: bool| {
            v.map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| {
                    normalise(v, end_of_day).ok_or_else(|| {
                        // A day past its month's end says which month.
                        let days = month_overrun(v)
                            .map(|(y, m, days)| format!(": {y:04}-{m:02} has {days} days"))
                            .unwrap_or_default();
                        IndexError::Invalid(format!(
                            "{name} must be a date YYYY-MM-DD (optionally with HH:MM[:SS]), not '{v}'{days}"
                        ))
                    })
                })
                .transpose()
        };
        let range = Self {
            from: bound("from", from, false)?,
            to: bound("to", to, true)?,
        };
        if let (Some(f), Some(t)) = (&range.from, &range.to) {
            if f > t {
                return Err(IndexError::Invalid(format!("from ({f}) is after to ({t})")));
            }
        }
        Ok((range.from.is_some() || range.to.is_some()).then_some(range))
    }

    /// Whether a stored capture time lies in the range (never for a file without one).
    pub fn contains(&self, taken_at: Option<&str>) -> bool {
        taken_at.is_some_and(|t| {
            self.from.as_deref().is_none_or(|f| t >= f) && self.to.as_deref().is_none_or(|e| t <= e)
        })
    }
}

/// `v` as "YYYY-MM-DD HH:MM:SS", the form the index stores, if it is a valid date.
fn normalise(v: &str, end_of_day: bool) -> Option<String> {
    let (date, time) = match v.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (v, None),
    };
    let num = |s: &str, len: usize, max: u32, min: u32| -> Option<u32> {
        let n =
            (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())??;
        (min..=max).contains(&n).then_some(n)
    };
    let mut d = date.split('-');
    let (y, m, day) = (d.next()?, d.next()?, d.next()?);
    if d.next().is_some() {
        return None;
    }
    let (y, m) = (num(y, 4, 9999, 0)?, num(m, 2, 12, 1)?);
    let day = num(day, 2, days_in_month(y, m), 1)?;
    let (h, min, s) = match time {
        None if end_of_day => (23, 59, 59),
        None => (0, 0, 0),
        Some(t) => {
            let mut p = t.split(':');
            let (h, min) = (num(p.next()?, 2, 23, 0)?, num(p.next()?, 2, 59, 0)?);
            let s = match p.next() {
                Some(s) => num(s, 2, 59, 0)?,
                None if end_of_day => 59,
                None => 0,
            };
            if p.next().is_some() {
                return None;
            }
            (h, min, s)
        }
    };
    Some(format!("{y:04}-{m:02}-{day:02} {h:02}:{min:02}:{s:02}"))
}

/// Days in month `m` (1–12) of year `y`, Gregorian.
fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400)) => 29,
        2 => 28,
        _ => 31,
    }
}

/// `(year, month, its days)` where `v`'s date is well formed but its day is
/// past the month's end (2022-02-30).
fn month_overrun(v: &str) -> Option<(u32, u32, u32)> {
    let date = v.split_once(['T', ' ']).map_or(v, |(d, _)| d);
    let mut parts = date.split('-').map(|p| p.parse::<u32>().ok());
    let (y, m, d) = (parts.next()??, parts.next()??, parts.next()??);
    let days = days_in_month(y, m);
    ((1..=12).contains(&m) && d > days && d <= 31).then_some((y, m, days))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_past_the_months_end_are_refused() {
        for (date, days) in [
            ("2022-02-29", "2022-02 has 28 days"),
            ("2022-02-30", "2022-02 has 28 days"),
            ("2022-04-31", "2022-04 has 30 days"),
            ("1900-02-29T10:00", "1900-02 has 28 days"),
        ] {
            let e = CaptureRange::parse(Some(date), None)
                .unwrap_err()
                .to_string();
            assert!(e.contains(days), "{date}: {e}");
        }
        for date in ["2024-02-29", "2000-02-29", "2022-01-31", "2022-12-31"] {
            assert!(CaptureRange::parse(Some(date), None).is_ok(), "{date}");
        }
    }

    #[test]
    fn bounds_are_inclusive_and_a_bare_to_date_covers_its_day() {
        let r = CaptureRange::parse(Some("2021-06-01"), Some("2021-06-30"))
            .unwrap()
            .unwrap();
        assert!(r.contains(Some("2021-06-01 00:00:00")));
        assert!(r.contains(Some("2021-06-30 23:59:59")));
        assert!(!r.contains(Some("2021-05-31 23:59:59")));
        assert!(!r.contains(Some("2021-07-01 00:00:00")));
        let open = CaptureRange::parse(None, Some("2021-06-01T12:30"))
            .unwrap()
            .unwrap();
        assert!(open.contains(Some("1999-01-01 00:00:00")));
        assert!(open.contains(Some("2021-06-01 12:30:59")));
        assert!(!open.contains(Some("2021-06-01 12:31:00")));
    }

    #[test]
    fn files_without_a_capture_time_are_outside_every_range() {
        let r = CaptureRange::parse(Some("1900-01-01"), None)
            .unwrap()
            .unwrap();
        assert!(!r.contains(None));
    }

    #[test]
    fn empty_bounds_mean_no_filter_and_bad_ones_are_clear_errors() {
        assert_eq!(CaptureRange::parse(None, Some("  ")).unwrap(), None);
        for bad in [
            "2021-13-01",
            "21-06-01",
            "2021-06-01 25:00",
            "yesterday",
            "2021-06-01T10",
        ] {
            let e = CaptureRange::parse(Some(bad), None)
                .unwrap_err()
                .to_string();
            assert!(e.contains("from must be a date") && e.contains(bad), "{e}");
        }
        let e = CaptureRange::parse(Some("2022-01-01"), Some("2021-01-01"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("after"), "{e}");
    }
}
