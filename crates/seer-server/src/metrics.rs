//! Counters for `/metrics`, in Prometheus' text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;

#[derive(Default)]
pub struct Metrics {
    /// (route, status) -> (count, total seconds)
    requests: Mutex<BTreeMap<(String, u16), (u64, f64)>>,
}

impl Metrics {
    pub fn record(&self, route: &str, status: u16, seconds: f64) {
        let mut map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let entry = map.entry((route.to_string(), status)).or_default();
        entry.0 += 1;
        entry.1 += seconds;
    }

    pub fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        let map = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "# HELP seer_requests_total HTTP requests by route and status.\n# TYPE seer_requests_total counter");
        for ((route, status), (count, _)) in map.iter() {
            let _ = writeln!(
                out,
                "seer_requests_total{{route=\"{route}\",status=\"{status}\"}} {count}"
            );
        }
        let _ = writeln!(out, "# HELP seer_request_seconds_total Time spent answering, by route and status.\n# TYPE seer_request_seconds_total counter");
        for ((route, status), (_, seconds)) in map.iter() {
            let _ = writeln!(
                out,
                "seer_request_seconds_total{{route=\"{route}\",status=\"{status}\"}} {seconds:.6}"
            );
        }
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}
