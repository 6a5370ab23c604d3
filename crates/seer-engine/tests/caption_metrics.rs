//! BLEU and CIDEr-D against the COCO caption evaluation itself: the numbers in
//! fixtures/caption_metrics/reference.json are pycocoevalcap's (`Bleu(4)`,
//! `Cider()`, and its Java `PTBTokenizer`) on coco-mini, made by
//! scripts/make_caption_metric_fixtures.py.

use seer_engine::caption_metrics::{
    bleu, cider_d, python_split, score_captions, score_tokenized, tokenize, tokenize_caption,
    CaptionExample,
};
use seer_testkit::{read_json, repo_root};
use serde_json::Value;

fn fixture() -> Value {
    read_json(&repo_root().join("fixtures/caption_metrics/reference.json"))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("a list")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

/// The references of every coco-mini image: raw, and as PTBTokenizer left them.
fn references(fx: &Value) -> (Vec<Vec<String>>, Vec<Vec<String>>) {
    let images = fx["references"].as_array().expect("references");
    (
        images.iter().map(|i| strings(&i["raw"])).collect(),
        images.iter().map(|i| strings(&i["tokens"])).collect(),
    )
}

/// pycocoevalcap's numbers are reproduced operation for operation; what is
/// left is the last bit of a logarithm.
fn assert_close(got: f64, want: f64, what: &str) {
    let tol = 1e-9 * want.abs().max(1.0);
    assert!(
        (got - want).abs() <= tol,
        "{what}: seer {got:.17}, pycocoevalcap {want:.17}"
    );
}

fn examples(candidates: &[String], references: &[Vec<String>]) -> Vec<CaptionExample> {
    candidates
        .iter()
        .zip(references)
        .map(|(c, r)| CaptionExample {
            candidate: c.clone(),
            references: r.clone(),
        })
        .collect()
}

fn assert_scores(case: &Value, examples: &[CaptionExample], report_of: &str, per_image: bool) {
    let report = if report_of == "raw" {
        score_captions(examples, true).unwrap()
    } else {
        score_tokenized(examples, true).unwrap()
    };
    let name = case["name"].as_str().unwrap_or("raw");
    assert_eq!(report.images, examples.len());
    for (k, want) in floats(&case["bleu"]).into_iter().enumerate() {
        assert_close(report.bleu[k], want, &format!("{name}: BLEU-{}", k + 1));
    }
    assert_eq!(report.bleu4, report.bleu[3]);
    assert_close(
        report.cider,
        case["cider"].as_f64().unwrap(),
        &format!("{name}: CIDEr"),
    );
    if per_image {
        let b4 = floats(&case["per_image_bleu4"]);
        let cider = floats(&case["per_image_cider"]);
        assert_eq!(report.per_image.len(), examples.len());
        for (i, s) in report.per_image.iter().enumerate() {
            assert_close(s.bleu[3], b4[i], &format!("{name}: image {i} BLEU-4"));
            assert_close(s.cider, cider[i], &format!("{name}: image {i} CIDEr"));
        }
    }
}

#[test]
fn scores_match_pycocoevalcap_on_tokenised_captions() {
    let fx = fixture();
    let (_, refs) = references(&fx);
    let rest: Vec<Vec<String>> = refs.iter().map(|r| r[1..].to_vec()).collect();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 6);
    for case in cases {
        let candidates = strings(&case["candidates"]);
        let pool = match case["references"].as_str().unwrap() {
            "all" => &refs,
            "rest" => &rest,
            other => panic!("unknown reference set {other}"),
        };
        let examples = examples(&candidates, &pool[..candidates.len()]);
        assert_scores(case, &examples, "tokenised", true);
        // The lower-level functions give the same numbers.
        let (b, _) = bleu(&examples).unwrap();
        let (c, per_image) = cider_d(&examples).unwrap();
        assert_close(b[3], floats(&case["bleu"])[3], "bleu()");
        assert_close(c, case["cider"].as_f64().unwrap(), "cider_d()");
        assert_eq!(per_image.len(), examples.len());
    }
}

#[test]
fn raw_captions_score_as_the_whole_coco_pipeline() {
    // PTBTokenizer on raw candidates and references, then both scorers.
    let fx = fixture();
    let (raw_refs, _) = references(&fx);
    let case = &fx["raw_case"];
    let candidates = strings(&case["candidates"]);
    assert_scores(case, &examples(&candidates, &raw_refs), "raw", true);
}

#[test]
fn tokenizer_agrees_with_ptbtokenizer_on_every_coco_reference() {
    let fx = fixture();
    let (raw, tokens) = references(&fx);
    let mut checked = 0;
    for (raw, tokens) in raw.iter().zip(&tokens) {
        for (r, t) in raw.iter().zip(tokens) {
            assert_eq!(&tokenize_caption(r), t, "caption {r:?}");
            checked += 1;
        }
    }
    assert!(checked >= 700, "{checked}");
}

#[test]
fn tokenizer_agrees_with_ptbtokenizer_on_tricky_captions() {
    let fx = fixture();
    for t in fx["tokenizer"].as_array().unwrap() {
        let text = t["text"].as_str().unwrap();
        assert_eq!(
            tokenize_caption(text),
            t["tokens"].as_str().unwrap(),
            "caption {text:?}"
        );
    }
}

fn toks(s: &str) -> Vec<String> {
    tokenize(s)
}

#[test]
fn tokenizer_lowercases_and_drops_punctuation_tokens() {
    assert!(toks("").is_empty());
    assert!(toks("   \t ").is_empty());
    assert!(toks(". , ; : ! ? ... -- - ' \" ` ``").is_empty());
    assert_eq!(
        toks("A Man rides a HORSE, slowly."),
        ["a", "man", "rides", "a", "horse", "slowly"]
    );
    // Runs of ! and ? are one token, which the list does not hold.
    assert_eq!(toks("Wow!! Really?!"), ["wow", "!!", "really", "?!"]);
    // Brackets become -lrb- / -rrb- and stay: pycocoevalcap compares the
    // uppercase names after lowercasing.
    assert_eq!(
        toks("a dog (brown)"),
        ["a", "dog", "-lrb-", "brown", "-rrb-"]
    );
    assert_eq!(
        toks("[x] {y}"),
        ["-lsb-", "x", "-rsb-", "-lcb-", "y", "-rcb-"]
    );
    // Quotes of every kind go.
    assert_eq!(
        toks("a \"big\" \u{201c}red\u{201d} 'ball'"),
        ["a", "big", "red", "ball"]
    );
}

#[test]
fn tokenizer_splits_clitics_as_the_penn_treebank() {
    assert_eq!(toks("The dog's bone"), ["the", "dog", "'s", "bone"]);
    assert_eq!(toks("it\u{2019}s"), ["it", "'s"]);
    assert_eq!(toks("don't"), ["do", "n't"]);
    assert_eq!(toks("can't won't"), ["ca", "n't", "wo", "n't"]);
    assert_eq!(
        toks("they're we've I'll she'd I'm"),
        ["they", "'re", "we", "'ve", "i", "'ll", "she", "'d", "i", "'m"]
    );
    assert_eq!(toks("cannot gonna"), ["can", "not", "gon", "na"]);
    // A plural possessive's apostrophe is a lone quote, dropped.
    assert_eq!(toks("the dogs' bowls"), ["the", "dogs", "bowls"]);
    // Words PTB keeps whole around an apostrophe.
    assert_eq!(
        toks("o'clock ma'am the '90s"),
        ["o'clock", "ma'am", "the", "'90s"]
    );
}

#[test]
fn tokenizer_keeps_hyphens_numbers_and_abbreviations_inside_tokens() {
    assert_eq!(
        toks("A 10-year-old in a t-shirt - smiling -- happily"),
        [
            "a",
            "10-year-old",
            "in",
            "a",
            "t-shirt",
            "smiling",
            "happily"
        ]
    );
    assert_eq!(
        toks("3.5 inches, 1,000 people at 10:30"),
        ["3.5", "inches", "1,000", "people", "at", "10:30"]
    );
    assert_eq!(toks("and/or black/white"), ["and/or", "black/white"]);
    assert_eq!(
        toks("Mr. Smith on St. James St."),
        ["mr.", "smith", "on", "st.", "james", "st."]
    );
    assert_eq!(toks("in the U.S. today"), ["in", "the", "u.s.", "today"]);
    // A sentence-final "etc." keeps its period and gives another, dropped.
    assert_eq!(toks("cups, plates, etc."), ["cups", "plates", "etc."]);
    // PTB's spelling of fractions and currencies.
    assert_eq!(
        toks("\u{bd} cup for \u{a3}5"),
        ["1/2", "cup", "for", "#", "5"]
    );
    assert_eq!(toks("AT&T and R&D"), ["at&t", "and", "r&d"]);
}

#[test]
fn tokenizer_handles_unicode() {
    assert_eq!(toks("Caf\u{e9} CR\u{c8}ME"), ["caf\u{e9}", "cr\u{e8}me"]);
    // Java's and Rust's lowercasing both know final sigma.
    assert_eq!(
        toks("\u{39f}\u{394}\u{3a5}\u{3a3}\u{3a3}\u{395}\u{3a5}\u{3a3}"),
        ["\u{3bf}\u{3b4}\u{3c5}\u{3c3}\u{3c3}\u{3b5}\u{3c5}\u{3c2}"]
    );
    // Dashes and ellipses are normalised, then dropped.
    assert_eq!(
        toks("a man\u{2014}a plan\u{2026} a canal"),
        ["a", "man", "a", "plan", "a", "canal"]
    );
    // Characters PTBLexer cannot tokenise (outside the basic plane) are deleted.
    assert_eq!(toks("a \u{1f436} dog"), ["a", "dog"]);
    // Zero-width and no-break spaces separate, a soft hyphen vanishes.
    assert_eq!(
        toks("a\u{200b}b c\u{a0}d soft\u{ad}ware"),
        ["a", "b", "c", "d", "software"]
    );
    // Every line break inside a caption is a space.
    assert_eq!(toks("two\nlines\u{2028}here"), ["two", "lines", "here"]);
}

#[test]
fn scorers_split_words_as_python_does() {
    let words: Vec<&str> = python_split(" a\u{1c}b\u{a0}c\u{3000}d  ").collect();
    assert_eq!(words, ["a", "b", "c", "d"]);
    // "1 1/2" is one PTB token with a no-break space; it scores as two words.
    assert_eq!(tokenize("1 1/2 cups"), ["1\u{a0}1/2", "cups"]);
}

#[test]
fn perfect_empty_and_degenerate_candidates() {
    let refs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let set = vec![
        CaptionExample {
            candidate: "a dog runs on the grass".into(),
            references: refs(&["a dog runs on the grass"]),
        },
        CaptionExample {
            candidate: "two cats sleep on a red sofa".into(),
            references: refs(&["two cats sleep on a red sofa"]),
        },
    ];
    let r = score_tokenized(&set, true).unwrap();
    for b in r.bleu {
        assert!((b - 1.0).abs() < 1e-8, "{b}");
    }
    assert!(r.cider > 0.0 && r.cider.is_finite());

    let empty: Vec<CaptionExample> = set
        .iter()
        .map(|e| CaptionExample {
            candidate: String::new(),
            references: e.references.clone(),
        })
        .collect();
    let r = score_tokenized(&empty, true).unwrap();
    assert!(r.bleu.iter().all(|b| *b == 0.0), "{:?}", r.bleu);
    assert_eq!(r.cider, 0.0);
    assert!(r.per_image.iter().all(|s| s.cider == 0.0));

    // One image: log(1) = 0, every idf weight is 0 and CIDEr is 0, not NaN.
    let r = score_tokenized(&set[..1], false).unwrap();
    assert_eq!(r.cider, 0.0);
    assert!(r.per_image.is_empty());

    // Empty references are allowed, as in pycocoevalcap.
    let r = score_tokenized(
        &[CaptionExample {
            candidate: "a".into(),
            references: refs(&[""]),
        }],
        false,
    )
    .unwrap();
    assert!(r.bleu4.is_finite() && r.cider.is_finite());
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let err = score_captions(&[], false).unwrap_err().to_string();
    assert!(err.contains("no captions"), "{err}");
    let err = score_captions(
        &[CaptionExample {
            candidate: "a dog".into(),
            references: Vec::new(),
        }],
        false,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no reference captions"), "{err}");
}

#[test]
fn report_serialises_without_per_image_scores_unless_asked() {
    let set = vec![CaptionExample {
        candidate: "a dog".into(),
        references: vec!["a dog on grass".into(), "a brown dog".into()],
    }];
    let summary = serde_json::to_value(score_captions(&set, false).unwrap()).unwrap();
    assert_eq!(summary["images"], 1);
    assert_eq!(summary["bleu"].as_array().unwrap().len(), 4);
    assert_eq!(summary["bleu4"], summary["bleu"][3]);
    assert!(summary["cider"].is_number());
    assert!(summary.get("per_image").is_none());
    let full = serde_json::to_value(score_captions(&set, true).unwrap()).unwrap();
    assert_eq!(full["per_image"].as_array().unwrap().len(), 1);
}

#[test]
fn a_prompt_is_cut_from_the_caption_before_scoring() {
    use seer_engine::caption_metrics::strip_prompt;
    assert_eq!(strip_prompt("a picture of a dog", "a picture of "), "a dog");
    assert_eq!(strip_prompt("a picture of a dog", "A Picture of"), "a dog");
    // A WordPiece decoder respaces punctuation.
    assert_eq!(strip_prompt("photo : a dog", "photo:"), "a dog");
    assert_eq!(strip_prompt("a picture of", "a picture of"), "");
    // Text that does not start with the prompt is kept whole.
    assert_eq!(strip_prompt("a dog", "a picture of"), "a dog");
    assert_eq!(strip_prompt("a pic", "a picture of"), "a pic");
    assert_eq!(strip_prompt("a dog", ""), "a dog");
}

#[test]
fn pathological_captions_tokenise_quickly() {
    let start = std::time::Instant::now();
    for long in [
        ".".repeat(100_000),
        "a&".repeat(50_000),
        "x".repeat(100_000),
        "a@".repeat(50_000),
    ] {
        let _ = tokenize(&long);
    }
    assert!(start.elapsed().as_secs() < 20, "{:?}", start.elapsed());
}
