//! Mutation fuzzing of the tokenizer files a model folder can hold (see
//! `seer_testkit::fuzz` for the mutations and what is saved where). Not run
//! by default; each harness, on one core of a 2-core machine:
//!
//! ```text
//! cargo test --release -q -p seer-tokenizer -- --ignored fuzz_ --test-threads=1 --nocapture
//! ```
//!
//! `fuzz_clip_merges` ~3 min, `fuzz_spiece_model` ~1 min, `fuzz_tokenizer_json`
//! ~1 min, `fuzz_wordpiece_vocab` ~1 min. Panicking, slow or
//! huge-allocating inputs are saved under /tmp/fuzz-models/<harness>/.
#![cfg(test)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::siglip::{SiglipFlavour, SiglipTokenizer};
use crate::wordpiece::WordPieceTokenizer;
use crate::ClipTokenizer;
use seer_testkit::fuzz::{assert_clean, fixture_files, mutate_bytes, mutate_json, run};

const TEXT: &str = "A photo of a cat, naïve café 日本語 ▁ </s> [SEP] ##ing!!";

fn shared(name: &str) -> PathBuf {
    Path::new("/work/shared/data/clip-tokenizer").join(name)
}

/// Writes `bytes` to `dir/name` and returns the path.
fn put(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn string_err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// `bpe_simple_vocab_16e6.txt.gz` (mutated as text, then gzipped) and a
/// `merges.txt` with and without a `vocab.json` beside it (from the CLIP
/// `tokenizer.json`), through `ClipTokenizer::from_file` and an encode.
#[test]
#[ignore = "fuzzing: run by hand"]
fn fuzz_clip_merges() {
    let mut merges = String::new();
    flate2::read::MultiGzDecoder::new(
        std::fs::File::open(shared("bpe_simple_vocab_16e6.txt.gz")).unwrap(),
    )
    .read_to_string(&mut merges)
    .unwrap();
    let tokenizer_json = shared("hf-clip-vit-base-patch32/tokenizer.json");
    let vocab: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tokenizer_json).unwrap()).unwrap();
    let vocab = serde_json::to_vec(&vocab["model"]["vocab"]).unwrap();
    // The whole file: a CLIP vocabulary needs all 48,894 merges.
    let seeds = vec![
        merges.clone().into_bytes(),
        merges.clone().into_bytes(),
        merges.into_bytes(),
    ];
    let dir = tempfile::tempdir().unwrap();
    let target = |which: usize, bytes: &[u8]| -> Result<(), String> {
        let _ = std::fs::remove_file(dir.path().join("vocab.json"));
        let path = match which {
            0 => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(bytes).unwrap();
                put(
                    dir.path(),
                    "bpe_simple_vocab_16e6.txt.gz",
                    &gz.finish().unwrap(),
                )
            }
            1 => put(dir.path(), "merges.txt", bytes),
            _ => {
                put(dir.path(), "vocab.json", &vocab);
                put(dir.path(), "merges.txt", bytes)
            }
        };
        let tok = ClipTokenizer::from_file(&path).map_err(string_err)?;
        tok.encode(TEXT, 77);
        Ok(())
    };
    // 1.3 MB to parse each time: fewer inputs.
    let findings = run("clip-merges", &seeds, 1000, mutate_bytes, &target);
    assert_clean("clip-merges", &findings);
}

/// SigLIP's `spiece.model` (protobuf, converted to a tokenizers pipeline)
/// through `SiglipTokenizer::from_spiece_model` and an encode.
#[test]
#[ignore = "fuzzing: run by hand"]
fn fuzz_spiece_model() {
    let seeds: Vec<Vec<u8>> = fixture_files(&["families"], &|n| n == "spiece.model")
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let target = |_: usize, bytes: &[u8]| -> Result<(), String> {
        let path = put(dir.path(), "spiece.model", bytes);
        let tok = SiglipTokenizer::from_spiece_model(&path, 64).map_err(string_err)?;
        tok.encode(TEXT).map_err(string_err)?;
        Ok(())
    };
    let findings = run("spiece-model", &seeds, 1500, mutate_bytes, &target);
    assert_clean("spiece-model", &findings);
}

/// The `tokenizer.json` files of the SigLIP, SigLIP 2 and BLIP fixtures
/// (JSON-aware mutations) through the HF tokenizers crate, as SigLIP and
/// WordPiece tokenizers, and an encode.
#[test]
#[ignore = "fuzzing: run by hand"]
fn fuzz_tokenizer_json() {
    let files = fixture_files(&["families", "blip"], &|n| {
        n == "tokenizer.json" || n == "tokenizer.fast-equivalent.json"
    });
    let seeds: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let blip: Vec<bool> = files
        .iter()
        .map(|p| p.to_string_lossy().contains("/blip/"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let target = |which: usize, bytes: &[u8]| -> Result<(), String> {
        let path = put(dir.path(), "tokenizer.json", bytes);
        if blip[which] {
            let tok = WordPieceTokenizer::from_file(&path).map_err(string_err)?;
            let ids = tok.encode(TEXT).map_err(string_err)?;
            tok.decode(&ids).map_err(string_err)?;
        } else {
            // The flavour that reads the seed (each checks its own tokens).
            let mut result = Ok(());
            for flavour in [
                SiglipFlavour::Siglip,
                SiglipFlavour::Siglip2,
                SiglipFlavour::Gemma,
            ] {
                result = SiglipTokenizer::from_file(&path, flavour, 64)
                    .and_then(|tok| tok.encode(TEXT))
                    .map(|_| ())
                    .map_err(string_err);
                if result.is_ok() {
                    break;
                }
            }
            result?;
        }
        Ok(())
    };
    let findings = run("tokenizer-json", &seeds, 3000, mutate_json, &target);
    assert_clean("tokenizer-json", &findings);
}

/// BLIP's `vocab.txt` through `WordPieceTokenizer::from_vocab` and an encode.
#[test]
#[ignore = "fuzzing: run by hand"]
fn fuzz_wordpiece_vocab() {
    let seeds: Vec<Vec<u8>> = fixture_files(&["blip/caption-tiny"], &|n| n == "vocab.txt")
        .iter()
        .map(|p| std::fs::read(p).unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let target = |_: usize, bytes: &[u8]| -> Result<(), String> {
        let path = put(dir.path(), "vocab.txt", bytes);
        let tok = WordPieceTokenizer::from_vocab(&path, true).map_err(string_err)?;
        let ids = tok.encode(TEXT).map_err(string_err)?;
        tok.decode(&ids).map_err(string_err)?;
        Ok(())
    };
    let findings = run("wordpiece-vocab", &seeds, 5000, mutate_bytes, &target);
    assert_clean("wordpiece-vocab", &findings);
}
