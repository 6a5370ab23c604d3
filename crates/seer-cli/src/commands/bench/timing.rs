//! The rate of a timed loop, and on the CPU each iteration's own rate: on the
//! shared VMs this project is measured on, the host sometimes stalls a figure
//! for seconds (ViT-B/32 int8 images at 46 per second in one round, 71 in the
//! next), and a mean alone cannot tell that from a slow kernel.

use std::time::Instant;

use serde_json::{json, Value};

/// Above this ratio of the fastest iteration's rate to the slowest's, a
/// figure's line says so. Quiet runs of `seer bench` stay well under it (the
/// batches of one figure do the same work).
const UNEVEN: f64 = 1.2;

/// Items per second over a loop, and the slowest and fastest iteration's rate
/// where each iteration was timed.
#[derive(Clone, Copy, Debug)]
pub(super) struct Rate {
    pub mean: f64,
    pub range: Option<(f64, f64)>,
}

impl Rate {
    /// `run` timed `iterations` times, `items` per call, after one warm-up
    /// call. `each` times every call on its own; for a GPU, whose work is
    /// asynchronous, pass false: only `finish` (a synchronisation) at the end
    /// makes the clock mean anything there.
    pub fn measure(
        iterations: usize,
        items: usize,
        each: bool,
        mut run: impl FnMut() -> anyhow::Result<()>,
        finish: impl Fn() -> anyhow::Result<()>,
    ) -> anyhow::Result<Rate> {
        run()?;
        finish()?;
        let start = Instant::now();
        let mut range: Option<(f64, f64)> = None;
        for _ in 0..iterations {
            let one = Instant::now();
            run()?;
            if each {
                let rate = items as f64 / one.elapsed().as_secs_f64();
                range = Some(range.map_or((rate, rate), |(lo, hi)| (lo.min(rate), hi.max(rate))));
            }
        }
        finish()?;
        let mean = (items * iterations) as f64 / start.elapsed().as_secs_f64();
        Ok(Rate { mean, range })
    }

    /// What a figure's line adds when its iterations were uneven, else "".
    pub fn note(&self, unit: &str) -> String {
        match self.range {
            Some((lo, hi)) if lo > 0.0 && hi / lo > UNEVEN => format!(
                " [uneven: iterations {lo:.1} to {hi:.1} {unit}; the host may have stalled]"
            ),
            _ => String::new(),
        }
    }

    /// Records the iterations' range under `iteration_range.<key>`.
    pub fn record_range(&self, results: &mut Value, key: &str) {
        if let Some((lo, hi)) = self.range {
            results["iteration_range"][key] = json!([lo, hi]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uneven_iterations_are_said_and_even_ones_are_not() {
        let even = Rate {
            mean: 10.0,
            range: Some((9.5, 10.5)),
        };
        assert_eq!(even.note("images/s"), "");
        let stalled = Rate {
            mean: 8.0,
            range: Some((4.0, 10.0)),
        };
        assert!(stalled
            .note("images/s")
            .contains("iterations 4.0 to 10.0 images/s"));
        let untimed = Rate {
            mean: 8.0,
            range: None,
        };
        assert_eq!(untimed.note("images/s"), "");
        let mut results = json!({});
        stalled.record_range(&mut results, "image_model/8");
        assert_eq!(
            results["iteration_range"]["image_model/8"],
            json!([4.0, 10.0])
        );
        untimed.record_range(&mut results, "text");
        assert!(results["iteration_range"].get("text").is_none());
    }

    #[test]
    fn each_iteration_is_timed_when_asked() {
        let mut calls = 0;
        let rate = Rate::measure(
            3,
            2,
            true,
            || {
                calls += 1;
                std::thread::sleep(std::time::Duration::from_millis(2 * calls));
                Ok(())
            },
            || Ok(()),
        )
        .unwrap();
        assert_eq!(calls, 4, "a warm-up call, then three timed");
        let (lo, hi) = rate.range.expect("timed one by one");
        assert!(
            lo <= rate.mean && rate.mean <= hi,
            "{lo} {} {hi}",
            rate.mean
        );
        assert!(hi > lo);
        let whole = Rate::measure(3, 2, false, || Ok(()), || Ok(())).unwrap();
        assert!(whole.range.is_none());
    }
}
