//! The training loop end to end on the tiny fixture model and real CIFAR-10
//! shards: an interrupted and resumed run reproduces an uninterrupted one, the
//! exported model loads, and misuse of an output folder is refused.

use std::path::Path;
use std::sync::Arc;

use candle_core::Device;
use seer_data::{ClassPrompts, DataSource, LoaderConfig, RandomResizedCrop};
use seer_engine::prompts::{read_list, ListKind};
use seer_image::{DecodeLimits, PreprocessConfig};
use seer_testkit::{repo_root, shared_data, tokenizer_file};
use seer_tokenizer::ClipTokenizer;
use seer_train::evaluate::LabeledSet;
use seer_train::trainer::{train, ModelInit, PositivesRule, Silent, TrainOptions};
use seer_train::{AdamWConfig, LossKind};

fn options(out: &Path, steps: u64) -> TrainOptions {
    let prompts_file = shared_data().join("clip-prompts/prompts.json");
    let spec = format!("{}#CIFAR10", prompts_file.display());
    let prompts = ClassPrompts {
        classes: read_list(&spec, ListKind::Classes).unwrap(),
        templates: read_list(&spec, ListKind::Templates).unwrap(),
    };
    let shard = shared_data().join("cifar10-wds/test-0000.tar.gz");
    let preprocess = PreprocessConfig::openai_clip(32);
    TrainOptions {
        init: ModelInit::Pretrained {
            dir: repo_root().join("fixtures/training/model"),
        },
        data: LoaderConfig {
            sources: DataSource::parse(shard.to_str().unwrap()).unwrap(),
            preprocess: preprocess.clone(),
            augment: Some(RandomResizedCrop {
                hflip: true,
                ..RandomResizedCrop::default()
            }),
            shuffle_buffer: 64,
            workers: 2,
            seed: 7,
            prompts: Some(prompts.clone()),
            limits: DecodeLimits::default(),
            repeat: true,
        },
        tokenizer: Arc::new(ClipTokenizer::from_file(&tokenizer_file()).unwrap()),
        tokenizer_path: Some(tokenizer_file()),
        lock_image: false,
        lock_text: false,
        batch_size: 8,
        micro_batch: 3,
        steps,
        lr: 1e-3,
        warmup: 2,
        adamw: AdamWConfig::default(),
        grad_clip: 1.0,
        loss: LossKind::Clip,
        positives: PositivesRule::SameClass,
        seed: 7,
        zeroshot: Some(LabeledSet {
            pixels: vec![0.0; 4 * 3 * 32 * 32],
            classes: vec![0, 1, 2, 3],
            class_names: prompts.classes.clone(),
            templates: prompts.templates[..2].to_vec(),
        }),
        pairs: None,
        eval_every: 3,
        checkpoint_every: 2,
        keep_checkpoints: 2,
        out: out.to_path_buf(),
        resume: false,
        stop_after: None,
        device: Device::Cpu,
        epoch_size: None,
    }
}

#[test]
fn resumed_run_reproduces_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let whole = train(options(&tmp.path().join("whole"), 6), &mut Silent).unwrap();
    assert_eq!(whole.losses.len(), 6);
    assert!(whole.losses.iter().all(|l| l.is_finite()));

    let split_dir = tmp.path().join("split");
    let first = train(
        TrainOptions {
            stop_after: Some(3),
            ..options(&split_dir, 6)
        },
        &mut Silent,
    )
    .unwrap();
    assert_eq!(first.steps, 3);
    assert!(
        first.model_dir.is_none(),
        "an interrupted run exports nothing"
    );
    let second = train(
        TrainOptions {
            resume: true,
            ..options(&split_dir, 6)
        },
        &mut Silent,
    )
    .unwrap();
    assert_eq!(second.resumed_from, Some(3));
    let resumed: Vec<f64> = first.losses.iter().chain(&second.losses).copied().collect();
    assert_eq!(
        resumed, whole.losses,
        "resumed losses differ from the uninterrupted run"
    );

    // Metrics: one train line per step (none duplicated by the resume) and evals.
    let metrics = std::fs::read_to_string(split_dir.join("metrics.jsonl")).unwrap();
    let train_lines = metrics
        .lines()
        .filter(|l| l.contains("\"kind\":\"train\""))
        .count();
    let eval_lines = metrics
        .lines()
        .filter(|l| l.contains("\"kind\":\"eval\""))
        .count();
    assert_eq!(train_lines, 6);
    assert_eq!(eval_lines, 2, "evaluations at steps 3 and 6");
    // Epochs are right from the first step (they were 0 until the data had
    // been read through once) and the same in the resumed run.
    let pass = seer_train::epochs::count_pass(&options(&split_dir, 6).data.sources).stored;
    let expected: Vec<f64> = (1..=6).map(|s| (8 * s) as f64 / pass as f64).collect();
    assert_eq!(logged_epochs(&split_dir), expected);
    assert_eq!(logged_epochs(&tmp.path().join("whole")), expected);
    // Only the newest `keep_checkpoints` remain.
    let kept = std::fs::read_dir(split_dir.join("checkpoints"))
        .unwrap()
        .count();
    assert_eq!(kept, 2);

    // The export loads in seer and embeds like the trained parameters.
    let model_dir = second.model_dir.unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "bpe_simple_vocab_16e6.txt.gz",
    ] {
        assert!(model_dir.join(f).is_file(), "{f} missing from the export");
    }
    let clip = seer_engine::Clip::load_dir(&model_dir, &Default::default()).unwrap();
    let texts = vec!["a photo of a cat.".to_string()];
    let ours = clip.embed_texts(&texts, &Default::default()).unwrap();
    let whole_clip =
        seer_engine::Clip::load_dir(&whole.model_dir.unwrap(), &Default::default()).unwrap();
    assert_eq!(
        ours,
        whole_clip.embed_texts(&texts, &Default::default()).unwrap()
    );
}

/// The `epoch` of each train line of a run's metrics.jsonl.
fn logged_epochs(out: &Path) -> Vec<f64> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "train")
        .map(|v| v["epoch"].as_f64().unwrap())
        .collect()
}

#[test]
fn output_folder_misuse_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    train(
        TrainOptions {
            stop_after: Some(2),
            ..options(&dir, 4)
        },
        &mut Silent,
    )
    .unwrap();
    let again = train(options(&dir, 4), &mut Silent)
        .err()
        .unwrap()
        .to_string();
    assert!(again.contains("--resume"), "{again}");
    let changed = train(
        TrainOptions {
            resume: true,
            lr: 5e-4,
            ..options(&dir, 4)
        },
        &mut Silent,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(changed.contains("different settings"), "{changed}");

    // Starting from a model inside OUT/model, which the export replaces: refused
    // with or without --resume, and the model is left as it was.
    let own = tmp.path().join("own");
    let model = own.join("model");
    std::fs::create_dir_all(&model).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ] {
        std::fs::copy(
            repo_root().join("fixtures/training/model").join(f),
            model.join(f),
        )
        .unwrap();
    }
    std::fs::write(model.join("README.md"), "notes").unwrap();
    for resume in [false, true] {
        let inside = refusal(TrainOptions {
            init: ModelInit::Pretrained { dir: model.clone() },
            resume,
            zeroshot: None,
            ..options(&own, 2)
        });
        assert!(inside.contains("export replaces"), "{inside}");
        assert!(model.join("README.md").is_file());
    }
    // A new run never replaces an earlier run's output, checkpoint or not.
    let new_run = refusal(TrainOptions {
        zeroshot: None,
        ..options(&own, 2)
    });
    assert!(new_run.contains("already holds"), "{new_run}");
    assert!(model.join("README.md").is_file());
}

#[test]
fn locked_image_tower_is_unchanged_by_training() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("lit");
    let summary = train(
        TrainOptions {
            lock_image: true,
            zeroshot: None,
            ..options(&out, 2)
        },
        &mut Silent,
    )
    .unwrap();
    let before = candle_core::safetensors::load(
        repo_root().join("fixtures/training/model/model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let after = candle_core::safetensors::load(
        summary.model_dir.unwrap().join("model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let same = |name: &str| {
        let a: Vec<f32> = before[name].flatten_all().unwrap().to_vec1().unwrap();
        let b: Vec<f32> = after[name].flatten_all().unwrap().to_vec1().unwrap();
        a == b
    };
    assert!(same("vision_model.encoder.layers.0.mlp.fc1.weight"));
    assert!(same("visual_projection.weight"));
    assert!(!same("text_model.encoder.layers.0.mlp.fc1.weight"));
    assert!(!same("logit_scale"));
}

/// The fixture's config with the vision tower made deeper.
fn deeper_config(dir: &Path) -> std::path::PathBuf {
    let text =
        std::fs::read_to_string(repo_root().join("fixtures/training/model/config.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
    config["vision_config"]["num_hidden_layers"] = 3.into();
    let path = dir.join("deeper.json");
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

fn refusal(options: TrainOptions) -> String {
    match train(options, &mut Silent) {
        Ok(_) => panic!("the run was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn resume_refuses_another_model_or_data_and_a_folder_without_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    train(
        TrainOptions {
            stop_after: Some(1),
            zeroshot: None,
            ..options(&dir, 3)
        },
        &mut Silent,
    )
    .unwrap();
    let resume = |o: TrainOptions| TrainOptions {
        resume: true,
        zeroshot: None,
        ..o
    };

    // Another architecture: named with the old and the new value.
    let deeper = refusal(resume(TrainOptions {
        init: ModelInit::Scratch {
            config: deeper_config(tmp.path()),
        },
        ..options(&dir, 3)
    }));
    assert!(deeper.contains("different settings"), "{deeper}");
    assert!(
        deeper.contains("model.vision.transformer.layers: 2 → 3"),
        "{deeper}"
    );

    // What decides the data stream.
    let mut other_data = options(&dir, 3);
    other_data.data.shuffle_buffer = 32;
    other_data.data.augment = None;
    let data = refusal(resume(other_data));
    assert!(data.contains("data.shuffle_buffer: 64 → 32"), "{data}");
    assert!(data.contains("data.augment: "), "{data}");
    let mut other_templates = options(&dir, 3);
    if let Some(p) = other_templates.data.prompts.as_mut() {
        p.templates.truncate(1);
    }
    let templates = refusal(resume(other_templates));
    assert!(templates.contains("data.templates: "), "{templates}");

    // Nothing changed (the shard named another way): the resume goes ahead and
    // finishes the run.
    let mut same = options(&dir, 3);
    let spelled = shared_data().join("cifar10-wds/../cifar10-wds/test-0000.tar.gz");
    same.data.sources = DataSource::parse(spelled.to_str().unwrap()).unwrap();
    let done = train(resume(same), &mut Silent).unwrap();
    assert_eq!(done.resumed_from, Some(1));

    // --resume on a folder without a checkpoint says so instead of starting anew.
    let empty = tmp.path().join("empty");
    let none = refusal(resume(options(&empty, 3)));
    assert!(none.contains("no checkpoint"), "{none}");
    assert!(!empty.exists(), "the refused run created its folder");
}

#[test]
fn nonsensical_options_are_refused_before_training() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let base = || TrainOptions {
        zeroshot: None,
        ..options(&out, 4)
    };
    let cases: Vec<(TrainOptions, &str)> = vec![
        (
            TrainOptions {
                micro_batch: 0,
                ..base()
            },
            "--micro-batch must be at least 1",
        ),
        (
            TrainOptions {
                micro_batch: 9,
                ..base()
            },
            "--micro-batch (9) is larger than --batch-size (8)",
        ),
        (
            TrainOptions {
                batch_size: 0,
                ..base()
            },
            "--batch-size must be at least 2",
        ),
        (
            TrainOptions {
                steps: 0,
                warmup: 0,
                ..base()
            },
            "--steps must be at least 1",
        ),
        (
            TrainOptions {
                warmup: 5,
                ..base()
            },
            "--warmup (5) is longer than the run (--steps 4)",
        ),
        (
            TrainOptions {
                lr: -1e-3,
                ..base()
            },
            "--lr must be a number above 0",
        ),
        (
            TrainOptions {
                lr: f64::NAN,
                ..base()
            },
            "--lr must be a number above 0 (got NaN)",
        ),
        (
            TrainOptions {
                grad_clip: -1.0,
                ..base()
            },
            "--grad-clip",
        ),
        (
            TrainOptions {
                keep_checkpoints: 0,
                ..base()
            },
            "--keep-checkpoints must be at least 1",
        ),
        (
            TrainOptions {
                stop_after: Some(0),
                ..base()
            },
            "--stop-after must be at least 1",
        ),
        (
            TrainOptions {
                adamw: AdamWConfig {
                    beta2: 1.0,
                    ..AdamWConfig::default()
                },
                ..base()
            },
            "--beta2 must be at least 0 and below 1",
        ),
        (
            TrainOptions {
                adamw: AdamWConfig {
                    eps: 0.0,
                    ..AdamWConfig::default()
                },
                ..base()
            },
            "--eps",
        ),
        (
            TrainOptions {
                adamw: AdamWConfig {
                    weight_decay: f64::INFINITY,
                    ..AdamWConfig::default()
                },
                ..base()
            },
            "--wd",
        ),
    ];
    for (o, expected) in cases {
        let message = refusal(o);
        assert!(
            message.contains(expected),
            "expected '{expected}' in: {message}"
        );
    }
    let mut no_workers = base();
    no_workers.data.workers = 0;
    assert!(refusal(no_workers).contains("--workers must be at least 1"));
    assert!(!out.exists(), "a refused run leaves nothing behind");
}
