//! Retrieval recall on the shared COCO captions with a fixture model: the
//! numbers are those of a random model, so the test checks the arithmetic, not
//! the quality: recall grows with K and reaches 1 when K covers everything.

mod common;

use common::*;
use seer_engine::retrieval::{evaluate_retrieval, read_captions_jsonl};
use seer_engine::EmbedOptions;

#[test]
fn recall_at_k_on_the_shared_coco_layout() {
    let items = read_captions_jsonl(&shared_data().join("coco-mini/captions.jsonl"), None).unwrap();
    assert_eq!(items.len(), 159);
    assert!(items
        .iter()
        .all(|i| i.image.is_file() && i.captions.len() == 5));
    let subset = &items[..30];
    let model = load("openclip-vit").into_loaded();
    let report = evaluate_retrieval(
        &model,
        subset,
        &[1, 5, 10, 30, 150],
        &EmbedOptions::default(),
    )
    .unwrap();
    assert_eq!((report.images, report.captions), (30, 150));
    for recalls in [&report.text_to_image, &report.image_to_text] {
        let values: Vec<f64> = recalls.values().copied().collect();
        assert!(values.windows(2).all(|w| w[0] <= w[1]), "{values:?}");
    }
    assert_eq!(report.text_to_image[&30], 1.0);
    assert_eq!(report.image_to_text[&150], 1.0);
    // A random model is near chance: R@1 for 30 images is about 1/30.
    assert!(report.text_to_image[&1] < 0.5);
}

#[test]
fn the_images_folder_can_be_given_separately() {
    let dir = shared_data().join("coco-mini");
    let a = read_captions_jsonl(&dir.join("captions.jsonl"), None).unwrap();
    let b = read_captions_jsonl(&dir.join("captions.jsonl"), Some(&dir)).unwrap();
    assert_eq!(a, b);
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), "{\"file\": \"x.jpg\"}\n").unwrap();
    let err = read_captions_jsonl(bad.path(), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("line 1") && err.contains("captions"), "{err}");
}
