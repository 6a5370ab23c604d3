//! A small index the unit tests of several modules build on.

use std::path::Path;

use crate::store::{write, FileRecord, ModelInfo, Store};

/// An index of 40 unit vectors in 8-d for model "m", paths `/p/{i}.jpg`,
/// committed as one generation.
pub(crate) fn store_with_vectors(dir: &Path) -> (Store, ModelInfo) {
    let mut store = Store::open(dir).unwrap();
    let tx = store.transaction().unwrap();
    let model = write::model_id(&tx, "m", 8).unwrap();
    for i in 0..40u32 {
        let v: Vec<f32> = (0..8)
            .map(|d| ((i * 31 + d * 17) % 23) as f32 - 11.0)
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        let v: Vec<f32> = v.iter().map(|x| x / n).collect();
        let file = FileRecord {
            path: format!("/p/{i}.jpg"),
            ..Default::default()
        };
        let id = write::upsert_file(&tx, &file).unwrap();
        write::put_embedding(&tx, id, model, crate::Encoding::F32, &v).unwrap();
    }
    write::bump_generation(&tx).unwrap();
    tx.commit().unwrap();
    let info = store.choose_model(Some("m")).unwrap();
    (store, info)
}
