//! Damaged or odd model folders, copied from the tiny fixtures and broken on
//! purpose: each gives a clear error that names the file and the cause (exit
//! 2), never a panic, an abort or an allocation far beyond the files' size.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use seer_testkit::{repo_root, shared_data, tokenizer_file};
use serde_json::{json, Value};

/// Runs seer under an 8 GB address-space limit where `prlimit` exists, so a
/// regression that asks for a huge buffer fails fast instead of swapping.
fn seer(args: &[&str]) -> Output {
    let bin = env!("CARGO_BIN_EXE_seer");
    let prlimit = Path::new("/usr/bin/prlimit");
    let mut cmd = if prlimit.is_file() {
        let mut c = Command::new(prlimit);
        c.arg("--as=8000000000").arg(bin);
        c
    } else {
        Command::new(bin)
    };
    cmd.args(args)
        .env("SEER_TOKENIZER", tokenizer_file())
        .env("HF_HUB_OFFLINE", "1")
        .env(
            "HF_HOME",
            std::env::temp_dir().join("seer-test-empty-hf-home"),
        )
        .env_remove("SEER_MODEL")
        .output()
        .expect("run seer")
}

fn image() -> String {
    shared_data()
        .join("smoke/skimage/astronaut.png")
        .display()
        .to_string()
}

/// A copy of the fixture folder `rel` (from the repository root).
fn copy_fixture(rel: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(repo_root().join(rel)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

/// Rewrites the header of a safetensors file, leaving its data as it is.
fn edit_safetensors_header(path: &Path, edit: impl FnOnce(&mut Value)) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let text = header.to_string();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text.as_bytes());
    out.extend(&bytes[8 + n..]);
    std::fs::write(path, out).unwrap();
}

/// Asserts a clean refusal: exit 2, no panic, and every `needle` in stderr.
fn assert_refused(o: &Output, needles: &[&str]) -> String {
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!err.contains("panicked"), "panic: {err}");
    assert_eq!(o.status.code(), Some(2), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "no {needle:?} in: {err}");
    }
    err
}

#[test]
fn a_sam_decoder_without_layers_is_a_config_error() {
    // It used to index the first of zero decoder blocks and panic.
    let dir = copy_fixture("fixtures/sam/sam-tiny");
    let config = dir.path().join("config.json");
    edit_json(&config, |c| {
        c["mask_decoder_config"]["num_hidden_layers"] = 0.into()
    });
    let m = dir.path().to_str().unwrap();
    let o = seer(&["segment", "--model", m, &image(), "--point", "10,10"]);
    assert_refused(
        &o,
        &[
            config.to_str().unwrap(),
            "mask_decoder_config: num_hidden_layers must be positive",
        ],
    );
}

#[test]
fn an_owl_image_size_that_wraps_the_grid_is_a_config_error() {
    // 2^63 px over 16 px patches squares to 0 mod 2^64: a one-row position
    // table matched, and building the box bias overflowed a Vec's capacity.
    let dir = copy_fixture("fixtures/owlvit/owlv2-tiny");
    let config = dir.path().join("config.json");
    edit_json(&config, |c| {
        c["vision_config"]["image_size"] = json!(1u64 << 63);
    });
    edit_safetensors_header(&dir.path().join("model.safetensors"), |h| {
        let e = &mut h["owlv2.vision_model.embeddings.position_embedding.weight"];
        let begin = e["data_offsets"][0].as_u64().unwrap();
        e["shape"] = json!([1, 32]);
        e["data_offsets"] = json!([begin, begin + 32 * 4]);
    });
    let m = dir.path().to_str().unwrap();
    let o = seer(&["detect", "--model", m, &image(), "--labels", "cat"]);
    assert_refused(
        &o,
        &[
            config.to_str().unwrap(),
            "vision_config.image_size 9223372036854775808 is out of range",
        ],
    );
}

#[test]
fn an_image_size_that_sizes_gigabytes_from_a_small_file_is_a_config_error() {
    // 65536 px over 256 px patches: a 33 MB checkpoint whose preprocessed
    // image alone is 65536² × 3 f32 (51 GB).
    let dir = copy_fixture("fixtures/models/hf-vit-quickgelu");
    let config = dir.path().join("config.json");
    edit_json(&config, |c| {
        c["vision_config"]["image_size"] = 65536.into();
        c["vision_config"]["patch_size"] = 256.into();
    });
    edit_json(&dir.path().join("preprocessor_config.json"), |p| {
        p["crop_size"] = json!({"height": 65536, "width": 65536});
        p["size"] = json!({"shortest_edge": 65536});
    });
    let m = dir.path().to_str().unwrap();
    let o = seer(&["embed", "--model", m, "--image", &image(), "--json"]);
    assert_refused(
        &o,
        &[
            config.to_str().unwrap(),
            "vision_config.image_size 65536 is out of range",
        ],
    );
}

#[test]
fn a_resnet_stage_without_blocks_is_a_config_error() {
    // It ran, then failed inside a broadcast without naming any file.
    let dir = copy_fixture("fixtures/models/openclip-rn");
    let config = dir.path().join("open_clip_config.json");
    edit_json(&config, |c| {
        c["model_cfg"]["vision_cfg"]["layers"][3] = 0.into()
    });
    let m = dir.path().to_str().unwrap();
    let o = seer(&["embed", "--model", m, "--image", &image(), "--json"]);
    assert_refused(&o, &[config.to_str().unwrap(), "must all be positive"]);
}

#[test]
fn a_legacy_pickle_checkpoint_is_refused_without_running_it() {
    // torch.save before 1.6 wrote a bare pickle, not a zip; this one calls
    // os.system. seer reads only zip checkpoints, through a reader that knows
    // just the opcodes of tensors (the zip case is a unit test in seer-models).
    let dir = copy_fixture("fixtures/models/hf-vit-gelu-bin");
    let marker: PathBuf = dir.path().join("pwned");
    let command = format!("touch {}", marker.display());
    let mut pickle = b"\x80\x02}X\x01\x00\x00\x00acos\nsystem\nX".to_vec();
    pickle.extend((command.len() as u32).to_le_bytes());
    pickle.extend(command.as_bytes());
    pickle.extend(b"\x85Rs.");
    let weights = dir.path().join("pytorch_model.bin");
    std::fs::write(&weights, &pickle).unwrap();
    let m = dir.path().to_str().unwrap();
    let o = seer(&["embed", "--model", m, "--image", &image(), "--json"]);
    assert_refused(
        &o,
        &[
            weights.to_str().unwrap(),
            "not a PyTorch zip checkpoint (damaged, or the legacy torch.save format)",
        ],
    );
    assert!(!marker.exists(), "the pickle's code ran");
}

#[test]
fn damaged_safetensors_name_the_file_and_the_cause() {
    let fixture = "fixtures/families/dinov2-tiny";
    let bytes = std::fs::read(repo_root().join(fixture).join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut lying = bytes.clone();
    lying[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    type Damage = Box<dyn Fn(&Path)>;
    let write = |b: Vec<u8>| -> Damage { Box::new(move |p: &Path| std::fs::write(p, &b).unwrap()) };
    let header =
        |f: fn(&mut Value)| -> Damage { Box::new(move |p: &Path| edit_safetensors_header(p, f)) };
    let cases: Vec<(&str, Damage, &str)> = vec![
        ("empty", write(Vec::new()), "too short"),
        (
            "cut in the header",
            write(bytes[..8 + n / 2].to_vec()),
            "not a safetensors file",
        ),
        (
            "cut in the data",
            write(bytes[..bytes.len() / 2].to_vec()),
            "do not fit",
        ),
        ("header length lies", write(lying), "not a safetensors file"),
        (
            "f64 in place of f32",
            header(|h| {
                let e = &mut h["embeddings.cls_token"];
                e["dtype"] = json!("F64");
                e["shape"] = json!([1, 1, 20]);
            }),
            "embeddings.cls_token",
        ),
        (
            "i64 in place of f32",
            header(|h| {
                let e = &mut h["embeddings.cls_token"];
                e["dtype"] = json!("I64");
                e["shape"] = json!([1, 1, 20]);
            }),
            "embeddings.cls_token",
        ),
        (
            "wrong shape",
            header(|h| h["embeddings.cls_token"]["shape"] = json!([1, 40, 1])),
            "embeddings.cls_token",
        ),
        (
            "missing tensor",
            header(|h| {
                h.as_object_mut().unwrap().remove("layernorm.weight");
            }),
            "missing tensor 'layernorm.weight'",
        ),
        (
            "offsets past the end",
            header(|h| {
                h["embeddings.cls_token"]["data_offsets"] = json!([1u64 << 40, (1u64 << 40) + 160])
            }),
            "do not fit",
        ),
        (
            "shape overflowing usize",
            header(|h| h["embeddings.cls_token"]["shape"] = json!([1u64 << 62, 16])),
            "do not fit",
        ),
    ];
    for (what, damage, needle) in cases {
        let dir = copy_fixture(fixture);
        let weights = dir.path().join("model.safetensors");
        damage(&weights);
        let m = dir.path().to_str().unwrap();
        let o = seer(&["embed", "--model", m, "--image", &image(), "--json"]);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(!err.contains("panicked"), "{what}: {err}");
        assert_eq!(o.status.code(), Some(2), "{what}: {err}");
        assert!(
            err.contains(weights.to_str().unwrap()) && err.contains(needle),
            "{what}: no {needle:?} in {err}"
        );
    }
}

/// CRC-32 (IEEE), which every zip entry carries.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// Replaces bytes of the first entry (`data.pkl`, as torch.save writes it:
/// stored, sizes and CRC in the central directory and a data descriptor)
/// of a PyTorch zip checkpoint with as many others, CRCs kept right.
fn edit_torch_pickle(path: &Path, find: &[u8], replace: &[u8]) {
    assert_eq!(find.len(), replace.len());
    let mut b = std::fs::read(path).unwrap();
    let u16_at = |b: &[u8], i: usize| u16::from_le_bytes([b[i], b[i + 1]]) as usize;
    let (name_len, extra_len) = (u16_at(&b, 26), u16_at(&b, 28));
    assert!(b[30..30 + name_len].ends_with(b"data.pkl"));
    let start = 30 + name_len + extra_len;
    let central = b.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    let size = u32::from_le_bytes(b[central + 20..central + 24].try_into().unwrap()) as usize;
    let at = start
        + b[start..start + size]
            .windows(find.len())
            .position(|w| w == find)
            .unwrap();
    b[at..at + replace.len()].copy_from_slice(replace);
    let crc = crc32(&b[start..start + size]).to_le_bytes();
    b[central + 16..central + 20].copy_from_slice(&crc);
    if b[start + size..].starts_with(b"PK\x07\x08") {
        b[start + size + 4..start + size + 8].copy_from_slice(&crc);
    }
    std::fs::write(path, b).unwrap();
}

#[test]
fn a_damaged_pickle_entry_is_refused_and_nothing_stray_is_printed() {
    // candle's reader printed "skipping: conversion error …" to stderr for
    // an entry it could not read and ran without it; torch.load fails on it.
    let dir = copy_fixture("fixtures/models/hf-vit-gelu-bin");
    let weights = dir.path().join("pytorch_model.bin");
    // logit_scale's stride `()` (EMPTY_TUPLE) becomes None.
    edit_torch_pickle(&weights, b"QK\x00))\x89", b"QK\x00)N\x89");
    let m = dir.path().to_str().unwrap();
    let o = seer(&["embed", "--model", m, "--image", &image(), "--json"]);
    let err = assert_refused(
        &o,
        &[
            weights.to_str().unwrap(),
            "tensor 'logit_scale': the stride is not a tuple",
        ],
    );
    assert!(
        o.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(!err.contains("skipping"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn an_owlv2_processor_config_error_names_its_path_once() {
    // transformers 5 writes processor_config.json; the error read
    // ".../processor_config.json: preprocessor_config.json: invalid …".
    let dir = copy_fixture("fixtures/owlvit/owlv2-tiny");
    let processor = dir.path().join("processor_config.json");
    edit_json(&processor, |p| {
        p["image_processor"]["image_mean"] = json!("x")
    });
    let m = dir.path().to_str().unwrap();
    let o = seer(&["detect", "--model", m, &image(), "--labels", "cat"]);
    let err = assert_refused(
        &o,
        &[&format!(
            "{}: invalid preprocessing config: ",
            processor.display()
        )],
    );
    assert_eq!(err.matches("config.json").count(), 1, "{err}");
    // A size the model does not take named preprocessor_config.json, which
    // the folder does not have.
    edit_json(&processor, |p| {
        p["image_processor"]["image_mean"] = json!([0.5, 0.5, 0.5]);
        p["image_processor"]["size"] = json!({"height": 64, "width": 64});
    });
    let o = seer(&["detect", "--model", m, &image(), "--labels", "cat"]);
    assert_refused(
        &o,
        &[&format!(
            "{}: resizes to 64×64, but the model's image_size is 96",
            processor.display()
        )],
    );
}

#[test]
fn damaged_blip_side_files_transformers_refuses_are_refused() {
    // Both were passed over: transformers fails to load either folder.
    type Damage = fn(&Path);
    let cases: [(&str, Damage, &str); 3] = [
        (
            "generation_config.json",
            |p| std::fs::write(p, "[1]").unwrap(),
            "not a generation config: expected a JSON object",
        ),
        (
            "tokenizer_config.json",
            |p| edit_json(p, |t| t["do_lower_case"] = json!("x")),
            "do_lower_case: expected true or false",
        ),
        (
            "tokenizer_config.json",
            |p| edit_json(p, |t| t["model_max_length"] = json!("64")),
            "model_max_length: expected a number",
        ),
    ];
    for (file, damage, needle) in cases {
        let dir = copy_fixture("fixtures/blip/caption-tiny");
        let path = dir.path().join(file);
        damage(&path);
        let m = dir.path().to_str().unwrap();
        let o = seer(&["caption", "--model", m, &image()]);
        assert_refused(&o, &[&format!("{}: {needle}", path.display())]);
    }
}

#[test]
fn a_blip_generation_config_transformers_passes_over_changes_nothing() {
    // Text that is not JSON: transformers falls back to config.json's
    // settings, which BLIP's generate does not read either.
    let dir = copy_fixture("fixtures/blip/caption-tiny");
    let m = dir.path().to_str().unwrap();
    let before = seer(&["caption", "--model", m, &image()]);
    assert_eq!(before.status.code(), Some(0));
    std::fs::write(
        dir.path().join("generation_config.json"),
        "{\"num_beams\": ",
    )
    .unwrap();
    let after = seer(&["caption", "--model", m, &image()]);
    assert_eq!(after.status.code(), Some(0));
    assert_eq!(before.stdout, after.stdout);
}

#[test]
fn a_damaged_owl_tokenizer_config_is_refused() {
    // seer's CLIP tokenizer reads nothing of it, so any damage passed;
    // transformers' OWL processor fails to load it.
    let dir = copy_fixture("fixtures/owlvit/owlv2-tiny");
    let path = dir.path().join("tokenizer_config.json");
    std::fs::write(&path, "[1]").unwrap();
    let m = dir.path().to_str().unwrap();
    let o = seer(&["detect", "--model", m, &image(), "--labels", "cat"]);
    assert_refused(
        &o,
        &[&format!(
            "{}: not a tokenizer config: expected a JSON object",
            path.display()
        )],
    );
}

#[test]
fn config_keys_seer_ignored_are_checked() {
    // Each ran as if the key were its default; transformers fails on each.
    type Edit = fn(&mut Value);
    let cases: [(&str, &[&str], Edit, &str); 3] = [
        (
            "fixtures/owlvit/owlv2-tiny",
            &["detect", "--labels", "cat"],
            |c| c["vision_config"]["num_channels"] = 1.into(),
            "vision_config.num_channels 1 is not supported",
        ),
        (
            "fixtures/sam/sam-tiny",
            &["segment", "--point", "10,10"],
            |c| c["mask_decoder_config"]["attention_downsample_rate"] = 4.into(),
            "mask_decoder_config: attention_downsample_rate 4 and hidden_size 32 make \
             mask_decoder.transformer.final_attn_token_to_image 8 wide, but the checkpoint's is 16",
        ),
        (
            "fixtures/sam/sam-tiny",
            &["segment", "--point", "10,10"],
            |c| c["prompt_encoder_config"]["image_embedding_size"] = 32.into(),
            "prompt_encoder_config: image_embedding_size 32 is not the vision encoder's grid of 64",
        ),
    ];
    for (fixture, args, edit, needle) in cases {
        let dir = copy_fixture(fixture);
        let config = dir.path().join("config.json");
        edit_json(&config, edit);
        let m = dir.path().to_str().unwrap();
        let mut argv = vec![args[0], "--model", m];
        let img = image();
        argv.push(&img);
        argv.extend(&args[1..]);
        let o = seer(&argv);
        assert_refused(&o, &[&format!("{}: {needle}", config.display())]);
    }
}
