//! Axis ranges with "nice" 1-2-5 ticks, and tick label formatting.

/// An axis range widened to whole multiples of a 1-2-5 step, and the ticks on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticks {
    /// Lower end of the axis (a multiple of `step`, at or below the data).
    pub lo: f64,
    /// Upper end of the axis (a multiple of `step`, at or above the data).
    pub hi: f64,
    /// Distance between ticks: 1, 2 or 5 times a power of ten.
    pub step: f64,
    /// Tick values from `lo` to `hi` inclusive.
    pub values: Vec<f64>,
}

impl Ticks {
    /// Where `v` falls on the axis: 0 at `lo`, 1 at `hi`.
    pub fn fraction(&self, v: f64) -> f64 {
        (v - self.lo) / (self.hi - self.lo)
    }
}

/// The smallest of 1, 2, 5 or 10 times a power of ten that is at least `raw`.
pub fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let base = 10f64.powf(raw.log10().floor());
    let f = raw / base;
    let n = if f <= 1.0 + 1e-9 {
        1.0
    } else if f <= 2.0 + 1e-9 {
        2.0
    } else if f <= 5.0 + 1e-9 {
        5.0
    } else {
        10.0
    };
    n * base
}

/// Ticks covering `[lo, hi]` with at most about `target` values. Never panics: a range
/// of one value is widened around it, non-finite bounds give `0..1`.
pub fn ticks(lo: f64, hi: f64, target: usize) -> Ticks {
    let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() {
        (lo.min(hi), lo.max(hi))
    } else {
        (0.0, 1.0)
    };
    if hi - lo <= f64::EPSILON * lo.abs().max(hi.abs()) {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        lo -= pad;
        hi += pad;
    }
    let span = hi - lo;
    if !span.is_finite() {
        // Only near f64::MAX; nothing sensible to subdivide.
        return Ticks {
            lo,
            hi,
            step: hi / 2.0 - lo / 2.0,
            values: vec![lo, hi],
        };
    }
    let step = nice_step(span / (target.max(2) - 1) as f64);
    let k0 = (lo / step + 1e-9).floor();
    let k1 = (hi / step - 1e-9).ceil().max(k0 + 1.0);
    let n = (k1 - k0).min(1000.0) as usize;
    let values = (0..=n)
        .map(|i| {
            let v = (k0 + i as f64) * step;
            if v.abs() < step * 1e-9 {
                0.0
            } else {
                v
            }
        })
        .collect();
    Ticks {
        lo: k0 * step,
        hi: k1 * step,
        step,
        values,
    }
}

/// Decimals needed to tell apart multiples of `step` (0 for steps of 1 or more).
fn decimals_for(step: f64) -> usize {
    if !(step.is_finite() && step > 0.0) || step >= 1.0 {
        0
    } else {
        ((-step.log10() - 1e-9).ceil() as usize).min(6)
    }
}

fn trim_zeros(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// `v` as `2.5e-4`: a mantissa of up to three significant digits and a power of ten.
pub fn format_sci(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let mut exp = v.abs().log10().floor() as i32;
    let mut m = (v / 10f64.powi(exp) * 100.0).round() / 100.0;
    if m.abs() >= 10.0 {
        m /= 10.0;
        exp += 1;
    }
    format!("{}e{exp}", trim_zeros(format!("{m:.2}")))
}

/// A tick label for `v` on an axis with ticks `step` apart: `0`; `2k`, `2.5k`, `1.2M`
/// from a thousand up; fixed decimals (`0.5`, `1.0`) for steps of 0.01 or more;
/// `1e-3` style below.
pub fn format_tick(v: f64, step: f64) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    if v.abs() < step.abs() * 1e-6 || v == 0.0 {
        return "0".to_string();
    }
    for (unit, suffix) in [(1e9, "G"), (1e6, "M"), (1e3, "k")] {
        if v.abs() >= unit && step >= unit / 1000.0 {
            let d = decimals_for(step / unit);
            return format!("{}{suffix}", trim_zeros(format!("{:.*}", d, v / unit)));
        }
    }
    if step >= 0.01 {
        format!("{:.*}", decimals_for(step), v)
    } else {
        format_sci(v)
    }
}

/// A legend value: four significant digits, or `1.23e-4` style for tiny or huge values.
pub fn format_value(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-2..1e5).contains(&a) {
        return format_sci(v);
    }
    let d = if a == 0.0 {
        0
    } else {
        (3 - a.log10().floor() as i32).clamp(0, 4) as usize
    };
    format!("{v:.d$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_125(step: f64) -> bool {
        let m = step / 10f64.powf(step.log10().floor());
        [1.0, 2.0, 5.0, 10.0].iter().any(|n| (m - n).abs() < 1e-6)
    }

    #[test]
    fn ticks_are_1_2_5_and_cover_the_range() {
        for &(lo, hi) in &[
            (0.0, 1.0),
            (0.0, 1000.0),
            (1.0, 997.0),
            (0.87, 6.3),
            (0.0, 0.00099),
            (-3.2, 7.7),
            (14.3, 100.0),
            (123456.0, 123999.0),
            (1e-9, 3e-9),
        ] {
            let t = ticks(lo, hi, 6);
            assert!(is_125(t.step), "{lo}..{hi}: step {}", t.step);
            assert!(t.lo <= lo && t.hi >= hi, "{lo}..{hi}: {t:?}");
            assert!(
                t.values.len() >= 2 && t.values.len() <= 7,
                "{lo}..{hi}: {t:?}"
            );
            for w in t.values.windows(2) {
                assert!((w[1] - w[0] - t.step).abs() < t.step * 1e-6);
            }
        }
        assert_eq!(
            ticks(0.0, 1.0, 6).values,
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        assert_eq!(ticks(0.0, 1000.0, 6).step, 200.0);
    }

    #[test]
    fn degenerate_ranges_do_not_panic() {
        for &(lo, hi) in &[
            (5.0, 5.0),
            (0.0, 0.0),
            (-2.0, -2.0),
            (1e-300, 1e-300),
            (f64::NAN, 1.0),
            (f64::NEG_INFINITY, f64::INFINITY),
            (-f64::MAX, f64::MAX),
            (f64::MAX, f64::MAX),
            (3.0, 1.0),
        ] {
            let t = ticks(lo, hi, 6);
            assert!(t.hi > t.lo, "{lo}..{hi}: {t:?}");
            assert!(!t.values.is_empty());
            assert!(t.fraction(t.lo).abs() < 1e-9);
        }
        let t = ticks(5.0, 5.0, 6);
        assert!(t.lo < 5.0 && t.hi > 5.0);
        let t = ticks(0.0, 1.0, 0);
        assert!(t.values.len() >= 2);
    }

    #[test]
    fn labels() {
        assert_eq!(format_tick(0.0, 2000.0), "0");
        assert_eq!(format_tick(2000.0, 2000.0), "2k");
        assert_eq!(format_tick(2500.0, 500.0), "2.5k");
        assert_eq!(format_tick(1_200_000.0, 200_000.0), "1.2M");
        assert_eq!(format_tick(800.0, 200.0), "800");
        assert_eq!(format_tick(0.5, 0.5), "0.5");
        assert_eq!(format_tick(1.0, 0.5), "1.0");
        assert_eq!(format_tick(0.6000000000000001, 0.2), "0.6");
        assert_eq!(format_tick(0.001, 0.0002), "1e-3");
        assert_eq!(format_tick(0.0006000000000000001, 0.0002), "6e-4");
        assert_eq!(format_tick(0.00025, 0.00005), "2.5e-4");
        assert_eq!(format_tick(1e-18, 0.0002), "0");
        assert_eq!(format_tick(-2.0, 1.0), "-2");
        assert_eq!(format_value(2.13456), "2.135");
        assert_eq!(format_value(14.3), "14.30");
        assert_eq!(format_value(0.00099), "9.9e-4");
        assert_eq!(format_value(0.0), "0");
    }
}
