//! Which instruction-set level the kernels use, detected once per process.

use std::sync::OnceLock;

use crate::gemm::Precision;

/// How the kernels that do f32 arithmetic (f32, bf16 widened to f32) block
/// their activations ([`Isa::float_blocks`] for AVX-512, [`Isa::avx2_blocks`]
/// for AVX2, which names its own CPUs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FloatBlocks {
    /// 256 deep × 112 rows (CPUs not measured; for AVX2, CPUs with a small
    /// L2).
    Shallow,
    /// 768 deep × 224 rows: Intel without AMX (Ice Lake, the Skylake-SP line,
    /// and AMX Xeons whose VM hides the tiles) and AMD Zen 4 and Zen 5
    /// (families 25 and 26).
    Deep,
    /// Shallow, but a thread's whole share of rows as one block where it fits
    /// 224 rows, three depth blocks packed at a time: Intel with AMX (Sapphire
    /// Rapids and later); for AVX2, non-AMD CPUs with 1 MiB of L2 or more.
    WholeShare,
}

/// Kernel families in order of preference. Every family computes the same
/// product; the portable one exists for other CPUs and as the test oracle's peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    Portable,
    /// AVX2 + FMA (Haswell, Zen 1 and later).
    Avx2,
    /// AVX-512F (Skylake-SP, Zen 4 and later).
    Avx512,
    /// AVX-512 plus the AMX tiles with their bf16 and int8 products (Intel
    /// Sapphire Rapids and later): bf16 and int8 matrix products run on the
    /// tiles, everything else as at [`Isa::Avx512`].
    Amx,
}

/// The highest level the process allows (see [`Isa::limit`]).
static CEILING: OnceLock<Isa> = OnceLock::new();

impl Isa {
    /// The best level this CPU supports, at most the [`Isa::limit`] set before.
    pub fn detected() -> Isa {
        static DETECTED: OnceLock<Isa> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            let best = Self::best_supported();
            CEILING.get().map_or(best, |&ceiling| best.min(ceiling))
        })
    }

    /// Caps the level the kernels use for the rest of the process (the CLI's
    /// `$SEER_ISA`: to compare kernels, or to rule out a faulty one). Only a
    /// first call before any kernel ran takes effect; returns whether it did.
    pub fn limit(ceiling: Isa) -> bool {
        CEILING.set(ceiling).is_ok() && Self::detected() == Self::best_supported().min(ceiling)
    }

    /// `portable`, `avx2`, `avx512` or `amx`.
    pub fn parse(s: &str) -> Option<Isa> {
        match s {
            "portable" => Some(Isa::Portable),
            "avx2" => Some(Isa::Avx2),
            "avx512" => Some(Isa::Avx512),
            "amx" => Some(Isa::Amx),
            _ => None,
        }
    }

    /// The best level this CPU runs, whatever [`Isa::limit`] capped
    /// [`Isa::detected`] at.
    pub fn best_supported() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            // The AVX-512 row kernels (`multiversion!`) are compiled with BW, VL
            // and DQ too: every AVX-512 CPU since Skylake-SP has them, Xeon
            // Phi does not (it takes the AVX2 kernels).
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                // Also asks Linux for the tile state, once.
                if crate::gemm::amx_available() {
                    return Isa::Amx;
                }
                return Isa::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2;
            }
        }
        Isa::Portable
    }

    /// Whether bf16 products run on the dot-product instruction (`vdpbf16ps`):
    /// the CPU has it and it beats f32 FMAs there. Otherwise the f32 kernels
    /// run on the bf16 weights widened to f32 a block at a time, saving
    /// memory and weight traffic but no arithmetic. AMD Zen 4 runs it at about twice the f32 rate (bf16 measured
    /// 1.7–2× f32). On Intel Sapphire Rapids seer's bf16 with it measured 0.72×
    /// f32 (issue 14; likely because it issues on one port where FMAs use two),
    /// so Intel CPUs run the f32 kernels on the bf16 weights widened a block
    /// at a time where they have no AMX (or it is capped off): f32's speed
    /// with half the weight memory.
    pub fn has_bf16_dot() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            static FAST: OnceLock<bool> = OnceLock::new();
            Self::detected() >= Isa::Avx512
                && *FAST.get_or_init(|| {
                    std::arch::is_x86_feature_detected!("avx512bf16") && !is_intel()
                })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// How the AVX-512 kernels that do f32 arithmetic block their activations
    /// on this CPU (`gemm::Blocks::for_float_avx512` has the measurements).
    pub(crate) fn float_blocks() -> FloatBlocks {
        #[cfg(target_arch = "x86_64")]
        {
            static BLOCKS: OnceLock<FloatBlocks> = OnceLock::new();
            *BLOCKS.get_or_init(|| match (is_intel(), crate::gemm::amx::cpu_has_amx()) {
                (true, false) => FloatBlocks::Deep,
                (true, true) => FloatBlocks::WholeShare,
                // Family 25 with AVX-512 is Zen 4 (Zen 3 shares the family
                // but never runs these kernels), family 26 Zen 5.
                (false, _) if matches!(cpu_family(), 25 | 26) => FloatBlocks::Deep,
                (false, _) => FloatBlocks::Shallow,
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            FloatBlocks::Shallow
        }
    }

    /// How the AVX2 kernels that do f32 arithmetic block their activations
    /// (`gemm::Blocks::for_float_avx2` has the measurements): 768 deep on AMD,
    /// where it was measured; on other CPUs a thread's whole share as one
    /// block and three depth blocks packed at a time, as the AVX-512 kernels
    /// on AMX Xeons, where the L2 holds those blocks (1 MiB or more: Alder Lake
    /// and later cores, and AVX-512 Xeons capped at AVX2), else 256 × 112.
    pub(crate) fn avx2_blocks() -> FloatBlocks {
        #[cfg(target_arch = "x86_64")]
        {
            static BLOCKS: OnceLock<FloatBlocks> = OnceLock::new();
            *BLOCKS.get_or_init(|| {
                if vendor() == *b"AuthenticAMD" {
                    FloatBlocks::Deep
                } else if l2_kib().is_some_and(|kib| kib >= 1024) {
                    FloatBlocks::WholeShare
                } else {
                    FloatBlocks::Shallow
                }
            })
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            FloatBlocks::Shallow
        }
    }

    /// Whether this CPU has AVX-512 VNNI's u8 × i8 dot product (`vpdpbusd`), the
    /// int8 kernel's instruction; without it AVX2 multiplies with `vpmaddubsw`
    /// on activations of 128 levels.
    pub fn has_int8_dot() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            Self::detected() >= Isa::Avx512 && std::arch::is_x86_feature_detected!("avx512vnni")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Whether int8 products here take a dot-product instruction (AMX's
    /// `tdpbusd`, or `vpdpbusd` of AVX-512 VNNI or AVX-VNNI) rather than
    /// AVX2's `vpmaddubsw` chain or the portable loop.
    pub fn int8_on_dot_products() -> bool {
        Self::has_int8_dot() || Self::has_avx_vnni()
    }

    /// Whether the AVX2 int8 kernel is AVX-VNNI's (`vpdpbusd` on ymm): on
    /// CPUs whose best level is AVX2 and that have it (Intel Alder Lake and
    /// later cores, Sierra Forest). Not on AVX-512 CPUs capped at AVX2
    /// (`SEER_ISA=avx2`), which stand in for the AVX2 CPUs without it (AMD
    /// Zen 2 and 3) and have AVX-512 VNNI anyway.
    pub fn has_avx_vnni() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            static VNNI: OnceLock<bool> = OnceLock::new();
            Self::detected() == Isa::Avx2
                && Self::best_supported() == Isa::Avx2
                && *VNNI.get_or_init(|| std::arch::is_x86_feature_detected!("avxvnni"))
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// All levels this CPU can run, for tests that compare them.
    pub fn all_supported() -> Vec<Isa> {
        let best = Self::best_supported();
        [Isa::Portable, Isa::Avx2, Isa::Avx512, Isa::Amx]
            .into_iter()
            .filter(|&i| i <= best)
            .collect()
    }

    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2+fma",
            Isa::Avx512 => "avx512",
            Isa::Amx => "avx512+amx",
        }
    }

    /// The matmul micro-kernel [`crate::gemm`] runs for `precision` at this
    /// level, with its register tile (rows × columns of C), for benchmarks and
    /// bug reports to say which code ran. Mirrors `gemm::Kernel::select`: a new
    /// kernel there needs its name here.
    pub fn matmul_kernel(self, precision: Precision) -> String {
        // The f32 kernels' blocks where they are not 256 deep × 112 rows
        // (`deep` names the deep blocks' rows for this level).
        let blocks = |blocks: FloatBlocks, deep: &'static str| match blocks {
            FloatBlocks::Deep => deep,
            FloatBlocks::WholeShare => {
                ", a thread's rows as one block up to 224, 3 depth blocks a pass"
            }
            FloatBlocks::Shallow => "",
        };
        // bf16 without fast bf16 arithmetic runs the f32 kernels.
        let float = |tile: &str, blocks: &str| match precision {
            Precision::Bf16 => format!("{tile} on bf16 weights widened per block{blocks}"),
            _ => format!("{tile}{blocks}"),
        };
        let name = match (self, precision) {
            (Isa::Amx, Precision::Bf16) => "amx bf16 32x32",
            (Isa::Amx, Precision::Int8) => "amx int8 32x32",
            // The models' f32 weights (`PackedWeights::pack_for_inference`).
            (Isa::Amx, Precision::F32) if crate::gemm::f32_on_tiles() => {
                "amx f32 as three bf16 parts, six tile products a step, 32x32"
            }
            (Isa::Avx512, Precision::Bf16)
                if Self::has_bf16_dot() && Self::float_blocks() == FloatBlocks::Deep =>
            {
                "avx512-bf16 dot 14x32, blocks of 112 rows x 768 deep"
            }
            (Isa::Avx512, Precision::Bf16) if Self::has_bf16_dot() => "avx512-bf16 dot 14x32",
            // AMX's f32 too where `gemm::keep_f32_off_tiles` keeps it on FMA.
            (Isa::Avx512, Precision::F32 | Precision::Bf16) | (Isa::Amx, Precision::F32) => {
                let kept = if self == Isa::Amx && crate::gemm::f32_kept_off_tiles() {
                    ", f32 kept off the tiles"
                } else {
                    ""
                };
                let deep = ", blocks of 224 rows x 768 deep";
                return float("avx512 f32 14x32", blocks(Self::float_blocks(), deep)) + kept;
            }
            (Isa::Avx2, Precision::F32 | Precision::Bf16) => {
                let deep = ", blocks of 112 rows x 768 deep";
                return float("avx2+fma f32 6x16", blocks(Self::avx2_blocks(), deep));
            }
            (_, Precision::F32 | Precision::Bf16) => return float("portable f32 4x32", ""),
            (Isa::Avx512, Precision::Int8) if Self::has_int8_dot() => "avx512-vnni int8 14x32",
            (Isa::Avx2, Precision::Int8) if Self::has_avx_vnni() => "avx2 int8 on avx-vnni 6x16",
            (Isa::Avx512 | Isa::Avx2, Precision::Int8) => {
                "avx2 int8 (vpmaddubsw, 128-level activations, ±63 weights) 3x16"
            }
            (_, Precision::Int8) => "portable int8 4x32",
        };
        name.to_string()
    }
}

/// Whether the CPU's vendor string is Intel's.
#[cfg(target_arch = "x86_64")]
fn is_intel() -> bool {
    vendor() == *b"GenuineIntel"
}

/// The CPU vendor's 12-byte name (cpuid leaf 0: ebx, edx, ecx), read once:
/// in a VM each `cpuid` traps to the hypervisor, and kernels are picked per
/// product.
#[cfg(target_arch = "x86_64")]
fn vendor() -> [u8; 12] {
    static VENDOR: OnceLock<[u8; 12]> = OnceLock::new();
    *VENDOR.get_or_init(|| {
        let id = std::arch::x86_64::__cpuid(0);
        let mut name = [0u8; 12];
        for (chunk, register) in name.chunks_exact_mut(4).zip([id.ebx, id.edx, id.ecx]) {
            chunk.copy_from_slice(&register.to_le_bytes());
        }
        name
    })
}

/// One core's L2 in KiB, where the CPU says (CPUID leaf 0x8000_0006, ECX
/// bits 16–31, on Intel and AMD alike).
#[cfg(target_arch = "x86_64")]
fn l2_kib() -> Option<u32> {
    let max_extended = std::arch::x86_64::__cpuid(0x8000_0000).eax;
    (max_extended >= 0x8000_0006)
        .then(|| std::arch::x86_64::__cpuid(0x8000_0006).ecx >> 16)
        .filter(|&kib| kib > 0)
}

/// The CPU's family as the kernels' tuning notes give it (CPUID leaf 1: the
/// base family, plus the extended family where the base is 15, as AMD's
/// families 23 and up are).
#[cfg(target_arch = "x86_64")]
fn cpu_family() -> u32 {
    let eax = std::arch::x86_64::__cpuid(1).eax;
    let base = (eax >> 8) & 0xf;
    if base == 0xf {
        base + ((eax >> 20) & 0xff)
    } else {
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_names_follow_the_level_and_precision() {
        assert_eq!(
            Isa::Portable.matmul_kernel(Precision::F32),
            "portable f32 4x32"
        );
        // Deep blocks are named after the kernel (AMD CPUs).
        let avx2 = Isa::Avx2.matmul_kernel(Precision::F32);
        assert!(avx2.starts_with("avx2+fma f32 6x16"), "{avx2}");
        assert_eq!(
            avx2.contains("768 deep"),
            Isa::avx2_blocks() == FloatBlocks::Deep,
            "{avx2}"
        );
        assert_eq!(
            avx2.contains("as one block"),
            Isa::avx2_blocks() == FloatBlocks::WholeShare,
            "{avx2}"
        );
        assert!(Isa::Avx2
            .matmul_kernel(Precision::Int8)
            .starts_with("avx2 int8"));
        // Intel CPUs without AMX name their deep blocks after the kernel.
        assert!(Isa::Avx512
            .matmul_kernel(Precision::F32)
            .starts_with("avx512 f32 14x32"));
        // Without a bf16 dot product, AVX2 runs f32's kernel on widened weights.
        assert!(Isa::Avx2
            .matmul_kernel(Precision::Bf16)
            .starts_with("avx2+fma f32 6x16 on bf16 weights widened per block"));
        assert_eq!(
            Isa::Portable.matmul_kernel(Precision::Int8),
            "portable int8 4x32"
        );
        // AMX: the tiles for bf16 and int8; f32 as bf16 parts where it runs
        // on them (AMX CPUs unless kept off), else FMA.
        assert_eq!(Isa::Amx.matmul_kernel(Precision::Bf16), "amx bf16 32x32");
        assert_eq!(Isa::Amx.matmul_kernel(Precision::Int8), "amx int8 32x32");
        let f32 = Isa::Amx.matmul_kernel(Precision::F32);
        if crate::gemm::f32_on_tiles() {
            assert!(f32.starts_with("amx f32 as three bf16 parts"), "{f32}");
        } else {
            assert!(f32.starts_with("avx512 f32 14x32"), "{f32}");
        }
        assert_eq!(Isa::parse("amx"), Some(Isa::Amx));
        let bf16 = Isa::Avx512.matmul_kernel(Precision::Bf16);
        assert_eq!(
            bf16.starts_with("avx512-bf16"),
            Isa::has_bf16_dot(),
            "{bf16}"
        );
    }
}
