//! `SamModel`: the image encoder, run once per image, and the prompt decoder,
//! run per click; plus `SamProcessor.post_process_masks`.

use std::path::Path;

use candle_core::{Device, Tensor};

use super::config::SamConfig;
use super::decoder::{MaskDecoder, PositionalEmbedding, PromptDecoder, PromptEncoder, SamPrompt};
use super::vision::SamVisionEncoder;
use crate::error::{ModelError, Result};
use crate::io::files::ModelFiles;
use crate::io::weights::Weights;
use seer_kernels::Precision;

#[derive(Clone, Debug)]
pub struct SamModel {
    config: SamConfig,
    vision: SamVisionEncoder,
    decoder: PromptDecoder,
}

/// The mask decoder's attentions project to `hidden_size` (self-attention)
/// or `hidden_size / attention_downsample_rate` (the others), as transformers
/// builds them: a checkpoint of other widths does not load there (size
/// mismatch), and here would run with a rate the config does not say.
fn check_attention_widths(t: &Weights, config: &SamConfig, path: &Path) -> Result<()> {
    let d = &config.decoder;
    let reduced = d.hidden_size / d.attention_downsample_rate.max(1);
    // Lazily, stopping at the first missing layer: `num_hidden_layers` is
    // the config's word, and a list of every name for 2^31 layers took all
    // the memory there was.
    let layers = (0..d.layers).flat_map(|i| {
        [
            (format!("layers.{i}.self_attn"), d.hidden_size),
            (format!("layers.{i}.cross_attn_token_to_image"), reduced),
            (format!("layers.{i}.cross_attn_image_to_token"), reduced),
        ]
    });
    let attentions =
        std::iter::once(("final_attn_token_to_image".to_string(), reduced)).chain(layers);
    for (name, width) in attentions {
        let found = t.pp(&name).dims("q_proj.weight")?[0];
        if found != width {
            return Err(ModelError::Config {
                path: path.to_path_buf(),
                message: format!(
                    "mask_decoder_config: attention_downsample_rate {} and hidden_size {} make \
                     mask_decoder.transformer.{name} {width} wide, but the checkpoint's is {found}",
                    d.attention_downsample_rate, d.hidden_size
                ),
            });
        }
    }
    Ok(())
}

/// One prompt's answer: `iou[i]` belongs to mask `i` of `logits`.
#[derive(Clone, Debug)]
pub struct SamPrediction {
    pub iou: Vec<f32>,
    /// `pred_masks`: (masks, side, side) row-major.
    pub logits: Vec<f32>,
    pub side: usize,
}

impl SamModel {
    pub fn load_dir(dir: &Path, device: &Device, precision: Precision) -> Result<Self> {
        Self::load(&ModelFiles::from_dir(dir)?, device, precision)
    }

    pub fn load(files: &ModelFiles, device: &Device, precision: Precision) -> Result<Self> {
        let root = Weights::open(&files.weights, device)?.with_precision(precision);
        let config = SamConfig::from_file(&files.config)?;
        check_attention_widths(&root.pp("mask_decoder.transformer"), &config, &files.config)?;
        Self::from_weights(config, &root)
    }

    pub fn from_weights(config: SamConfig, root: &Weights) -> Result<Self> {
        let vision = SamVisionEncoder::load(&root.pp("vision_encoder"), &config.vision)?;
        let pe = PositionalEmbedding::load(
            &root.pp("shared_image_embedding"),
            config.vision.num_pos_feats,
        )?;
        let side = config.prompt.image_embedding_size;
        let decoder = PromptDecoder {
            image_pe: pe.image_wide(side, root.device())?,
            pe,
            prompt: PromptEncoder::load(&root.pp("prompt_encoder"), &config.prompt)?,
            decoder: MaskDecoder::load(&root.pp("mask_decoder"), &config.decoder)?,
            side,
            kept: Default::default(),
        };
        Ok(Self {
            config,
            vision,
            decoder,
        })
    }

    pub fn config(&self) -> &SamConfig {
        &self.config
    }

    /// `get_image_embeddings`: (batch, width, side, side) for (batch, 3, S, S) pixels.
    pub fn embed(&self, pixels: &Tensor) -> Result<Tensor> {
        self.vision.forward(pixels)
    }

    /// Side of the low-resolution mask logits (256).
    pub fn mask_side(&self) -> usize {
        self.decoder.prompt.mask_side()
    }

    /// Masks for one prompt on one embedded image (`embedding`: (1, width, side, side)).
    pub fn predict(
        &self,
        embedding: &Tensor,
        prompt: &SamPrompt,
        multimask: bool,
    ) -> Result<SamPrediction> {
        if embedding.dim(0)? != 1 {
            return Err(ModelError::Input(
                "predict takes the embedding of one image".into(),
            ));
        }
        let (iou, masks) = self.decoder.predict(embedding, prompt, multimask)?;
        Ok(SamPrediction {
            iou,
            side: masks.dim(1)?,
            logits: masks.flatten_all()?.to_vec1::<f32>()?,
        })
    }
}

/// Destination columns whose source taps are computed at a time: the taps of
/// a whole row would take 24 bytes a column (480 MB for a 1 × 20,000,000
/// image), and each output value is the same whatever the chunk.
const TAP_CHUNK: usize = 4096;

/// One destination coordinate's source taps: PyTorch's
/// `area_pixel_compute_scale` (in / out) and source index
/// `max(scale·(dst + 0.5) − 0.5, 0)`, in f32 like its CPU kernel.
#[inline]
fn tap(scale: f32, input: usize, d: usize) -> (usize, usize, f32, f32) {
    let real = (scale * (d as f32 + 0.5) - 0.5).max(0.0);
    let i0 = real as usize;
    let i1 = if i0 < input - 1 { i0 + 1 } else { i0 };
    let l1 = real - i0 as f32;
    (i0, i1, 1.0 - l1, l1)
}

/// `F.interpolate(mode="bilinear", align_corners=False)` of one `sh × sw`
/// plane to `oh × ow`, reading only `src`'s top-left `ch × cw` region through
/// `crop` when the destination is a crop of a larger resize: `full` is the
/// size the source would be resized to before cropping. Each value goes to
/// `emit(index, value)` (row-major index), columns `chunk` at a time.
fn bilinear_each(
    src: &[f32],
    (sh, sw): (usize, usize),
    (full_h, full_w): (usize, usize),
    (oh, ow): (usize, usize),
    chunk: usize,
    mut emit: impl FnMut(usize, f32),
) {
    let (scale_y, scale_x) = (sh as f32 / full_h as f32, sw as f32 / full_w as f32);
    let mut xs = Vec::with_capacity(chunk.min(ow));
    for start in (0..ow).step_by(chunk.max(1)) {
        let end = (start + chunk.max(1)).min(ow);
        xs.clear();
        xs.extend((start..end).map(|x| tap(scale_x, sw, x)));
        for y in 0..oh {
            let (y0, y1, wy0, wy1) = tap(scale_y, sh, y);
            let (r0, r1) = (&src[y0 * sw..(y0 + 1) * sw], &src[y1 * sw..(y1 + 1) * sw]);
            for (x, &(x0, x1, wx0, wx1)) in (start..end).zip(&xs) {
                let v = wy0 * (wx0 * r0[x0] + wx1 * r0[x1]) + wy1 * (wx0 * r1[x0] + wx1 * r1[x1]);
                emit(y * ow + x, v);
            }
        }
    }
}

/// [`bilinear_each`] into a plane.
fn bilinear(
    src: &[f32],
    size: (usize, usize),
    full: (usize, usize),
    (oh, ow): (usize, usize),
) -> Vec<f32> {
    let mut out = vec![0f32; oh * ow];
    bilinear_each(src, size, full, (oh, ow), TAP_CHUNK, |i, v| out[i] = v);
    out
}

/// `SamImageProcessor.post_process_masks` for one mask: the `side × side`
/// logits upscaled to the padded input (`pad`, (h, w)), cropped to the resized
/// image (`resized`), resized to the original size and thresholded.
pub fn post_process_mask(
    logits: &[f32],
    side: usize,
    pad: (usize, usize),
    resized: (usize, usize),
    original: (usize, usize),
    threshold: f32,
) -> Vec<bool> {
    let up = bilinear(logits, (side, side), pad, resized);
    // Thresholded as computed: no f32 plane of the original size.
    let mut mask = vec![false; original.0 * original.1];
    bilinear_each(&up, resized, original, original, TAP_CHUNK, |i, v| {
        mask[i] = v > threshold
    });
    mask
}

/// The same as [`post_process_mask`] without the threshold (for tests and soft masks).
pub fn post_process_logits(
    logits: &[f32],
    side: usize,
    pad: (usize, usize),
    resized: (usize, usize),
    original: (usize, usize),
) -> Vec<f32> {
    let up = bilinear(logits, (side, side), pad, resized);
    bilinear(&up, resized, original, original)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_decoder_layer_count_fails_at_the_first_missing_layer_without_allocating() {
        // The attention-width check listed the names of every layer the
        // config claims before looking at the first: 2^31 layers (a damaged
        // config.json) took all the machine's memory. 2^22 here: old code
        // made a list of 12.6 million names (a 512 MiB vector).
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/sam/sam-tiny");
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(&fixture).unwrap().flatten() {
            std::os::unix::fs::symlink(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
        let text = std::fs::read_to_string(fixture.join("config.json")).unwrap();
        let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
        config["mask_decoder_config"]["num_hidden_layers"] = (1u64 << 22).into();
        std::fs::remove_file(dir.path().join("config.json")).unwrap();
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        let (result, largest) = seer_testkit::fuzz::largest_allocation_during(|| {
            SamModel::load_dir(dir.path(), &Device::Cpu, Precision::F32)
        });
        let err = result.err().unwrap().to_string();
        assert!(
            err.contains("model.safetensors")
                && err.contains("missing tensor 'mask_decoder.transformer.layers.2."),
            "{err}"
        );
        assert!(
            largest < seer_testkit::fuzz::HUGE,
            "{largest} bytes in one allocation"
        );
    }

    /// The whole-row algorithm the chunked one replaced: every tap first.
    fn bilinear_whole(
        src: &[f32],
        (sh, sw): (usize, usize),
        (full_h, full_w): (usize, usize),
        (oh, ow): (usize, usize),
    ) -> Vec<f32> {
        let taps = |input: usize, full: usize, out: usize| -> Vec<(usize, usize, f32, f32)> {
            let scale = input as f32 / full as f32;
            (0..out).map(|d| tap(scale, input, d)).collect()
        };
        let (ys, xs) = (taps(sh, full_h, oh), taps(sw, full_w, ow));
        let mut out = vec![0f32; oh * ow];
        for (y, &(y0, y1, wy0, wy1)) in ys.iter().enumerate() {
            let (r0, r1) = (&src[y0 * sw..(y0 + 1) * sw], &src[y1 * sw..(y1 + 1) * sw]);
            for (x, &(x0, x1, wx0, wx1)) in xs.iter().enumerate() {
                out[y * ow + x] =
                    wy0 * (wx0 * r0[x0] + wx1 * r0[x1]) + wy1 * (wx0 * r1[x0] + wx1 * r1[x1]);
            }
        }
        out
    }

    #[test]
    fn column_chunks_give_the_whole_row_values_bit_for_bit() {
        let (sh, sw) = (7, 11);
        let src: Vec<f32> = (0..sh * sw)
            .map(|i| ((i * 7919 % 101) as f32 - 50.0) / 7.0)
            .collect();
        // Up, down, a crop of a larger resize, and a thin destination.
        for (full, out) in [
            ((20, 31), (20, 31)),
            ((5, 4), (5, 4)),
            ((40, 60), (25, 33)),
            ((1, 5000), (1, 5000)),
        ] {
            let want = bilinear_whole(&src, (sh, sw), full, out);
            for chunk in [1, 3, 64, TAP_CHUNK] {
                let mut got = vec![f32::NAN; out.0 * out.1];
                bilinear_each(&src, (sh, sw), full, out, chunk, |i, v| got[i] = v);
                let same = got
                    .iter()
                    .zip(&want)
                    .all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{full:?} -> {out:?}, chunks of {chunk}");
            }
        }
    }
}
