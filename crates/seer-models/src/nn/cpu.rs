//! The transformer block on seer's CPU kernels: the same computation as
//! [`crate::nn::layers::ResidualBlock`], with the weights packed once, q/k/v in one
//! matmul, the attention scale folded into the q weights, bias + residual + GELU
//! fused into the matmuls and every step split across the cores.

use std::ops::Range;

use candle_core::{CpuStorage, Storage, Tensor};
use rayon::prelude::*;
use seer_kernels::gemm::reads_bf16_rows;
use seer_kernels::ops::{
    attend_cached, attention, attention_bf16, attention_bf16_rows_to_rows, attention_lines_fit,
    attention_on_tiles, layer_norm, layer_norm_to_bf16_rows, swiglu, AttentionShape, CachedHead,
};
use seer_kernels::{
    gemm, gemm_bf16_rows, gemm_bf16_rows_to_bf16_rows, Activation as KernelActivation, Bf16Rows,
    Init, Isa, PackedWeights, Precision,
};

use crate::error::Result;
use crate::nn::config::TransformerConfig;
use crate::nn::layers::BlockTensors;

#[derive(Debug)]
pub struct CpuBlock {
    width: usize,
    heads: usize,
    eps: f32,
    ln1: (Vec<f32>, Vec<f32>),
    qkv: PackedWeights,
    /// The output projection, LayerScale's `γ₁` folded in where the model
    /// has one ([`pack_scaled`]).
    out: PackedWeights,
    ln2: (Vec<f32>, Vec<f32>),
    fc1: PackedWeights,
    /// With `γ₂` folded in, as `out`.
    fc2: PackedWeights,
    /// The activation fused into fc1, or None for SwiGLU (gated after fc1).
    activation: Option<KernelActivation>,
    /// Whether and how [`CpuBlock::forward`] cuts its sequences into runs
    /// ([`Chunking::for_block`]).
    chunking: Option<Chunking>,
}

fn vec(t: &Tensor) -> Result<Vec<f32>> {
    Ok(with_f32(t, <[f32]>::to_vec)?)
}

/// Runs `f` on the tensor's f32 values, borrowing them when the tensor is a
/// contiguous CPU f32 tensor (loading then copies each weight once, not twice,
/// and a packed matmul reads its input where it lies).
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    {
        let (storage, layout) = t.storage_and_layout();
        if let (Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) =
            (&*storage, layout.contiguous_offsets())
        {
            return Ok(f(&data[start..end]));
        }
    }
    Ok(f(&t.flatten_all()?.to_vec1::<f32>()?))
}

/// [`with_f32`] for an `f` that can fail: nests, to borrow several tensors.
pub(crate) fn try_with_f32<R>(
    t: &Tensor,
    f: impl FnOnce(&[f32]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    with_f32(t, f)?
}

/// Packs an `(out, in)` weight and its bias for the CPU kernels.
pub(crate) fn pack(w: &Tensor, b: Option<&Tensor>, precision: Precision) -> Result<PackedWeights> {
    let (n, k) = w.dims2()?;
    let bias = b.map(vec).transpose()?;
    Ok(with_f32(w, |data| {
        PackedWeights::from_rows_for_inference(data, n, k, bias, precision)
    })?)
}

/// [`pack`] for a residual branch's last layer with LayerScale `gamma` (one
/// factor per output feature) folded in: `γ ⊙ (W·x + b) = (γ ⊙ W)·x + γ ⊙ b`,
/// row `i` of W and `b[i]` times `γ[i]`. The product then adds onto the
/// residual stream in its own epilogue; the separate pass `x += γ ⊙ branch`
/// over the residual (baseline-x86 code, not dispatched) was 3.8% of DINOv2
/// ViT-B/14 bf16's time at batch 32 (perf, AMX Xeon), and the branch an f32
/// buffer written and read back. The sums differ from scaling after by
/// rounding only (the products' own order of additions moves them as much).
fn pack_scaled(
    w: &Tensor,
    b: &Tensor,
    gamma: Option<&Tensor>,
    precision: Precision,
) -> Result<PackedWeights> {
    let Some(gamma) = gamma else {
        return pack(w, Some(b), precision);
    };
    let (n, k) = w.dims2()?;
    let (gamma, mut bias) = (vec(gamma)?, vec(b)?);
    if gamma.len() != n || bias.len() != n {
        return Err(crate::error::ModelError::Unsupported(format!(
            "LayerScale of {} and bias of {} for a layer of {n} outputs",
            gamma.len(),
            bias.len()
        )));
    }
    let mut scaled = vec(w)?;
    for (row, &g) in scaled.chunks_exact_mut(k).zip(&gamma) {
        row.iter_mut().for_each(|v| *v *= g);
    }
    bias.iter_mut().zip(&gamma).for_each(|(v, &g)| *v *= g);
    Ok(PackedWeights::from_rows_for_inference(
        &scaled,
        n,
        k,
        Some(bias),
        precision,
    ))
}

impl CpuBlock {
    pub(crate) fn new(
        t: BlockTensors,
        cfg: &TransformerConfig,
        precision: Precision,
    ) -> Result<Self> {
        let c = cfg.width;
        // softmax(q·kᵀ/√d): scaling q's weights and bias once is the same product.
        let scale = 1.0 / ((c / cfg.heads) as f32).sqrt();
        let mut qkv_w = Vec::with_capacity(3 * c * c);
        let mut qkv_b = Vec::with_capacity(3 * c);
        for (part_w, part_b) in &t.qkv {
            with_f32(part_w, |d| qkv_w.extend_from_slice(d))?;
            with_f32(part_b, |d| qkv_b.extend_from_slice(d))?;
        }
        if qkv_w.len() != 3 * c * c || qkv_b.len() != 3 * c {
            return Err(crate::error::ModelError::Unsupported(format!(
                "attention projections hold {} weights, expected {}",
                qkv_w.len(),
                3 * c * c
            )));
        }
        qkv_w[..c * c].iter_mut().for_each(|v| *v *= scale);
        qkv_b[..c].iter_mut().for_each(|v| *v *= scale);
        // fc1 first, as before the four were named here: qkv first measured
        // 5–7% slower on DINOv2-S f32 at batch 8 (AMX Xeon; the same kernels,
        // so the buffers' placement, presumably).
        let fc1 = pack(&t.fc1.0, Some(&t.fc1.1), precision)?;
        let qkv = PackedWeights::from_rows_for_inference(&qkv_w, 3 * c, c, Some(qkv_b), precision);
        let out = pack_scaled(&t.out.0, &t.out.1, t.ls1.as_ref(), precision)?;
        let fc2 = pack_scaled(&t.fc2.0, &t.fc2.1, t.ls2.as_ref(), precision)?;
        let chunking = Chunking::for_block(precision, [&qkv, &out, &fc1, &fc2]);
        Ok(Self {
            width: c,
            heads: cfg.heads,
            eps: cfg.layer_norm_eps as f32,
            ln1: (vec(&t.ln1.0)?, vec(&t.ln1.1)?),
            qkv,
            out,
            ln2: (vec(&t.ln2.0)?, vec(&t.ln2.1)?),
            fc1,
            fc2,
            activation: (!t.swiglu).then(|| cfg.activation.into()),
            chunking,
        })
    }

    /// `x += attn(ln1(x))`, then `x += mlp(ln2(x))`, in place; the
    /// sequences a chunk at a time where [`Chunking::for_block`] says so.
    fn forward(&self, x: &mut [f32], shape: AttentionShape, s: &mut Scratch) {
        match self.chunking {
            Some(chunking) if x.len() / self.width > chunking.whole_up_to => {
                self.forward_in_chunks(x, shape, s, chunking.max_rows)
            }
            _ => self.forward_rows(x, shape, s),
        }
    }

    /// [`Self::forward_rows`] over runs of whole sequences of at most
    /// `max_rows` rows ([`sequence_chunks`]) one after the other: the same
    /// values.
    fn forward_in_chunks(
        &self,
        x: &mut [f32],
        shape: AttentionShape,
        s: &mut Scratch,
        max_rows: usize,
    ) {
        // SAM's relative positions are indexed by sequence: not rebased here.
        let chunks = match shape.rel_pos {
            None => sequence_chunks(shape.sequences, x.len() / self.width, max_rows),
            Some(_) => Vec::new(),
        };
        if chunks.len() <= 1 {
            return self.forward_rows(x, shape, s);
        }
        let c = self.width;
        let mut sub = Vec::new();
        for chunk in chunks {
            let seqs = &shape.sequences[chunk.clone()];
            let (first, end) = (seqs[0].0, seqs[seqs.len() - 1].0 + seqs[seqs.len() - 1].1);
            sub.clear();
            sub.extend(seqs.iter().map(|&(start, len)| (start - first, len)));
            let shape = AttentionShape {
                sequences: &sub,
                keys: shape.keys.map(|keys| &keys[chunk]),
                ..shape
            };
            self.forward_rows(&mut x[first * c..end * c], shape, s);
        }
    }

    /// `x += attn(ln1(x))`, then `x += mlp(ln2(x))`, in place, all rows at
    /// each step.
    fn forward_rows(&self, x: &mut [f32], shape: AttentionShape, s: &mut Scratch) {
        let c = self.width;
        let m = x.len() / c;
        // bf16 on AMX (and f32 on the tiles, its lines three bf16 parts a
        // value): each LayerNorm writes the tile lines its product reads,
        // not f32 rows the product reads back to round; and for bf16, where
        // the heads are whole tile steps, q/k/v stay tile lines into the
        // attention, whose context goes into the output projection's lines.
        let (ln1_g, ln1_b) = (&self.ln1.0, &self.ln1.1);
        let lines;
        let context = match layer_norm_to_bf16_rows(x, c, ln1_g, ln1_b, self.eps, &self.qkv) {
            Some(normed) if attention_lines_fit(&shape, m, &self.out) => {
                let qkv = gemm_bf16_rows_to_bf16_rows(&normed, &self.qkv, None);
                lines = attention_bf16_rows_to_rows(&qkv, shape, &self.out);
                Input::Bf16Rows(&lines)
            }
            Some(normed) => {
                s.resize_attention(m, c);
                gemm_bf16_rows(&normed, &self.qkv, &mut s.qkv, Init::Bias, None);
                self.attention(shape, s);
                Input::F32(&s.context)
            }
            None => {
                s.resize(m, c);
                layer_norm(x, c, ln1_g, ln1_b, self.eps, &mut s.normed);
                gemm(&s.normed, m, &self.qkv, &mut s.qkv, Init::Bias, None);
                self.attention(shape, s);
                Input::F32(&s.context)
            }
        };
        self.residual(x, context, &self.out);
        self.mlp(x, s);
    }

    /// `x += mlp(ln2(x))`, in place.
    fn mlp(&self, x: &mut [f32], s: &mut Scratch) {
        let c = self.width;
        let m = x.len() / c;
        // bf16 on AMX (and f32 on the tiles): LayerNorm into fc1's tile
        // lines, and fc1's activated output to fc2 as tile lines too (the
        // values fc2 would round or split it to), without the f32 hidden
        // state.
        let (ln2_g, ln2_b) = (&self.ln2.0, &self.ln2.1);
        if let (Some(act), true) = (self.activation, reads_bf16_rows(&self.fc2)) {
            if let Some(normed) = layer_norm_to_bf16_rows(x, c, ln2_g, ln2_b, self.eps, &self.fc1) {
                let hidden = gemm_bf16_rows_to_bf16_rows(&normed, &self.fc1, Some(act));
                let hidden = Input::Bf16Rows(&hidden);
                return self.residual(x, hidden, &self.fc2);
            }
        }
        s.normed.resize(x.len(), 0.0);
        layer_norm(x, c, ln2_g, ln2_b, self.eps, &mut s.normed);
        s.hidden.resize(m * self.fc1.n(), 0.0);
        gemm(
            &s.normed,
            m,
            &self.fc1,
            &mut s.hidden,
            Init::Bias,
            self.activation,
        );
        let hidden = if self.activation.is_some() {
            &s.hidden
        } else {
            s.gated.resize(s.hidden.len() / 2, 0.0);
            swiglu(&s.hidden, self.fc1.n() / 2, &mut s.gated);
            &s.gated
        };
        let hidden = Input::F32(hidden);
        self.residual(x, hidden, &self.fc2);
    }

    /// The attention over `s.qkv` (f32 rows) into `s.context`. A bf16
    /// model's attention in bf16 too (on the tiles where there are any), as
    /// PyTorch and OpenVINO run theirs; an int8 model's as well: its
    /// activations are rounded to 8 bits anyway (AMX Xeon: images b32 +15%,
    /// texts 77 tokens +8%; fixture cosines to f32 stay >= 0.9988). An f32
    /// model on the AMX tiles runs its attention there too, at f32's
    /// precision.
    fn attention(&self, shape: AttentionShape, s: &mut Scratch) {
        if self.qkv.on_tiles() {
            attention_on_tiles(&s.qkv, shape, &mut s.context);
        } else if self.qkv.precision() == Precision::F32 {
            attention(&s.qkv, shape, &mut s.context);
        } else {
            attention_bf16(&s.qkv, shape, &mut s.context);
        }
    }

    /// The block's output at one row per sequence only (`pooled[i]` tokens
    /// into sequence i), rows of width c: every row's keys and values, but
    /// attention, output projection and MLP for those rows alone. A tower
    /// that pools one token needs nothing else from its last block, which
    /// this way costs about a quarter of a full one (q/k/v of every row).
    /// f32 attention whatever the weights' precision: a few rows.
    fn forward_pooled(
        &self,
        x: &[f32],
        shape: AttentionShape,
        pooled: &[usize],
        s: &mut Scratch,
    ) -> Vec<f32> {
        let c = self.width;
        let m = x.len() / c;
        s.resize(m, c);
        layer_norm(x, c, &self.ln1.0, &self.ln1.1, self.eps, &mut s.normed);
        gemm(&s.normed, m, &self.qkv, &mut s.qkv, Init::Bias, None);
        let context = pooled_attention(&s.qkv, &shape, pooled);
        let mut y = pooled_rows(x, c, shape.sequences, pooled);
        let context = Input::F32(&context);
        self.residual(&mut y, context, &self.out);
        self.mlp(&mut y, s);
        y
    }

    /// `x += input·Wᵀ + b`, the product adding into x itself (LayerScale
    /// is in `w`: [`pack_scaled`]).
    fn residual(&self, x: &mut [f32], input: Input, w: &PackedWeights) {
        input.product(x.len() / self.width, w, x, Init::AddToOutput);
    }
}

/// How much MLP hidden state (fc1's f32 output) one chunk of a block's
/// forward holds, where the block's products are int8 on dot-product
/// instructions (`Isa::int8_on_dot_products`): its sequences go through the
/// whole block (attention, MLP) before the next chunk's.
///
/// Why: those products are fast enough that the f32 rows passed between them,
/// not the arithmetic, bounded large batches. An int8 block reads each back to
/// quantise it (fc1's output, 12 KiB a ViT-B row, twice); a thread's part of
/// ViT-B/32 images at batch 32 is 800 rows, 9.4 MiB of hidden state alone,
/// and int8 images ran slower per image at batch 32 than at 8. 2.5 MiB is
/// about 200 ViT-B image rows, 4 texts of 77 tokens, 1.7 DINOv2-S images at
/// 224 px (a part is cut into near-equal chunks of whole sequences:
/// [`sequence_chunks`]), near the 2 MiB L2 of a Sapphire Rapids core.
///
/// Measured on the AMX Xeon ("Intel(R) Xeon(R) Processor", family 6 model
/// 167, 2 vCPUs; 2026-12-05), old and new builds in alternating order, 4
/// pairs: int8 on the tiles CLIP texts at 77 tokens +10–17%, images at batch
/// 32 −4 to +5% (median +2%); capped at AVX-512 (VNNI) texts −1.5 to +20%
/// (median +9%), images +2.5–6%. Old then new in each pair (an A/A test of
/// that order gave the second run a median +3.5%; the machine was slower
/// then): DINOv2 ViT-S/14 images at batch 32 +34–51% (2 pairs), CLIP images
/// +7–21%. Batches that fit one chunk are unchanged. That was 5 MiB chunks,
/// filled greedily; then 2.5 MiB in near-equal chunks against 5 MiB (4 pairs
/// alternating, same CPU): DINOv2 ViT-S/14 at batch 32 +6% (4 of 4), CLIP
/// texts at 77 tokens +3%, CLIP images even; capped at AVX-512 (3 pairs)
/// texts +4–7%, images at batch 32 +2.5%. 1.25 MiB lost CLIP images 6–12%
/// (100-row chunks). Near-equal instead of greedy at 5 MiB (DINOv2-S's 16
/// images a thread at batch 32 as 3+3+3+3+4, not 3+3+3+3+3+1) alone measured
/// within noise.
///
/// Not chunked: AVX2's int8 kernel, compute-bound (images at batch 32 1–5%
/// slower chunked, 3 of 3); bf16 in these chunks (its hidden state is bf16
/// tile lines on AMX and a thread's part of a batch; CLIP texts at 77 tokens
/// 5–15% slower); f32 on AVX-512 FMA (6 pairs in alternating order: images
/// median +0.7%, texts −1%). f32 on the AMX tiles in these chunks gained
/// DINOv2 ViT-S/14 12–35%, but CLIP images at batch 32 lost a median 6% (6
/// pairs in alternating order; 4 chunks stream ViT-B's 42 MB of split
/// weights a layer four times): it has a rule of its own, by weight count
/// against hidden values ([`Chunking::for_block`]), which bf16 on the tiles
/// now follows too. The outputs are the same bits either way:
/// every kernel's rows are independent and attention stays within a
/// sequence.
const CHUNK_HIDDEN_BYTES: usize = 5 << 19;

/// How a block's forward cuts a batch's sequences into runs, each taken
/// through the whole block (attention, MLP) before the next.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Chunking {
    /// Rows a run holds at most ([`sequence_chunks`]).
    max_rows: usize,
    /// Batches of up to this many rows run whole.
    whole_up_to: usize,
}

impl Chunking {
    /// The rule for a block whose products use `weights` (qkv, out, fc1,
    /// fc2; fc1's outputs are the MLP's hidden width):
    /// - int8 on dot-product instructions (`Isa::int8_on_dot_products`): runs
    ///   of at most [`CHUNK_HIDDEN_BYTES`] of hidden state.
    /// - f32 on the AMX tiles (`PackedWeights::on_tiles`), whose batches run
    ///   whole (not a part per thread) with the hidden state as tile lines,
    ///   three bf16 parts a value like the split weights: a batch holding
    ///   more than twice the layer's weight count in hidden values runs in
    ///   chunks of at most that count (`weights / hidden width` rows: 3 × the
    ///   width for a 4× MLP). So a run streams no more hidden state than
    ///   weights, and batches the weights dominate stay whole: CLIP ViT-B/32
    ///   images at batch 32 (1,600 rows, 2,304 a chunk) and texts at 77
    ///   tokens (2,464 rows, 1,536 a chunk) run whole, as measured best (in
    ///   chunks of 8 images they lost a median 6%; texts in halves a median
    ///   2.5%), and DINOv2 at 224 px (257 rows an image) from batch 9
    ///   (ViT-S/14) or 18 (ViT-B/14) is chunked. Measured on the AMX Xeon
    ///   (family 6 model 167, 2 vCPUs), chunk sizes set by hand, 3 rounds
    ///   rotating: ViT-S/14 f32 at batch 32 +25–35% in runs of 1,152 rows
    ///   (+17% in runs of 600), at batch 8 even either way; ViT-B/14 at batch
    ///   32 +8% in runs of 2,304 rows (+12% in runs of 1,152).
    /// - bf16 on the AMX tiles by the same rule (hidden state one bf16 part a
    ///   value): once its epilogues and attention got faster (AMX Xeon,
    ///   2026-12-05, night), DINOv2 ViT-B/14 at batch 32 ran 20% slower per
    ///   image than at batch 8 whole; in runs of 2,304 rows +17% (medians
    ///   28.1 → 32.9 images/s, 4 of 4 pairs alternating), ViT-S/14 even,
    ///   SigLIP ViT-B/16 at batch 32 (3 runs of 10–11 images) even (`seer
    ///   bench`, 10 pairs: 5 up, 5 down, medians 40.8 → 39.2 images/s), batch
    ///   8 and CLIP (under the threshold) whole as before. Chunks of a fixed
    ///   8 images had measured no consistent change before those changes.
    /// - otherwise whole: AVX2's compute-bound int8 kernel, f32 on FMA (see
    ///   [`CHUNK_HIDDEN_BYTES`]), bf16 elsewhere.
    fn for_block(precision: Precision, weights: [&PackedWeights; 4]) -> Option<Chunking> {
        let [_, _, fc1, _] = weights;
        let hidden = fc1.n().max(1);
        if precision == Precision::Int8 && Isa::int8_on_dot_products() {
            let max_rows = CHUNK_HIDDEN_BYTES / (4 * hidden);
            return Some(Chunking {
                max_rows,
                whole_up_to: max_rows,
            });
        }
        if reads_bf16_rows(fc1) {
            let values: usize = weights.iter().map(|w| w.n() * w.k()).sum();
            let max_rows = values / hidden;
            return Some(Chunking {
                max_rows,
                whole_up_to: 2 * max_rows,
            });
        }
        None
    }
}

/// Consecutive runs of `sequences` (first row, length) as ranges of sequence
/// indices: `ceil(rows / max_rows)` runs of near-equal rows (a sequence
/// longer than its share is a run of its own, the rest share what is left),
/// each cut at the sequence boundary nearest its share, so a run may pass
/// `max_rows` by part of a sequence. Near-equal because runs of unequal size
/// made the products' buffers change size every run: freed blocks went back
/// to the kernel and came again as page faults (5–6% of the samples with
/// CLIP texts in runs of 19 + 13; none with 16 + 16). One run of all of them
/// unless they are back to back from row 0 to row `rows` (rows outside every
/// sequence still go through the block's products).
fn sequence_chunks(
    sequences: &[(usize, usize)],
    rows: usize,
    max_rows: usize,
) -> Vec<Range<usize>> {
    let back_to_back = sequences.first().is_none_or(|s| s.0 == 0)
        && sequences.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0)
        && sequences.last().map_or(0, |s| s.0 + s.1) == rows;
    if !back_to_back {
        return std::iter::once(0..sequences.len()).collect();
    }
    // Where a run ending before sequence `i` ends, in rows.
    let end_row = |i: usize| sequences.get(i).map_or(rows, |s| s.0);
    let max_rows = max_rows.max(1);
    let n = rows.div_ceil(max_rows);
    let mut chunks = Vec::with_capacity(n);
    let mut start = 0;
    while start < sequences.len() {
        // The rows left in equal shares, over the runs left of the `n`
        // planned (fewer where a long sequence took more than its share).
        let first = end_row(start);
        let left = rows - first;
        let runs = left.div_ceil(max_rows).min(n - chunks.len()).max(1);
        let end = if runs == 1 {
            sequences.len()
        } else {
            // Cut at the boundary nearest the share's end (ties: the earlier
            // one), at least one sequence a run.
            let target = first + left / runs;
            let after = sequences.partition_point(|s| s.0 < target).max(start + 1);
            let before = after - 1;
            if before > start && target - end_row(before) <= end_row(after) - target {
                before
            } else {
                after
            }
        };
        chunks.push(start..end);
        start = end;
    }
    chunks
}

/// A product's input: f32 rows, or a previous product's output kept as bf16
/// tile lines.
#[derive(Clone, Copy)]
enum Input<'a> {
    F32(&'a [f32]),
    Bf16Rows(&'a Bf16Rows),
}

impl Input<'_> {
    /// `c = init + input · Wᵀ` for `m` rows.
    fn product(self, m: usize, w: &PackedWeights, c: &mut [f32], init: Init) {
        match self {
            Input::F32(a) => gemm(a, m, w, c, init, None),
            Input::Bf16Rows(rows) => gemm_bf16_rows(rows, w, c, init, None),
        }
    }
}

/// Intermediate buffers, reused across blocks.
#[derive(Default)]
struct Scratch {
    normed: Vec<f32>,
    qkv: Vec<f32>,
    context: Vec<f32>,
    hidden: Vec<f32>,
    /// SwiGLU's gated hidden state (half of `hidden`).
    gated: Vec<f32>,
}

impl Scratch {
    /// The f32 buffers of a block's attention half, for `m` rows of width
    /// `c`. Each is sized where a path uses it: on AMX the LayerNorms and
    /// products hand tile lines to each other instead, and f32 buffers sized
    /// anyway (42 MB for DINOv2 ViT-B/14's chunks at batch 32) crowded the
    /// allocator's per-thread heaps until glibc unmapped and mapped the
    /// lines' memory again a layer at a time (page faults 4% of DINOv2-B
    /// bf16, AMX Xeon).
    fn resize(&mut self, m: usize, c: usize) {
        self.normed.resize(m * c, 0.0);
        self.resize_attention(m, c);
    }

    /// The attention's input and output.
    fn resize_attention(&mut self, m: usize, c: usize) {
        self.qkv.resize(m * 3 * c, 0.0);
        self.context.resize(m * c, 0.0);
    }
}

/// Runs `blocks` over `x` (batch, tokens, width). `keys`: per sequence, how
/// many leading tokens are attended to (the rest are padding), or None for all.
pub(crate) fn forward(
    blocks: &[std::sync::Arc<CpuBlock>],
    x: &Tensor,
    causal: bool,
    keys: Option<&[usize]>,
) -> candle_core::Result<Tensor> {
    let (batch, tokens, width) = x.dims3()?;
    let sequences: Vec<(usize, usize)> = (0..batch).map(|i| (i * tokens, tokens)).collect();
    let y = forward_packed(
        blocks,
        &x.reshape((batch * tokens, width))?,
        &sequences,
        causal,
        keys,
    )?;
    y.reshape((batch, tokens, width))
}

/// Row `pooled[i]` of each sequence i of `x` (rows of `width`), back to back.
fn pooled_rows(
    x: &[f32],
    width: usize,
    sequences: &[(usize, usize)],
    pooled: &[usize],
) -> Vec<f32> {
    sequences
        .iter()
        .zip(pooled)
        .flat_map(|(&(start, _), &p)| &x[(start + p) * width..][..width])
        .copied()
        .collect()
}

/// The attention context of one query row per sequence (`pooled[i]` tokens
/// into sequence i) over the sequence's keys, from q/k/v rows of width 3c (q
/// already scaled): rows of width c, one per sequence.
fn pooled_attention(qkv: &[f32], shape: &AttentionShape, pooled: &[usize]) -> Vec<f32> {
    let c = shape.width;
    let d = c / shape.heads;
    let stride = 3 * c;
    assert!(pooled.len() == shape.sequences.len() && shape.rel_pos.is_none());
    let mut out = vec![0.0; pooled.len() * c];
    out.par_chunks_mut(d)
        .enumerate()
        .for_each_init(Vec::new, |scores, (task, out)| {
            let (i, h) = (task / shape.heads, task % shape.heads);
            let ((start, len), p) = (shape.sequences[i], pooled[i]);
            let visible = match (shape.causal, shape.keys) {
                (true, _) => p + 1,
                (false, Some(keys)) => keys[i],
                (false, None) => len,
            };
            // Key t of this head is at row (start + t), column c + h·d: the
            // cache starts c columns into the sequence's first row (values 2c).
            let cache = CachedHead {
                keys: &qkv[start * stride + c..],
                values: &qkv[start * stride + 2 * c..],
                stride,
                offset: h * d,
            };
            let q = &qkv[(start + p) * stride + h * d..][..d];
            attend_cached(q, cache, visible, 1.0, scores, out);
        });
    out
}

/// Runs `blocks` over `x` (rows, width) holding `sequences` (first row, length)
/// back to back: variable-length prompts without padding.
pub(crate) fn forward_packed(
    blocks: &[std::sync::Arc<CpuBlock>],
    x: &Tensor,
    sequences: &[(usize, usize)],
    causal: bool,
    keys: Option<&[usize]>,
) -> candle_core::Result<Tensor> {
    let (rows, width) = x.dims2()?;
    let data = run(blocks, x, sequences, causal, keys, None)?;
    Tensor::from_vec(data, (rows, width), x.device())
}

/// [`forward_packed`]'s output at one row per sequence, `pooled[i]` tokens
/// into sequence i (one per sequence, inside it: the caller checks): (sequences,
/// width). The last block computes only those rows (see
/// [`CpuBlock::forward_pooled`]).
pub(crate) fn forward_packed_pooled(
    blocks: &[std::sync::Arc<CpuBlock>],
    x: &Tensor,
    sequences: &[(usize, usize)],
    causal: bool,
    keys: Option<&[usize]>,
    pooled: &[usize],
) -> candle_core::Result<Tensor> {
    let (_, width) = x.dims2()?;
    let data = run(blocks, x, sequences, causal, keys, Some(pooled))?;
    Tensor::from_vec(data, (pooled.len(), width), x.device())
}

/// The blocks over `x`'s rows; with `pooled`, only those rows of the last
/// block's output (a row per sequence).
fn run(
    blocks: &[std::sync::Arc<CpuBlock>],
    x: &Tensor,
    sequences: &[(usize, usize)],
    causal: bool,
    keys: Option<&[usize]>,
    pooled: Option<&[usize]>,
) -> candle_core::Result<Vec<f32>> {
    let (_, width) = x.dims2()?;
    let mut data = x.flatten_all()?.to_vec1::<f32>()?;
    let Some(first) = blocks.first() else {
        return Ok(match pooled {
            Some(pooled) => pooled_rows(&data, width, sequences, pooled),
            None => data,
        });
    };
    let shape = AttentionShape {
        sequences,
        width,
        heads: first.heads,
        causal,
        keys,
        rel_pos: None,
    };
    let mut scratch = Scratch::default();
    Ok(seer_kernels::on_worker(|| {
        match (pooled, blocks.split_last()) {
            (Some(pooled), Some((last, rest))) => {
                for block in rest {
                    block.forward(&mut data, shape, &mut scratch);
                }
                last.forward_pooled(&data, shape, pooled, &mut scratch)
            }
            _ => {
                for block in blocks {
                    block.forward(&mut data, shape, &mut scratch);
                }
                data
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::config::Activation;
    use candle_core::Device;

    fn random(shape: &[usize]) -> Tensor {
        Tensor::randn(0f32, 0.5, shape, &Device::Cpu).unwrap()
    }

    /// A block of `width` with random weights (four heads, 4× MLP).
    fn block(width: usize, precision: Precision) -> CpuBlock {
        let pair = |rows: usize, cols: usize| (random(&[rows, cols]), random(&[rows]));
        let norm = || (random(&[width]), random(&[width]));
        let tensors = BlockTensors {
            ln1: norm(),
            qkv: vec![pair(3 * width, width)],
            out: pair(width, width),
            ln2: norm(),
            fc1: pair(4 * width, width),
            fc2: pair(width, 4 * width),
            swiglu: false,
            ls1: None,
            ls2: None,
        };
        let config = TransformerConfig {
            width,
            layers: 1,
            heads: 4,
            mlp_width: 4 * width,
            activation: Activation::QuickGelu,
            layer_norm_eps: 1e-5,
            layer_scale: false,
        };
        CpuBlock::new(tensors, &config, precision).unwrap()
    }

    #[test]
    fn a_layer_scale_not_of_the_layer_outputs_is_an_error() {
        let width = 8;
        let pair = |rows: usize, cols: usize| (random(&[rows, cols]), random(&[rows]));
        let tensors = |ls: usize| BlockTensors {
            ln1: (random(&[width]), random(&[width])),
            qkv: vec![pair(3 * width, width)],
            out: pair(width, width),
            ln2: (random(&[width]), random(&[width])),
            fc1: pair(4 * width, width),
            fc2: pair(width, 4 * width),
            swiglu: false,
            ls1: Some(random(&[ls])),
            ls2: Some(random(&[width])),
        };
        let config = TransformerConfig {
            width,
            layers: 1,
            heads: 2,
            mlp_width: 4 * width,
            activation: Activation::Gelu,
            layer_norm_eps: 1e-6,
            layer_scale: true,
        };
        assert!(CpuBlock::new(tensors(width), &config, Precision::F32).is_ok());
        let err = CpuBlock::new(tensors(width + 1), &config, Precision::F32).unwrap_err();
        assert!(
            err.to_string().contains("LayerScale of 9"),
            "unexpected error: {err}"
        );
    }

    #[test]
    fn a_block_in_chunks_of_sequences_gives_the_bits_of_all_rows_at_once() {
        let width = 64;
        // Sequences of several lengths.
        let sequences = [
            (0, 7),
            (7, 30),
            (37, 3),
            (40, 12),
            (52, 9),
            (61, 50),
            (111, 1),
        ];
        let rows = 112;
        let x: Vec<f32> = random(&[rows * width]).to_vec1().unwrap();
        for precision in [Precision::Int8, Precision::F32, Precision::Bf16] {
            let block = block(width, precision);
            for (causal, keys) in [
                (false, None),
                (true, None),
                (false, Some([5, 30, 1, 12, 9, 20, 1])),
            ] {
                let shape = AttentionShape {
                    sequences: &sequences,
                    width,
                    heads: 4,
                    causal,
                    keys: keys.as_ref().map(|k| &k[..]),
                    rel_pos: None,
                };
                let mut whole = x.clone();
                block.forward_rows(&mut whole, shape, &mut Scratch::default());
                for max_rows in [1, 20, 40, 60, 1000] {
                    let mut chunked = x.clone();
                    block.forward_in_chunks(&mut chunked, shape, &mut Scratch::default(), max_rows);
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert!(
                        bits(&chunked) == bits(&whole),
                        "{precision:?} causal {causal} keys {keys:?}, chunks of {max_rows} rows"
                    );
                }
            }
        }
    }

    #[test]
    fn blocks_chunk_by_their_precision_and_kernels() {
        let width = 64;
        // int8 on dot products: 2.5 MiB of f32 hidden rows (4 × 64 wide).
        let int8 = Isa::int8_on_dot_products().then_some(Chunking {
            max_rows: CHUNK_HIDDEN_BYTES / (4 * 4 * width),
            whole_up_to: CHUNK_HIDDEN_BYTES / (4 * 4 * width),
        });
        assert_eq!(block(width, Precision::Int8).chunking, int8);
        // f32 on the tiles: 12 · 64² weights over 4 · 64 hidden = 3 · 64 rows.
        let f32 = seer_kernels::gemm::f32_on_tiles().then_some(Chunking {
            max_rows: 3 * width,
            whole_up_to: 6 * width,
        });
        assert_eq!(block(width, Precision::F32).chunking, f32);
        // bf16 on the tiles: the same rule.
        let bf16 = (Isa::detected() == Isa::Amx).then_some(Chunking {
            max_rows: 3 * width,
            whole_up_to: 6 * width,
        });
        assert_eq!(block(width, Precision::Bf16).chunking, bf16);
    }

    #[test]
    fn sequences_chunk_into_runs_of_at_most_the_rows_given() {
        let images: Vec<(usize, usize)> = (0..7).map(|i| (50 * i, 50)).collect();
        assert_eq!(sequence_chunks(&images, 350, 400), vec![0..7]);
        assert_eq!(sequence_chunks(&images, 350, 350), vec![0..7]);
        // 3 runs: 116.7 rows, then 125 of the 250 left; ties cut earlier.
        assert_eq!(sequence_chunks(&images, 350, 150), vec![0..2, 2..4, 4..7]);
        assert_eq!(sequence_chunks(&images, 350, 175), vec![0..3, 3..7]);
        // 16 images of 50 rows in runs of at most 600 (greedy: 12 + 4).
        let sixteen: Vec<(usize, usize)> = (0..16).map(|i| (50 * i, 50)).collect();
        assert_eq!(sequence_chunks(&sixteen, 800, 600), vec![0..8, 8..16]);
        // DINOv2-S: 16 images of 257 rows, runs of 853 rows: 5 runs.
        let dino: Vec<(usize, usize)> = (0..16).map(|i| (257 * i, 257)).collect();
        let runs = sequence_chunks(&dino, 4112, 853);
        assert_eq!(runs, vec![0..3, 3..6, 6..9, 9..12, 12..16]);
        // A sequence longer than a run's share is a run of its own.
        let texts = [(0, 5), (5, 30), (35, 4), (39, 4), (43, 3)];
        assert_eq!(sequence_chunks(&texts, 46, 11), vec![0..1, 1..2, 2..5]);
        assert_eq!(sequence_chunks(&texts, 46, 23), vec![0..2, 2..5]);
        assert_eq!(
            sequence_chunks(&[(0, 1), (1, 99)], 100, 10),
            vec![0..1, 1..2]
        );
        assert_eq!(
            sequence_chunks(&[(0, 99), (99, 1)], 100, 10),
            vec![0..1, 1..2]
        );
        assert_eq!(sequence_chunks(&[], 0, 10), Vec::<Range<usize>>::new());
        // Not back to back from row 0 to the end: one run.
        assert_eq!(sequence_chunks(&[(0, 5), (6, 5)], 11, 5), vec![0..2]);
        assert_eq!(sequence_chunks(&[(0, 5), (5, 5)], 12, 5), vec![0..2]);
        assert_eq!(sequence_chunks(&[(1, 5), (6, 5)], 11, 5), vec![0..2]);
        assert_eq!(sequence_chunks(&[(5, 5), (0, 5)], 10, 5), vec![0..2]);
        assert_eq!(sequence_chunks(&[(0, 6), (5, 5)], 10, 5), vec![0..2]);
        assert_eq!(sequence_chunks(&[(0, 5), (5, 5)], 10, 5), vec![0..1, 1..2]);
    }
}
