//! What `seer bench` says about the machine: the CPU model, the features that
//! decide which kernels can run (here, and in the engines compared against),
//! and the kernel seer chose. Speed figures mean little without them: the same
//! build runs a different kernel on each CPU kind.

use std::collections::HashSet;

use seer_kernels::Isa;
use seer_models::Precision;
use serde_json::{json, Value};

/// `/proc/cpuinfo` flags that select a kernel, in the order printed: f32 SIMD
/// width, then the bf16 and int8 dot products, then the AMX tiles.
const FEATURES: &[&str] = &[
    "avx2",
    "avx512f",
    "avx512_bf16",
    "avx512_vnni",
    "avx_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
];

#[derive(Debug, PartialEq)]
pub(super) struct CpuInfo {
    /// "model name", or "unknown" (other systems, or CPUs that do not name it).
    pub model: String,
    /// Those of [`FEATURES`] the CPU lists.
    pub features: Vec<&'static str>,
}

/// The first processor's entry of a `/proc/cpuinfo` text.
pub(super) fn parse_cpuinfo(text: &str) -> CpuInfo {
    let field = |name: &str| {
        text.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim())
        })
    };
    let model = field("model name")
        .filter(|m| !m.is_empty())
        .unwrap_or("unknown")
        .to_string();
    let flags: HashSet<&str> = field("flags").unwrap_or("").split_whitespace().collect();
    let features = FEATURES
        .iter()
        .copied()
        .filter(|f| flags.contains(f))
        .collect();
    CpuInfo { model, features }
}

/// This machine's CPU and the kernels seer runs at `precision`, for the JSON.
pub(super) fn describe(precision: Precision) -> Value {
    let info = std::fs::read_to_string("/proc/cpuinfo")
        .map(|text| parse_cpuinfo(&text))
        .unwrap_or_else(|_| parse_cpuinfo(""));
    let isa = Isa::detected();
    // Timed only where the tiles run: whether f32 on them pays here.
    let tiles = (isa == Isa::Amx)
        .then(seer_kernels::gemm::tile_rates)
        .flatten()
        .map(|r| {
            json!({
                "tile_gflops": r.tiles,
                "fma_gflops": r.fma,
                "ratio": r.ratio(),
                "split_f32_pays_from": seer_kernels::gemm::TileRates::SPLIT_FROM,
            })
        });
    json!({
        "model": info.model,
        "features": info.features,
        "isa": isa.name(),
        "matmul_kernel": isa.matmul_kernel(precision),
        "amx_tile_rates": tiles,
    })
}

/// The instruction-set cap the reference engines get when seer's kernels run
/// capped below what the CPU has (the hidden `--isa`, `$SEER_ISA`): capped at
/// AVX2 on an AVX-512 machine, seer stands in for an AVX2-only CPU, and its
/// ratios mean something only against engines capped the same way.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct ReferenceCap {
    /// `bench_reference.py --isa-cap` (and the results' `reference.isa_cap`).
    pub name: &'static str,
    /// What caps each library: PyTorch's own kernels (`ATEN_CPU_CAPABILITY`),
    /// oneDNN in PyTorch and in OpenVINO's CPU plugin (`DNNL_`/`ONEDNN_MAX_CPU_ISA`,
    /// whichever name the build reads), MKL. ONNX Runtime has no such switch.
    pub env: &'static [(&'static str, &'static str)],
}

const AVX2_CAP: ReferenceCap = ReferenceCap {
    name: "avx2",
    env: &[
        ("ATEN_CPU_CAPABILITY", "avx2"),
        ("DNNL_MAX_CPU_ISA", "AVX2"),
        ("ONEDNN_MAX_CPU_ISA", "AVX2"),
        ("MKL_ENABLE_INSTRUCTIONS", "AVX2"),
    ],
};

/// AVX-512 with its bf16 and VNNI instructions but no AMX tiles.
const AVX512_CAP: ReferenceCap = ReferenceCap {
    name: "avx512",
    env: &[
        ("ATEN_CPU_CAPABILITY", "avx512"),
        ("DNNL_MAX_CPU_ISA", "AVX512_CORE_BF16"),
        ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16"),
        ("MKL_ENABLE_INSTRUCTIONS", "AVX512"),
    ],
};

/// The cap for a run whose kernels run at `isa` on a CPU that has `best`:
/// none when uncapped, and none for the portable kernels (the engines have
/// no plain-scalar mode to compare with).
pub(super) fn reference_cap(isa: Isa, best: Isa) -> Option<ReferenceCap> {
    if isa >= best {
        return None;
    }
    match isa {
        Isa::Avx2 => Some(AVX2_CAP),
        Isa::Avx512 => Some(AVX512_CAP),
        Isa::Portable | Isa::Amx => None,
    }
}

/// Caps `command` (a reference benchmark) as seer's kernels are capped in this
/// process, and says so on stderr; returns the cap's name, if any.
pub(super) fn cap_reference(command: &mut std::process::Command) -> Option<&'static str> {
    let (isa, best) = (Isa::detected(), Isa::best_supported());
    let Some(cap) = reference_cap(isa, best) else {
        if isa < best {
            diag!(
                "note: seer's kernels are capped at {}, the reference runs uncapped (it has no such mode)",
                isa.name()
            );
        }
        return None;
    };
    diag!(
        "seer's kernels are capped at {}: so is the reference ({})",
        isa.name(),
        cap.env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    command.envs(cap.env.iter().copied());
    Some(cap.name)
}

/// The 1-minute load average (`/proc/loadavg`), when the system tells it: a
/// run that shared the cores with other work has ratios that mean little.
pub(super) fn load_average() -> Option<f64> {
    parse_loadavg(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

fn parse_loadavg(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

/// CPU time so far, in `/proc` clock ticks: the whole machine's busy time
/// (steal included) and this process's own (all its threads).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct CpuTimes {
    busy: u64,
    own: u64,
}

/// `/proc`'s clock ticks per second (`USER_HZ`, 100 on every Linux ABI).
const TICKS_PER_SECOND: f64 = 100.0;

/// The machine's and this process's CPU time now; `None` off Linux.
pub(super) fn cpu_times() -> Option<CpuTimes> {
    Some(CpuTimes {
        busy: parse_machine_busy(&std::fs::read_to_string("/proc/stat").ok()?)?,
        own: parse_own_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?,
    })
}

/// Cores kept busy by other processes (and the hypervisor's steal) on average
/// since `start`, over `seconds` of wall time: about 0 on a quiet machine. A
/// measurement that shared the cores says little about either engine.
pub(super) fn other_cores(start: Option<CpuTimes>, seconds: f64) -> Option<f64> {
    let (start, end) = (start?, cpu_times()?);
    let others =
        end.busy.saturating_sub(start.busy) as f64 - end.own.saturating_sub(start.own) as f64;
    (seconds > 0.0).then(|| (others / TICKS_PER_SECOND / seconds).max(0.0))
}

/// user + nice + system + irq + softirq + steal of the `cpu` line.
fn parse_machine_busy(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let at = |i: usize| v.get(i).copied().unwrap_or(0);
    Some(at(0) + at(1) + at(2) + at(5) + at(6) + at(7))
}

/// utime + stime of `/proc/self/stat` (fields 14 and 15; the command name in
/// parentheses may hold spaces).
fn parse_own_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let v: Vec<&str> = rest.split_whitespace().collect();
    Some(v.get(11)?.parse::<u64>().ok()? + v.get(12)?.parse::<u64>().ok()?)
}

/// One line: `AMD EPYC (avx2 avx512f ...); kernels avx512, matmul avx512 f32 14x32`.
pub(super) fn summary(cpu: &Value) -> String {
    let features: Vec<&str> = cpu["features"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    format!(
        "{} ({}); kernels {}, matmul {}",
        cpu["model"].as_str().unwrap_or("unknown"),
        if features.is_empty() {
            "no listed SIMD features".to_string()
        } else {
            features.join(" ")
        },
        cpu["isa"].as_str().unwrap_or("?"),
        cpu["matmul_kernel"].as_str().unwrap_or("?")
    ) + &tile_note(&cpu["amx_tile_rates"])
}

/// The AMX tiles' timing against FMA, and what it says of f32 on the tiles
/// (empty without tiles).
fn tile_note(rates: &Value) -> String {
    let (Some(tiles), Some(fma), Some(ratio), Some(from)) = (
        rates["tile_gflops"].as_f64(),
        rates["fma_gflops"].as_f64(),
        rates["ratio"].as_f64(),
        rates["split_f32_pays_from"].as_f64(),
    ) else {
        return String::new();
    };
    let verdict = if ratio >= from {
        "f32 pays on the tiles here"
    } else {
        "below it f32 runs faster on FMA: --f32-on-fma (SEER_F32_FMA=1) keeps it there"
    };
    format!(
        "\namx tiles: their loop {tiles:.0} GFLOP/s against FMA {fma:.0} on the slowest core, \
         {ratio:.1}x (split f32 needs {from:.0}x; {verdict})"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from a Sapphire Rapids `/proc/cpuinfo` (two processors).
    const XEON: &str = "processor\t: 0\n\
        vendor_id\t: GenuineIntel\n\
        model name\t: Intel(R) Xeon(R) Platinum 8480+\n\
        flags\t\t: fpu sse avx avx2 fma avx512f avx512dq avx512_vnni avx512_bf16 avx_vnni amx_bf16 amx_tile amx_int8\n\
        \n\
        processor\t: 1\n\
        model name\t: Intel(R) Xeon(R) Platinum 8480+\n\
        flags\t\t: fpu sse avx avx2\n";

    #[test]
    fn reads_the_model_and_the_kernel_features_in_order() {
        let info = parse_cpuinfo(XEON);
        assert_eq!(info.model, "Intel(R) Xeon(R) Platinum 8480+");
        assert_eq!(
            info.features,
            [
                "avx2",
                "avx512f",
                "avx512_bf16",
                "avx512_vnni",
                "avx_vnni",
                "amx_tile",
                "amx_bf16",
                "amx_int8"
            ]
        );
    }

    #[test]
    fn avx2_only_epyc_lists_no_avx512() {
        let text = "processor : 0\nmodel name : AMD EPYC 7B12\nflags : fpu avx avx2 fma\n";
        let info = parse_cpuinfo(text);
        assert_eq!(info.model, "AMD EPYC 7B12");
        assert_eq!(info.features, ["avx2"]);
    }

    #[test]
    fn missing_or_empty_fields_are_unknown() {
        assert_eq!(
            parse_cpuinfo(""),
            CpuInfo {
                model: "unknown".into(),
                features: vec![]
            }
        );
        // aarch64 kernels print no "model name"; an empty one counts as none.
        let arm = "processor : 0\nBogoMIPS : 50.00\nFeatures : fp asimd\n";
        assert_eq!(parse_cpuinfo(arm).model, "unknown");
        assert_eq!(parse_cpuinfo("model name\t:\n").model, "unknown");
    }

    #[test]
    fn cpu_times_parse_the_busy_fields_and_the_own_ticks() {
        let stat = "cpu  100 2 30 900 7 0 4 5 0 0\ncpu0 50 1 15 450 3 0 2 2 0 0\n";
        assert_eq!(parse_machine_busy(stat), Some(100 + 2 + 30 + 4 + 5));
        let own = "123 (seer (bench) x) R 1 2 3 0 -1 4194304 97 0 0 0 40 6 0 0 20 0 3 0";
        assert_eq!(parse_own_ticks(own), Some(46));
        assert_eq!(parse_own_ticks("garbage"), None);
    }

    #[test]
    fn the_reference_is_capped_only_where_seer_is() {
        assert_eq!(reference_cap(Isa::Avx512, Isa::Avx512), None);
        assert_eq!(reference_cap(Isa::Amx, Isa::Amx), None);
        assert_eq!(reference_cap(Isa::Avx2, Isa::Avx2), None);
        let avx2 = reference_cap(Isa::Avx2, Isa::Amx).expect("capped at AVX2");
        assert_eq!(avx2.name, "avx2");
        assert!(avx2.env.contains(&("ATEN_CPU_CAPABILITY", "avx2")));
        assert!(avx2.env.contains(&("ONEDNN_MAX_CPU_ISA", "AVX2")));
        assert_eq!(reference_cap(Isa::Avx2, Isa::Avx512), Some(avx2));
        let avx512 = reference_cap(Isa::Avx512, Isa::Amx).expect("capped below AMX");
        assert_eq!(avx512.name, "avx512");
        assert!(avx512
            .env
            .contains(&("DNNL_MAX_CPU_ISA", "AVX512_CORE_BF16")));
        assert_eq!(reference_cap(Isa::Portable, Isa::Avx512), None);
    }

    #[test]
    fn load_average_is_the_first_field() {
        assert_eq!(parse_loadavg("1.62 2.96 3.79 2/311 4242\n"), Some(1.62));
        assert_eq!(parse_loadavg(""), None);
    }

    #[test]
    fn summary_names_cpu_features_and_kernel() {
        let cpu = json!({
            "model": "AMD EPYC", "features": ["avx2", "avx512f"],
            "isa": "avx512", "matmul_kernel": "avx512 f32 14x32",
        });
        assert_eq!(
            summary(&cpu),
            "AMD EPYC (avx2 avx512f); kernels avx512, matmul avx512 f32 14x32"
        );
        // With the tiles timed, a second line says whether f32 pays on them.
        let mut amx = cpu.clone();
        amx["amx_tile_rates"] = json!({
            "tile_gflops": 650.0, "fma_gflops": 160.0, "ratio": 4.06, "split_f32_pays_from": 6.0,
        });
        assert_eq!(
            summary(&amx),
            "AMD EPYC (avx2 avx512f); kernels avx512, matmul avx512 f32 14x32\n\
             amx tiles: their loop 650 GFLOP/s against FMA 160 on the slowest core, 4.1x \
             (split f32 needs 6x; below it f32 runs faster on FMA: --f32-on-fma (SEER_F32_FMA=1) \
             keeps it there)"
        );
        amx["amx_tile_rates"]["ratio"] = json!(14.0);
        assert!(summary(&amx).ends_with("14.0x (split f32 needs 6x; f32 pays on the tiles here)"));
        let described = describe(Precision::F32);
        assert_eq!(described["isa"], Isa::detected().name());
        assert_eq!(
            described["amx_tile_rates"].is_object(),
            Isa::detected() == Isa::Amx
        );
        assert_eq!(
            described["matmul_kernel"],
            Isa::detected().matmul_kernel(Precision::F32)
        );
    }
}
