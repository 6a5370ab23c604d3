//! How each parameter starts when a model is trained from scratch: transformers'
//! `CLIPPreTrainedModel._init_weights` (initializer_factor 1), as a rule per
//! tensor name. The rules name kinds of tensors (q/k/v projections, LayerNorm
//! gains, embeddings), never the list of tensors: that comes from the model.

use candle_core::{Device, Tensor};
use seer_models::models::clip::config::{ClipConfig, VitConfig};
use seer_models::nn::config::TransformerConfig;

/// The value a parameter starts from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Init {
    Normal(f64),
    Zeros,
    Ones,
    Constant(f32),
}

/// CLIP's initial temperature, `log(1 / 0.07)` (also the model's default when a
/// checkpoint has no `logit_scale`).
pub(crate) fn initial_logit_scale() -> f32 {
    (1.0f32 / 0.07).ln()
}

/// The rule for tensor `name` of a transformers `CLIPModel` with a ViT image
/// tower; None for a tensor no rule covers (a model change the rules must learn).
pub(crate) fn clip_init(name: &str, cfg: &ClipConfig, vit: &VitConfig) -> Option<Init> {
    let (text, vision) = (&cfg.text.transformer, &vit.transformer);
    let width = |t: &TransformerConfig| t.width as f64;
    // The tower the tensor belongs to sets the widths and depth of its stds.
    let t = if name.starts_with("text_") {
        text
    } else {
        vision
    };
    let c = width(t);
    let in_std = c.powf(-0.5) * ((2 * t.layers) as f64).powf(-0.5);
    let module = name.rsplit('.').nth(1).unwrap_or("");
    Some(match name {
        "logit_scale" => Init::Constant(initial_logit_scale()),
        "visual_projection.weight" => Init::Normal(width(vision).powf(-0.5)),
        "text_projection.weight" => Init::Normal(width(text).powf(-0.5)),
        "vision_model.embeddings.class_embedding" => Init::Normal(c.powf(-0.5)),
        // Every bias (nn.Linear, LayerNorm) starts at zero.
        _ if name.ends_with(".bias") => Init::Zeros,
        // Token, position and patch embeddings: initializer_range 0.02.
        _ if name.ends_with("_embedding.weight") => Init::Normal(0.02),
        // LayerNorm gains: layer_norm1/2, pre_layrnorm, post_layernorm, final_layer_norm.
        _ if module.contains("norm") && name.ends_with(".weight") => Init::Ones,
        _ if name.ends_with(".weight") => match module {
            "q_proj" | "k_proj" | "v_proj" | "fc2" => Init::Normal(in_std),
            "out_proj" => Init::Normal(c.powf(-0.5)),
            "fc1" => Init::Normal((2.0 * c).powf(-0.5)),
            _ => return None,
        },
        _ => return None,
    })
}

/// The tensor `init` describes. Normal values come from a stream of seer's
/// seeded generator keyed by the run's seed and the tensor's name, so they do
/// not depend on the order (or the threads) in which the model asks for its
/// tensors.
pub(crate) fn initial_tensor(
    init: Init,
    seed: u64,
    name: &str,
    shape: &[usize],
    device: &Device,
) -> candle_core::Result<Tensor> {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = match init {
        Init::Normal(std) => {
            // The offset keeps the weights of another seeded stream apart.
            let mut parts = vec![seed ^ 0x5EE5_C11F_0000_0001];
            parts.extend(name.bytes().map(u64::from));
            let mut rng = seer_util::Rng::for_stream(&parts);
            (0..n).map(|_| (rng.normal() * std) as f32).collect()
        }
        Init::Zeros => vec![0.0; n],
        Init::Ones => vec![1.0; n],
        Init::Constant(v) => vec![v; n],
    };
    Tensor::from_vec(values, shape, device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use seer_models::models::clip::config::VisionConfig;

    fn config() -> ClipConfig {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fixtures/training/model/config.json");
        let text = std::fs::read_to_string(&path).unwrap();
        ClipConfig::from_transformers_json(&text, &path).unwrap()
    }

    /// The rules of transformers' `_init_weights`, spelled out per kind.
    #[test]
    fn rules_follow_transformers_init_weights() {
        let cfg = config();
        let VisionConfig::Vit(vit) = &cfg.vision else {
            panic!("a ViT fixture")
        };
        let (tc, vc) = (
            cfg.text.transformer.width as f64,
            vit.transformer.width as f64,
        );
        let (tl, vl) = (
            cfg.text.transformer.layers as f64,
            vit.transformer.layers as f64,
        );
        let rule = |name: &str| clip_init(name, &cfg, vit);
        let normal = |name: &str| match rule(name) {
            Some(Init::Normal(std)) => std,
            other => panic!("{name}: {other:?}"),
        };
        let close = |a: f64, b: f64| assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        let l = "text_model.encoder.layers.0";
        close(
            normal(&format!("{l}.self_attn.k_proj.weight")),
            tc.powf(-0.5) * (2.0 * tl).powf(-0.5),
        );
        close(
            normal(&format!("{l}.self_attn.out_proj.weight")),
            tc.powf(-0.5),
        );
        close(
            normal(&format!("{l}.mlp.fc1.weight")),
            (2.0 * tc).powf(-0.5),
        );
        let l = "vision_model.encoder.layers.1";
        close(
            normal(&format!("{l}.mlp.fc2.weight")),
            vc.powf(-0.5) * (2.0 * vl).powf(-0.5),
        );
        close(
            normal("vision_model.embeddings.class_embedding"),
            vc.powf(-0.5),
        );
        close(
            normal("vision_model.embeddings.patch_embedding.weight"),
            0.02,
        );
        close(normal("text_model.embeddings.token_embedding.weight"), 0.02);
        close(normal("visual_projection.weight"), vc.powf(-0.5));
        close(normal("text_projection.weight"), tc.powf(-0.5));
        assert_eq!(rule(&format!("{l}.layer_norm2.weight")), Some(Init::Ones));
        assert_eq!(rule("vision_model.pre_layrnorm.weight"), Some(Init::Ones));
        assert_eq!(rule("text_model.final_layer_norm.bias"), Some(Init::Zeros));
        assert_eq!(
            rule(&format!("{l}.self_attn.q_proj.bias")),
            Some(Init::Zeros)
        );
        assert_eq!(
            rule("logit_scale"),
            Some(Init::Constant(initial_logit_scale()))
        );
        assert_eq!(rule("vision_model.head.probe"), None);
    }

    #[test]
    fn normal_values_depend_on_seed_and_name_only() {
        let d = Device::Cpu;
        let v = |seed, name| {
            initial_tensor(Init::Normal(0.5), seed, name, &[4000], &d)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        assert_eq!(v(1, "a.weight"), v(1, "a.weight"));
        assert_ne!(v(1, "a.weight"), v(2, "a.weight"));
        assert_ne!(v(1, "a.weight"), v(1, "b.weight"));
        let x = v(7, "a.weight");
        let mean = x.iter().map(|&x| x as f64).sum::<f64>() / x.len() as f64;
        let std =
            (x.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / x.len() as f64).sqrt();
        assert!(
            mean.abs() < 0.03 && (std - 0.5).abs() < 0.03,
            "{mean} {std}"
        );
    }
}
