//! Families through the registry and the task traits: the DINOv2 fixture loads
//! as an image-only `LoadedModel` whose raw embedding of image files is the
//! reference's `pooler_output`, and whose text tower is a clear error.

mod common;

use std::path::PathBuf;

use common::*;
use seer_engine::{EmbedOptions, EngineError, LoadOptions, LoadedModel};

#[test]
fn dinov2_is_an_image_only_model_whose_raw_embedding_is_pooler_output() {
    for name in ["dinov2-tiny", "dinov2-registers-tiny", "dinov2-swiglu-tiny"] {
        let dir = repo_root().join("fixtures/families").join(name);
        let model = LoadedModel::load_dir(&dir, &LoadOptions::default()).unwrap();
        assert_eq!(model.family, "dinov2");
        assert!(matches!(model.text(), Err(EngineError::NoTextTower { .. })));
        assert!(model.score_rule().is_err());

        let reference = read_json(&dir.join("reference.json"));
        let case = &reference["cases"][0];
        assert_eq!(case["name"], "crop224");
        let paths: Vec<PathBuf> = case["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| shared_data().join(p.as_str().unwrap()))
            .collect();
        let options = EmbedOptions {
            normalize: false,
            batch_size: 4,
            ..Default::default()
        };
        let mut got = vec![Vec::new(); paths.len()];
        model
            .image()
            .unwrap()
            .embed_image_files(&paths, &options, |o| got[o.index] = o.result.unwrap())
            .unwrap();
        let diff = max_abs_diff(&got, &matrix(&case["pooler_output"]));
        println!("{name}: pooler_output from image files max |diff| = {diff:.2e}");
        assert!(diff <= 1e-4, "{name}: {diff}");
        assert_eq!(model.embed_dim(), got[0].len());
    }
}
