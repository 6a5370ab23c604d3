//! Short names for well-known checkpoints on the Hugging Face hub, of every
//! family seer loads.

pub struct Alias {
    pub name: &'static str,
    pub hub_id: &'static str,
    pub description: &'static str,
}

pub const ALIASES: &[Alias] = &[
    Alias {
        name: "ViT-B-32",
        hub_id: "openai/clip-vit-base-patch32",
        description: "OpenAI CLIP ViT-B/32 (transformers layout)",
    },
    Alias {
        name: "ViT-B-16",
        hub_id: "openai/clip-vit-base-patch16",
        description: "OpenAI CLIP ViT-B/16",
    },
    Alias {
        name: "ViT-L-14",
        hub_id: "openai/clip-vit-large-patch14",
        description: "OpenAI CLIP ViT-L/14",
    },
    Alias {
        name: "ViT-L-14-336",
        hub_id: "openai/clip-vit-large-patch14-336",
        description: "OpenAI CLIP ViT-L/14 at 336 px",
    },
    Alias {
        name: "ViT-B-32-laion2b",
        hub_id: "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
        description: "OpenCLIP ViT-B/32 trained on LAION-2B",
    },
    Alias {
        name: "ViT-B-16-laion2b",
        hub_id: "laion/CLIP-ViT-B-16-laion2B-s34B-b88K",
        description: "OpenCLIP ViT-B/16 trained on LAION-2B",
    },
    Alias {
        name: "ViT-L-14-laion2b",
        hub_id: "laion/CLIP-ViT-L-14-laion2B-s32B-b82K",
        description: "OpenCLIP ViT-L/14 trained on LAION-2B",
    },
    Alias {
        name: "ViT-H-14-laion2b",
        hub_id: "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
        description: "OpenCLIP ViT-H/14 trained on LAION-2B",
    },
    Alias {
        name: "RN50",
        hub_id: "timm/resnet50_clip.openai",
        description: "OpenAI CLIP RN50 (open_clip layout)",
    },
    Alias {
        name: "RN101",
        hub_id: "timm/resnet101_clip.openai",
        description: "OpenAI CLIP RN101 (open_clip layout)",
    },
    Alias {
        name: "siglip-b16",
        hub_id: "google/siglip-base-patch16-224",
        description: "SigLIP ViT-B/16 at 224 px (sigmoid scores)",
    },
    Alias {
        name: "siglip2-b16-naflex",
        hub_id: "google/siglip2-base-patch16-naflex",
        description: "SigLIP 2 ViT-B/16, variable resolution, multilingual",
    },
    Alias {
        name: "dinov2-small",
        hub_id: "facebook/dinov2-small",
        description: "DINOv2 ViT-S/14: image-only features (similar images, duplicates)",
    },
    Alias {
        name: "dinov2-base",
        hub_id: "facebook/dinov2-base",
        description: "DINOv2 ViT-B/14: image-only features",
    },
    Alias {
        name: "blip-base",
        hub_id: "Salesforce/blip-image-captioning-base",
        description: "BLIP captions, ViT-B (seer caption)",
    },
    Alias {
        name: "blip-large",
        hub_id: "Salesforce/blip-image-captioning-large",
        description: "BLIP captions, ViT-L (seer caption)",
    },
    Alias {
        name: "blip-itm-base",
        hub_id: "Salesforce/blip-itm-base-coco",
        description: "BLIP image-text matching, ViT-B, COCO (seer match, search --rerank)",
    },
    Alias {
        name: "blip-vqa-base",
        hub_id: "Salesforce/blip-vqa-base",
        description: "BLIP visual question answering, ViT-B (seer ask)",
    },
    Alias {
        name: "owlvit-b32",
        hub_id: "google/owlvit-base-patch32",
        description: "OWL-ViT B/32 open-vocabulary detection (seer detect)",
    },
    Alias {
        name: "owlv2-b16",
        hub_id: "google/owlv2-base-patch16-ensemble",
        description: "OWLv2 B/16 open-vocabulary detection (seer detect)",
    },
    Alias {
        name: "sam-vit-base",
        hub_id: "facebook/sam-vit-base",
        description: "Segment Anything, ViT-B (seer segment)",
    },
    Alias {
        name: "slimsam",
        hub_id: "Zigeng/SlimSAM-uniform-77",
        description: "SlimSAM, a pruned SAM ViT-B (seer segment)",
    },
];

/// The hub id an alias stands for (case-insensitive), or `spec` unchanged.
pub fn resolve_alias(spec: &str) -> &str {
    ALIASES
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(spec))
        .map(|a| a.hub_id)
        .unwrap_or(spec)
}
