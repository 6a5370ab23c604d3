//! `C = A·Wᵀ` for inference, against weights packed once at load time.
//!
//! The layout follows the usual BLIS blocking: the weight matrix is stored as
//! panels of [`NR`] output features, each panel `K × NR` contiguous, so a
//! micro-kernel streams it linearly; activations are re-packed per call into
//! `MR`-row panels of `KC` columns that stay in L2 while every weight panel passes
//! by. The micro-kernel keeps an `MR × NR` tile of C in registers and adds it to C
//! in memory, so C is first initialised (bias, or bias added to a residual already
//! there) and finished with an optional activation: Linear, residual add and GELU
//! cost one pass over C instead of three.
//!
//! bf16 weights are stored as pairs along K, the operand order of AVX-512 BF16's
//! `vdpbf16ps`; activations are rounded to bf16 while packing. Without that
//! instruction the f32 kernels run on the weights widened to f32 a block at a
//! time (by the block's first row tile as it sums) and keep activations in f32:
//! f32 arithmetic on half the weight memory and traffic.
//!
//! int8 weights are quantised symmetrically per output feature and stored as
//! groups of four along K, the operand order of AVX-512 VNNI's `vpdpbusd`.
//! Activations are quantised per row at run time to u8 over the row's own
//! `[min, max]`: `x ≈ min + scale·q`. Then `Σ x·w ≈ scale·s_w·Σ q·q_w + min·s_w·Σ q_w`,
//! so the micro-kernel sums integer products and scales them into C, adding the
//! second term (per row × per column) on the first depth block. Without VNNI the
//! AVX2 kernel multiplies with `vpmaddubsw`, whose i16 pair sums limit its
//! activations to 0..=127 ([`ActivationLevels`]).
//!
//! Code: this module blocks and packs; `x86` and `portable` hold the
//! micro-kernels.

use std::cell::RefCell;

use rayon::prelude::*;

use crate::alloc::AlignedVec;
use crate::isa::{FloatBlocks, Isa};
use crate::SendPtr;

/// Output features per weight panel (two 16-lane vectors).
pub const NR: usize = 32;
/// Depth of one packed block of activations (int8 goes 4× deeper, bf16 pairs
/// 2×). The weight micro-panel of one block (32 KiB in f32, in int8, in bf16
/// pairs and widened from bf16 to f32) then stays in a
/// 32 KiB L1 while every row tile of the block passes it; at 512 it spilled to
/// L2 and int8 ran 10–15% slower (AMD Zen 4, gemm_speed). Half as deep, the
/// bf16 pair kernel added its tiles into C twice as often: 7–9% slower (Zen 5).
const KC: usize = 256;
/// Depth and rows of the deep blocks ([`Blocks::for_float_avx512`]) some CPUs
/// run the AVX-512 f32-arithmetic kernels on: ViT-B/32's depth of 768 in one
/// block, so most products write C once (see `Kernel::first`) instead of
/// setting it to the bias and reading it back per block, and 224 rows, so each
/// thread streams the weights half as often. The 96 KiB weight micro-panel no
/// longer stays in L1 but streams from L2 beside A (224 × 768 f32, 672 KiB).
const DEEP_KC: usize = 768;
const DEEP_MC: usize = 224;
/// The most u32 words any kernel packs per row of a depth block: the deep
/// f32 blocks', then AVX2 int8's two words per group of four (KC groups).
const A_WORDS: usize = if DEEP_KC > 2 * KC { DEEP_KC } else { 2 * KC };
/// The packed weights' K is padded with zeros to a multiple of these: the
/// kernels' pair (bf16) and group (int8) sizes, and beyond that AMX's tile
/// depth (32 bf16 or 64 int8 values, one 64-byte tile row), so its tiles read
/// whole steps in place. Real models' widths are multiples already.
const K_ALIGN_BF16: usize = 32;
const K_ALIGN_INT8: usize = 64;
/// Rows of activations packed at a time (rounded down to the kernel's MR).
const MC: usize = 112;
/// Depth blocks packed at a time where [`Blocks::group`] asks for more than
/// one: ViT-B/32's depth of 768 (three blocks of [`KC`]) in one group, so a
/// C tile gets its three adds while its column is in cache.
const GROUP_BLOCKS: usize = 3;

/// How deep and how many rows one packed block of activations is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Blocks {
    /// Depth per block, in the kernel's depth units (see `Kernel::blocks`).
    kc: usize,
    /// Rows per block (rounded down to the kernel's MR).
    mc: usize,
    /// Where nonzero, a product whose rows per thread are more than `mc` but
    /// at most this many runs as one row block per thread, its weight panels
    /// cut in two ([`Blocks::for_product`]).
    whole_share_rows: usize,
    /// Depth blocks packed at a time. Above 1, each weight panel passes all
    /// of them before the next panel, so its column of C tiles is added to
    /// while still in cache, not after every other panel's (see `run_block`).
    group: usize,
}

impl Blocks {
    const SHALLOW: Blocks = Blocks {
        kc: KC,
        mc: MC,
        whole_share_rows: 0,
        group: 1,
    };

    /// [`FloatBlocks::WholeShare`]: shallow blocks, a thread's whole share as
    /// one block up to [`DEEP_MC`] rows, [`GROUP_BLOCKS`] depth blocks a pass.
    const WHOLE_SHARE: Blocks = Blocks {
        whole_share_rows: DEEP_MC,
        group: GROUP_BLOCKS,
        ..Blocks::SHALLOW
    };

    /// The blocks of the AVX-512 kernels that do f32 arithmetic (f32, and bf16
    /// widened to f32) on this CPU. An Intel Xeon without AMX (Ice Lake, family
    /// 6 model 106, 2026-12-03) ran the ViT-B/32 image tower 11% (batch 8, 16/16
    /// pairs) and 12% (batch 32, 7/8) faster in f32 on the deep blocks, and
    /// bf16 widened 12% at batch 8 (19/20), alternating in one process. The
    /// AMX Xeon (family 6 model 167, 2026-12-03) lost on them where rows are
    /// many (texts at 77 tokens −5%, 10/10 pairs; images at batch 32 −3%,
    /// 11/12) and gained at batch 8 from 224-row blocks (+8%, 12/12), so it
    /// keeps shallow blocks and takes each thread's share whole where it fits
    /// 224 rows: images at batch 8 +7% (12/12 pairs), texts unpadded +1%
    /// (10/16); and it packs [`GROUP_BLOCKS`] depth blocks at a time (f32
    /// images at batch 32 +4.5–7%, 6/6 pairs, batch 8 +1%, 4/6; texts at 77
    /// tokens +2–10%, 5/5; 2026-12-04). AMD Zen 4 (family 25 model 17,
    /// 2026-12-04) takes the deep blocks too: f32 images at batch 32 +2–12%
    /// (7/7 pairs), batch 8 −1 to +8% (6/7), texts unpadded +4% median (6/7),
    /// at 77 tokens within ±8% (5/7), though its int8 had lost 10–15% when the
    /// weight micro-panel spilled from its 32 KiB L1 to L2 (int8 keeps
    /// [`KC`]). AMD Zen 5 (family 26 model 2, 2026-12-06) takes them too, for
    /// f32 and for `vdpbf16ps`'s depth ([`Blocks::for_bf16_dot`]): alternating
    /// `clip_image_speed` in one sitting, 6 pairs, f32 images at batch 8
    /// +5.5–10% (6 of 6), batch 32 +4–7% (5 of 6, one even), bf16 at batch 8
    /// 0 to +15% (5 of 6), batch 32 +2–12% (6 of 6); texts (5 pairs) f32 at 77
    /// tokens +0.4–4%, unpadded +1–10%, bf16 within noise to +10%. The whole
    /// share with grouped blocks (as on the AMX Xeons) measured no better than
    /// the deep blocks there (4 pairs, either way by a few percent). An AMX
    /// Xeon whose VM hides AMX and AVX512-BF16 (family 6 model 207, 2 MiB of
    /// L2, 2026-12-07) keeps the deep blocks of Intel without AMX: the whole
    /// share with grouped blocks lost there (alternating `clip_image_speed`,
    /// 16 pairs: images at batch 8 a median 14% slower, deep faster in 10 of
    /// 16; batch 32 3% slower, 12 of 16).
    fn for_float_avx512() -> Blocks {
        match Isa::float_blocks() {
            FloatBlocks::Deep => Blocks {
                kc: DEEP_KC,
                mc: DEEP_MC,
                whole_share_rows: 0,
                group: 1,
            },
            FloatBlocks::WholeShare => Blocks::WHOLE_SHARE,
            FloatBlocks::Shallow => Blocks::SHALLOW,
        }
    }

    /// The blocks of the AVX-512 `vdpbf16ps` kernel: 512 deep, or on the CPUs
    /// that take [`FloatBlocks::Deep`] for f32 ViT-B/32's depth of 768 in one
    /// block, so most products write C once (`Kernel::first`). AMD Zen 4
    /// (family 25 model 17, 2026-12-04), alternating in one process: bare
    /// products at 400 rows +3–10% on two threads (8 of 8 shape × run pairs),
    /// +1–22% on one; the image tower at batch 8 +1–12% (7/7 pairs), batch 32
    /// 0 to +11% (6/7); texts within noise (half the 12 pairs either way).
    /// The weight micro-panel (48 KiB) streams from L2 then, as the f32 deep
    /// blocks' does. 224-row blocks measured the same on the model and once
    /// left a thread idle (400 rows in two blocks), so the rows stay at [`MC`];
    /// on Zen 5 (family 26 model 2, 2026-12-06) 224 rows with the deep blocks
    /// measured within noise too (11 alternating pairs of `clip_image_speed`
    /// and `clip_text_speed`: images at batch 8 and 32 and texts either way).
    fn for_bf16_dot() -> Blocks {
        let kc = match Isa::float_blocks() {
            FloatBlocks::Deep => DEEP_KC,
            FloatBlocks::Shallow | FloatBlocks::WholeShare => 2 * KC,
        };
        Blocks {
            kc,
            ..Blocks::SHALLOW
        }
    }

    /// The blocks of the AVX2 kernels that do f32 arithmetic (f32, and bf16
    /// widened to f32). On AMD, ViT-B/32's depth of 768 in one block, so a
    /// product of that depth writes C once (`Kernel::first`) and deeper ones a
    /// quarter as often. AMD Zen 4 capped at AVX2 (family 25 model 17,
    /// 2026-12-05; a stand-in for the AVX2-only EPYCs, Zen 1 to 3), in one
    /// process: f32 images +7–13% (3 of 3 rounds, batch 8 and 32), texts
    /// unpadded +4–19% and at 77 tokens 0 to +5%, bare products at 400 rows
    /// +2–10% (every shape of 3 rounds). The A block (112 rows × 768 f32, 344
    /// KiB) fits those EPYCs' 512 KiB L2, and 224 rows measured no better.
    /// Elsewhere with an L2 of 1 MiB or more, the AMX Xeons' AVX-512 blocks
    /// ([`FloatBlocks::WholeShare`]): on the AMX Xeon capped at AVX2 (family 6
    /// model 167, 2026-12-05, with the weights asked ahead), alternating in one
    /// process, f32 images at batch 8 +6–14% (6 of 6 pairs), batch 32 +4–7%
    /// (6/6), texts at 77 tokens +2% median (4/6), unpadded within ±4%;
    /// widened bf16 +1–6% (3/3). The deep blocks had lost there (images at
    /// batch 8 −1 to −6%, 4 of 4 pairs, before the weights were asked ahead).
    /// Intel's older AVX2-only CPUs, unmeasured and with 256 KiB of L2 up to
    /// Comet Lake, keep the shallow blocks (the grouped A block, 3 × 224 rows
    /// × 256 f32, is 672 KiB).
    fn for_float_avx2() -> Blocks {
        match Isa::avx2_blocks() {
            FloatBlocks::Deep => Blocks {
                kc: DEEP_KC,
                ..Blocks::SHALLOW
            },
            FloatBlocks::WholeShare => Blocks::WHOLE_SHARE,
            FloatBlocks::Shallow => Blocks::SHALLOW,
        }
    }

    /// The blocks for a product of `m` rows on `threads` threads, and in how
    /// many parts [`for_each_block`] cuts the weight panels. Cut into `mc`-row
    /// blocks, a share of up to twice `mc` rows per thread makes two blocks,
    /// and each streams all the weights through L1 for half the rows. One block
    /// of the whole share passes every weight micro-panel over all its rows;
    /// on several threads the panels are cut in two to keep two tasks per
    /// thread, so an idle thread can take over work from one slowed by a busy
    /// neighbour. One thread takes its rows as one block too: a batch cut one
    /// part per thread (`seer_models::nn::split_batch`) runs each part's
    /// products on one thread, 200 rows at batch 8.
    fn for_product(self, m: usize, threads: usize, mr: usize) -> (Blocks, usize) {
        let share = m.div_ceil(mr).div_ceil(threads.max(1)) * mr;
        if share > self.mc && share <= self.whole_share_rows {
            let mc = self.whole_share_rows;
            (Blocks { mc, ..self }, if threads > 1 { 2 } else { 1 })
        } else {
            (self, 1)
        }
    }
}

/// Below this many multiply-adds a product runs on the calling thread.
const PARALLEL_MIN_MACS: usize = 1 << 18;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    #[default]
    F32,
    /// Weights rounded to bfloat16: half the memory; with AVX-512 BF16 the
    /// activations are rounded too and products run at twice the f32 rate.
    Bf16,
    /// Weights quantised to int8 per output feature, activations to u8 per row
    /// at run time: a quarter of the memory; with AVX-512 VNNI four times the
    /// f32 multiply rate. Outputs differ from f32 by the quantisation error.
    Int8,
}

impl Precision {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "f32" | "fp32" => Some(Self::F32),
            "bf16" => Some(Self::Bf16),
            "int8" => Some(Self::Int8),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::Int8 => "int8",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `x·σ(1.702x)` (OpenAI CLIP).
    QuickGelu,
    /// Exact erf GELU (`nn.GELU()`).
    Gelu,
    /// GELU's tanh approximation (`gelu_pytorch_tanh`, SigLIP).
    GeluTanh,
}

/// What C holds before the product is added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// Overwrite C with the bias (zero without one).
    Bias,
    /// C already holds a residual: add the bias to it.
    AddToOutput,
}

enum Panels {
    F32(AlignedVec<f32>),
    /// Pairs of consecutive K values per output feature, K padded to even.
    Bf16(AlignedVec<u16>),
    Int8(Int8Panels),
    /// f32 weights for the AMX tiles' f32 products ([`amx`]'s split notes):
    /// each value as the sum of three bf16 parts, and per 32-deep step the
    /// three parts' bf16 pair layouts one after the other (hi, mid, lo), so a
    /// panel is `3 · k_padded × NR` values.
    Bf16x3(AlignedVec<u16>),
}

/// int8 weights with what turns their integer products back into floats.
struct Int8Panels {
    /// The range the weights were quantised to.
    levels: WeightLevels,
    /// Groups of four consecutive K values per output feature, K padded to a
    /// multiple of 4 with zeros: `[k/4][column][4]` in each panel.
    data: AlignedVec<i8>,
    /// `max|w| / levels.top()` per output feature, padded to whole panels
    /// with zeros.
    scales: Vec<f32>,
    /// `scale · Σ_k q_w` per output feature (same padding): the weight side of
    /// the activations' offset term.
    sums: Vec<f32>,
}

/// A weight matrix `(n, k)` (nn.Linear's `(out, in)`) in kernel layout, with its bias.
pub struct PackedWeights {
    n: usize,
    k: usize,
    /// K rounded up to [`K_ALIGN_BF16`] or [`K_ALIGN_INT8`] (f32: K itself).
    k_padded: usize,
    panels: Panels,
    bias: Option<Vec<f32>>,
    /// Packed once for many products (a model's weights,
    /// [`PackedWeights::pack_for_inference`]), so a product finds them in
    /// memory rather than cache and asks each next weight block ahead
    /// ([`Ahead`]). Weights packed per call (training's, `from_rows`,
    /// `from_right_matrix`) were just written and sit in cache: asked ahead
    /// there too, the CIFAR-10 demo's training steps ran 2-7% slower (3 of 4
    /// pairs, AMX Xeon).
    reused: bool,
}

impl std::fmt::Debug for PackedWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedWeights")
            .field("n", &self.n)
            .field("k", &self.k)
            .field("precision", &self.precision())
            .finish()
    }
}

impl PackedWeights {
    /// Packs the `n × k` matrix whose row `j` (output feature `j`) is `row(j)`.
    pub fn pack<'a, F>(
        n: usize,
        k: usize,
        row: F,
        bias: Option<Vec<f32>>,
        precision: Precision,
    ) -> Self
    where
        F: Fn(usize) -> &'a [f32] + Sync,
    {
        let (k_padded, panels) = match precision {
            Precision::F32 => (
                k,
                Panels::F32(pack_weight_panels(n, k, k, &row, |panel, rows, _| {
                    for (kk, dst) in panel.chunks_exact_mut(NR).enumerate() {
                        for (d, src) in dst.iter_mut().zip(rows) {
                            *d = src[kk];
                        }
                    }
                })),
            ),
            Precision::Bf16 => {
                let kp = k.next_multiple_of(K_ALIGN_BF16);
                let panels = pack_weight_panels(n, k, kp, &row, |panel, rows, _| {
                    for (kp, dst) in panel
                        .chunks_exact_mut(2 * NR)
                        .take(k.div_ceil(2))
                        .enumerate()
                    {
                        for (j, src) in rows.iter().enumerate() {
                            dst[2 * j] = f32_to_bf16(src[2 * kp]);
                            dst[2 * j + 1] = src.get(2 * kp + 1).map_or(0, |&v| f32_to_bf16(v));
                        }
                    }
                });
                (kp, Panels::Bf16(panels))
            }
            Precision::Int8 => {
                let kp = k.next_multiple_of(K_ALIGN_INT8);
                let levels = WeightLevels::for_this_cpu();
                (kp, Panels::Int8(pack_int8(n, k, kp, &row, levels)))
            }
        };
        Self::with_panels(n, k, k_padded, panels, bias)
    }

    /// Packed weights of `panels`, with `bias` padded with zeros to whole
    /// panels, so a panel's NR bias values can be read as one array (the
    /// int8 kernels' first depth block adds them).
    fn with_panels(
        n: usize,
        k: usize,
        k_padded: usize,
        panels: Panels,
        bias: Option<Vec<f32>>,
    ) -> Self {
        let bias = bias.map(|mut b| {
            b.resize(n.div_ceil(NR) * NR, 0.0);
            b
        });
        Self {
            n,
            k,
            k_padded,
            panels,
            bias,
            reused: false,
        }
    }

    /// [`PackedWeights::pack`] for inference on this CPU: f32 weights where
    /// the CPU has AMX (and [`Isa::limit`] allows it) and its tiles pay
    /// ([`f32_on_tiles`]) go to the tiles as three bf16 parts each
    /// ([`PackedWeights::split_for_tiles`]), products about as exact as f32
    /// FMA's at 1.2-1.5× their speed and 1.5× their memory; anything else
    /// as `pack`.
    pub fn pack_for_inference<'a, F>(
        n: usize,
        k: usize,
        row: F,
        bias: Option<Vec<f32>>,
        precision: Precision,
    ) -> Self
    where
        F: Fn(usize) -> &'a [f32] + Sync,
    {
        if precision == Precision::F32 && f32_on_tiles() {
            return Self::split(n, k, row, bias);
        }
        Self {
            reused: true,
            ..Self::pack(n, k, row, bias, precision)
        }
    }

    /// f32 weights split for the AMX tiles, three bf16 parts each
    /// ([`amx`]'s split notes), wherever [`Isa::detected`] is [`Isa::Amx`],
    /// whether or not they pay on this CPU ([`f32_on_tiles`]): for tests
    /// and comparisons of the split kernels. `None` elsewhere. Only
    /// [`Isa::Amx`] multiplies such weights (see [`gemm_with_isa`]).
    pub fn split_for_tiles<'a, F>(
        n: usize,
        k: usize,
        row: F,
        bias: Option<Vec<f32>>,
    ) -> Option<Self>
    where
        F: Fn(usize) -> &'a [f32] + Sync,
    {
        (cfg!(target_arch = "x86_64") && Isa::detected() == Isa::Amx)
            .then(|| Self::split(n, k, row, bias))
    }

    /// The split packing of [`PackedWeights::split_for_tiles`], on a CPU
    /// with AMX (the callers check).
    fn split<'a, F>(n: usize, k: usize, row: F, bias: Option<Vec<f32>>) -> Self
    where
        F: Fn(usize) -> &'a [f32] + Sync,
    {
        let kp = k.next_multiple_of(K_ALIGN_BF16);
        let step_values = K_ALIGN_BF16 * NR;
        let panels = pack_weight_panels(
            n,
            k,
            SPLIT_PARTS * kp,
            &row,
            |panel: &mut [u16], rows, _| {
                // The panel in f32 first (`[k][column]`, zero past k and past the
                // rows), then each pair of depths split with AVX-512.
                let mut f32_panel = vec![0f32; kp * NR];
                for (kk, dst) in f32_panel.chunks_exact_mut(NR).take(k).enumerate() {
                    for (d, src) in dst.iter_mut().zip(rows) {
                        *d = src[kk];
                    }
                }
                // Step s of the three parts: [3s + part][k/2][column][2].
                let mut pairs = f32_panel.chunks_exact(2 * NR);
                for step in panel.chunks_exact_mut(SPLIT_PARTS * step_values) {
                    let (hi, rest) = step.split_at_mut(step_values);
                    let (mid, lo) = rest.split_at_mut(step_values);
                    let parts = hi
                        .chunks_exact_mut(2 * NR)
                        .zip(mid.chunks_exact_mut(2 * NR))
                        .zip(lo.chunks_exact_mut(2 * NR));
                    for (((hi, mid), lo), pair) in parts.zip(pairs.by_ref()) {
                        split_pair_rows(pair, [hi, mid, lo]);
                    }
                }
            },
        );
        Self {
            reused: true,
            ..Self::with_panels(n, k, kp, Panels::Bf16x3(panels), bias)
        }
    }

    /// [`PackedWeights::pack_for_inference`] of a row-major `(n, k)` matrix.
    pub fn from_rows_for_inference(
        weight: &[f32],
        n: usize,
        k: usize,
        bias: Option<Vec<f32>>,
        precision: Precision,
    ) -> Self {
        assert_eq!(weight.len(), n * k, "weight is not {n}×{k}");
        Self::pack_for_inference(n, k, |j| &weight[j * k..(j + 1) * k], bias, precision)
    }

    /// For int8 weights, the largest magnitude they were quantised to: 127,
    /// or 63 on CPUs whose int8 products run on the AVX2 kernel
    /// (`WeightLevels`). A weight's step is its feature's `max|w|` over this.
    pub fn int8_weight_top(&self) -> Option<f32> {
        match &self.panels {
            Panels::Int8(q) => Some(q.levels.top()),
            _ => None,
        }
    }

    /// Whether these are f32 weights split for the AMX tiles
    /// ([`PackedWeights::pack_for_inference`]).
    pub fn on_tiles(&self) -> bool {
        matches!(self.panels, Panels::Bf16x3(_))
    }

    /// bf16 values per weight and per activation in a product with these
    /// weights: [`SPLIT_PARTS`] on the tiles, else one.
    fn parts(&self) -> usize {
        if self.on_tiles() {
            SPLIT_PARTS
        } else {
            1
        }
    }

    /// Packs a row-major `(n, k)` matrix.
    pub fn from_rows(
        weight: &[f32],
        n: usize,
        k: usize,
        bias: Option<Vec<f32>>,
        precision: Precision,
    ) -> Self {
        assert_eq!(weight.len(), n * k, "weight is not {n}×{k}");
        Self::pack(n, k, |j| &weight[j * k..(j + 1) * k], bias, precision)
    }

    /// Packs a row-major `(k, n)` matrix that multiplies on the right (`x·M`).
    pub fn from_right_matrix(matrix: &[f32], k: usize, n: usize, precision: Precision) -> Self {
        assert_eq!(matrix.len(), n * k, "matrix is not {k}×{n}");
        if precision == Precision::F32 {
            // An f32 panel is the matrix's rows cut into 32-column strips, so
            // it is copied strip by strip (training packs activations and
            // gradients this way every step).
            let mut data = AlignedVec::<f32>::zeroed(n.div_ceil(NR) * k * NR);
            if k > 0 {
                data.par_chunks_mut(k * NR)
                    .enumerate()
                    .for_each(|(p, panel)| {
                        let cols = p * NR..(p * NR + NR).min(n);
                        for (dst, row) in panel.chunks_exact_mut(NR).zip(matrix.chunks_exact(n)) {
                            dst[..cols.len()].copy_from_slice(&row[cols.clone()]);
                        }
                    });
            }
            return Self::with_panels(n, k, k, Panels::F32(data), None);
        }
        Self::from_rows(&crate::ops::transpose(matrix, k, n), n, k, None, precision)
    }

    /// Output features.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Input features.
    pub fn k(&self) -> usize {
        self.k
    }

    pub fn precision(&self) -> Precision {
        match self.panels {
            Panels::F32(_) | Panels::Bf16x3(_) => Precision::F32,
            Panels::Bf16(_) => Precision::Bf16,
            Panels::Int8(_) => Precision::Int8,
        }
    }

    /// Bytes of one packed weight value.
    fn value_bytes(&self) -> usize {
        match &self.panels {
            Panels::F32(_) => 4,
            Panels::Bf16(_) | Panels::Bf16x3(_) => 2,
            Panels::Int8(_) => 1,
        }
    }

    /// Heap bytes held.
    pub fn bytes(&self) -> usize {
        let panels = match &self.panels {
            Panels::F32(d) => d.len() * self.value_bytes(),
            Panels::Bf16(d) | Panels::Bf16x3(d) => d.len() * self.value_bytes(),
            Panels::Int8(q) => q.data.len() + (q.scales.len() + q.sums.len()) * 4,
        };
        panels + self.bias.as_ref().map_or(0, |b| b.len() * 4)
    }

    /// Start of panel `p` at depth `k0` (in elements of the panel type).
    fn panel_offset(&self, p: usize, k0: usize) -> usize {
        (p * self.k_padded * NR + k0 * NR) * self.parts()
    }
}

/// bf16 parts an f32 value is split into for the AMX tiles
/// ([`split_to_bf16`]).
pub(crate) const SPLIT_PARTS: usize = 3;

/// Whether [`PackedWeights::pack_for_inference`] splits f32 weights for the
/// AMX tiles: on [`Isa::Amx`] (x86-64 only), unless
/// [`keep_f32_off_tiles`] was called.
///
/// Not decided by timing the tiles ([`tile_rates`]): where they are shared
/// with a busy neighbour their rate moves from second to second, and two
/// runs of one command would pick different kernels and differ in the last
/// bits (seen on an AMX Xeon VM, 2026-12-06, by the CLI tests that compare
/// two processes' outputs).
pub fn f32_on_tiles() -> bool {
    cfg!(target_arch = "x86_64")
        && Isa::detected() == Isa::Amx
        && !F32_OFF_TILES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Set by [`keep_f32_off_tiles`].
static F32_OFF_TILES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// f32 weights packed after this call stay on the AVX-512 FMA kernels where
/// the CPU has AMX (the CLI's `--f32-on-fma`): faster where the tiles run
/// below [`TileRates::SPLIT_FROM`] times FMA's rate. Call it before loading
/// a model; weights packed before keep their kernels.
pub fn keep_f32_off_tiles() {
    F32_OFF_TILES.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether [`keep_f32_off_tiles`] was called.
pub fn f32_kept_off_tiles() -> bool {
    F32_OFF_TILES.load(std::sync::atomic::Ordering::Relaxed)
}

/// One core's multiply-add rates in GFLOP/s, measured once per process on
/// every core at once, the slowest kept ([`tile_rates`]): whether f32 on
/// the tiles pays here (`seer bench` prints them).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TileRates {
    /// The AMX kernel's inner loop: four `tdpbf16ps` a step on tiles loaded
    /// from L1.
    pub tiles: f64,
    /// Twelve independent chains of 16-lane `vfmadd231ps`.
    pub fma: f64,
}

impl TileRates {
    /// The tiles' rate over FMA's from which f32 split on the tiles pays: a
    /// split step is six tile products. Set between the two machines
    /// measured (see `gemm/amx/probe.rs`): 2.7-5.3× where split products
    /// ran at 0.73× the FMA kernels, 12× or more where they ran 1.2-1.5×.
    pub const SPLIT_FROM: f64 = 6.0;

    /// The tiles' rate over FMA's.
    pub fn ratio(&self) -> f64 {
        self.tiles / self.fma
    }
}

/// [`TileRates`] of this process's slowest CPU by their ratio, timed on the
/// first call (about a millisecond); `None` without usable AMX tiles.
pub fn tile_rates() -> Option<TileRates> {
    #[cfg(target_arch = "x86_64")]
    {
        amx::probe::rates()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// Two consecutive depths of an f32 weight panel (`2 · NR` values) into the
/// three parts' pairs of a split panel ([`Panels::Bf16x3`], `2 · NR` values
/// each). Only for the AMX tiles ([`f32_on_tiles`]), so with AVX-512.
fn split_pair_rows(rows: &[f32], [hi, mid, lo]: [&mut [u16]; 3]) {
    #[cfg(target_arch = "x86_64")]
    {
        fn whole(v: &mut [u16]) -> &mut [u16; 2 * NR] {
            v.try_into().expect("2 NR values")
        }
        assert!(std::arch::is_x86_feature_detected!("avx512f"));
        let rows = rows.try_into().expect("2 NR values");
        // SAFETY: the CPU has AVX-512F (asserted).
        unsafe { x86::split_pair_rows(rows, [whole(hi), whole(mid), whole(lo)]) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("f32 runs on the tiles of x86-64 CPUs only: {rows:?} {hi:?} {mid:?} {lo:?}")
}

/// `x` as three bf16 values whose sum is `x` exactly: the nearest bf16, then
/// the nearest to what is left, then the rest, which fits (an f32's 24
/// significant bits are at most 8 + 8 + 8; both differences are exact).
/// Subnormal parts the tiles read as zero, and infinities give NaN parts.
#[inline]
pub fn split_to_bf16(x: f32) -> [u16; 3] {
    let hi = f32_to_bf16(x);
    let rest = x - bf16_to_f32(hi);
    let mid = f32_to_bf16(rest);
    [hi, mid, f32_to_bf16(rest - bf16_to_f32(mid))]
}

/// Panels of `NR` output features, `k_padded × NR` elements each, filled in
/// parallel by `fill(panel, rows, p)` from panel `p`'s source rows (cut to `k`).
/// Writes are sequential and the few source rows stay in L1.
fn pack_weight_panels<'a, T, F>(
    n: usize,
    k: usize,
    k_padded: usize,
    row: &F,
    fill: impl Fn(&mut [T], &[&[f32]], usize) + Sync,
) -> AlignedVec<T>
where
    T: Copy + Default + Send,
    F: Fn(usize) -> &'a [f32] + Sync,
{
    let mut data = AlignedVec::<T>::zeroed(n.div_ceil(NR) * k_padded * NR);
    data.par_chunks_mut(k_padded * NR)
        .enumerate()
        .for_each(|(p, panel)| {
            let rows: Vec<&[f32]> = (0..NR.min(n - p * NR))
                .map(|j| &row(p * NR + j)[..k])
                .collect();
            fill(panel, &rows, p);
        });
    data
}

/// `x.round().clamp(-127.0, 127.0) as i8` (half away from zero; NaN to 0)
/// without `f32::round`, which is a libm call on baseline x86-64: 18% of the
/// instructions of a short `seer embed --precision int8`, all at load time.
/// Clamping first is the same (±127 are integers), and keeps the cast exact.
#[inline]
fn quantise_weight(x: f32) -> i8 {
    let x = x.clamp(-127.0, 127.0);
    let whole = x as i32;
    // Exact: `whole` has the same sign and |x - whole| < 1.
    let frac = x - whole as f32;
    (whole + i32::from(frac >= 0.5) - i32::from(frac <= -0.5)) as i8
}

/// The range int8 weights are quantised to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WeightLevels {
    /// ±127.
    I8,
    /// ±63: the AVX2 kernel then adds two steps' `vpmaddubsw` pair sums in
    /// i16 before widening them (`x86::micro_int8_avx2_paired`), where ±127
    /// would saturate.
    I7,
}

impl WeightLevels {
    fn top(self) -> f32 {
        match self {
            Self::I8 => 127.0,
            Self::I7 => 63.0,
        }
    }

    /// ±63 where this CPU's int8 products run on the AVX2 kernel, else ±127.
    /// The AVX2 kernel's 128-level activations with ±127 weights cost
    /// `vpmaddubsw`, `vpmaddwd` and an add per four products, two of the
    /// three on the two multiply ports FMAs use too: at best 2× f32, and
    /// 1.65–1.79× measured (AMX Xeon capped at AVX2). ±63 frees a
    /// `vpmaddwd` and an add per eight: int8 images +6–15%, 1.73–1.85× f32,
    /// and 1.90–1.99× on 3-row tiles (alternating in one process,
    /// 2026-12-05). The cost: on the README's
    /// trained CIFAR-10 model, image → image recall@10 against f32 0.963 →
    /// 0.956, text → image 0.950 → 0.930, zero-shot top-1 unchanged; fixture
    /// cosines to f32 capped at AVX2 stayed ≥ 0.9974 (0.9970 with ±127; the
    /// activations' 128 levels are the larger error on these models).
    fn for_this_cpu() -> WeightLevels {
        if int8_activation_levels(Isa::detected()) == 128 {
            Self::I7
        } else {
            Self::I8
        }
    }
}

/// Symmetric per-feature int8 quantisation to `levels`, packed for `vpdpbusd`.
fn pack_int8<'a, F>(
    n: usize,
    k: usize,
    k_padded: usize,
    row: &F,
    levels: WeightLevels,
) -> Int8Panels
where
    F: Fn(usize) -> &'a [f32] + Sync,
{
    let padded_n = n.div_ceil(NR) * NR;
    let mut scales = vec![0f32; padded_n];
    scales[..n].par_iter_mut().enumerate().for_each(|(j, s)| {
        *s = row(j)[..k].iter().fold(0f32, |m, v| m.max(v.abs())) / levels.top();
    });
    let data = pack_weight_panels(n, k, k_padded, row, |panel: &mut [i8], rows, p| {
        let inv: Vec<f32> = scales[p * NR..p * NR + rows.len()]
            .iter()
            .map(|&s| if s > 0.0 { 1.0 / s } else { 0.0 })
            .collect();
        for (g, dst) in panel.chunks_exact_mut(4 * NR).enumerate() {
            for (j, (src, &inv)) in rows.iter().zip(&inv).enumerate() {
                for t in 0..4 {
                    dst[4 * j + t] = src.get(4 * g + t).map_or(0, |&v| quantise_weight(v * inv));
                }
            }
        }
    });
    let mut sums = vec![0f32; padded_n];
    for (p, panel) in data.chunks_exact(k_padded * NR).enumerate() {
        let mut colsum = [0i32; NR];
        for group in panel.chunks_exact(4 * NR) {
            for (j, sum) in colsum.iter_mut().enumerate() {
                *sum += group[4 * j..4 * j + 4]
                    .iter()
                    .map(|&q| q as i32)
                    .sum::<i32>();
            }
        }
        for (j, &sum) in colsum.iter().enumerate() {
            // |Σ q| <= 127·k is exact in f32 for any k below 132 000.
            sums[p * NR + j] = scales[p * NR + j] * sum as f32;
        }
    }
    Int8Panels {
        levels,
        data,
        scales,
        sums,
    }
}

/// `c (m×n) = init + a (m×k) · Wᵀ`, then `act`, with the best kernel for this CPU.
pub fn gemm(
    a: &[f32],
    m: usize,
    w: &PackedWeights,
    c: &mut [f32],
    init: Init,
    act: Option<Activation>,
) {
    gemm_with_isa(Isa::detected(), a, m, w, c, init, act)
}

/// How many levels int8 products on `isa` quantise each row of activations
/// to: 256, or 128 on the AVX2 kernel without AVX-VNNI (see
/// [`ActivationLevels`]). The error
/// of an int8 product scales with one step of the row's range over this.
pub fn int8_activation_levels(isa: Isa) -> u32 {
    match Kernel::select(isa, Precision::Int8).micro {
        Micro::Int8(_, levels) if isa != Isa::Amx => levels.top() as u32 + 1,
        _ => 256,
    }
}

/// [`gemm`] with an explicit kernel family (tests compare them all).
pub fn gemm_with_isa(
    isa: Isa,
    a: &[f32],
    m: usize,
    w: &PackedWeights,
    c: &mut [f32],
    init: Init,
    act: Option<Activation>,
) {
    assert_eq!(c.len(), m * w.n, "output is not {m}×{}", w.n);
    // SAFETY: `c` is the m × n output, initialised and borrowed mutably here.
    unsafe { gemm_raw(isa, a, m, w, c.as_mut_ptr(), init, act) }
}

/// `a (m×k) · Wᵀ + bias`, then `act`, into a new vector, for f32 weights.
///
/// Every output value is written before any is read, so unlike an output
/// for [`gemm`] the vector needs no zeroing pass first (for training's
/// activations and gradients, megabytes a product).
pub fn gemm_new(a: &[f32], m: usize, w: &PackedWeights, act: Option<Activation>) -> Vec<f32> {
    assert_eq!(w.precision(), Precision::F32, "gemm_new takes f32 weights");
    // Without depth no tile would be written (weights cannot be packed so).
    assert!(w.k > 0, "gemm_new of depth 0");
    let len = m * w.n;
    let mut c = Vec::with_capacity(len);
    // SAFETY: the capacity holds m × n floats, ours; with f32 weights and
    // `Init::Bias`, `gemm_raw` writes every one before reading it (see its
    // contract), so all `len` are initialised when it returns.
    unsafe {
        gemm_raw(Isa::detected(), a, m, w, c.as_mut_ptr(), Init::Bias, act);
        c.set_len(len);
    }
    c
}

/// [`gemm_with_isa`] onto an output given by pointer.
///
/// # Safety
/// `c` points to `m × w.n` floats, valid for reads and writes and touched by
/// no one else during the call. They must be initialised, except for f32
/// weights with `Init::Bias` and `w.k > 0`: every tile's first depth block
/// then writes its values (`Tile::init` or a single-block kernel) before
/// anything reads them.
unsafe fn gemm_raw(
    isa: Isa,
    a: &[f32],
    m: usize,
    w: &PackedWeights,
    c: *mut f32,
    init: Init,
    act: Option<Activation>,
) {
    let (n, k) = (w.n, w.k);
    // The micro-kernels' target features are only sound on a CPU that has them.
    assert!(
        isa <= Isa::best_supported(),
        "{} kernels on a CPU without them",
        isa.name()
    );
    assert_eq!(a.len(), m * k, "activations are not {m}×{k}");
    if m == 0 || n == 0 {
        return;
    }
    if w.on_tiles() {
        assert!(
            isa == Isa::Amx,
            "f32 weights packed for the AMX tiles need the AMX kernels, not {}",
            isa.name()
        );
    }
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Amx && !matches!(w.panels, Panels::F32(_)) {
        // SAFETY: the CPU supports `isa` (asserted), and Isa::Amx is only
        // detected where `amx::available()`; the shapes were checked, and `c`
        // is initialised for bf16 and int8 weights, or f32 ones without
        // `Init::Bias` (our contract).
        return unsafe { gemm_amx(a, m, w, c, init, act) };
    }
    let kernel = Kernel::select(isa, w.precision()).for_weights(w);
    // SAFETY: `kernel` was selected for `isa`, which the CPU supports
    // (asserted); `c` as our caller guarantees.
    unsafe { gemm_with_kernel(isa, &kernel, a, m, w, c, init, act) }
}

/// [`gemm_with_isa`] past its checks, on a given kernel.
///
/// # Safety
/// The CPU has the features of `isa` and of `kernel.micro`; `a` is `m × w.k`
/// and `c` points to the `m × w.n` output as [`gemm_raw`] requires, both
/// nonempty.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_with_kernel(
    isa: Isa,
    kernel: &Kernel,
    a: &[f32],
    m: usize,
    w: &PackedWeights,
    c: *mut f32,
    init: Init,
    act: Option<Activation>,
) {
    let threads = threads_for(m, w);
    let (blocks, panel_parts) = kernel.blocks.for_product(m, threads, kernel.mr);
    let kernel = &Kernel { blocks, ..*kernel };
    // int8: each row's scale spans all of K, so it is found before the blocks.
    let quant = matches!(w.panels, Panels::Int8(_)).then(|| {
        let Micro::Int8(_, levels) = kernel.micro else {
            unreachable!("int8 weights get an int8 kernel")
        };
        RowQuant::new(isa, levels, a, m, w.k, w.k_padded, threads > 1)
    });
    let c_ptr = SendPtr(c);
    for_each_block(
        m,
        w,
        kernel.mr,
        kernel.blocks.mc,
        panel_parts,
        threads,
        |rows, panels| {
            // SAFETY: `c_ptr` is `c`, valid for m×n writes and ours for this whole
            // call; `for_each_block` hands out disjoint blocks inside it.
            // The CPU has `kernel`'s features (the caller's contract).
            unsafe {
                run_block(
                    kernel,
                    a,
                    quant.as_ref(),
                    w,
                    c_ptr.get(),
                    rows,
                    panels,
                    init,
                    act,
                )
            }
        },
    );
}

/// [`gemm_with_isa`] on the AMX tiles, for bf16 and int8 weights and f32
/// ones split for them.
///
/// # Safety
/// [`amx::available`] returned true; `a` is `m × w.k` and `c` points to the
/// `m × w.n` output, both nonempty, initialised unless `init` is
/// `Init::Bias` with f32 weights (the tiles' f32 sums then overwrite every
/// value unread, as `Init::Bias` does for the others too); `w` is not
/// [`Panels::F32`].
#[cfg(target_arch = "x86_64")]
unsafe fn gemm_amx(
    a: &[f32],
    m: usize,
    w: &PackedWeights,
    c: *mut f32,
    init: Init,
    act: Option<Activation>,
) {
    let parallel = threads_for(m, w) > 1;
    let quant;
    let rows = match w.panels {
        Panels::Int8(_) => {
            quant = RowQuant::new(
                Isa::Amx,
                ActivationLevels::U8,
                a,
                m,
                w.k,
                w.k_padded,
                parallel,
            );
            amx::Rows::int8(&quant, m, parallel)
        }
        Panels::Bf16(_) => amx::Rows::bf16(a, m, w.k, w.k_padded, parallel),
        Panels::Bf16x3(_) => amx::Rows::bf16x3(a, m, w.k, w.k_padded, parallel),
        Panels::F32(_) => unreachable!("AMX has no f32 product"),
    };
    // SAFETY: the caller's contract; `rows` holds the m rows at the weights'
    // padded K.
    unsafe { run_amx(&rows, m, w, amx::Output::F32(SendPtr(c)), init, act) }
}

/// The product of prepared `rows` (m of them) and `w` on the AMX tiles.
///
/// # Safety
/// [`amx::available`] returned true; `rows` holds `m` rows at `w`'s padded K
/// and its precision; `out` is the `m × w.n` f32 output (initialised, valid
/// for writes, no one else's during the call) or, with `Init::Bias`, lines for
/// `m` rows of one step per weight panel, valid for writes.
#[cfg(target_arch = "x86_64")]
unsafe fn run_amx(
    rows: &amx::Rows,
    m: usize,
    w: &PackedWeights,
    out: amx::Output,
    init: Init,
    act: Option<Activation>,
) {
    for_each_share(
        m,
        w,
        amx::MR,
        amx::row_block(w),
        threads_for(m, w),
        |row_range, panels| {
            // SAFETY: AMX is available and `out` valid (the caller's
            // contract), ours for this whole call; `for_each_share` hands out
            // disjoint blocks inside it whose rows start at whole MR blocks;
            // `rows` holds m rows rounded up to whole blocks, at the weights'
            // padded K.
            unsafe { amx::run_block(rows, w, out, row_range, panels, init, act) }
        },
    );
}

/// Activations as bf16 in the AMX tiles' layout: a product's output kept
/// for the next product's input ([`gemm_to_bf16_rows`], then
/// [`gemm_bf16_rows`]), instead of writing f32 values that the next product
/// reads back to round. Between a transformer's two MLP layers that round trip
/// is the widest activation (4× the model width) through memory twice. For
/// bf16 weights each value rounded to bf16; for f32 weights on the tiles
/// ([`PackedWeights::on_tiles`]) each value as its three bf16 parts, which
/// sum to it exactly.
pub struct Bf16Rows {
    #[cfg(target_arch = "x86_64")]
    rows: amx::Rows<'static>,
    m: usize,
    /// Values per row (the producing product's outputs).
    k: usize,
    /// Three bf16 parts per value, for f32 weights on the tiles.
    split: bool,
}

impl Bf16Rows {
    /// The first line and the steps per row (AMX only makes these rows).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn lines(&self) -> (*const u8, usize) {
        (self.rows.start(), self.rows.steps())
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.m
    }

    /// Values per row.
    pub fn width(&self) -> usize {
        self.k
    }
}

impl Bf16Rows {
    /// `m` rows of `w.k` values as bf16 for the input of a product with `w`
    /// ([`gemm_bf16_rows`]), row `r` written by `fill(r, row)` (an f32 row of
    /// `w.k`, rounded or split from there): where `w` runs on the AMX tiles
    /// ([`reads_bf16_rows`]), else `None`. For a row-wise op before a product
    /// (LayerNorm): its output goes into the tiles' lines directly.
    pub fn from_fn(
        m: usize,
        w: &PackedWeights,
        fill: impl Fn(usize, &mut [f32]) + Sync,
    ) -> Option<Bf16Rows> {
        #[cfg(target_arch = "x86_64")]
        if reads_bf16_rows(w) {
            let (parallel, split) = (threads_for(m, w) > 1, w.on_tiles());
            let rows = amx::Rows::bf16_from_fn(m, w.k, w.k_padded, split, parallel, fill);
            return Some(Bf16Rows {
                rows,
                m,
                k: w.k,
                split,
            });
        }
        let _ = (m, w, fill);
        None
    }
}

/// Whether products with `w` take [`Bf16Rows`]: bf16 weights where this CPU
/// runs them on the AMX tiles, and f32 weights split for the tiles.
pub fn reads_bf16_rows(w: &PackedWeights) -> bool {
    w.on_tiles() || (Isa::detected() == Isa::Amx && w.precision() == Precision::Bf16)
}

impl Bf16Rows {
    /// Whether these rows hold three bf16 parts per value (for f32 weights
    /// on the tiles), not one.
    pub fn split(&self) -> bool {
        self.split
    }
}

/// `a (m×k) · Wᵀ + bias`, then `act`, as bf16 rows for the input of a next
/// product ([`gemm_bf16_rows`]) of `w`'s kind: where `w` runs on the AMX
/// tiles ([`reads_bf16_rows`]), else `None` (then [`gemm`] into f32). The
/// values are the ones [`gemm`] gives, rounded as a bf16 product rounds its
/// input, or split as an f32 one on the tiles splits it (bit for bit where
/// `w` is at most 768 deep: deeper, `gemm` adds its split sums in depth
/// chunks, so their last bits may differ).
pub fn gemm_to_bf16_rows(
    a: &[f32],
    m: usize,
    w: &PackedWeights,
    act: Option<Activation>,
) -> Option<Bf16Rows> {
    #[cfg(target_arch = "x86_64")]
    if reads_bf16_rows(w) {
        assert_eq!(a.len(), m * w.k, "activations are not {m}×{}", w.k);
        let parallel = threads_for(m, w) > 1;
        let input = if w.on_tiles() {
            amx::Rows::bf16x3(a, m, w.k, w.k_padded, parallel)
        } else {
            amx::Rows::bf16(a, m, w.k, w.k_padded, parallel)
        };
        // SAFETY: AMX is available (detected); `input` holds m rows at `w`'s
        // padded K.
        return Some(unsafe { product_to_lines(&input, m, w, act) });
    }
    let _ = (a, m, w, act);
    None
}

/// [`gemm_to_bf16_rows`] on activations that already are bf16 rows (`w` of
/// their kind and their width as its depth): both ends of the product in
/// the tiles' lines.
pub fn gemm_bf16_rows_to_bf16_rows(
    a: &Bf16Rows,
    w: &PackedWeights,
    act: Option<Activation>,
) -> Bf16Rows {
    check_bf16_rows_product(a, w);
    #[cfg(target_arch = "x86_64")]
    // SAFETY: Bf16Rows only come from an AMX CPU (available); `a.rows` holds
    // a.m rows at `w`'s padded K (checked).
    return unsafe { product_to_lines(&a.rows, a.m, w, act) };
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("bf16 rows are only made on AMX CPUs ({act:?})");
}

/// `input · Wᵀ + bias`, then `act`, into new bf16 lines of `w`'s kind (the
/// next product's weights are of the same precision).
///
/// # Safety
/// [`amx::available`] returned true; `input` holds `m` rows at `w`'s padded
/// K; `w` is bf16 or f32 on the tiles.
#[cfg(target_arch = "x86_64")]
unsafe fn product_to_lines(
    input: &amx::Rows,
    m: usize,
    w: &PackedWeights,
    act: Option<Activation>,
) -> Bf16Rows {
    let split = w.on_tiles();
    let steps = w.parts() * w.n.div_ceil(NR);
    // SAFETY: the lines are written below before anything reads them
    // (without rows there are none).
    let (rows, start) = unsafe { amx::Rows::unwritten(m, steps) };
    if m > 0 {
        // SAFETY: AMX is available and `input` as `w` needs (our contract);
        // the output lines hold m rows of one step per panel, and
        // `Init::Bias` over every row and panel writes each of them once.
        unsafe {
            run_amx(
                input,
                m,
                w,
                amx::Output::Lines {
                    start,
                    steps,
                    split,
                },
                Init::Bias,
                act,
            )
        };
    }
    Bf16Rows {
        rows,
        m,
        k: w.n,
        split,
    }
}

/// The shapes a product of bf16 rows needs: weights of their kind (bf16, or
/// f32 on the tiles for split rows) whose depth is the rows' width (and, on
/// AMX, whose padded depth is the rows' steps).
fn check_bf16_rows_product(a: &Bf16Rows, w: &PackedWeights) {
    assert!(
        if a.split {
            w.on_tiles()
        } else {
            w.precision() == Precision::Bf16
        },
        "bf16 rows need bf16 weights, split ones f32 weights on the tiles"
    );
    assert_eq!(
        w.k, a.k,
        "weights of depth {} on rows of width {}",
        w.k, a.k
    );
    // Bf16Rows only come from an AMX CPU, and their steps are whole panels
    // of the producing weights: w's padded K.
    #[cfg(target_arch = "x86_64")]
    assert_eq!(a.rows.steps() * amx::BF16_STEP, w.k_padded * w.parts());
}

/// [`gemm`] on activations from [`gemm_to_bf16_rows`]; `w` must be bf16 with
/// their width as its depth.
pub fn gemm_bf16_rows(
    a: &Bf16Rows,
    w: &PackedWeights,
    c: &mut [f32],
    init: Init,
    act: Option<Activation>,
) {
    check_bf16_rows_product(a, w);
    assert_eq!(c.len(), a.m * w.n, "output is not {}×{}", a.m, w.n);
    if a.m == 0 || w.n == 0 {
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: as above; `c` is the m × n output, borrowed mutably here.
        unsafe {
            run_amx(
                &a.rows,
                a.m,
                w,
                amx::Output::F32(SendPtr(c.as_mut_ptr())),
                init,
                act,
            )
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("bf16 rows are only made on AMX CPUs ({init:?}, {act:?})");
}

/// How many threads a product of `m` rows by `w` is worth.
fn threads_for(m: usize, w: &PackedWeights) -> usize {
    if m * w.n * w.k < PARALLEL_MIN_MACS {
        1
    } else {
        rayon::current_num_threads()
    }
}

/// Cuts C (m × w.n) into disjoint blocks of whole `mr`-row tiles × weight
/// panels and runs `block(rows, panels)` on each, on `threads` threads.
///
/// Rows are split when every thread gets a few tiles: each task then packs
/// only its own rows. Into blocks of at most `mc` rows (a block streams all
/// the weights once per `mc` rows anyway), as many as a multiple of the threads:
/// equal shares when the threads run at one speed, and work to take over when
/// one is slowed (a busy SMT sibling on a shared machine), where one block per
/// thread left the other thread waiting. Row blocks are crossed with
/// `panel_parts` ranges of weight panels (see [`Blocks::for_product`]). Small
/// batches split output features instead.
fn for_each_block(
    m: usize,
    w: &PackedWeights,
    mr: usize,
    mc: usize,
    panel_parts: usize,
    threads: usize,
    block: impl Fn(std::ops::Range<usize>, std::ops::Range<usize>) + Sync,
) {
    let (panels, tiles) = (w.n.div_ceil(NR), m.div_ceil(mr));
    let (m_chunks, n_chunks) = grid(tiles, panels, mc / mr, panel_parts, threads);
    let task = |t: usize| {
        let (mi, ni) = (t / n_chunks, t % n_chunks);
        block(row_part(m, mr, m_chunks, mi), split(panels, n_chunks, ni));
    };
    run_tasks(n_chunks * m_chunks, task);
}

/// `task(0..tasks)`, one rayon task each, or on this thread when there is one;
/// each with denormals flushed ([`crate::denormals`]).
fn run_tasks(tasks: usize, task: impl Fn(usize) + Sync + Send) {
    let task = |t| {
        let _flush = crate::denormals::FlushDenormals::new();
        task(t)
    };
    if tasks == 1 {
        task(0);
    } else {
        (0..tasks).into_par_iter().with_max_len(1).for_each(task);
    }
}

/// How [`for_each_block`] cuts `tiles` row tiles × `panels` weight panels:
/// row parts × panel parts.
fn grid(
    tiles: usize,
    panels: usize,
    tiles_per_block: usize,
    panel_parts: usize,
    threads: usize,
) -> (usize, usize) {
    if tiles >= 4 * threads {
        let blocks = tiles
            .div_ceil(tiles_per_block.max(1))
            .next_multiple_of(threads);
        (blocks.min(tiles), panel_parts.clamp(1, panels))
    } else {
        let n_chunks = threads.min((panels / 4).max(1));
        (threads.div_ceil(n_chunks).min(tiles), n_chunks)
    }
}

/// Like [`for_each_block`] with no panel parts, but where the row tiles do
/// not divide evenly among the row parts, a part's first and last tile may be
/// shared with its neighbour, each taking some of its panels: every part gets
/// the same number of (tile, panel) cells. For kernels whose blocks read
/// prepared rows (no packing per block, which a shared tile would repeat):
/// ViT-B/32 at batch 8 has 13 tiles of 32 rows, and the part of 7 kept the
/// other thread waiting a seventh of each product. A part runs at most three
/// blocks, one per panel range between its shared tiles' cuts, so each weight
/// panel still streams once per part.
fn for_each_share(
    m: usize,
    w: &PackedWeights,
    mr: usize,
    mc: usize,
    threads: usize,
    block: impl Fn(std::ops::Range<usize>, std::ops::Range<usize>) + Sync,
) {
    let (panels, tiles) = (w.n.div_ceil(NR), m.div_ceil(mr));
    let (parts, n_chunks) = grid(tiles, panels, mc / mr, 1, threads);
    if n_chunks > 1 {
        return for_each_block(m, w, mr, mc, 1, threads, block);
    }
    // Where the tiles divide evenly each share is whole tiles: for_each_block's blocks.
    run_tasks(parts, |part| {
        for (tiles, panels) in share(tiles, panels, parts, part) {
            block((tiles.start * mr).min(m)..(tiles.end * mr).min(m), panels);
        }
    });
}

/// Part `i` of `parts` of the row-major (tile, panel) cells of a `tiles ×
/// panels` grid, as at most three (tiles, panels) blocks: the panel ranges
/// between the cuts in its first and last tile, each with the tiles it holds
/// there.
fn share(
    tiles: usize,
    panels: usize,
    parts: usize,
    i: usize,
) -> impl Iterator<Item = (std::ops::Range<usize>, std::ops::Range<usize>)> {
    let cells = split(tiles * panels, parts, i);
    let (first, cut0) = (cells.start / panels, cells.start % panels);
    let (last, cut1) = (cells.end / panels, cells.end % panels);
    let mut cuts = [0, cut0, cut1, panels];
    cuts.sort_unstable();
    (0..3).filter_map(move |j| {
        let range = cuts[j]..cuts[j + 1];
        let start = if range.start >= cut0 {
            first
        } else {
            first + 1
        };
        let end = if range.end <= cut1 { last + 1 } else { last };
        (!range.is_empty() && start < end).then_some((start..end, range))
    })
}

/// Part `i` of `m` rows cut into `parts` ranges of whole `mr`-row tiles
/// (the last may end in a partial tile), each cut at the tile boundary
/// nearest to an equal share of rows. Cut by whole tiles instead, ViT-B/32 at
/// batch 8 (400 rows, 28 tiles of 14 and one of 8) gave one thread 15 full
/// tiles (210 rows) and the other 13 and the partial one (190 rows): the
/// second waited a tenth of every product; cut by rows they are 196 and 204
/// (the few-row kernels cost a partial tile by its rows). AMD Zen 4, f32 on
/// the deep blocks, old and new binaries alternating: images at batch 8
/// −2 to +8% (6 of 7 pairs faster), batch 32 +0.3–3% (7 of 7), texts 5 of 7;
/// bf16 (then without few-row kernels, four blocks of 112 rows: the same
/// tile counts either way) within noise.
fn row_part(m: usize, mr: usize, parts: usize, i: usize) -> std::ops::Range<usize> {
    let cut = |j: usize| {
        if j >= parts {
            m
        } else {
            // round(j·m / (parts·mr)) tiles.
            ((2 * j * m + parts * mr) / (2 * parts * mr) * mr).min(m)
        }
    };
    cut(i)..cut(i + 1)
}

/// Part `i` of `0..len` cut into `parts` near-equal ranges.
fn split(len: usize, parts: usize, i: usize) -> std::ops::Range<usize> {
    let base = len / parts;
    let extra = len % parts;
    let start = i * base + i.min(extra);
    start..start + base + usize::from(i < extra)
}

thread_local! {
    static PACKED_A: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// int8 activations: each row quantised to u8 over its own range, `x ≈ min +
/// scale·q`, once per product (its scale spans all of K, and every weight panel
/// and thread reuses it), so packing A is a copy.
struct RowQuant {
    min: Vec<f32>,
    scale: Vec<f32>,
    /// Row-major `m × stride` bytes, K padded with zeros to the weights'
    /// padded K, which meet zero-padded weights. Held as u32 words (the
    /// packed unit of four depths) so they can be read as words in place.
    words: Vec<u32>,
    stride: usize,
}

impl RowQuant {
    /// Quantises the `m × k` rows of `a` at `stride` bytes a row.
    ///
    /// # Panics
    /// If `isa` is beyond what the CPU supports, or `stride` is not a
    /// multiple of 4 at least `k`.
    fn new(
        isa: Isa,
        levels: ActivationLevels,
        a: &[f32],
        m: usize,
        k: usize,
        stride: usize,
        parallel: bool,
    ) -> Self {
        assert!(isa <= Isa::best_supported());
        assert!(
            stride >= k && stride.is_multiple_of(4),
            "a stride of {stride} for {k} values"
        );
        let stride = stride.max(4);
        let mut words = vec![0u32; m * stride / 4];
        // SAFETY: the words' memory as bytes: same allocation, u8 has no
        // alignment, and every byte pattern is a valid u32 again.
        let bytes: &mut [u8] =
            unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast(), words.len() * 4) };
        let top = levels.top();
        let quantise = |(row, out): (&[f32], &mut [u8])| match isa {
            // SAFETY: `isa` is at most what the CPU supports (asserted above).
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 | Isa::Amx => unsafe { x86::quantise_row_avx512(row, out, top) },
            // SAFETY: as above; every AVX2 CPU this level is detected on has AVX2.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { x86::quantise_row_avx2(row, out, top) },
            _ => quantise_row(row, out, top),
        };
        let k = k.max(1);
        let mut ranges: Vec<(f32, f32)> = if parallel {
            let rows = a.par_chunks_exact(k);
            rows.zip(bytes.par_chunks_exact_mut(stride))
                .map(quantise)
                .collect()
        } else {
            let rows = a.chunks_exact(k);
            rows.zip(bytes.chunks_exact_mut(stride))
                .map(quantise)
                .collect()
        };
        // Without depth there are no rows to quantise, but every row has a range.
        ranges.resize(m, (0.0, 1.0));
        let (min, scale) = ranges.into_iter().unzip();
        RowQuant {
            min,
            scale,
            words,
            stride,
        }
    }

    /// The quantised rows as bytes, `stride` per row.
    fn bytes(&self) -> &[u8] {
        // SAFETY: the words' memory read as bytes: same allocation, and u8
        // has no alignment.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast(), self.words.len() * 4) }
    }

    /// The quantised rows' words (four depths each, `stride / 4` per row) as
    /// f32 bit patterns, for the f32 panel packers: packing only moves bits.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn words_as_f32(&self) -> &[f32] {
        // SAFETY: u32 and f32 have one size and alignment, and every bit
        // pattern is a valid f32.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast(), self.words.len()) }
    }
}

/// The quantisation range of a row with extremes `lo..=hi`: `(min, scale)`.
/// A constant row (or none) needs no steps: every q is 0 and x = min.
fn quant_range(lo: f32, hi: f32, top: f32) -> (f32, f32) {
    let s = (hi - lo) / top;
    match (lo.is_finite(), s > 0.0 && s.is_finite()) {
        (true, true) => (lo, s),
        (true, false) => (lo, 1.0),
        _ => (0.0, 1.0),
    }
}

/// Quantises `row` to u8 over its own `[min, max]` into `out` and sets `range`
/// to `(min, scale)`, in `top + 1` levels. An asymmetric range spends them
/// all on the values present (GELU outputs hardly go below zero). NaNs are
/// skipped by the range and quantise to 0. The SIMD versions compute the same
/// values.
fn quantise_row(row: &[f32], out: &mut [u8], top: f32) -> (f32, f32) {
    let lo = row.iter().fold(f32::INFINITY, |m, &x| m.min(x));
    let hi = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let (lo, s) = quant_range(lo, hi, top);
    let inv = 1.0 / s;
    for (o, &x) in out.iter_mut().zip(row) {
        // In 0..=top up to rounding; the cast takes NaN to 0.
        *o = ((x - lo) * inv + 0.5).clamp(0.0, top) as u8;
    }
    (lo, s)
}

/// One block of C: rows × weight panels, all of K.
///
/// Row blocks of `mc`; in each, groups of `kernel.blocks.group` depth blocks
/// packed at once; each weight panel passes the group's depth blocks in
/// order, and each depth block's weights (a micro-panel in L1) every row
/// tile. A tile's sums are added in the same order whatever the grouping.
///
/// # Safety
/// `c` must point to the row-major `m × w.n` output (`m >= rows.end`), valid for
/// writes, with no one else reading or writing the `rows × panels` block while
/// this runs; `panels.end <= w.n.div_ceil(NR)`; `a` holds at least `rows.end`
/// rows of `w.k`; `quant` covers those rows when `kernel` is an int8 one; and
/// the CPU must have the features `kernel.micro` needs.
#[allow(clippy::too_many_arguments)]
unsafe fn run_block(
    kernel: &Kernel,
    a: &[f32],
    quant: Option<&RowQuant>,
    w: &PackedWeights,
    c: *mut f32,
    rows: std::ops::Range<usize>,
    panels: std::ops::Range<usize>,
    init: Init,
    act: Option<Activation>,
) {
    let (n, k) = (w.n, w.k);
    let cols = (panels.start * NR).min(n)..(panels.end * NR).min(n);
    if rows.is_empty() || cols.is_empty() {
        return;
    }
    let mr = kernel.mr;
    let mc = (kernel.blocks.mc / mr).max(1) * mr;
    // The kernel for a full tile's first depth block that also does `init`'s
    // work, where there is one (see `FirstBlockKernels`), and what it stores.
    // Where it overwrites C in the only depth block, its twin that also
    // applies the activation, where there is one to apply.
    let first_block = match (kernel.first, init) {
        (Some(f), Init::Bias) if k <= kernel.blocks.kc => match (act, f.overwrite_activated) {
            (Some(act), Some(activated)) => {
                Some((activated(act), FirstStore::OverwriteActivated(act)))
            }
            _ => Some((f.overwrite, FirstStore::Overwrite)),
        },
        (Some(f), Init::AddToOutput) if w.bias.is_some() => {
            Some((f.onto_output, FirstStore::OntoOutput))
        }
        _ => None,
    };
    // The tile of rows r0.. (up to m_end) in panel p over one depth block:
    // `a_panel` holds its packed rows at depth k0..k0 + kc, `b_ptr` the
    // panel's weights there.
    // With `widen_into`, `b_ptr` holds bf16 pairs the tile (a full one)
    // sums on and writes widened to f32 there (see `Micro::WidenedBf16`).
    let run_tile = |(k0, kc): (usize, usize),
                    a_panel: *const u32,
                    b_ptr: *const u8,
                    (p, r0, m_end): (usize, usize, usize),
                    ahead: Ahead,
                    widen_into: Option<(MicroWidening, *mut f32)>| {
        let pcols = NR.min(n - p * NR);
        let tile = Tile {
            // SAFETY: r0 < rows.end <= m and p * NR < n, so the
            // offset is inside the m × n output `c` points to.
            c: unsafe { c.add(r0 * n + p * NR) },
            ldc: n,
            rows: mr.min(m_end - r0),
            cols: pcols,
        };
        let bias = w.bias.as_deref().map(|b| &b[p * NR..]);
        let bias_ptr = bias.map_or(std::ptr::null(), |b| b.as_ptr());
        let full = kernel.few.get(tile.rows - 1).is_none();
        if let Some((widening, widened)) = widen_into {
            debug_assert!(tile.rows == mr);
            // On the first depth block it stores what the other tiles'
            // first-block kernel does (a pass less over the tile).
            let first = first_block.filter(|_| k0 == 0).map(|(_, store)| store);
            let onto = match first {
                Some(store) => store.onto(bias_ptr),
                None => {
                    if k0 == 0 {
                        // SAFETY: as for `tile.init` below.
                        unsafe { tile.init(bias, init) };
                    }
                    Onto::Output
                }
            };
            // SAFETY: the micro-kernel contract as below, with `b_ptr` at
            // the block's bf16 pairs, `widened` the caller's scratch panel
            // of `kc` rounded up to even steps, which nothing else touches
            // meanwhile, and the bias (when there is one) this panel's
            // `pcols` values.
            unsafe {
                widening(
                    kc, a_panel, b_ptr, widened, tile.c, n, tile.rows, tile.cols, onto, ahead,
                )
            };
            if let Some(FirstStore::OverwriteActivated(_)) = first {
                return; // the activation is applied
            }
        } else if let Some((first, store)) = first_block.filter(|_| full && k0 == 0) {
            // SAFETY: the micro-kernel contract as below; the
            // bias (when there is one) holds this panel's
            // `pcols` values.
            unsafe {
                first(
                    kc, a_panel, b_ptr, tile.c, n, tile.rows, tile.cols, bias_ptr, ahead,
                )
            };
            if let FirstStore::OverwriteActivated(_) = store {
                return; // the activation is applied
            }
        } else {
            // The tile's first and last touches happen while it sits in
            // L1: no separate passes over C for the bias or activation.
            // The int8 kernels write the bias themselves (`FirstBlock`).
            if k0 == 0 && !matches!(kernel.micro, Micro::Int8(..)) {
                // SAFETY: the tile's rows × cols lie inside C (r0 + rows
                // <= rows.end, p * NR + cols <= n) and in this call's
                // block, which the caller gave to this thread alone.
                unsafe { tile.init(bias, init) };
            }
            // SAFETY: the micro-kernel contract (see `MicroF32`):
            // pack_a wrote `kc` depth steps of `mr` rows at `a_panel`,
            // the weight panel at `b_ptr` holds at least `kc` (rounded
            // up to the packing granularity) steps of NR, the tile is
            // inside C and ours, and the caller guarantees the CPU
            // features of `kernel.micro`.
            unsafe {
                match (kernel.micro, quant, &w.panels) {
                    (Micro::Float(micro) | Micro::WidenedBf16(micro, _), ..) => {
                        let micro = kernel.few.get(tile.rows - 1).copied().unwrap_or(micro);
                        micro(kc, a_panel, b_ptr, tile.c, n, tile.rows, tile.cols, ahead)
                    }
                    (Micro::Int8(micro, _), Some(q), Panels::Int8(wq)) => {
                        let rows = r0..r0 + tile.rows;
                        let cols = p * NR..(p + 1) * NR;
                        let d = Dequant {
                            row_scales: &q.scale[rows.clone()],
                            col_scales: wq.scales[cols.clone()]
                                .try_into()
                                .expect("scales are padded to whole panels"),
                            first: (k0 == 0).then(|| FirstBlock {
                                mins: &q.min[rows],
                                sums: wq.sums[cols.clone()]
                                    .try_into()
                                    .expect("sums are padded to whole panels"),
                                bias: w.bias.as_ref().map_or(&[0.0; NR], |b| {
                                    b[cols]
                                        .try_into()
                                        .expect("the bias is padded to whole panels")
                                }),
                                overwrite: init == Init::Bias,
                            }),
                            act: act.filter(|_| k0 + kc == k),
                        };
                        micro(kc, a_panel, b_ptr, tile.c, n, tile.rows, tile.cols, &d)
                    }
                    _ => unreachable!("int8 kernels are chosen for int8 weights"),
                }
            };
        }
        // The int8 kernels activate their last block's tile themselves
        // (`Dequant::act`).
        if let (Some(act), true) = (
            act,
            k0 + kc == k && !matches!(kernel.micro, Micro::Int8(..)),
        ) {
            // SAFETY: as for `init`: the tile is inside C and ours.
            unsafe { tile.activate(act) };
        }
    };
    let b_at = |p: usize, k0: usize| -> *const u8 {
        let off = w.panel_offset(p, k0);
        // Panel p at depth k0 starts inside the packed weights: p <
        // panels and k0 < k, with the panel holding k_padded × NR values.
        match &w.panels {
            Panels::F32(d) => d[off..].as_ptr().cast(),
            Panels::Bf16(d) => d[off..].as_ptr().cast(),
            Panels::Int8(q) => q.data[off..].as_ptr().cast(),
            Panels::Bf16x3(_) => unreachable!("only the AMX kernels read split f32 weights"),
        }
    };
    // While a weight block's row tiles run, each tile's kernel asks a share
    // of the next block into L2 ([`Ahead`]). Intel Xeon with AMX (family 6
    // model 167, 2026-12-05), alternating in one process, asked between the
    // tiles: capped at AVX2, f32 images +8-24% at batch 8 and +5-10% at 32
    // (3 of 3 pairs), products at 400 rows with the weights out of cache
    // (`gemm_speed 400 avx2 f32 5 768 48`) +8-16%, in cache +3-6%; AVX-512
    // f32 images +2-8% / 0-4%, texts unpadded +6-14%; on the deep blocks
    // +7-16% at batch 8; widened and `vdpbf16ps` bf16 +5-12% at batch 8.
    // Then paced inside the kernels instead (see `Ahead::over`): bare AVX2
    // products another +5-10% with the weights out of cache, AVX-512 f32
    // images +2-9% at batch 8 and +5-10% at 32, AVX2 images +2-9% at batch 8
    // and -4 to +1% at 32 (3 pairs each), bf16 within ±2%. int8 weights, a
    // quarter the bytes, lost at batch 32 (AVX-512 VNNI, 4 of 4 pairs,
    // 3-12%) and are left to the hardware.
    let prefetch = w.reused && !matches!(w.panels, Panels::Int8(_));
    let step_bytes = NR * w.value_bytes();
    let group = kernel.blocks.group.max(1);
    // bf16 weights for an f32 kernel: each block widened once for all its
    // row tiles (see `Micro::WidenedBf16`).
    let mut widened = match (kernel.micro, &w.panels) {
        (Micro::WidenedBf16(_, widening), Panels::Bf16(pairs)) => {
            let len = kernel.blocks.kc.next_multiple_of(2) * NR;
            let buf = WIDENED
                .take()
                .filter(|buf| buf.len() >= len)
                .unwrap_or_else(|| AlignedVec::zeroed(len));
            Some((buf, pairs, widening))
        }
        (Micro::WidenedBf16(..), _) => unreachable!("widening kernels are chosen for bf16 weights"),
        _ => None,
    };
    PACKED_A.with_borrow_mut(|packed| {
        packed.resize(group * mc * A_WORDS, 0);
        let mut m0 = rows.start;
        while m0 < rows.end {
            let mrows = mc.min(rows.end - m0);
            let m_end = m0 + mrows;
            let mut g0 = 0;
            while g0 < k {
                // Up to `group` depth blocks packed at once, each in its own
                // slot; each weight panel then passes all of them while its
                // column of C tiles is in cache.
                let mut blocks = Vec::with_capacity(group);
                let mut k0 = g0;
                while k0 < k && blocks.len() < group {
                    let kc = kernel.blocks.kc.min(k - k0);
                    let slot = &mut packed[blocks.len() * mc * A_WORDS..][..mc * A_WORDS];
                    let block = ABlock {
                        a,
                        quant,
                        lda: k,
                        m0,
                        mrows,
                        k0,
                        kc,
                    };
                    let stride = (kernel.pack_a)(&block, mr, slot);
                    blocks.push((k0, kc, stride));
                    k0 += kc;
                }
                let tiles = mrows.div_ceil(mr);
                for p in panels.clone() {
                    for (j, &(k0, kc, stride)) in blocks.iter().enumerate() {
                        // Where the weights are widened, the first tile does
                        // it if it is a full one, else a pass before it.
                        let mut widen_into = None;
                        let b_ptr = match widened.as_mut() {
                            Some((buf, pairs, widening)) => {
                                let fused = widening.filter(|_| mrows >= mr);
                                if fused.is_none() {
                                    let (at, len) =
                                        (w.panel_offset(p, k0), kc.next_multiple_of(2) * NR);
                                    widen_bf16_pairs(&pairs[at..at + len], &mut buf[..len]);
                                }
                                let ptr = buf.as_mut_ptr();
                                widen_into = fused.map(|f| (f, ptr));
                                ptr.cast_const().cast()
                            }
                            None => b_at(p, k0),
                        };
                        // The weight block the tiles pass next, asked into
                        // L2 a share per tile while these run (see `Ahead`).
                        let next = match blocks.get(j + 1) {
                            Some(&(k1, kc1, _)) => Some((p, k1, kc1)),
                            None if p + 1 < panels.end => Some((p + 1, blocks[0].0, blocks[0].1)),
                            None => None,
                        }
                        .filter(|_| prefetch);
                        for (i, r0) in (m0..m_end).step_by(mr).enumerate() {
                            let ahead = next.map_or(Ahead::NONE, |(p1, k1, kc1)| {
                                Ahead::share(b_at(p1, k1), kc1 * step_bytes, i, tiles)
                            });
                            let a_panel = packed[j * mc * A_WORDS + i * stride..].as_ptr();
                            // The widening tile reads the pairs, the others its panel.
                            let widen = widen_into.take();
                            let b = if widen.is_some() { b_at(p, k0) } else { b_ptr };
                            run_tile((k0, kc), a_panel, b, (p, r0, m_end), ahead, widen);
                        }
                    }
                }
                g0 = k0;
            }
            m0 += mrows;
        }
    });
    if let Some((buf, ..)) = widened {
        WIDENED.set(Some(buf));
    }
}

thread_local! {
    /// The weight block [`Micro::WidenedBf16`] kernels read, reused across calls.
    static WIDENED: RefCell<Option<AlignedVec<f32>>> = const { RefCell::new(None) };
}

multiversion! {
    /// bf16 weight pairs (`[k/2][NR][2]`, [`Panels::Bf16`]) widened to the f32
    /// panel layout (`[k][NR]`): a bf16 is the top half of its f32.
    fn widen_bf16_pairs(pairs: &[u16], out: &mut [f32]) {
        for (src, dst) in pairs.chunks_exact(2 * NR).zip(out.chunks_exact_mut(2 * NR)) {
            let (even, odd) = dst.split_at_mut(NR);
            for (j, pair) in src.chunks_exact(2).enumerate() {
                even[j] = f32::from_bits(u32::from(pair[0]) << 16);
                odd[j] = f32::from_bits(u32::from(pair[1]) << 16);
            }
        }
    }
}

/// A `rows × cols` tile of C at `c` (row stride `ldc`).
struct Tile {
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
}

/// The safety contract of every `Tile` method: the `rows × cols` floats at `c`
/// with row stride `ldc` are valid for reads and writes, and no one else reads
/// or writes them while the tile is in use.
impl Tile {
    /// # Safety
    /// The tile contract above; `r < rows`. The slice must not outlive the tile's
    /// exclusive use, nor overlap another live slice of the same row.
    unsafe fn row<'a>(&self, r: usize) -> &'a mut [f32] {
        // SAFETY: row r of the tile is `cols` valid, exclusively ours floats.
        unsafe { std::slice::from_raw_parts_mut(self.c.add(r * self.ldc), self.cols) }
    }

    /// Before the first depth block: C = bias (or 0), or C += bias.
    ///
    /// # Safety
    /// The tile contract above.
    unsafe fn init(&self, bias: Option<&[f32]>, init: Init) {
        for r in 0..self.rows {
            // SAFETY: r < rows: the row's `cols` floats are inside the tile.
            let row = unsafe { self.c.add(r * self.ldc) };
            match (bias, init) {
                // `Init::Bias` may meet unwritten memory (`gemm_new`): raw
                // writes, no reference to it. A full-width row is a
                // fixed-size write the compiler inlines; a memcpy call per
                // 128-byte row cost 3% of a ViT forward.
                (Some(b), Init::Bias) if self.cols == NR => {
                    let b: [f32; NR] = b[..NR].try_into().expect("the bias has NR values left");
                    // SAFETY: the row holds NR floats; [f32; NR] is f32-aligned.
                    unsafe { row.cast::<[f32; NR]>().write(b) };
                }
                // SAFETY: the row holds `cols` floats, and the bias at least
                // as many (its panel's); they do not overlap.
                (Some(b), Init::Bias) => unsafe {
                    std::ptr::copy_nonoverlapping(b[..self.cols].as_ptr(), row, self.cols)
                },
                // SAFETY: the row holds `cols` floats; zero bits are 0.0.
                (None, Init::Bias) => unsafe { std::ptr::write_bytes(row, 0, self.cols) },
                (Some(b), Init::AddToOutput) => {
                    // SAFETY: the tile contract; C is initialised when added to.
                    let out = unsafe { self.row(r) };
                    for (o, &bv) in out.iter_mut().zip(b) {
                        *o += bv;
                    }
                }
                (None, Init::AddToOutput) => {}
            }
        }
    }

    /// After the last depth block.
    ///
    /// # Safety
    /// The tile contract above.
    unsafe fn activate(&self, act: Activation) {
        // SAFETY: the tile contract is `apply_activation_strided`'s.
        unsafe {
            crate::ops::apply_activation_strided(self.c, self.ldc, self.rows, self.cols, act)
        };
    }
}

/// Rows `m0..m0+mrows`, depth `k0..k0+kc` of the row-major A (row stride `lda`).
#[derive(Clone, Copy)]
struct ABlock<'a> {
    a: &'a [f32],
    /// The rows' quantisation, for int8 kernels.
    quant: Option<&'a RowQuant>,
    lda: usize,
    m0: usize,
    mrows: usize,
    k0: usize,
    kc: usize,
}

/// Packs a block of A into MR-row panels; returns the panel stride in u32 words.
type PackA = fn(&ABlock, usize, &mut [u32]) -> usize;
/// `(kc, packed A panel, weight panel at k0, C tile, ldc, rows, cols)`: adds
/// the `rows × cols` product of the panels into the C tile.
///
/// The micro-kernel contract, the `# Safety` of every such function: the A
/// panel holds `kc` depth steps (rounded up to even for bf16, to a multiple of
/// 4 for int8) of the kernel's
/// `MR` packed rows; the weight panel holds as many steps of `NR` values;
/// `rows <= MR`, `cols <= NR`; the `rows × cols` floats at the C tile (row
/// stride `ldc`) are valid for reads and writes and no one else touches them
/// meanwhile; and the CPU has the target features the kernel is compiled for.
///
/// The last argument names weight lines to ask into L2 while summing ([`Ahead`]).
type MicroF32 = unsafe fn(usize, *const u32, *const u8, *mut f32, usize, usize, usize, Ahead);
/// A float micro-kernel for a tile's first depth block: the float one's
/// arguments (and contract), then the tile's bias (NR values, or null for
/// none); it overwrites C with its sums plus the bias instead of adding to C.
type MicroF32First =
    unsafe fn(usize, *const u32, *const u8, *mut f32, usize, usize, usize, *const f32, Ahead);
/// A full-tile f32 micro-kernel on bf16 weight pairs that also writes them
/// widened to f32 panel layout: the float one's arguments (and contract)
/// with the pairs as the weights, then after them the widened panel's
/// `kc.next_multiple_of(2) × NR` floats (`x86::micro_f32_avx512_widening`),
/// and before `Ahead` what the sums are stored onto (a bias in it null or
/// the tile's `cols` values).
type MicroWidening =
    unsafe fn(usize, *const u32, *const u8, *mut f32, *mut f32, usize, usize, usize, Onto, Ahead);

/// What a micro-kernel adds its sums onto before it stores them into C.
#[derive(Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
enum Onto {
    /// The C tile as it holds (a later depth block, a bias set by `Tile::init`).
    Output,
    /// The tile's bias, `cols` values (null: none), overwriting C unread.
    Bias(*const f32),
    /// The C tile plus the tile's bias (null: none), added in that order:
    /// what `Tile::init` and a kernel onto [`Onto::Output`] compute, in one
    /// pass over C.
    OutputAndBias(*const f32),
    /// As [`Onto::Bias`], then the activation on the sums before they are
    /// stored: what `Tile::activate` computes from C afterwards.
    BiasActivated(*const f32, Activation),
}

impl Onto {
    /// A first-depth-block kernel's: onto C and the bias with `ONTO_C`, else
    /// onto the bias alone.
    #[inline(always)]
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn first_block<const ONTO_C: bool>(bias: *const f32) -> Onto {
        if ONTO_C {
            Onto::OutputAndBias(bias)
        } else {
            Onto::Bias(bias)
        }
    }
}

/// Which of [`FirstBlockKernels`] a product's first depth block runs: what
/// its kernel stores ([`FirstStore::onto`]), which the widening kernels
/// ([`MicroWidening`]) then store too.
#[derive(Clone, Copy)]
enum FirstStore {
    /// `overwrite`: C = sums + bias.
    Overwrite,
    /// `overwrite_activated`: C = act(sums + bias).
    OverwriteActivated(Activation),
    /// `onto_output`: C = (C + bias) + sums.
    OntoOutput,
}

impl FirstStore {
    /// What the sums go onto, with the tile's `bias` (null: none).
    fn onto(self, bias: *const f32) -> Onto {
        match self {
            FirstStore::Overwrite => Onto::Bias(bias),
            FirstStore::OverwriteActivated(act) => Onto::BiasActivated(bias, act),
            FirstStore::OntoOutput => Onto::OutputAndBias(bias),
        }
    }
}

/// Lines of the next weight block a float micro-kernel asks into L2 while it
/// sums ([`Ahead::over`]), its share of the block ([`run_block`]'s tiles
/// split it). In a model's forward the weights come from memory (ViT-B/32
/// streams 340 MB of f32 weights per batch part) and the first tile to read
/// a block waited on them: the hardware prefetchers stop at the 4 KiB pages a
/// 32 KiB block spans. Asked all at once between tiles, the requests waited
/// for the L1's fill buffers instead (perf put 8% of the products' samples on
/// the prefetch instructions); one every few depth steps, they do not.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ahead {
    at: *const u8,
    lines: usize,
}

impl Ahead {
    /// Nothing to ask for.
    pub(crate) const NONE: Ahead = Ahead {
        at: std::ptr::null(),
        lines: 0,
    };

    /// Share `i` of `tiles` of the `bytes` at `start`, in whole 64-byte lines.
    fn share(start: *const u8, bytes: usize, i: usize, tiles: usize) -> Ahead {
        let lines = bytes.div_ceil(64);
        let (from, to) = (lines * i / tiles, lines * (i + 1) / tiles);
        Ahead {
            at: start.wrapping_add(from * 64),
            lines: to - from,
        }
    }

    /// Part `i` of `parts` of these lines: for a kernel that passes its depth
    /// more than once (AVX2's two 16-column halves).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn part(self, i: usize, parts: usize) -> Ahead {
        let (from, to) = (self.lines * i / parts, self.lines * (i + 1) / parts);
        Ahead {
            at: self.at.wrapping_add(from * 64),
            lines: to - from,
        }
    }

    /// These lines paced over the first of `steps` depth steps
    /// ([`Pacer::tick`] once a step): one every `steps / lines` steps but at
    /// least every 4th, so the last are asked for well before the next block
    /// starts. Paced over the whole depth instead, the last tile's share came
    /// too late: the image tower ran no faster than with all lines asked for
    /// between the tiles; every 8th step, +1-3% at batch 8; every 4th, products
    /// with the weights out of cache +5-10% and AVX-512 f32 images +2-10%
    /// (AMX Xeon, 3 of 3 pairs each). Past one a step the rest are left to the
    /// hardware (a tile's share is well under that in every block size here).
    pub(crate) fn over(self, steps: usize) -> Pacer {
        let every = (steps / self.lines.max(1)).clamp(1, 4);
        Pacer {
            at: self.at,
            left: self.lines,
            every,
            countdown: every,
        }
    }
}

/// [`Ahead`]'s lines being asked for, one each `every` ticks.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct Pacer {
    at: *const u8,
    left: usize,
    every: usize,
    countdown: usize,
}

impl Pacer {
    /// One depth step: asks for the next line when its turn has come.
    #[inline(always)]
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn tick(&mut self) {
        if self.left == 0 {
            return;
        }
        self.countdown -= 1;
        if self.countdown == 0 {
            self.ask();
        }
    }

    /// `steps` depth steps at once ([`Pacer::tick`] that many times, in
    /// one check where no line is due): for a kernel whose loop takes several
    /// steps a turn.
    #[inline(always)]
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn ticks(&mut self, steps: usize) {
        let mut steps = steps;
        while self.left > 0 && steps >= self.countdown {
            steps -= self.countdown;
            self.ask();
        }
        if self.left > 0 {
            self.countdown -= steps;
        }
    }

    /// Asks for the next line into L2, and starts the countdown to the one
    /// after it.
    #[inline(always)]
    fn ask(&mut self) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a prefetch has no effect on memory and never faults;
        // the address is only computed (wrapping), not dereferenced.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T1};
            _mm_prefetch::<_MM_HINT_T1>(self.at.cast())
        };
        self.at = self.at.wrapping_add(64);
        self.left -= 1;
        self.countdown = self.every;
    }
}
/// An int8 micro-kernel: the float one's arguments (and contract), then what
/// turns the integer sums into floats.
type MicroInt8 = unsafe fn(usize, *const u32, *const u8, *mut f32, usize, usize, usize, &Dequant);

/// What an int8 micro-kernel adds to C besides its integer sums `acc`:
/// `acc·row_scale·col_scale`, plus on the first depth block the activations'
/// offset term `min_row · (s_w·Σq_w)_col` (see the module notes) and the bias.
struct Dequant<'a> {
    /// One per tile row (`rows` of them).
    row_scales: &'a [f32],
    col_scales: &'a [f32; NR],
    /// On the first depth block only.
    first: Option<FirstBlock<'a>>,
    /// On the last depth block only: the activation the kernel applies to
    /// its finished tile ([`Dequant::activate`]), so that no pass over the
    /// tile follows. VNNI's kernel applies it to each row in registers
    /// before its one store: as a pass it was 5% of an int8 image forward
    /// (perf, Intel Xeon of family 6 model 207); in the store, alternating
    /// in one process, images +0.7–2.3% at batch 32 and +0.4–0.9% at batch
    /// 8, texts at 77 tokens +1.5–3.6% (faster in 10–19 of 16–30 rounds).
    /// The others run the pass at their tile's end. The same values either
    /// way: the same function (`ops::apply_activation_strided`'s) on the
    /// same sums.
    act: Option<Activation>,
}

impl Dequant<'_> {
    /// [`Dequant::act`], where there is one, on the `rows × cols` floats at
    /// `c` (row stride `ldc`): for the int8 kernels that store before they
    /// could activate.
    ///
    /// # Safety
    /// As `ops::apply_activation_strided`'s: the floats are valid for reads
    /// and writes and no one else's during the call.
    unsafe fn activate(&self, c: *mut f32, ldc: usize, rows: usize, cols: usize) {
        if let Some(act) = self.act {
            // SAFETY: the caller's contract.
            unsafe { crate::ops::apply_activation_strided(c, ldc, rows, cols, act) };
        }
    }
}

/// The int8 kernels' first depth block also does [`Tile::init`]'s job: that
/// separate pass over every tile (write the bias, then read it back to add
/// the product) was 8% of an int8 text forward (Zen 5).
struct FirstBlock<'a> {
    /// The tile rows' minima (`rows` of them).
    mins: &'a [f32],
    /// The columns' scaled weight sums `s_w·Σq_w`.
    sums: &'a [f32; NR],
    /// The columns' bias (padded to whole panels), zeros without one.
    bias: &'a [f32; NR],
    /// Store into C ([`Init::Bias`]) rather than add to it ([`Init::AddToOutput`]).
    overwrite: bool,
}

impl FirstBlock<'_> {
    /// What row `r`'s column `j` gets besides its scaled sum.
    #[inline(always)]
    fn offset(&self, r: usize, j: usize) -> f32 {
        self.mins[r] * self.sums[j] + self.bias[j]
    }
}

#[derive(Clone, Copy)]
enum Micro {
    Float(MicroF32),
    /// An f32 kernel on bf16 weights, each weight block widened to f32 into
    /// a scratch panel its row tiles read: for CPUs without fast bf16
    /// arithmetic. A block's first tile widens it as it sums where there is a
    /// kernel that does ([`MicroWidening`]), else a pass
    /// ([`widen_bf16_pairs`]) does before the tiles.
    WidenedBf16(MicroF32, Option<MicroWidening>),
    Int8(MicroInt8, ActivationLevels),
}

/// The top of the range an int8 kernel's activations are quantised to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ActivationLevels {
    /// 0..=255: kernels whose u8 × i8 products are summed in i32 (`vpdpbusd`,
    /// AMX, the portable loops).
    U8,
    /// 0..=127: AVX2's `vpmaddubsw` adds two u8 × i8 products into a
    /// saturating i16, which 2 · 127 · 127 fits and 2 · 255 · 127 does not.
    /// Half the resolution of [`Self::U8`] buys twice the products per
    /// multiply (see `x86::micro_int8_avx2`).
    U7,
}

impl ActivationLevels {
    fn top(self) -> f32 {
        match self {
            Self::U8 => 255.0,
            Self::U7 => 127.0,
        }
    }
}

/// A float kernel's twins for a tile's first depth block, each writing the
/// bias in the same pass as the sums instead of `Tile::init`'s pass before.
#[derive(Clone, Copy)]
struct FirstBlockKernels {
    /// For a product of one depth block that overwrites C (`Init::Bias`): C
    /// is written once instead of set to the bias and read back for the add.
    /// At depth 128 (the CLIP training demo) that ran 1.04–1.14× faster,
    /// alternating in one process (Intel AMX VM); over the first of several
    /// blocks (depth 768) it measured 0.90–1.05×, so deeper products keep the
    /// add.
    overwrite: MicroF32First,
    /// For a product that adds onto C (`Init::AddToOutput`, a residual) with
    /// a bias, at any depth: C = (C + bias) + sums in one pass, where
    /// `Tile::init` added the bias in a pass of its own (1.1% of a bf16 ViT
    /// forward, AMD Zen 4).
    onto_output: MicroF32First,
    /// `overwrite` that also applies the activation to the tile before its
    /// one store, where there is one (`x86::micro_f32_avx512_first_activated`).
    overwrite_activated: Option<fn(Activation) -> MicroF32First>,
}

#[derive(Clone, Copy)]
struct Kernel {
    mr: usize,
    /// Kernels for tiles of fewer than `mr` rows, `[rows - 1]`, where there
    /// are any: without them a one-row decoding step multiplies `mr - 1` rows
    /// of zero padding.
    few: &'static [MicroF32],
    /// The full tile's kernels for a first depth block that also do
    /// `Tile::init`'s work, where there are any.
    first: Option<FirstBlockKernels>,
    /// Depth (`kc`: KC words of A per row, so int8, four depths a word, goes
    /// 4× deeper and writes C a quarter as often, bf16 pairs 2×) and rows of
    /// one packed block of A.
    blocks: Blocks,
    pack_a: PackA,
    micro: Micro,
}

impl Kernel {
    /// The register-tile kernel for `precision` at `isa` (AMX's f32 products
    /// are AVX-512's; its bf16 and int8 ones go to `gemm_amx` instead).
    fn select(isa: Isa, precision: Precision) -> Kernel {
        let isa = isa.min(Isa::Avx512);
        #[cfg(target_arch = "x86_64")]
        {
            match (isa, precision) {
                (Isa::Avx512, Precision::F32) => {
                    return Kernel {
                        mr: x86::MR_512,
                        few: &x86::FEW_F32_AVX512,
                        first: Some(FirstBlockKernels {
                            overwrite: x86::micro_f32_avx512_first::<false>,
                            onto_output: x86::micro_f32_avx512_first::<true>,
                            overwrite_activated: Some(x86::micro_f32_avx512_first_activated),
                        }),
                        blocks: Blocks::for_float_avx512(),
                        pack_a: pack_a_f32_avx512::<{ x86::MR_512 }>,
                        micro: Micro::Float(x86::micro_f32_avx512),
                    }
                }
                (Isa::Avx512, Precision::Bf16) if Isa::has_bf16_dot() => {
                    return Kernel {
                        mr: x86::MR_512,
                        few: &x86::FEW_BF16_AVX512,
                        first: Some(FirstBlockKernels {
                            overwrite: x86::micro_bf16_avx512_first::<false>,
                            onto_output: x86::micro_bf16_avx512_first::<true>,
                            overwrite_activated: None,
                        }),
                        blocks: Blocks::for_bf16_dot(),
                        pack_a: pack_a_bf16_pairs,
                        micro: Micro::Float(x86::micro_bf16_avx512),
                    }
                }
                (Isa::Avx512 | Isa::Avx2, Precision::Bf16) => return Kernel::widened_bf16(isa),
                (Isa::Avx512, Precision::Int8) if Isa::has_int8_dot() => {
                    return Kernel {
                        mr: x86::MR_512,
                        few: &[],
                        first: None,
                        blocks: Blocks {
                            kc: 4 * KC,
                            ..Blocks::SHALLOW
                        },
                        pack_a: pack_a_u8_groups,
                        micro: Micro::Int8(x86::micro_int8_avx512, ActivationLevels::U8),
                    }
                }
                // AVX-512 without VNNI (Skylake-SP) has AVX2 too. CPUs with
                // AVX-VNNI sum in i32 on the same tiles, at 256 levels.
                (Isa::Avx512 | Isa::Avx2, Precision::Int8) => {
                    let (mr, micro) = if isa == Isa::Avx2 && Isa::has_avx_vnni() {
                        let micro = x86::micro_int8_avxvnni;
                        (x86::MR_256_VNNI, Micro::Int8(micro, ActivationLevels::U8))
                    } else {
                        let micro = x86::micro_int8_avx2;
                        (x86::MR_256_INT8, Micro::Int8(micro, ActivationLevels::U7))
                    };
                    return Kernel {
                        mr,
                        few: &[],
                        first: None,
                        blocks: Blocks {
                            kc: 4 * KC,
                            ..Blocks::SHALLOW
                        },
                        pack_a: pack_a_u8_groups,
                        micro,
                    };
                }
                (Isa::Avx2, Precision::F32) => {
                    return Kernel {
                        mr: x86::MR_256,
                        few: &x86::FEW_F32_AVX2,
                        first: Some(FirstBlockKernels {
                            overwrite: x86::micro_f32_avx2_first::<false>,
                            onto_output: x86::micro_f32_avx2_first::<true>,
                            overwrite_activated: None,
                        }),
                        blocks: Blocks::for_float_avx2(),
                        pack_a: pack_a_f32_avx2::<{ x86::MR_256 }>,
                        micro: Micro::Float(x86::micro_f32_avx2),
                    }
                }
                _ => {}
            }
        }
        let _ = isa;
        match precision {
            Precision::F32 => Kernel {
                mr: portable::MR,
                few: &[],
                first: None,
                blocks: Blocks::SHALLOW,
                pack_a: pack_a_f32,
                micro: Micro::Float(portable::micro_f32),
            },
            Precision::Bf16 => Kernel::widened_bf16(Isa::Portable),
            Precision::Int8 => Kernel {
                mr: portable::MR,
                few: &[],
                first: None,
                blocks: Blocks {
                    kc: 4 * KC,
                    ..Blocks::SHALLOW
                },
                pack_a: pack_a_u8_groups,
                micro: Micro::Int8(portable::micro_int8, ActivationLevels::U8),
            },
        }
    }
}

impl Kernel {
    /// This kernel for `w`: the AVX2 int8 kernel (the one on
    /// [`ActivationLevels::U7`]) on weights of ±63 takes two steps at a time.
    fn for_weights(self, w: &PackedWeights) -> Kernel {
        match (self.micro, &w.panels) {
            #[cfg(target_arch = "x86_64")]
            (Micro::Int8(_, ActivationLevels::U7), Panels::Int8(q))
                if q.levels == WeightLevels::I7 =>
            {
                Kernel {
                    micro: Micro::Int8(x86::micro_int8_avx2_paired, ActivationLevels::U7),
                    ..self
                }
            }
            _ => self,
        }
    }

    /// bf16 weights where there is no fast bf16 arithmetic: `isa`'s f32
    /// kernels on the weights widened a block at a time
    /// ([`Micro::WidenedBf16`]). The f32 kernels' tiles are larger than a
    /// kernel that widens in registers can hold (AVX-512 14 rows against 12,
    /// AVX2 6 against 5), and widening once per block instead of per tile
    /// takes the shifts off the FMA ports: the widening kernels this
    /// replaced ran 0.89-0.97× f32 (AMX Xeon capped at AVX-512 and AVX2,
    /// 2026-12-05). The weights still take half the memory and traffic.
    fn widened_bf16(isa: Isa) -> Kernel {
        let isa = isa.min(Isa::Avx512);
        let f32 = Kernel::select(isa, Precision::F32);
        let Micro::Float(micro) = f32.micro else {
            unreachable!("f32 products have float kernels")
        };
        let widening: Option<MicroWidening> = match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Some(x86::micro_f32_avx2_widening),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Some(x86::micro_f32_avx512_widening),
            _ => None,
        };
        Kernel {
            micro: Micro::WidenedBf16(micro, widening),
            ..f32
        }
    }
}

/// The most rows any micro-kernel takes (AVX-512's 14).
const MAX_MR: usize = 16;

/// The panel walk every packer shares: MR-row panels of `units` depth steps,
/// `[step][r]`, where `unit(row, step)` makes one packed word from a row of the
/// block; rows past the end are zero.
fn pack_panels(
    block: &ABlock,
    mr: usize,
    out: &mut [u32],
    units: usize,
    unit: impl Fn(&[f32], usize) -> u32,
) -> usize {
    pack_rows(
        block.a,
        block.lda,
        block.m0..block.m0 + block.mrows,
        block.k0,
        block.kc,
        mr,
        out,
        units,
        unit,
    )
}

/// [`pack_panels`] on any row-major source: rows `rows` of `a` (row stride
/// `lda`), its elements `k0..k0 + kc` per row.
#[allow(clippy::too_many_arguments)]
fn pack_rows<T: Copy>(
    a: &[T],
    lda: usize,
    rows: std::ops::Range<usize>,
    k0: usize,
    kc: usize,
    mr: usize,
    out: &mut [u32],
    units: usize,
    unit: impl Fn(&[T], usize) -> u32,
) -> usize {
    let (m0, mrows) = (rows.start, rows.len());
    assert!(mr <= MAX_MR, "a micro-kernel of {mr} rows");
    let stride = units * mr;
    for (i, r0) in (m0..m0 + mrows).step_by(mr).enumerate() {
        let panel = &mut out[i * stride..(i + 1) * stride];
        let rows = mr.min(m0 + mrows - r0);
        if rows < mr {
            panel.fill(0);
        }
        // Step-major: the writes run contiguously through the panel, and the
        // reads are `rows` forward streams (a row-major walk would write with a
        // stride of `mr` words, which cost more than the copy itself).
        let mut sources = [&a[..0]; MAX_MR];
        for (r, src) in sources.iter_mut().enumerate().take(rows) {
            *src = &a[(r0 + r) * lda + k0..][..kc];
        }
        for (step, dst) in panel.chunks_exact_mut(mr).enumerate() {
            for (d, src) in dst.iter_mut().zip(&sources[..rows]) {
                *d = unit(src, step);
            }
        }
    }
    stride
}

/// f32 panels `[k][r]`.
fn pack_a_f32(block: &ABlock, mr: usize, out: &mut [u32]) -> usize {
    pack_panels(block, mr, out, block.kc, |row, k| row[k].to_bits())
}

/// [`pack_a_f32`] for the AVX-512 kernels' R-row panels.
#[cfg(target_arch = "x86_64")]
fn pack_a_f32_avx512<const R: usize>(block: &ABlock, mr: usize, out: &mut [u32]) -> usize {
    assert!(Isa::best_supported() >= Isa::Avx512);
    // SAFETY: AVX-512F is present (asserted: this packer is chosen only with
    // the AVX-512 kernels).
    unsafe { pack_a_f32_panels::<R>(block, mr, out, x86::pack_f32_panel_avx512::<R>) }
}

/// [`pack_a_f32_avx512`] for the AVX2 kernels' R-row panels.
#[cfg(target_arch = "x86_64")]
fn pack_a_f32_avx2<const R: usize>(block: &ABlock, mr: usize, out: &mut [u32]) -> usize {
    assert!(Isa::best_supported() >= Isa::Avx2);
    // SAFETY: AVX2 (so AVX) is present (asserted).
    unsafe { pack_a_f32_panels::<R>(block, mr, out, x86::pack_f32_panel_avx2::<R>) }
}

/// f32 panels of R rows: full panels through `panel(rows, lda, kc, out)`, a
/// register transpose; a last partial panel by the scalar walk.
///
/// # Safety
/// `panel` may be called on this CPU and packs R rows of `kc` floats at stride
/// `lda` into `kc · R` floats.
#[cfg(target_arch = "x86_64")]
unsafe fn pack_a_f32_panels<const R: usize>(
    block: &ABlock,
    mr: usize,
    out: &mut [u32],
    panel: unsafe fn(*const f32, usize, usize, *mut f32),
) -> usize {
    assert_eq!(mr, R);
    pack_full_panels(
        block,
        mr,
        out,
        block.kc,
        |rows, dst| {
            // SAFETY: `panel` runs here (the caller's contract); `rows` holds R
            // rows of kc floats at stride lda and `dst` kc · R words
            // (`pack_full_panels`' promise).
            unsafe { panel(rows.as_ptr(), block.lda, block.kc, dst.as_mut_ptr().cast()) };
        },
        |tail, dst| {
            pack_a_f32(tail, mr, dst);
        },
    )
}

/// The walk every register-transpose packer shares: each full `mr`-row panel
/// of `units` words per row goes to `panel(rows, dst)`, where `rows` starts at
/// the panel's first row and holds its `mr` rows of `block.kc` values (at
/// stride `block.lda`) and `dst` is the panel's `units · mr` words; a last
/// partial panel goes to `tail(its rows' block, the rest of out)`. Returns the
/// panel stride.
#[cfg(target_arch = "x86_64")]
fn pack_full_panels(
    block: &ABlock,
    mr: usize,
    out: &mut [u32],
    units: usize,
    panel: impl Fn(&[f32], &mut [u32]),
    tail: impl FnOnce(&ABlock, &mut [u32]),
) -> usize {
    let stride = units * mr;
    let full = block.mrows / mr;
    assert!(out.len() >= block.mrows.div_ceil(mr) * stride);
    for (i, dst) in out.chunks_exact_mut(stride).take(full).enumerate() {
        let rows = &block.a[(block.m0 + i * mr) * block.lda + block.k0..];
        // The panel's last row ends inside `a`: `block.a` holds every row of
        // the block, `kc` values from `k0` each.
        assert!(rows.len() >= (mr - 1) * block.lda + block.kc);
        panel(rows, dst);
    }
    if full * mr < block.mrows {
        let rest = ABlock {
            m0: block.m0 + full * mr,
            mrows: block.mrows - full * mr,
            ..*block
        };
        tail(&rest, &mut out[full * stride..]);
    }
    stride
}

/// bf16 pairs `(a[k], a[k+1])` in one u32 per row, panels `[k/2][r]`. Whole
/// 14-row panels are rounded and transposed in registers in one pass; the rest
/// (a last partial panel, or no AVX-512) by [`pack_a_bf16_pairs_rounding_rows`].
fn pack_a_bf16_pairs(block: &ABlock, mr: usize, out: &mut [u32]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if mr == x86::MR_512 && Isa::best_supported() >= Isa::Avx512 {
        let panel = |rows: &[f32], dst: &mut [u32]| {
            // SAFETY: the CPU has AVX-512F (checked); `rows` holds MR_512 rows
            // of kc floats at stride lda and `dst` the panel's MR_512 · kc/2
            // words (`pack_full_panels`' promise).
            unsafe {
                x86::pack_bf16_pairs_panel_avx512::<{ x86::MR_512 }>(
                    rows.as_ptr(),
                    block.lda,
                    block.kc,
                    dst.as_mut_ptr(),
                )
            }
        };
        let tail = |rest: &ABlock, dst: &mut [u32]| {
            pack_a_bf16_pairs_rounding_rows(rest, mr, dst);
        };
        return pack_full_panels(block, mr, out, block.kc.div_ceil(2), panel, tail);
    }
    pack_a_bf16_pairs_rounding_rows(block, mr, out)
}

/// [`pack_a_bf16_pairs`] by rounding the block's rows first (16 values at a
/// time where the CPU has AVX-512: rounding one value per packed word cost 9%
/// of a bf16 forward on Zen 4), then walking their words into panels: any row
/// count, any CPU. Little endian, a bf16 row read as u32 words is the pairs.
fn pack_a_bf16_pairs_rounding_rows(block: &ABlock, mr: usize, out: &mut [u32]) -> usize {
    BF16_ROWS.with_borrow_mut(|rounded| {
        let kce = block.kc.next_multiple_of(2);
        rounded.resize(block.mrows * kce, 0);
        for (r, dst) in rounded.chunks_exact_mut(kce).enumerate() {
            let src = &block.a[(block.m0 + r) * block.lda + block.k0..][..block.kc];
            round_to_bf16(src, &mut dst[..block.kc]);
            dst[block.kc..].fill(0);
        }
        pack_rows(
            rounded,
            kce,
            0..block.mrows,
            0,
            kce,
            mr,
            out,
            kce / 2,
            |row, kp| row[2 * kp] as u32 | (row[2 * kp + 1] as u32) << 16,
        )
    })
}

thread_local! {
    /// [`pack_a_bf16_pairs`]'s rows rounded to bf16, reused across calls.
    static BF16_ROWS: RefCell<Vec<u16>> = const { RefCell::new(Vec::new()) };
}

/// `dst[i] = f32_to_bf16(src[i])`, bit for bit.
fn round_to_bf16(src: &[f32], dst: &mut [u16]) {
    #[cfg(target_arch = "x86_64")]
    if Isa::detected() >= Isa::Avx512 {
        // SAFETY: the detected level is at most what the CPU supports.
        return unsafe { x86::round_to_bf16_avx512(src, dst) };
    }
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = f32_to_bf16(x);
    }
}

/// u8 quantised groups of four depths in one u32 per row, panels `[k/4][r]`.
/// Little endian: byte `t` of the word pairs with weight byte `t` in `vpdpbusd`.
fn pack_a_u8_groups(block: &ABlock, mr: usize, out: &mut [u32]) -> usize {
    // A panel of words is a transposed block of the quantised rows' words:
    // what the f32 packer does to f32 bits. Its register transpose replaced a
    // scalar walk that was ~4% of an int8 text forward (Zen 5).
    #[cfg(target_arch = "x86_64")]
    if (mr == x86::MR_512 && Isa::best_supported() >= Isa::Avx512)
        || ((mr == x86::MR_256_INT8 || mr == x86::MR_256_VNNI)
            && Isa::best_supported() >= Isa::Avx2)
    {
        let q = block
            .quant
            .expect("int8 kernels get the rows' quantisation");
        debug_assert_eq!(block.k0 % 4, 0, "depth blocks start at whole groups");
        let words = ABlock {
            a: q.words_as_f32(),
            quant: None,
            lda: q.stride / 4,
            m0: block.m0,
            mrows: block.mrows,
            k0: block.k0 / 4,
            kc: block.kc.div_ceil(4),
        };
        return match mr {
            x86::MR_512 => pack_a_f32_avx512::<{ x86::MR_512 }>(&words, mr, out),
            x86::MR_256_VNNI => pack_a_f32_avx2::<{ x86::MR_256_VNNI }>(&words, mr, out),
            _ => pack_a_f32_avx2::<{ x86::MR_256_INT8 }>(&words, mr, out),
        };
    }
    let q = block
        .quant
        .expect("int8 kernels get the rows' quantisation");
    // Rows padded to whole groups of four (so is K in the weights).
    let kc = block.kc.next_multiple_of(4);
    let rows = block.m0..block.m0 + block.mrows;
    pack_rows(
        q.bytes(),
        q.stride,
        rows,
        block.k0,
        kc,
        mr,
        out,
        kc / 4,
        |row, g| u32::from_le_bytes(row[4 * g..4 * g + 4].try_into().expect("4 bytes")),
    )
}

/// Round to nearest even, as PyTorch's `.to(torch.bfloat16)`.
#[inline]
pub fn f32_to_bf16(x: f32) -> u16 {
    if x.is_nan() {
        return 0x7fc0;
    }
    let bits = x.to_bits();
    let round = 0x7fff + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

#[inline]
pub fn bf16_to_f32(x: u16) -> f32 {
    f32::from_bits((x as u32) << 16)
}

/// Adds an `acc` tile (row-major, `NR` wide) into C, or with `overwrite`
/// stores it there.
///
/// # Safety
/// The `rows × cols` floats at `c` (row stride `ldc`) are valid for reads and
/// writes and no one else touches them meanwhile.
#[inline(always)]
unsafe fn add_tile(
    acc: &[[f32; NR]],
    c: *mut f32,
    ldc: usize,
    rows: usize,
    cols: usize,
    overwrite: bool,
) {
    for (r, acc_row) in acc.iter().enumerate().take(rows) {
        // SAFETY: r < rows: row r of the tile, exclusively ours by the contract.
        let out = unsafe { std::slice::from_raw_parts_mut(c.add(r * ldc), cols) };
        if overwrite {
            out.copy_from_slice(&acc_row[..cols]);
        } else {
            for (o, &v) in out.iter_mut().zip(acc_row) {
                *o += v;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod amx;
mod portable;
mod transposed;
#[cfg(target_arch = "x86_64")]
mod x86;

pub(crate) use transposed::transposed_product;

/// Whether the AMX tiles can run here (the CPU has AMX-BF16 and AMX-INT8 and
/// Linux granted this process the tile state, requested on the first call).
pub(crate) fn amx_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        amx::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// `a (m × w.k) · Wᵀ + bias` on `kernel`, into an output of NaNs.
    ///
    /// # Safety
    /// The CPU has the features of `isa` and of `kernel`.
    unsafe fn product_on(
        isa: Isa,
        kernel: &Kernel,
        a: &[f32],
        m: usize,
        w: &PackedWeights,
    ) -> Vec<f32> {
        assert_eq!(a.len(), m * w.k);
        let mut c = vec![f32::NAN; m * w.n];
        if m > 0 && w.n > 0 {
            // SAFETY: `c` is the initialised m × n output; the CPU as our
            // caller guarantees.
            unsafe { gemm_with_kernel(isa, kernel, a, m, w, c.as_mut_ptr(), Init::Bias, None) };
        }
        c
    }

    /// [`product_on`] onto a residual C (`init`: `Init::AddToOutput` adds
    /// the product to it, `Init::Bias` overwrites it), then `act`.
    ///
    /// # Safety
    /// As for [`product_on`].
    unsafe fn product_onto(
        isa: Isa,
        kernel: &Kernel,
        (a, m, w): (&[f32], usize, &PackedWeights),
        init: Init,
        act: Option<Activation>,
    ) -> Vec<f32> {
        let mut c: Vec<f32> = (0..m * w.n).map(|i| (i % 7) as f32 - 3.0).collect();
        // SAFETY: `c` is the initialised m × n output; the CPU as our caller
        // guarantees.
        unsafe { gemm_with_kernel(isa, kernel, a, m, w, c.as_mut_ptr(), init, act) };
        c
    }

    /// Deterministic activations (`m × k`) and weights (`n × k`, with a
    /// bias) packed at `precision`.
    fn product_inputs(
        m: usize,
        n: usize,
        k: usize,
        precision: Precision,
    ) -> (Vec<f32>, PackedWeights) {
        let (a, w, bias) = product_values(m, n, k);
        (a, PackedWeights::from_rows(&w, n, k, Some(bias), precision))
    }

    /// Panics naming `what` unless `got` and `want` hold the same bits.
    fn assert_same_bits(got: &[f32], want: &[f32], what: String) {
        assert_eq!(got.len(), want.len(), "{what}: the lengths differ");
        let same = got
            .iter()
            .zip(want)
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{what}: the result differs");
    }

    /// [`product_inputs`]' activations, weights and bias, unpacked.
    fn product_values(m: usize, n: usize, k: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0)
            .collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) / 30.0)
            .collect();
        let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.1).collect();
        (a, w, bias)
    }

    /// Grouped depth blocks ([`Blocks::group`]) change only the order in
    /// which tiles are visited, not the order of any tile's sums: the output
    /// is bit for bit the ungrouped one, for each precision's kernel on the
    /// portable and this CPU's x86 kernels, with a residual to add to and an
    /// activation, over whole and partial groups and tiles.
    #[test]
    fn grouped_depth_blocks_give_the_same_bits() {
        let mut isas = vec![Isa::Portable];
        if Isa::best_supported() > Isa::Portable {
            isas.push(Isa::best_supported().min(Isa::Avx512));
        }
        for isa in isas {
            for precision in [Precision::F32, Precision::Bf16, Precision::Int8] {
                let kernel = Kernel::select(isa, precision);
                // Blocks an eighth as deep: several groups at a small depth
                // (multiples of every kernel's pair or group of depths).
                let kc = kernel.blocks.kc / 8;
                let blocks = |group| Blocks {
                    kc,
                    group,
                    ..kernel.blocks
                };
                let single = Kernel {
                    blocks: blocks(1),
                    ..kernel
                };
                let grouped = Kernel {
                    blocks: blocks(GROUP_BLOCKS),
                    ..kernel
                };
                for (m, n, k) in [(37, 70, 7 * kc + 5), (5, 33, kc), (20, 64, 2 * kc)] {
                    let (a, packed) = product_inputs(m, n, k, precision);
                    let run = |kernel: &Kernel| {
                        let act = Some(Activation::QuickGelu);
                        // SAFETY: `isa` is supported here and `kernel` selected for it.
                        unsafe {
                            product_onto(isa, kernel, (&a, m, &packed), Init::AddToOutput, act)
                        }
                    };
                    let (want, got) = (run(&single), run(&grouped));
                    for (i, (x, y)) in got.iter().zip(&want).enumerate() {
                        assert!(
                            x.to_bits() == y.to_bits() && x.is_finite(),
                            "{isa:?} {precision:?} {m}x{n}x{k} [{i}]: {x} vs {y}"
                        );
                    }
                }
            }
        }
    }

    /// The AVX-512 f32 and `vdpbf16ps` kernels on the shallow and the deep
    /// blocks (which CPU takes which is [`Isa::float_blocks`]'s choice, so
    /// each CPU runs only one of them in `tests/gemm.rs`) agree up to the
    /// order of their f32 sums, with the first depth block written by the
    /// `first` kernel or onto a bias, over partial tiles and several blocks.
    #[test]
    fn shallow_and_deep_float_blocks_agree() {
        if Isa::best_supported() < Isa::Avx512 {
            return;
        }
        let mut precisions = vec![Precision::F32];
        if Isa::has_bf16_dot() {
            precisions.push(Precision::Bf16);
        }
        for precision in precisions {
            let kernel = Kernel::select(Isa::Avx512, precision);
            let on = |kc, mc| Kernel {
                blocks: Blocks {
                    kc,
                    mc,
                    ..Blocks::SHALLOW
                },
                ..kernel
            };
            let shallow = on(KC, MC);
            let deep = on(DEEP_KC, MC);
            let deep_wide = on(DEEP_KC, DEEP_MC);
            for (m, n, k) in [
                (230, 40, 800),
                (29, 70, DEEP_KC),
                (5, 33, 300),
                (113, 64, 1600),
            ] {
                let (a, packed) = product_inputs(m, n, k, precision);
                // SAFETY: the CPU has AVX-512F (checked above), and BF16 for
                // the bf16 kernel (`has_bf16_dot`).
                let (want, got, got_wide) = unsafe {
                    (
                        product_on(Isa::Avx512, &shallow, &a, m, &packed),
                        product_on(Isa::Avx512, &deep, &a, m, &packed),
                        product_on(Isa::Avx512, &deep_wide, &a, m, &packed),
                    )
                };
                for (i, ((x, z), y)) in got.iter().zip(&got_wide).zip(&want).enumerate() {
                    let close = |x: f32| (x - y).abs() <= 1e-4 * (1.0 + y.abs());
                    assert!(
                        close(*x) && close(*z),
                        "{precision:?} {m}x{n}x{k} [{i}]: {x}, {z} vs {y}"
                    );
                }
            }
        }
    }

    /// bf16 weights on the f32 kernels ([`Micro::WidenedBf16`]) give bit for
    /// bit what those kernels give on f32 weights of the same rounded values:
    /// widened by a block's first tile as it sums, or by a pass where that
    /// tile is short or there is no widening kernel (portable); over an odd
    /// depth, several depth blocks, tail columns and tiles, with a residual
    /// to add onto or activations, with and without a bias: the widening tile
    /// stores what the other tiles' first-block kernels store (bias,
    /// activation, residual), so each of those is a case. The AVX-512 one runs here even on CPUs
    /// whose bf16 products take `vdpbf16ps` instead.
    #[test]
    fn widened_bf16_is_f32_on_the_rounded_weights() {
        let isas = [Isa::Portable, Isa::Avx2, Isa::Avx512];
        for isa in isas.into_iter().filter(|&isa| isa <= Isa::best_supported()) {
            let kernel = Kernel::widened_bf16(isa);
            let Micro::WidenedBf16(micro, _) = kernel.micro else {
                panic!("{} bf16 widens", isa.name())
            };
            let on_f32 = Kernel {
                micro: Micro::Float(micro),
                ..kernel
            };
            let (mr, kc) = (kernel.mr, kernel.blocks.kc);
            for (m, n, k) in [
                (1, 1, 1),
                (5, 33, 7),
                (mr, 45, 513),
                (3 * mr + 2, 70, 2 * kc + 1),
                (40, 64, 300),
                (250, 40, kc + 32),
            ] {
                let (a, w, bias) = product_values(m, n, k);
                let rounded: Vec<f32> = w.iter().map(|&x| bf16_to_f32(f32_to_bf16(x))).collect();
                for bias in [Some(bias), None] {
                    let has_bias = bias.is_some();
                    let pairs = PackedWeights::from_rows(&w, n, k, bias.clone(), Precision::Bf16);
                    let floats = PackedWeights::from_rows(&rounded, n, k, bias, Precision::F32);
                    for (init, act) in [
                        (Init::Bias, Some(Activation::QuickGelu)),
                        (Init::Bias, Some(Activation::GeluTanh)),
                        (Init::Bias, None),
                        (Init::AddToOutput, None),
                    ] {
                        // SAFETY: the CPU has `isa` (filtered above).
                        let (got, want) = unsafe {
                            (
                                product_onto(isa, &kernel, (&a, m, &pairs), init, act),
                                product_onto(isa, &on_f32, (&a, m, &floats), init, act),
                            )
                        };
                        let case = format!(
                            "{} {m}x{n}x{k} {init:?} {act:?} bias {has_bias}",
                            isa.name()
                        );
                        assert_same_bits(&got, &want, case);
                    }
                }
            }
        }
    }

    /// The AVX2 int8 kernel that adds two steps' pair sums in i16
    /// (`x86::micro_int8_avx2_paired`, chosen for ±63 weights) gives bit for
    /// bit what the one-step kernel gives on the same weights: over odd
    /// group counts, several depth blocks, tail rows and columns, and rows
    /// at the i16 bound (every activation at level 127 against weights all
    /// at +63 or all at -63: four products of 127 · 63 per i16 sum).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn paired_avx2_int8_matches_the_one_step_kernel_bit_for_bit() {
        if Isa::best_supported() < Isa::Avx2 {
            return;
        }
        // Built here: on CPUs with AVX-VNNI the AVX2 level selects that kernel.
        let one_step = Kernel {
            mr: x86::MR_256_INT8,
            micro: Micro::Int8(x86::micro_int8_avx2, ActivationLevels::U7),
            ..Kernel::select(Isa::Avx2, Precision::Int8)
        };
        for (m, n, k) in [(1, 1, 1), (5, 33, 7), (9, 45, 8 * KC + 12), (13, 70, 300)] {
            let (mut a, mut w, bias) = product_values(m, n, k);
            // Row 0: one value at the minimum, the rest at the maximum (level
            // 127); weight rows 0 and 1 all positive, all negative.
            a[..k].fill(1.0);
            a[0] = -1.0;
            w[..k].fill(0.5);
            if n > 1 {
                w[k..2 * k].fill(-0.5);
            }
            let row = |j: usize| &w[j * k..(j + 1) * k];
            let kp = k.next_multiple_of(K_ALIGN_INT8);
            let panels = Panels::Int8(pack_int8(n, k, kp, &row, WeightLevels::I7));
            let packed = PackedWeights::with_panels(n, k, kp, panels, Some(bias));
            let paired = one_step.for_weights(&packed);
            let Micro::Int8(micro, _) = paired.micro else {
                panic!("an int8 kernel")
            };
            assert!(std::ptr::fn_addr_eq(
                micro,
                x86::micro_int8_avx2_paired as MicroInt8
            ));
            for init in [Init::Bias, Init::AddToOutput] {
                // SAFETY: the CPU has AVX2 (checked above).
                let (got, want) = unsafe {
                    (
                        product_onto(Isa::Avx2, &paired, (&a, m, &packed), init, None),
                        product_onto(Isa::Avx2, &one_step, (&a, m, &packed), init, None),
                    )
                };
                assert_same_bits(&got, &want, format!("{m}x{n}x{k} {init:?}"));
            }
        }
    }

    /// The AVX-VNNI int8 kernel (chosen only where AVX2 is the best level, so
    /// run here directly where the CPU has the instruction) agrees with the
    /// portable int8 kernel on the same 256-level activations and weights:
    /// the same integer sums, scaled back to floats in another order.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx_vnni_int8_matches_portable() {
        if Isa::best_supported() < Isa::Avx2 || !std::arch::is_x86_feature_detected!("avxvnni") {
            return;
        }
        let vnni = Kernel {
            mr: x86::MR_256_VNNI,
            micro: Micro::Int8(x86::micro_int8_avxvnni, ActivationLevels::U8),
            ..Kernel::select(Isa::Avx2, Precision::Int8)
        };
        let portable = Kernel::select(Isa::Portable, Precision::Int8);
        for (m, n, k) in [(1, 1, 1), (5, 33, 7), (9, 45, 8 * KC + 12), (13, 70, 300)] {
            let (a, packed) = product_inputs(m, n, k, Precision::Int8);
            // SAFETY: the CPU has AVX2 and AVX-VNNI (checked above).
            let (got, want) = unsafe {
                (
                    product_on(Isa::Avx2, &vnni, &a, m, &packed),
                    product_on(Isa::Portable, &portable, &a, m, &packed),
                )
            };
            for (i, (x, y)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                    "{m}x{n}x{k} [{i}]: {x} vs {y}"
                );
            }
        }
    }

    /// The few-row kernels and the first-block twins ([`FirstBlockKernels`])
    /// give every output bit for bit what the full
    /// kernel alone gives it after `Tile::init` (a row among zero padding),
    /// for every tile height and tail width, over one and several depth
    /// blocks, with and without a residual to add onto.
    #[test]
    fn few_row_and_first_block_kernels_match_the_plain_kernel_bit_for_bit() {
        let mut kernels = vec![];
        for isa in [Isa::Avx2, Isa::Avx512] {
            if Isa::best_supported() >= isa {
                // bf16: `vdpbf16ps` or the f32 kernels on widened weights.
                kernels.extend([(isa, Precision::F32), (isa, Precision::Bf16)]);
            }
        }
        for (isa, precision) in kernels {
            let kernel = Kernel::select(isa, precision);
            assert!(
                kernel.first.is_some(),
                "{} {precision:?} has first-block kernels",
                isa.name()
            );
            assert_eq!(
                kernel.few.len(),
                kernel.mr - 1,
                "{} {precision:?} has few-row kernels",
                isa.name()
            );
            let plain = Kernel {
                few: &[],
                first: None,
                ..kernel
            };
            let n = 45;
            for k in [100, kernel.blocks.kc + 38] {
                for m in 1..=2 * kernel.mr + 1 {
                    let (a, packed) = product_inputs(m, n, k, precision);
                    for init in [Init::Bias, Init::AddToOutput] {
                        let run = |kernel: &Kernel| {
                            // SAFETY: the CPU has `isa` (checked above).
                            unsafe { product_onto(isa, kernel, (&a, m, &packed), init, None) }
                        };
                        let (got, want) = (run(&kernel), run(&plain));
                        let what = format!("{} {precision:?} {m}x{n}x{k} {init:?}", isa.name());
                        assert_same_bits(&got, &want, what);
                    }
                }
            }
        }
    }

    #[test]
    fn simd_quantisers_match_the_scalar_one() {
        let mut row: Vec<f32> = (0..300)
            .map(|i| ((i * 29 % 61) as f32 - 20.0) * 0.37)
            .collect();
        row[5] = f32::NAN;
        row[250] = f32::NAN;
        for len in [0, 1, 7, 8, 9, 16, 63, 64, 65, 83, 128, 200, 300] {
            let row = &row[..len];
            let mut want = vec![0u8; len];
            for top in [255.0, 127.0] {
                let range = quantise_row(row, &mut want, top);
                assert!(want.iter().all(|&q| q as f32 <= top));
                if Isa::best_supported() >= Isa::Avx2 {
                    let mut got = vec![0u8; len];
                    // SAFETY: the CPU has AVX2 (checked).
                    assert_eq!(unsafe { x86::quantise_row_avx2(row, &mut got, top) }, range);
                    assert_eq!(got, want, "avx2, {len} values to {top}");
                }
                if Isa::best_supported() >= Isa::Avx512 {
                    let mut got = vec![0u8; len];
                    // SAFETY: the CPU has AVX-512F (checked).
                    let got_range = unsafe { x86::quantise_row_avx512(row, &mut got, top) };
                    assert_eq!(got_range, range);
                    assert_eq!(got, want, "avx512, {len} values to {top}");
                }
            }
        }
    }

    /// The AVX512-BF16 rounding the AMX paths use: the scalar rounding's bits
    /// on normal values, ties and signed zeros, NaN kept NaN, subnormals zero
    /// (what the tiles read them as); the split's parts as `split_to_bf16`.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn native_bf16_rounding_matches_the_scalar_one_but_for_subnormals() {
        use std::arch::x86_64::*;
        if !(std::arch::is_x86_feature_detected!("avx512bf16")
            && std::arch::is_x86_feature_detected!("avx512bw"))
        {
            eprintln!("skipped: no AVX512-BF16 on this CPU");
            return;
        }
        let mut src: [f32; 32] = std::array::from_fn(|i| (i as f32 - 13.0) * 0.987_654_3);
        put_rounding_cases(&mut src);
        src[20] = 3.0e38;
        src[21] = -1.234_567_9e-30;
        let want = |x: f32| match x {
            x if x.is_nan() => None,
            x if x.is_subnormal() => Some(0),
            x => Some(f32_to_bf16(x)),
        };
        let check = |got: &[u16], from: &[f32]| {
            for (&g, &x) in got.iter().zip(from) {
                match want(x) {
                    None => assert!(bf16_to_f32(g).is_nan(), "{x} -> {g:#06x}"),
                    Some(w) => assert_eq!(g, w, "{x}"),
                }
            }
        };
        // SAFETY: the CPU has AVX-512F, BW and BF16 (checked); `src` is 32
        // floats, the results 64 bytes each.
        unsafe {
            let (lo, hi) = (
                _mm512_loadu_ps(src.as_ptr()),
                _mm512_loadu_ps(src.as_ptr().add(16)),
            );
            let line: [u16; 32] = std::mem::transmute(x86::bf16_line_native(lo, hi));
            check(&line, &src);
            let half: [u16; 16] = std::mem::transmute(x86::bf16_native_256(hi));
            check(&half, &src[16..]);
            let pairs: [u16; 32] = std::mem::transmute(x86::bf16_pairs_native(lo, hi));
            let interleaved: Vec<f32> = (0..32).map(|w| src[w / 2 + w % 2 * 16]).collect();
            check(&pairs, &interleaved);
            let parts: [[u16; 32]; 3] = std::mem::transmute(x86::split_lines_native((lo, hi)));
            for (i, &x) in src.iter().enumerate() {
                if x.is_finite() && !x.is_subnormal() {
                    let got = [parts[0][i], parts[1][i], parts[2][i]];
                    assert_eq!(got, split_to_bf16(x), "{x}");
                }
            }
        }
    }

    /// Values at 3..9 that bf16 rounding can get wrong: NaN, an infinity,
    /// -0, a subnormal, and two ties.
    fn put_rounding_cases(src: &mut [f32]) {
        src[3] = f32::NAN;
        src[4] = f32::INFINITY;
        src[5] = -0.0;
        src[6] = 1.0e-39;
        src[7] = f32::from_bits(0x3f80_8000); // a tie: rounds to even
        src[8] = f32::from_bits(0x3f81_8000); // a tie: rounds up to even
    }

    #[test]
    fn vector_bf16_rounding_matches_the_scalar_one() {
        let mut src: Vec<f32> = (0..53).map(|i| (i as f32 - 26.0) * 0.123_456_7).collect();
        put_rounding_cases(&mut src); // the subnormal kept, not flushed
        let mut got = vec![0u16; src.len()];
        round_to_bf16(&src, &mut got);
        let want: Vec<u16> = src.iter().map(|&x| f32_to_bf16(x)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn weight_quantisation_rounds_half_away_from_zero() {
        let cases = [
            0.0f32,
            -0.0,
            0.4999999,
            0.5,
            -0.5,
            1.5,
            -1.5,
            2.5,
            126.5,
            127.4,
            200.0,
            -1e9,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            3.7,
            -3.2,
            1e-30,
        ];
        for x in cases {
            assert_eq!(
                quantise_weight(x),
                x.round().clamp(-127.0, 127.0) as i8,
                "{x}"
            );
        }
        for i in -200_000..200_000 {
            let x = i as f32 * 0.000_731;
            assert_eq!(
                quantise_weight(x),
                x.round().clamp(-127.0, 127.0) as i8,
                "{x}"
            );
        }
    }
}

/// How products are cut into tasks, on every architecture (the kernel tests
/// above need x86-64).
#[cfg(test)]
mod blocking_tests {
    use super::*;

    #[test]
    fn a_whole_share_is_one_block_only_between_the_two_row_counts() {
        let blocks = Blocks {
            whole_share_rows: DEEP_MC,
            ..Blocks::SHALLOW
        };
        let mr = 14;
        // 400 rows on 2 threads: 15 tiles (210 rows) a thread, in (112, 224].
        let (wide, parts) = blocks.for_product(400, 2, mr);
        assert_eq!((wide.mc, wide.kc, parts), (DEEP_MC, KC, 2));
        // One thread's 200 rows (a batch of 8 images cut in two parts) are
        // one block as well, its panels whole: there is no other thread.
        assert_eq!(blocks.for_product(200, 1, mr), (wide, 1));
        // 112 rows a thread or fewer already fit one block; 1,600 rows on two
        // threads or 400 on one do not fit 224.
        for (m, threads) in [(224, 2), (1600, 2), (400, 1), (112, 1)] {
            assert_eq!(blocks.for_product(m, threads, mr), (blocks, 1), "{m} rows");
        }
        assert_eq!(
            Blocks::SHALLOW.for_product(400, 2, mr),
            (Blocks::SHALLOW, 1)
        );
    }

    /// The shares of the (tile, panel) cells cover the grid once, each part
    /// the same number of cells to one, in at most three blocks.
    #[test]
    fn shares_cover_the_grid_once_in_equal_parts() {
        for (tiles, panels, parts) in [(13, 24, 2), (13, 72, 2), (3, 5, 2), (50, 96, 4), (7, 1, 3)]
        {
            let mut cells = vec![0; tiles * panels];
            let mut sizes = Vec::new();
            for i in 0..parts {
                let blocks: Vec<_> = share(tiles, panels, parts, i).collect();
                assert!(blocks.len() <= 3, "{blocks:?}");
                let mut size = 0;
                for (t, p) in blocks {
                    for cell in t.flat_map(|t| p.clone().map(move |p| t * panels + p)) {
                        cells[cell] += 1;
                        size += 1;
                    }
                }
                sizes.push(size);
            }
            assert!(cells.iter().all(|&c| c == 1), "{tiles}x{panels}/{parts}");
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(hi - lo <= 1, "{sizes:?}");
        }
    }

    #[test]
    fn steps_ticked_together_ask_for_the_lines_one_at_a_time_would() {
        // After each group of steps, `ticks` has asked for as many lines
        // (and is at the same line) as `tick` once a step, whatever the pace
        // (`every` 1 to 4) and however many lines there are.
        let start = 0x10_0000 as *const u8;
        for lines in [0, 1, 3, 7, 64, 100, 300] {
            for steps in [6, 7, 256, 257] {
                for group in [1, 2, 4, 8] {
                    let ahead = Ahead { at: start, lines };
                    let (mut one, mut together) = (ahead.over(steps), ahead.over(steps));
                    for done in (group..=steps).step_by(group) {
                        (0..group).for_each(|_| one.tick());
                        together.ticks(group);
                        assert_eq!(
                            (together.left, together.at),
                            (one.left, one.at),
                            "{lines} lines, {steps} steps, {group} a group, after {done}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn weight_lines_ahead_are_each_asked_for_once() {
        // Shares of a block over the tiles, then halves of a share, tile
        // the block's lines in order; paced over a tile's depth steps, every
        // line of a share is asked for, and all within its first steps.
        let block = 0x10_0000 as *const u8;
        for (bytes, tiles, steps) in [
            (32 << 10, 15, 256),
            (96 << 10, 16, 768),
            (16 << 10, 40, 128),
        ] {
            let mut next = block;
            for i in 0..tiles {
                let share = Ahead::share(block, bytes, i, tiles);
                assert_eq!(share.at, next);
                for half in 0..2 {
                    let part = share.part(half, 2);
                    assert_eq!(part.at, next);
                    next = next.wrapping_add(part.lines * 64);
                    let mut pacer = part.over(steps);
                    let mut asked_by = 0;
                    for step in 0..steps {
                        let left = pacer.left;
                        pacer.tick();
                        if pacer.left < left {
                            asked_by = step + 1;
                        }
                    }
                    assert_eq!(pacer.left, 0, "{bytes} bytes, tile {i}: lines left unasked");
                    assert!(
                        asked_by <= 4 * part.lines,
                        "asked for late: step {asked_by}"
                    );
                    assert_eq!(pacer.at, next);
                }
            }
            assert_eq!(next, block.wrapping_add(bytes));
        }
        let mut none = Ahead::NONE.over(256);
        none.tick();
        assert_eq!(none.left, 0);
    }

    /// Row parts start on tile boundaries, follow each other, cover all the
    /// rows, and each is within a tile of an equal share.
    #[test]
    fn row_parts_are_whole_tiles_covering_the_rows_in_near_equal_shares() {
        // ViT-B/32 at batch 8 on two threads: 196 and 204 rows, not 210 and 190.
        assert_eq!(row_part(400, 14, 2, 0), 0..196);
        assert_eq!(row_part(400, 14, 2, 1), 196..400);
        for (m, mr, parts) in [
            (400, 14, 4),
            (1600, 14, 8),
            (435, 14, 4),
            (3, 14, 1),
            (20, 14, 2),
            (97, 6, 5),
        ] {
            let mut next = 0;
            for i in 0..parts {
                let rows = row_part(m, mr, parts, i);
                assert_eq!(rows.start, next, "{m} {mr} {parts}: {i}");
                assert!(rows.start.is_multiple_of(mr) && rows.end >= rows.start);
                // Each share is within a tile of m / parts.
                assert!(
                    rows.len().abs_diff(m / parts) <= mr,
                    "{m} {mr} {parts}: {rows:?}"
                );
                next = rows.end;
            }
            assert_eq!(next, m);
        }
    }

    /// Every row tile and weight panel goes to exactly one task, and a whole
    /// share per thread with panels in two parts makes two tasks a thread.
    #[test]
    fn blocks_with_panel_parts_cover_the_output_once() {
        let w = PackedWeights::from_rows(&[0.0; 200 * 8], 200, 8, None, Precision::F32);
        let (m, mr) = (400, 14);
        let (blocks, parts) = Blocks {
            whole_share_rows: DEEP_MC,
            ..Blocks::SHALLOW
        }
        .for_product(m, 2, mr);
        let seen = std::sync::Mutex::new(Vec::new());
        for_each_block(m, &w, mr, blocks.mc, parts, 2, |rows, panels| {
            seen.lock().unwrap().push((rows, panels));
        });
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen.len(), 4, "{seen:?}");
        let mut cells = vec![0; m * w.n.div_ceil(NR)];
        for (rows, panels) in &seen {
            assert!(rows.start % mr == 0 && rows.len() <= blocks.mc, "{rows:?}");
            for r in rows.clone() {
                for p in panels.clone() {
                    cells[r * w.n.div_ceil(NR) + p] += 1;
                }
            }
        }
        assert!(cells.iter().all(|&c| c == 1));
    }
}
