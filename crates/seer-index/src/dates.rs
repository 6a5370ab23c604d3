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

/// Mutation fuzzing of EXIF capture-time reading (the indexer's
/// `capture_time`: kamadak-exif's container reader, then `DateTimeOriginal`
/// / `DateTime` parsed as an EXIF date), IFD offsets and counts sent out of
/// range or into loops. Findings under `/tmp/fuzz-data/exif/`. Run (about a
/// minute in release): `cargo test --release -q -p seer-index -- --ignored fuzz_`
#[cfg(test)]
mod fuzz {
    use crate::indexer::capture_time;
    use seer_testkit::fuzz_mutator::*;

    const SEED: u64 = 0xE71F_0000;
    const ITERATIONS: usize = 100_000;

    /// A little-endian TIFF/EXIF block: IFD0 with Orientation, DateTime and
    /// an Exif sub-IFD pointer; the sub-IFD with DateTimeOriginal.
    fn exif_block(big: bool) -> Vec<u8> {
        let mut b = Vec::new();
        let p16 = |b: &mut Vec<u8>, v: u16| {
            b.extend_from_slice(&if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            })
        };
        let p32 = |b: &mut Vec<u8>, v: u32| {
            b.extend_from_slice(&if big {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            })
        };
        b.extend_from_slice(if big { b"MM\0*" } else { b"II*\0" });
        p32(&mut b, 8);
        // IFD0 at 8: 3 entries (2 + 36 + 4 = 42 bytes) -> data at 50.
        p16(&mut b, 3);
        for (tag, typ, count, value) in [
            (0x0112u16, 3u16, 1u32, 6u32),
            (0x0132, 2, 20, 50),
            (0x8769, 4, 1, 70),
        ] {
            p16(&mut b, tag);
            p16(&mut b, typ);
            p32(&mut b, count);
            if typ == 3 {
                p16(&mut b, value as u16);
                p16(&mut b, 0);
            } else {
                p32(&mut b, value);
            }
        }
        p32(&mut b, 0);
        b.extend_from_slice(b"2021:05:06 07:08:09\0"); // 50..70
                                                       // Exif IFD at 70: DateTimeOriginal -> 88.
        p16(&mut b, 1);
        p16(&mut b, 0x9003);
        p16(&mut b, 2);
        p32(&mut b, 20);
        p32(&mut b, 88);
        p32(&mut b, 0);
        b.extend_from_slice(b"2020:01:02 03:04:05\0");
        b
    }

    fn seeds() -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for big in [false, true] {
            let tiff = exif_block(big);
            // JPEG: SOI, APP1 Exif, EOI.
            let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE1];
            jpeg.extend_from_slice(&((tiff.len() + 8) as u16).to_be_bytes());
            jpeg.extend_from_slice(b"Exif\0\0");
            jpeg.extend_from_slice(&tiff);
            jpeg.extend_from_slice(&[0xFF, 0xD9]);
            out.push(jpeg);
            // PNG: signature, eXIf chunk (CRC not checked by the reader).
            let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
            png.extend_from_slice(&[0, 0, 0, 13]);
            png.extend_from_slice(b"IHDR\0\0\0\x01\0\0\0\x01\x08\x02\0\0\0");
            png.extend_from_slice(&[0; 4]);
            png.extend_from_slice(&(tiff.len() as u32).to_be_bytes());
            png.extend_from_slice(b"eXIf");
            png.extend_from_slice(&tiff);
            png.extend_from_slice(&[0; 4]);
            out.push(png);
            // WebP: RIFF with an EXIF chunk.
            let mut webp = b"RIFF\0\0\0\0WEBPEXIF".to_vec();
            webp.extend_from_slice(&(tiff.len() as u32).to_le_bytes());
            webp.extend_from_slice(&tiff);
            let riff = (webp.len() - 8) as u32;
            webp[4..8].copy_from_slice(&riff.to_le_bytes());
            out.push(webp);
            // A bare TIFF.
            out.push(tiff);
        }
        assert!(capture_time(&out[0]).is_some(), "seed has no capture time");
        out
    }

    #[test]
    #[ignore = "fuzz harness: cargo test --release -p seer-index -- --ignored fuzz_"]
    fn fuzz_exif_capture_time() {
        let seeds = seeds();
        let mut rng = Rng::new(SEED);
        let mut found = Findings::new("exif");
        quiet_panics(|| {
            for iter in 0..ITERATIONS {
                let mut input = seeds[rng.below(seeds.len())].clone();
                let other = &seeds[rng.below(seeds.len())];
                let mut muts = 1 + rng.below(3);
                // IFD offsets, counts and loops most of the time.
                if rng.chance(2) {
                    exif_field(&mut input, &mut rng);
                    muts -= 1;
                }
                for _ in 0..muts {
                    mutate_once(&mut input, other, &mut rng);
                }
                found.run(iter, &input, || {
                    capture_time(&input).ok_or("no capture time")?;
                    Ok::<_, &str>(())
                });
            }
        });
        found.finish("exif", ITERATIONS);
    }

    /// Sets a TIFF-structure field (IFD offset, entry count, an entry's
    /// type/count/offset, the next-IFD link) to an interesting value or to
    /// an earlier IFD's offset (a loop).
    fn exif_field(buf: &mut [u8], rng: &mut Rng) {
        let Some(t) = buf.windows(4).position(|w| w == b"II*\0" || w == b"MM\0*") else {
            return;
        };
        let big = buf[t] == b'M';
        let v = match rng.below(3) {
            0 => 8,
            1 => 70,
            _ => interesting_u32(rng),
        };
        // Offsets within the block built by `exif_block`.
        let (at, width) = [
            (4, 4),  // IFD0 offset
            (8, 2),  // IFD0 count
            (12, 2), // entry 0 type
            (14, 4), // entry 0 count
            (18, 2), // orientation value
            (24, 2), // DateTime type
            (26, 4), // DateTime count
            (30, 4), // DateTime offset
            (42, 4), // Exif IFD pointer
            (46, 4), // next IFD
            (70, 2), // Exif IFD count
            (74, 2), // DateTimeOriginal type
            (76, 4), // DateTimeOriginal count
            (80, 4), // DateTimeOriginal offset
            (84, 4), // next IFD after the Exif IFD
        ][rng.below(15)];
        put_int(buf, t + at, width, v, big);
    }
}
