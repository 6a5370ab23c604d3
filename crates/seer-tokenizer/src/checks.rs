//! Checks of a user's `tokenizer.json` for what the tokenizers crate accepts
//! when it loads a file but then panics on, at load or on the first text: it
//! `expect`s a `Precompiled` normaliser's charsmap to decode and parse (and
//! the decoder's JSON to be well-formed), and
//! its `TemplateProcessing` indexes the special tokens and sequences its
//! templates name without checking that they exist.

use serde_json::Value;

use crate::spm::check_precompiled_charsmap;

/// `Ok` for a file whose parts named above are sound. Invalid JSON is
/// refused here too: the crate parses as it goes and `expect`s the decoder's
/// part to parse, so a syntax error there panics.
pub(crate) fn check_tokenizer_json(bytes: &[u8]) -> Result<(), String> {
    let json: Value = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    walk(&json)
}

fn walk(v: &Value) -> Result<(), String> {
    match v {
        Value::Object(o) => {
            match o.get("type").and_then(Value::as_str) {
                Some("Precompiled") => precompiled(v)?,
                Some("TemplateProcessing") => template(v)?,
                _ => {}
            }
            o.values().try_for_each(walk)
        }
        Value::Array(a) => a.iter().try_for_each(walk),
        _ => Ok(()),
    }
}

fn precompiled(v: &Value) -> Result<(), String> {
    // A charsmap that is not a string is refused by the crate's own parse.
    let Some(text) = v.get("precompiled_charsmap").and_then(Value::as_str) else {
        return Ok(());
    };
    let map = base64_decode(text).ok_or("the Precompiled normaliser's charsmap is not base64")?;
    if map.is_empty() {
        return Ok(());
    }
    check_precompiled_charsmap(&map).map_err(|e| format!("Precompiled normaliser: {e}"))
}

/// Standard base64 with its `=` padding (as Python writes it); stricter than
/// the crate's decoder, so what passes here decodes there.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let digit = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let chunks = bytes.len() / 4;
    for (i, chunk) in bytes.chunks_exact(4).enumerate() {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != chunks) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = n << 6 | digit(c)?;
        }
        n <<= 6 * pad as u32;
        let [_, a, b, c] = n.to_be_bytes();
        out.extend(&[a, b, c][..3 - pad]);
    }
    Some(out)
}

/// The sequence and special-token ids of a template: a list of pieces
/// (`{"Sequence": {"id": "A"}}`, `{"SpecialToken": {"id": "[CLS]"}}`) or a
/// string (`"[CLS] $A [SEP]"`, with optional `:type_id`s).
fn pieces(template: &Value) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    match template {
        Value::String(s) => {
            for word in s.split_whitespace() {
                let id = word.rsplit_once(':').map_or(word, |(id, _)| id);
                match id.strip_prefix('$') {
                    Some(seq) => out.push((true, seq.to_string())),
                    None => out.push((false, id.to_string())),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                if let Some(seq) = item.get("Sequence") {
                    let id = seq.get("id").and_then(Value::as_str).unwrap_or("A");
                    out.push((true, id.to_string()));
                } else if let Some(tok) = item.get("SpecialToken") {
                    let id = tok.get("id").and_then(Value::as_str).unwrap_or_default();
                    out.push((false, id.to_string()));
                }
            }
        }
        _ => {}
    }
    out
}

fn template(v: &Value) -> Result<(), String> {
    let specials = v.get("special_tokens");
    for key in ["single", "pair"] {
        let Some(t) = v.get(key) else { continue };
        for (sequence, id) in pieces(t) {
            if sequence {
                // One text is encoded: the single template may name only it.
                let a = matches!(id.as_str(), "A" | "a" | "") || id.parse::<u32>().is_ok();
                if key == "single" && !a {
                    return Err(format!(
                        "TemplateProcessing: the single template names sequence {id}"
                    ));
                }
            } else if specials.and_then(|s| s.get(&id)).is_none() {
                return Err(format!(
                    "TemplateProcessing: the {key} template names the special token {id:?}, which special_tokens lacks"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wordpiece::WordPieceTokenizer;

    /// A WordPiece `tokenizer.json` with `normalizer`, `post_processor` and
    /// `decoder` as given (JSON text).
    fn tokenizer_json(normalizer: &str, post_processor: &str, decoder: &str) -> String {
        format!(
            r###"{{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
                "normalizer": {normalizer}, "pre_tokenizer": {{"type": "Whitespace"}},
                "post_processor": {post_processor}, "decoder": {decoder},
                "model": {{"type": "WordPiece", "unk_token": "[UNK]",
                          "continuing_subword_prefix": "##", "max_input_chars_per_word": 100,
                          "vocab": {{"[UNK]": 0, "a": 1, "[CLS]": 2}}}}}}"###
        )
    }

    /// The error of loading `json` and encoding a text with it.
    fn error(json: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, json).unwrap();
        let result = WordPieceTokenizer::from_file(&path).and_then(|t| t.encode("a a"));
        let err = result
            .expect_err("a damaged tokenizer.json was accepted")
            .to_string();
        assert!(err.contains("tokenizer.json: "), "{err}");
        err
    }

    #[test]
    fn the_sound_file_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        let template = r#"{"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [2], "tokens": ["[CLS]"]}}}"#;
        std::fs::write(&path, tokenizer_json("null", template, "null")).unwrap();
        let tok = WordPieceTokenizer::from_file(&path).unwrap();
        assert_eq!(tok.encode("a a").unwrap(), [2, 1, 1]);
    }

    #[test]
    fn a_precompiled_charsmap_that_does_not_parse_is_refused_not_panicking() {
        // tokenizers `expect`ed it to parse (after reserving 8 GiB for it).
        let bad = r#"{"type": "Precompiled", "precompiled_charsmap": "8P///wECAwQ="}"#;
        let err = error(&tokenizer_json(bad, "null", "null"));
        assert!(err.contains("longer than the charsmap"), "{err}");
        let bad = r#"{"type": "Precompiled", "precompiled_charsmap": "8P//=/wECAwQ="}"#;
        let err = error(&tokenizer_json(bad, "null", "null"));
        assert!(err.contains("not base64"), "{err}");
    }

    #[test]
    fn a_template_naming_a_missing_special_token_is_refused_not_panicking() {
        // tokenizers indexed its special tokens by the name when encoding.
        let template = r#"{"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {}}"#;
        let err = error(&tokenizer_json("null", template, "null"));
        assert!(err.contains("special token \"[CLS]\""), "{err}");
    }

    #[test]
    fn a_single_template_naming_the_second_sequence_is_refused_not_panicking() {
        // One text is one encoding; tokenizers indexed a second one.
        let template = r#"{"type": "TemplateProcessing",
            "single": [{"Sequence": {"id": "B", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {}}"#;
        let err = error(&tokenizer_json("null", template, "null"));
        assert!(err.contains("names sequence B"), "{err}");
    }

    #[test]
    fn a_syntax_error_in_the_decoder_is_refused_not_panicking() {
        // tokenizers `expect`ed the decoder's part to parse.
        let decoder = r###"{"type": "WordPiece", "prefix": "##" "cleanup": true}"###;
        let err = error(&tokenizer_json("null", "null", decoder));
        assert!(err.contains("invalid JSON"), "{err}");
    }

    #[test]
    fn base64_decodes_what_python_writes_and_refuses_the_rest() {
        for (coded, plain) in [
            ("", ""),
            ("Zg==", "f"),
            ("Zm8=", "fo"),
            ("Zm9vYmFy", "foobar"),
        ] {
            assert_eq!(base64_decode(coded).unwrap(), plain.as_bytes());
        }
        for bad in ["Zg=", "Z===", "Zg==Zg==", "Zm9*", "Zm9"] {
            assert!(base64_decode(bad).is_none(), "{bad}");
        }
    }
}
