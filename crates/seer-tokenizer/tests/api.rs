//! The public API: ids, truncation, padding, loading, errors, robustness.

mod common;

use std::fs;
use std::sync::Arc;

use seer_tokenizer::{ClipTokenizer, TokenizerError, CONTEXT_LENGTH, EOT, SOT, VOCAB_SIZE};
use serde_json::Value;

#[test]
fn hello_world() {
    for tok in [common::openai(), common::hf()] {
        assert_eq!(
            tok.encode("Hello World!", CONTEXT_LENGTH),
            [49406, 3306, 1002, 256, 49407]
        );
        assert_eq!(tok.vocab_size(), VOCAB_SIZE);
    }
}

#[test]
fn known_ids_from_open_clip() {
    // open_clip.tokenize(["A photo of a café, it's 😀!"])
    assert_eq!(
        common::openai().encode("A photo of a café, it's 😀!", CONTEXT_LENGTH),
        [49406, 320, 1125, 539, 320, 15304, 267, 585, 568, 12832, 256, 49407]
    );
    assert_eq!(common::openai().encode("", CONTEXT_LENGTH), [SOT, EOT]);
    assert_eq!(
        common::openai().encode(" \t\n ", CONTEXT_LENGTH),
        [SOT, EOT]
    );
}

#[test]
fn truncation_keeps_eot() {
    let tok = common::openai();
    let text = "a photo of a dog ".repeat(50);
    let ids = tok.encode(&text, CONTEXT_LENGTH);
    assert_eq!(ids.len(), CONTEXT_LENGTH);
    assert_eq!(ids[0], SOT);
    assert_eq!(ids[CONTEXT_LENGTH - 1], EOT);
    assert!(ids[1..CONTEXT_LENGTH - 1].iter().all(|&i| i != EOT));
    // The kept prefix is the same as the untruncated encoding's.
    let full = tok.encode(&text, usize::MAX);
    assert_eq!(full.len(), 2 + 50 * 5);
    assert_eq!(ids[..CONTEXT_LENGTH - 1], full[..CONTEXT_LENGTH - 1]);
    // open_clip.tokenize(["a b c d e f"], context_length=4) and (..., 1)
    assert_eq!(tok.encode("a b c d e f", 4), [49406, 320, 321, 49407]);
    assert_eq!(tok.encode("a b c", 1), [EOT]);
    assert_eq!(tok.encode("a b c", 0), Vec::<u32>::new());
    // Exactly full: SOT + 75 tokens + EOT is not cut.
    let exact = "a ".repeat(75);
    let ids = tok.encode(&exact, CONTEXT_LENGTH);
    assert_eq!(ids.len(), 77);
    assert_eq!(ids[75], 320);
    assert_eq!(ids[76], EOT);
}

#[test]
fn padding() {
    let tok = common::openai();
    let ids = tok.encode_padded("a photo of a cat", CONTEXT_LENGTH, 0);
    assert_eq!(ids.len(), CONTEXT_LENGTH);
    assert_eq!(ids[..7], [SOT, 320, 1125, 539, 320, 2368, EOT]);
    assert!(ids[7..].iter().all(|&i| i == 0));
    let ids = tok.encode_padded("cat", 8, EOT);
    assert_eq!(ids, [SOT, 2368, EOT, EOT, EOT, EOT, EOT, EOT]);
    let long = tok.encode_padded(&"cat ".repeat(100), 10, 0);
    assert_eq!(long.len(), 10);
    assert_eq!(long[9], EOT);
    assert!(tok.encode_padded("cat", 0, 0).is_empty());
}

#[test]
fn decode_like_openai() {
    let tok = common::openai();
    let ids = tok.encode("A photo of a café, it's 😀!", CONTEXT_LENGTH);
    assert_eq!(
        tok.decode(&ids),
        "<start_of_text>a photo of a café , it 's 😀! <end_of_text>"
    );
    assert_eq!(tok.decode(&[0, 0]), "!!");
    assert_eq!(tok.decode(&[u32::MAX]), "");
}

#[test]
fn special_token_text_maps_to_special_ids() {
    let tok = common::openai();
    assert_eq!(
        tok.encode("<start_of_text>", CONTEXT_LENGTH),
        [SOT, SOT, EOT]
    );
    assert_eq!(tok.encode("x<END_OF_TEXT>", CONTEXT_LENGTH)[2], EOT);
    // The Hub spelling is ordinary text to open_clip.
    assert!(tok.encode("<|endoftext|>", CONTEXT_LENGTH).len() > 3);
}

#[test]
fn from_dir_finds_each_format() {
    // tokenizer.json
    let tok = ClipTokenizer::from_dir(&common::hf_dir())
        .unwrap()
        .expect("tokenizer.json found");
    assert_eq!(
        tok.encode("Hello World!", 77),
        [49406, 3306, 1002, 256, 49407]
    );

    // OpenAI's gzip file alone
    let scratch = common::scratch();
    let dir = scratch.path();
    fs::copy(
        common::openai_gz(),
        dir.join("bpe_simple_vocab_16e6.txt.gz"),
    )
    .unwrap();
    let tok = ClipTokenizer::from_dir(dir).unwrap().expect("gz found");
    assert_eq!(
        tok.encode("Hello World!", 77),
        [49406, 3306, 1002, 256, 49407]
    );

    // merges.txt + vocab.json, written from tokenizer.json as the Hub does
    let scratch = common::scratch();
    let dir = scratch.path();
    let json: Value =
        serde_json::from_slice(&fs::read(common::hf_tokenizer_json()).unwrap()).unwrap();
    let mut merges = String::from("#version: 0.2\n");
    for m in json["model"]["merges"].as_array().unwrap() {
        merges.push_str(&format!(
            "{} {}\n",
            m[0].as_str().unwrap(),
            m[1].as_str().unwrap()
        ));
    }
    fs::write(dir.join("merges.txt"), merges).unwrap();
    fs::write(dir.join("vocab.json"), json["model"]["vocab"].to_string()).unwrap();
    let tok = ClipTokenizer::from_dir(dir)
        .unwrap()
        .expect("merges.txt found");
    assert_eq!(
        tok.encode("Hello World!", 77),
        [49406, 3306, 1002, 256, 49407]
    );

    // A vocab.json that disagrees with the merges is refused.
    let mut vocab = json["model"]["vocab"].as_object().unwrap().clone();
    vocab.insert("hello</w>".into(), Value::from(1002));
    vocab.insert("world</w>".into(), Value::from(3306));
    fs::write(dir.join("vocab.json"), Value::Object(vocab).to_string()).unwrap();
    let err = ClipTokenizer::from_dir(dir).unwrap_err();
    assert!(matches!(err, TokenizerError::VocabMismatch { .. }), "{err}");
    assert!(err.to_string().contains("vocab.json"), "{err}");

    // Nothing there.
    assert!(ClipTokenizer::from_dir(common::scratch().path())
        .unwrap()
        .is_none());
    assert!(
        ClipTokenizer::from_dir(&common::scratch().path().join("missing"))
            .unwrap()
            .is_none()
    );
}

#[test]
fn tokenizer_json_with_string_merges() {
    let scratch = common::scratch();
    let dir = scratch.path();
    let mut json: Value =
        serde_json::from_slice(&fs::read(common::hf_tokenizer_json()).unwrap()).unwrap();
    let merges: Vec<Value> = json["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            Value::from(format!(
                "{} {}",
                m[0].as_str().unwrap(),
                m[1].as_str().unwrap()
            ))
        })
        .collect();
    json["model"]["merges"] = Value::from(merges);
    let path = dir.join("tokenizer.json");
    fs::write(&path, json.to_string()).unwrap();
    let tok = ClipTokenizer::from_file(&path).unwrap();
    assert_eq!(
        tok.encode("Hello World!", 77),
        [49406, 3306, 1002, 256, 49407]
    );

    // ...and a mismatching vocabulary inside it is refused.
    json["model"]["vocab"]["hello</w>"] = Value::from(7);
    fs::write(&path, json.to_string()).unwrap();
    let err = ClipTokenizer::from_file(&path).unwrap_err();
    assert!(matches!(err, TokenizerError::VocabMismatch { .. }), "{err}");
}

#[test]
fn bad_files_are_errors_naming_the_file() {
    let scratch = common::scratch();
    let dir = scratch.path();
    let missing = dir.join("nope.txt.gz");
    let err = ClipTokenizer::from_file(&missing).unwrap_err();
    assert!(matches!(err, TokenizerError::Io { .. }));
    assert!(err.to_string().contains("nope.txt.gz"), "{err}");

    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage.bin", vec![0xff, 0xfe, 0x00, 0x12, 0x80, 0x81]),
        ("garbage.gz", vec![0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5, 6, 7]),
        ("empty.txt", vec![]),
        ("short.txt", b"#version: 0.2\ni n\nt h\n".to_vec()),
        ("three.txt", b"#version: 0.2\ni n x\n".to_vec()),
        ("notjson.json", b"{ not json".to_vec()),
        ("nomodel.json", b"{\"a\": 1}".to_vec()),
        (
            "wordpiece.json",
            b"{\"model\": {\"type\": \"WordPiece\"}}".to_vec(),
        ),
        (
            "badmerge.json",
            b"{\"model\": {\"merges\": [1, 2]}}".to_vec(),
        ),
        (
            "fewmerges.json",
            b"{\"model\": {\"merges\": [\"a b\"]}}".to_vec(),
        ),
    ];
    for (name, bytes) in cases {
        let path = dir.join(name);
        fs::write(&path, bytes).unwrap();
        let err = ClipTokenizer::from_file(&path).expect_err(name);
        assert!(err.to_string().contains(name), "{name}: {err}");
    }
    // A directory holding a broken tokenizer.json is an error, not `None`.
    let scratch = common::scratch();
    let dir = scratch.path();
    fs::write(dir.join("tokenizer.json"), "[]").unwrap();
    assert!(ClipTokenizer::from_dir(dir).is_err());
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn check_ids(ids: &[u32], text: &str, context: usize) {
    assert!(ids.len() <= context && ids.len() >= 2, "{text:?}: {ids:?}");
    assert_eq!(ids[0], SOT, "{text:?}");
    assert_eq!(*ids.last().unwrap(), EOT, "{text:?}");
    assert!(
        ids.iter().all(|&i| (i as usize) < VOCAB_SIZE),
        "{text:?}: {ids:?}"
    );
}

#[test]
fn fuzz_never_panics() {
    let tok = common::openai();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let fragments = [
        "&",
        "&amp;",
        "&#",
        "&#x",
        ";",
        "<",
        "\u{345}",
        "\u{301}",
        "\u{200d}",
        "\u{1f468}",
        "\u{fe0f}",
        "'s",
        "'",
        "<start_of_text>",
        "<end_of_text>",
        "\x1b[",
        "\r",
        "\n",
        "\u{85}",
        "ﬃ",
        "ｶﾞ",
        "\u{3000}",
        "Σ",
        "İ",
        "\u{feff}",
        "\u{10ffff}",
        "\u{e0067}",
        "0",
        "١",
        "Ⅻ",
        " ",
    ];
    for i in 0..20_000 {
        let text = match i % 3 {
            // Arbitrary bytes, decoded lossily.
            0 => {
                let bytes: Vec<u8> = (0..rng.below(64)).map(|_| rng.next() as u8).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            }
            // Arbitrary code points.
            1 => (0..rng.below(40))
                .filter_map(|_| char::from_u32(rng.below(0x11_0000) as u32))
                .collect(),
            // Tricky fragments glued together.
            _ => (0..rng.below(30))
                .map(|_| fragments[rng.below(fragments.len())])
                .collect(),
        };
        let context = if i % 7 == 0 {
            1 + rng.below(10)
        } else {
            CONTEXT_LENGTH
        };
        if context >= 2 {
            check_ids(&tok.encode(&text, context), &text, context);
        }
        assert_eq!(tok.encode_padded(&text, context, 0).len(), context);
    }
}

#[test]
fn huge_inputs_are_fine() {
    let tok = common::openai();
    let cases = [
        "a".repeat(200_000),
        "word ".repeat(100_000),
        "\u{1f600}".repeat(50_000),
        "&amp;".repeat(20_000),
        "&amp;".to_string() + &"amp;".repeat(100_000),
        "\u{301}".repeat(100_000),
        "x\n".repeat(100_000),
        "\u{1f468}\u{200d}".repeat(30_000),
    ];
    for text in &cases {
        let ids = tok.encode(text, CONTEXT_LENGTH);
        check_ids(
            &ids,
            &text.chars().take(8).collect::<String>(),
            CONTEXT_LENGTH,
        );
        assert_eq!(ids.len(), CONTEXT_LENGTH);
    }
}

#[test]
fn shared_across_threads() {
    let tok = Arc::new(ClipTokenizer::from_file(&common::openai_gz()).unwrap());
    let texts: Vec<String> = (0..200)
        .map(|i| format!("a photo of object number {i}, it's nice"))
        .collect();
    let want: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| common::openai().encode(t, 77))
        .collect();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (tok, texts) = (Arc::clone(&tok), texts.clone());
            std::thread::spawn(move || texts.iter().map(|t| tok.encode(t, 77)).collect::<Vec<_>>())
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), want);
    }
}
