//! Text-generation parity against `fixtures/generation/reference.json`
//! (transformers 5.24 `generate`, made by scripts/make_generation_fixtures.py):
//! a toy decoder whose logits are exact f32 functions of the tokens, so every
//! generated token must match, for greedy and beam search over each setting.

use std::cell::RefCell;
use std::sync::OnceLock;

use seer_models::generate::topk::{argmax, topk};
use seer_models::generate::{generate, Decoder, EarlyStopping, GenerationConfig};
use seer_models::{ModelError, Result};
use seer_testkit::{read_json, repo_root, token_lists};
use serde_json::Value;

fn reference() -> &'static Value {
    static REFERENCE: OnceLock<Value> = OnceLock::new();
    REFERENCE.get_or_init(|| read_json(&repo_root().join("fixtures/generation/reference.json")))
}

/// The fixture's model: `logits = (A[last] + B[position of last]) + (C[x_0] + … + C[x_last]) * 0.25`,
/// the history sum added left to right, all in f32 as torch does it.
struct Toy {
    vocab: usize,
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
    /// Rows passed to `start`, then to each `step`: what the search asked for.
    calls: RefCell<Vec<usize>>,
}

impl Toy {
    fn new() -> Self {
        let r = reference();
        let scale = r["scale"].as_f64().unwrap() as f32;
        let table = |name: &str| -> Vec<f32> {
            r["tables"][name]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|row| row.as_array().unwrap().iter())
                .map(|k| k.as_i64().unwrap() as f32 / scale)
                .collect()
        };
        Self {
            vocab: r["vocab_size"].as_u64().unwrap() as usize,
            a: table("A"),
            b: table("B"),
            c: table("C"),
            calls: RefCell::new(Vec::new()),
        }
    }

    fn logits(&self, history: &[u32], out: &mut Vec<f32>) -> Result<()> {
        let v = self.vocab;
        let positions = self.b.len() / v;
        if history.is_empty() || history.len() > positions {
            return Err(ModelError::Input(format!("toy: length {}", history.len())));
        }
        if let Some(&t) = history.iter().find(|&&t| t as usize >= v) {
            return Err(ModelError::Input(format!("toy: token {t}")));
        }
        let row = |table: &[f32], i: u32| table[i as usize * v..(i as usize + 1) * v].to_vec();
        let mut acc = row(&self.c, history[0]);
        for &t in &history[1..] {
            for (x, y) in acc.iter_mut().zip(&self.c[t as usize * v..]) {
                *x += *y;
            }
        }
        let last = *history.last().unwrap() as usize;
        let pos = history.len() - 1;
        let (a, b) = (
            &self.a[last * v..(last + 1) * v],
            &self.b[pos * v..(pos + 1) * v],
        );
        for ((x, y), h) in a.iter().zip(b).zip(&acc) {
            out.push((x + y) + h * 0.25);
        }
        Ok(())
    }

    fn all_logits(&self, rows: &[Vec<u32>]) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(rows.len() * self.vocab);
        for h in rows {
            self.logits(h, &mut out)?;
        }
        self.calls.borrow_mut().push(rows.len());
        Ok(out)
    }
}

impl Decoder for Toy {
    /// The token history of each row.
    type State = Vec<Vec<u32>>;

    fn vocab_size(&self) -> usize {
        self.vocab
    }

    fn start(&self, prompts: &[Vec<u32>], items: &[usize]) -> Result<(Self::State, Vec<f32>)> {
        assert_eq!(items, (0..prompts.len()).collect::<Vec<_>>());
        self.calls.borrow_mut().clear();
        let logits = self.all_logits(prompts)?;
        Ok((prompts.to_vec(), logits))
    }

    fn step(&self, state: &mut Self::State, tokens: &[u32]) -> Result<Vec<f32>> {
        assert_eq!(state.len(), tokens.len());
        for (h, &t) in state.iter_mut().zip(tokens) {
            h.push(t);
        }
        self.all_logits(state)
    }

    fn select_rows(&self, state: &mut Self::State, rows: &[usize]) -> Result<()> {
        *state = rows.iter().map(|&r| state[r].clone()).collect();
        Ok(())
    }
}

fn cases() -> &'static [Value] {
    reference()["cases"].as_array().unwrap()
}

/// Runs the fixture cases whose names `select` picks and compares every
/// sequence; at least one case must be picked.
fn check(select: impl Fn(&str) -> bool) {
    let toy = Toy::new();
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        if !select(name) {
            continue;
        }
        ran += 1;
        let config = GenerationConfig::from_json(&case["config"].to_string())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let prompts = token_lists(&case["prompts"]);
        let expected = token_lists(&case["expected"]);
        let got = generate(&toy, &prompts, &config).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            if g != e {
                failures.push(format!(
                    "{name} row {i}:\n  got      {g:?}\n  expected {e:?}"
                ));
            }
        }
        assert_eq!(got.len(), expected.len(), "{name}");
    }
    assert!(ran > 0, "no fixture case selected");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Picks fixture cases by name.
type Select = fn(&str) -> bool;

/// The feature groups, one test each below; every fixture case is in one.
const GROUPS: &[(&str, Select)] = &[
    ("greedy lengths", |n| {
        n.starts_with("greedy_")
            && (n.contains("max_length")
                || n.contains("max_new_tokens")
                || n.contains("prompt_length"))
    }),
    ("greedy eos", |n| {
        matches!(n, "greedy_eos" | "greedy_eos_pad" | "greedy_eos_list")
    }),
    ("greedy min length", |n| n.starts_with("greedy_min")),
    ("greedy repetition", |n| n.starts_with("greedy_repetition")),
    ("greedy ngram", |n| n.starts_with("greedy_ngram")),
    ("greedy all processors", |n| n == "greedy_all_processors"),
    ("beam basics", |n| {
        matches!(
            n,
            "beam2" | "beam3" | "beam5" | "beam3_pad" | "beam3_eos_list" | "beam5_eos_list_pad"
        )
    }),
    ("beam lengths", |n| {
        n.starts_with("beam")
            && (n.contains("max_length")
                || n.contains("max_new_tokens")
                || n.contains("prompt_length")
                || n.ends_with("no_eos"))
    }),
    ("beam min length", |n| {
        n.starts_with("beam") && n.contains("_min_")
    }),
    ("beam repetition", |n| {
        n.starts_with("beam") && n.contains("repetition")
    }),
    ("beam ngram", |n| {
        n.starts_with("beam") && n.contains("ngram")
    }),
    ("beam all processors", |n| n == "beam5_all_processors"),
    ("beam length penalty and early stopping", |n| {
        n.contains("_lp")
    }),
];

fn group(name: &str) -> Select {
    GROUPS.iter().find(|g| g.0 == name).unwrap().1
}

#[test]
fn every_case_is_in_exactly_one_group() {
    for case in cases() {
        let name = case["name"].as_str().unwrap();
        let groups: Vec<&str> = GROUPS.iter().filter(|g| (g.1)(name)).map(|g| g.0).collect();
        assert_eq!(groups.len(), 1, "{name} is in {groups:?}");
    }
}

#[test]
fn greedy_length_limits() {
    check(group("greedy lengths"));
}

#[test]
fn greedy_eos_ids_and_pad() {
    check(group("greedy eos"));
}

#[test]
fn greedy_min_length_and_min_new_tokens() {
    check(group("greedy min length"));
}

#[test]
fn greedy_repetition_penalty() {
    check(group("greedy repetition"));
}

#[test]
fn greedy_no_repeat_ngrams() {
    check(group("greedy ngram"));
}

#[test]
fn greedy_all_processors_together() {
    check(group("greedy all processors"));
}

#[test]
fn beam_search_beams_eos_ids_and_pad() {
    check(group("beam basics"));
}

#[test]
fn beam_search_length_limits() {
    check(group("beam lengths"));
}

#[test]
fn beam_search_min_length_and_min_new_tokens() {
    check(group("beam min length"));
}

#[test]
fn beam_search_repetition_penalty() {
    check(group("beam repetition"));
}

#[test]
fn beam_search_no_repeat_ngrams() {
    check(group("beam ngram"));
}

#[test]
fn beam_search_all_processors_together() {
    check(group("beam all processors"));
}

#[test]
fn beam_search_length_penalty_and_early_stopping() {
    check(group("beam length penalty and early stopping"));
}

/// A `generation_config.json` as `save_pretrained` writes it, plus fields seer
/// ignores, read by `from_json` and run.
#[test]
fn saved_generation_config_file() {
    let saved = &reference()["saved_config"];
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("generation_config.json");
    std::fs::write(&path, saved["text"].as_str().unwrap()).unwrap();
    let config = GenerationConfig::from_file(&path).unwrap();
    assert_eq!(config.num_beams, 3);
    assert_eq!(config.max_length, Some(17));
    assert_eq!(config.min_new_tokens, Some(3));
    assert_eq!(config.eos_token_ids, [1, 2]);
    assert_eq!(config.pad_token_id, Some(0));
    assert_eq!(config.bos_token_id, Some(5));
    assert_eq!(config.early_stopping, EarlyStopping::Never);
    assert_eq!(config.length_penalty, 1.5);
    assert_eq!(config.repetition_penalty, 1.2);
    assert_eq!(config.no_repeat_ngram_size, 3);
    assert!(config.unsupported.is_empty());
    let got = generate(&Toy::new(), &token_lists(&saved["prompts"]), &config).unwrap();
    assert_eq!(got, token_lists(&saved["expected"]));
}

/// `GenerationConfig::default()` and an empty file are transformers'
/// `GenerationConfig()` after `_get_default_generation_params()`, except that
/// an unset `max_length` stays `None`: transformers reads "unset" as 20 *new*
/// tokens (checked by `greedy_no_eos_default_max_length`), not 20 in all.
#[test]
fn config_defaults_are_transformers_defaults() {
    let d = &reference()["config_defaults"];
    for c in [
        GenerationConfig::default(),
        GenerationConfig::from_json("{}").unwrap(),
    ] {
        assert_eq!(d["max_length"], 20);
        assert_eq!(c.max_length, None);
        assert_eq!(c.max_new_tokens, None);
        assert!(d["max_new_tokens"].is_null());
        assert_eq!(Some(c.min_length as u64), d["min_length"].as_u64());
        assert_eq!(c.min_new_tokens, None);
        assert!(d["min_new_tokens"].is_null());
        assert_eq!(Some(c.num_beams as u64), d["num_beams"].as_u64());
        assert_eq!(Some(c.length_penalty), d["length_penalty"].as_f64());
        assert_eq!(d["early_stopping"], false);
        assert_eq!(c.early_stopping, EarlyStopping::False);
        assert_eq!(Some(c.repetition_penalty), d["repetition_penalty"].as_f64());
        assert_eq!(
            Some(c.no_repeat_ngram_size as u64),
            d["no_repeat_ngram_size"].as_u64()
        );
        for key in ["bos_token_id", "eos_token_id", "pad_token_id"] {
            assert!(d[key].is_null(), "{key}");
        }
        assert_eq!((c.bos_token_id, c.pad_token_id), (None, None));
        assert!(c.eos_token_ids.is_empty());
        assert_eq!(Some(c.do_sample), d["do_sample"].as_bool());
        assert_eq!(
            Some(c.num_return_sequences as u64),
            d["num_return_sequences"].as_u64()
        );
        assert!(c.unsupported.is_empty());
    }
}

#[test]
fn config_json_forms() {
    let c = GenerationConfig::from_json(
        r#"{"eos_token_id": 7, "early_stopping": true, "max_length": null, "num_beams": null,
            "length_penalty": 2, "forced_eos_token_id": 3, "suppress_tokens": [],
            "guidance_scale": 1.0, "renormalize_logits": true}"#,
    )
    .unwrap();
    assert_eq!(c.eos_token_ids, [7]);
    assert_eq!(c.early_stopping, EarlyStopping::True);
    assert_eq!(
        (c.max_length, c.num_beams, c.length_penalty),
        (None, 1, 2.0)
    );
    assert_eq!(c.unsupported, ["forced_eos_token_id", "renormalize_logits"]);
    let bad = [
        ("[1, 2]", "expected a JSON object"),
        ("{", "invalid JSON"),
        (r#"{"eos_token_id": -1}"#, "eos_token_id"),
        (r#"{"eos_token_id": [1, "2"]}"#, "eos_token_id"),
        (r#"{"early_stopping": "sometimes"}"#, "early_stopping"),
        (r#"{"num_beams": "3"}"#, "num_beams"),
        (r#"{"max_new_tokens": -5}"#, "max_new_tokens"),
        (r#"{"do_sample": 1}"#, "do_sample"),
    ];
    for (text, needle) in bad {
        match GenerationConfig::from_json(text) {
            Err(e @ ModelError::Config { .. }) => {
                let message = e.to_string();
                assert!(message.contains(needle), "{text}: {message}");
                assert!(message.starts_with("generation_config.json: "), "{message}");
            }
            other => panic!("{text}: {other:?}"),
        }
    }
    let missing =
        GenerationConfig::from_file(std::path::Path::new("/nonexistent/generation_config.json"));
    assert!(matches!(missing, Err(ModelError::Io { .. })));
}

fn values(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().map_or(f32::NEG_INFINITY, |x| x as f32))
        .collect()
}

/// The ported libstdc++ selection against torch.topk on rows full of ties,
/// through both of torch's paths (heap and nth_element).
#[test]
fn topk_orders_ties_as_torch() {
    let cases = reference()["topk"].as_array().unwrap();
    let (mut heap, mut select) = (0, 0);
    for (i, case) in cases.iter().enumerate() {
        let v = values(&case["values"]);
        let k = case["k"].as_u64().unwrap() as usize;
        let expected: Vec<usize> = case["indices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        let got: Vec<usize> = topk(&v, k).into_iter().map(|(_, i)| i).collect();
        assert_eq!(got, expected, "case {i}: k={k} n={}", v.len());
        if k * 64 <= v.len() {
            heap += 1;
        } else {
            select += 1;
        }
    }
    assert!(heap >= 5 && select >= 5, "heap {heap}, select {select}");
    for case in reference()["argmax"].as_array().unwrap() {
        let v = values(&case["values"]);
        assert_eq!(argmax(&v) as u64, case["index"].as_u64().unwrap());
    }
}

fn config(json: &str) -> GenerationConfig {
    GenerationConfig::from_json(json).unwrap()
}

/// Greedy search starts one row per prompt and drops the rows that are done;
/// beam search grows to `num_beams` rows per prompt and drops finished inputs.
#[test]
fn searches_ask_the_decoder_for_no_more_rows_than_needed() {
    let toy = Toy::new();
    let prompts: Vec<Vec<u32>> = (0..6).map(|i| vec![3 + i, 10, 20, 30]).collect();
    generate(
        &toy,
        &prompts,
        &config(r#"{"eos_token_id": 1, "max_new_tokens": 30}"#),
    )
    .unwrap();
    let calls = toy.calls.borrow().clone();
    assert_eq!(calls[0], 6);
    assert!(calls.windows(2).all(|w| w[1] <= w[0]), "{calls:?}");
    assert!(calls.last() < Some(&6), "{calls:?}");

    let beams =
        r#"{"eos_token_id": 1, "max_new_tokens": 30, "num_beams": 3, "early_stopping": true}"#;
    generate(&toy, &prompts, &config(beams)).unwrap();
    let calls = toy.calls.borrow().clone();
    assert_eq!(calls[..2], [6, 18]);
    assert!(calls.last() < Some(&18), "{calls:?}");
}

/// A decoder with fixed logits that takes any token; optionally broken.
struct Fixed {
    vocab: usize,
    /// Logits per row returned (wrong when not `vocab`).
    width: usize,
    fail_step: bool,
}

impl Decoder for Fixed {
    type State = usize;

    fn vocab_size(&self) -> usize {
        self.vocab
    }

    fn start(&self, prompts: &[Vec<u32>], _: &[usize]) -> Result<(usize, Vec<f32>)> {
        Ok((prompts.len(), self.row(prompts.len())))
    }

    fn step(&self, rows: &mut usize, _: &[u32]) -> Result<Vec<f32>> {
        if self.fail_step {
            return Err(ModelError::Input("decoder failed".into()));
        }
        Ok(self.row(*rows))
    }

    fn select_rows(&self, state: &mut usize, rows: &[usize]) -> Result<()> {
        *state = rows.len();
        Ok(())
    }
}

impl Fixed {
    fn row(&self, rows: usize) -> Vec<f32> {
        (0..rows * self.width)
            .map(|i| (i % self.width) as f32 * 0.5 - 1.0)
            .collect()
    }
}

const FIXED: Fixed = Fixed {
    vocab: 8,
    width: 8,
    fail_step: false,
};

fn input_error(r: Result<Vec<Vec<u32>>>, needle: &str) {
    match r {
        Err(e @ (ModelError::Input(_) | ModelError::Unsupported(_))) => {
            assert!(e.to_string().contains(needle), "{e}")
        }
        other => panic!("expected an error about {needle}, got {other:?}"),
    }
}

#[test]
fn bad_settings_and_inputs_are_errors() {
    let g = GenerationConfig::default();
    let one = vec![vec![1u32, 2]];
    input_error(generate(&FIXED, &[vec![1, 2], vec![3]], &g), "same length");
    input_error(generate(&FIXED, &[vec![]], &g), "must not be empty");
    input_error(
        generate(
            &FIXED,
            &one,
            &GenerationConfig {
                do_sample: true,
                ..g.clone()
            },
        ),
        "sampling",
    );
    input_error(
        generate(
            &FIXED,
            &one,
            &GenerationConfig {
                num_beams: 0,
                ..g.clone()
            },
        ),
        "num_beams",
    );
    input_error(
        generate(
            &FIXED,
            &one,
            &GenerationConfig {
                max_length: Some(2),
                ..g.clone()
            },
        ),
        "max_length is 2",
    );
    input_error(
        generate(
            &FIXED,
            &one,
            &GenerationConfig {
                max_new_tokens: Some(0),
                ..g.clone()
            },
        ),
        "max_new_tokens",
    );
    input_error(
        generate(
            &FIXED,
            &one,
            &GenerationConfig {
                repetition_penalty: 0.0,
                ..g.clone()
            },
        ),
        "repetition_penalty",
    );
    input_error(
        generate(
            &FIXED,
            &one,
            &GenerationConfig {
                length_penalty: f64::NAN,
                ..g.clone()
            },
        ),
        "length_penalty",
    );
    input_error(
        generate(
            &FIXED,
            &one,
            &GenerationConfig {
                num_return_sequences: 2,
                ..g.clone()
            },
        ),
        "num_return_sequences",
    );
    input_error(
        generate(
            &FIXED,
            &one,
            &config(r#"{"forced_eos_token_id": 3, "bad_words_ids": [[4]]}"#),
        ),
        "forced_eos_token_id, bad_words_ids",
    );
    // 5 beams with 2 EOS ids keep 15 candidates of 5 × 2.
    let tiny = Fixed {
        vocab: 2,
        width: 2,
        ..FIXED
    };
    input_error(
        generate(
            &tiny,
            &one,
            &config(r#"{"num_beams": 5, "eos_token_id": [0, 1]}"#),
        ),
        "candidates",
    );
    for beams in [1, 3] {
        let c = GenerationConfig {
            num_beams: beams,
            ..g.clone()
        };
        let wrong = Fixed { width: 7, ..FIXED };
        input_error(generate(&wrong, &one, &c), "logits");
        let failing = Fixed {
            fail_step: true,
            ..FIXED
        };
        input_error(generate(&failing, &one, &c), "decoder failed");
    }
    assert!(generate(&FIXED, &[], &g).unwrap().is_empty());
}

/// Prompt ids outside the vocabulary reach the processors without harm (the
/// decoder decides whether it takes them), as transformers clamps them.
#[test]
fn processors_skip_ids_outside_the_vocabulary() {
    let c = config(
        r#"{"repetition_penalty": 1.5, "no_repeat_ngram_size": 1, "min_length": 4,
            "eos_token_id": [7, 99], "max_new_tokens": 3}"#,
    );
    for beams in [1, 2] {
        let c = GenerationConfig {
            num_beams: beams,
            ..c.clone()
        };
        let out = generate(&FIXED, &[vec![1000, u32::MAX]], &c).unwrap();
        assert_eq!(out[0][..2], [1000, u32::MAX]);
        assert!(out[0].len() <= 5);
    }
}

/// With no decoder cap the default limit is 20 new tokens; a cap lowers it.
#[test]
fn default_length_is_capped_by_max_positions() {
    struct Capped;
    impl Decoder for Capped {
        type State = usize;
        fn vocab_size(&self) -> usize {
            4
        }
        fn max_positions(&self) -> Option<usize> {
            Some(9)
        }
        fn start(&self, p: &[Vec<u32>], _: &[usize]) -> Result<(usize, Vec<f32>)> {
            Ok((p.len(), [0.0, 1.0, 0.0, 0.0].repeat(p.len())))
        }
        fn step(&self, rows: &mut usize, _: &[u32]) -> Result<Vec<f32>> {
            Ok([0.0, 1.0, 0.0, 0.0].repeat(*rows))
        }
        fn select_rows(&self, state: &mut usize, rows: &[usize]) -> Result<()> {
            *state = rows.len();
            Ok(())
        }
    }
    let g = GenerationConfig::default();
    assert_eq!(generate(&Capped, &[vec![2, 3]], &g).unwrap()[0].len(), 9);
    assert_eq!(generate(&FIXED, &[vec![2, 3]], &g).unwrap()[0].len(), 22);
    let explicit = GenerationConfig {
        max_length: Some(20),
        ..g
    };
    assert_eq!(
        generate(&Capped, &[vec![2, 3]], &explicit).unwrap()[0].len(),
        20
    );
}
