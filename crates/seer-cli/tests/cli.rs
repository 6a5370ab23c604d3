//! The `seer` binary as a user runs it, on the tiny fixture models and the shared
//! test images. Parity of the numbers is tested in seer-engine; here the contract:
//! output formats, exit codes, and bad inputs that never stop a batch.

use std::path::Path;

use seer_testkit::{model_fixture as fixture, shared_data};
use std::process::{Command, Output};

fn seer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seer"))
        .args(args)
        .env(
            "SEER_TOKENIZER",
            shared_data().join("clip-tokenizer/bpe_simple_vocab_16e6.txt.gz"),
        )
        .env("HF_HUB_OFFLINE", "1")
        .env(
            "HF_HOME",
            std::env::temp_dir().join("seer-test-empty-hf-home"),
        )
        .output()
        .expect("run seer")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn model() -> String {
    fixture("openclip-vit").display().to_string()
}

fn json_lines(o: &Output) -> Vec<serde_json::Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

#[test]
fn embed_json_gives_one_normalized_vector_per_input() {
    let img = shared_data().join("smoke/skimage/chelsea.png");
    let o = seer(&[
        "embed",
        "--model",
        &model(),
        "--image",
        img.to_str().unwrap(),
        "--text",
        "a cat",
        "a dog",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["input"], img.display().to_string());
    assert_eq!(lines[1]["input"], "a cat");
    for l in &lines {
        let e: Vec<f64> = l["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        assert_eq!(e.len(), 16);
        let norm = e.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "norm {norm}");
    }
}

/// `--f32-on-fma` (the FMA kernels where the CPU has AMX tiles; elsewhere
/// they ran already) gives the default's embeddings within the parity
/// tolerance, and each of the two is the same bits run after run.
#[test]
fn f32_on_fma_agrees_with_the_default_kernels() {
    let img = shared_data().join("smoke/skimage/chelsea.png");
    let (model, img) = (model(), img.to_str().unwrap());
    let embed = |extra: &[&str]| {
        let mut args = vec![
            "embed", "--model", &model, "--image", img, "--text", "a cat",
        ];
        args.extend_from_slice(&["--json", "--raw"]);
        args.extend_from_slice(extra);
        let o = seer(&args);
        assert!(o.status.success(), "{extra:?}: {}", stderr(&o));
        json_lines(&o)
            .iter()
            .flat_map(|l| l["embedding"].as_array().unwrap().clone())
            .map(|x| x.as_f64().unwrap())
            .collect::<Vec<f64>>()
    };
    let default = embed(&[]);
    let fma = embed(&["--f32-on-fma"]);
    assert_eq!(default.len(), 32);
    assert_eq!(fma.len(), default.len());
    for (i, (a, b)) in default.iter().zip(&fma).enumerate() {
        assert!((a - b).abs() < 1e-4, "value {i}: {a} vs {b}");
    }
    assert_eq!(embed(&[]), default);
    assert_eq!(embed(&["--f32-on-fma"]), fma);
}

#[test]
fn raw_embeddings_are_not_normalized() {
    let o = seer(&[
        "embed",
        "--model",
        &model(),
        "--text",
        "a cat",
        "--json",
        "--raw",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e: Vec<f64> = json_lines(&o)[0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let norm = e.iter().map(|x| x * x).sum::<f64>().sqrt();
    assert!(
        (norm - 1.0).abs() > 1e-3,
        "raw features happened to have norm {norm}"
    );
}

#[test]
fn bad_files_are_reported_and_the_batch_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    let truncated = dir.path().join("truncated.jpg");
    let bytes = std::fs::read(shared_data().join("smoke/misc/red_apple.jpg")).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let text = shared_data().join("smoke/rclip-formats/not-an-image.txt");
    let good = shared_data().join("smoke/skimage/chelsea.png");
    let missing = dir.path().join("missing.png");
    let args: Vec<String> = ["embed", "--model", &model(), "--json", "--image"]
        .iter()
        .map(|s| s.to_string())
        .chain(
            [&empty, &text, &good, &missing, &truncated]
                .iter()
                .map(|p| p.display().to_string()),
        )
        .collect();
    let o = seer(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        o.status.code(),
        Some(1),
        "failures must give a non-zero exit"
    );
    let err = stderr(&o);
    for p in [&empty, &text, &missing] {
        assert!(
            err.contains(&p.display().to_string()),
            "no error line names {}: {err}",
            p.display()
        );
    }
    assert!(!err.contains("panicked"), "{err}");
    let inputs: Vec<String> = json_lines(&o)
        .iter()
        .map(|l| l["input"].as_str().unwrap().to_string())
        .collect();
    assert!(
        inputs.contains(&good.display().to_string()),
        "the good image was not embedded: {inputs:?}"
    );
    assert!(err.contains("failed"), "no summary: {err}");
}

#[test]
fn out_npy_writes_array_and_inputs_listing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("emb.npy");
    let folder = shared_data().join("smoke/skimage");
    let o = seer(&[
        "embed",
        "--model",
        &model(),
        "--image",
        folder.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = String::from_utf8_lossy(&bytes[10..10 + header_len]).to_string();
    assert!(header.contains("'shape': (8, 16)"), "{header}");
    assert_eq!(bytes.len() - 10 - header_len, 8 * 16 * 4);
    let listing = std::fs::read_to_string(dir.path().join("emb.inputs.txt")).unwrap();
    assert_eq!(listing.lines().count(), 8);
    assert!(listing.lines().all(|l| Path::new(l).starts_with(&folder)));
}

/// `--out` naming a pipe (or `/dev/stdout`) gets the array and no listing:
/// one beside it would be a new file in `/dev`.
#[test]
fn out_npy_to_a_pipe_writes_the_array_there_and_no_listing() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            std::fs::File::open(fifo)
                .unwrap()
                .read_to_end(&mut bytes)
                .unwrap();
            bytes
        })
    };
    let o = seer(&[
        "embed",
        "--model",
        &model(),
        "--text",
        "a cat",
        "--text",
        "a dog",
        "--out",
        fifo.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = reader.join().unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    assert!(stderr(&o).contains("wrote 2 rows to"), "{}", stderr(&o));
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["pipe"]);
}

#[test]
fn classify_reports_top_k_probabilities() {
    let img = shared_data().join("smoke/misc/red_apple.jpg");
    let o = seer(&[
        "classify",
        img.to_str().unwrap(),
        "--model",
        &model(),
        "--labels",
        "apple,dog,car",
        "--templates",
        "imagenet",
        "--top-k",
        "2",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let line = &json_lines(&o)[0];
    let preds = line["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 2);
    assert!(preds[0]["probability"].as_f64().unwrap() >= preds[1]["probability"].as_f64().unwrap());
}

#[test]
fn eval_zeroshot_reads_the_shared_cifar_layout() {
    let data = shared_data();
    let o = seer(&[
        "eval",
        "zeroshot",
        "--model",
        &model(),
        "--data",
        data.join("cifar10-test-subset").to_str().unwrap(),
        "--classes",
        &format!(
            "{}#CIFAR10",
            data.join("clip-prompts/prompts.json").display()
        ),
        "--templates",
        &format!(
            "{}#CIFAR10",
            data.join("clip-prompts/prompts.json").display()
        ),
        "--limit",
        "40",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(report["images"], 40);
    let top1 = report["top1"].as_f64().unwrap();
    let top5 = report["top5"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&top1) && top5 >= top1);
}

#[test]
fn eval_zeroshot_reads_the_shared_imagenet_layout() {
    let data = shared_data();
    let o = seer(&[
        "eval",
        "zeroshot",
        "--model",
        &model(),
        "--data",
        data.join("imagenet-samples/labels.csv").to_str().unwrap(),
        "--classes",
        data.join("clip-prompts/imagenet_classnames.txt")
            .to_str()
            .unwrap(),
        "--limit",
        "20",
        "--json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let report: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(report["images"], 20);
}

#[test]
fn offline_hub_model_fails_with_a_clear_message() {
    let o = seer(&["embed", "--model", "ViT-B-32", "--text", "a cat"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("openai/clip-vit-base-patch32") && err.contains("--model /path/to/folder"),
        "{err}"
    );
}

#[test]
fn missing_inputs_and_bad_options_are_errors_not_panics() {
    let no_inputs = seer(&["embed", "--model", &model()]);
    assert_eq!(no_inputs.status.code(), Some(2));
    assert!(stderr(&no_inputs).contains("nothing to embed"));
    let bad_model = seer(&["embed", "--model", "/no/such/folder", "--text", "x"]);
    assert_eq!(bad_model.status.code(), Some(2));
    assert!(stderr(&bad_model).contains("/no/such/folder"));
    let bad_templates = seer(&[
        "classify",
        "x.jpg",
        "--model",
        &model(),
        "--labels",
        "a",
        "--templates",
        "no-placeholder.txt",
    ]);
    assert_eq!(bad_templates.status.code(), Some(2));
    assert!(stderr(&bad_templates).contains("no-placeholder.txt"));
    for o in [&no_inputs, &bad_model, &bad_templates] {
        assert!(!stderr(o).contains("panicked"), "{}", stderr(o));
    }
}

#[test]
fn models_lists_aliases() {
    let o = seer(&["models", "--json"]);
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert!(v["aliases"]
        .as_array()
        .unwrap()
        .iter()
        .any(|a| a["alias"] == "ViT-B-32"));
}

#[test]
fn models_names_the_family_of_each_cached_model_and_the_families_it_loads() {
    let home = tempfile::tempdir().unwrap();
    let snapshot = home
        .path()
        .join("hub/models--facebook--dinov2-small/snapshots/0123abc");
    std::fs::create_dir_all(&snapshot).unwrap();
    let fixture = seer_testkit::repo_root().join("fixtures/families/dinov2-tiny");
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(file), snapshot.join(file)).unwrap();
    }
    let o = Command::new(env!("CARGO_BIN_EXE_seer"))
        .args(["models", "--json"])
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_HOME", home.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["cached"][0]["id"], "facebook/dinov2-small", "{v}");
    assert_eq!(v["cached"][0]["family"], "dinov2", "{v}");
    let loads: Vec<&str> = v["families"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["loads"] == true)
        .filter_map(|f| f["family"].as_str())
        .collect();
    assert_eq!(
        loads,
        ["clip", "dinov2", "siglip", "blip", "owlvit", "sam"],
        "{v}"
    );
    assert_eq!(
        v["aliases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["alias"] == "dinov2-small")
            .map(|a| a["hub_id"].clone()),
        Some("facebook/dinov2-small".into())
    );
}

/// `seer models` lists what `--model ID` loads offline, by the same rule: a
/// snapshot with a config and weights, the one `refs/main` names, else the
/// only one (a download by commit hash has no `refs/main`).
#[test]
fn models_lists_the_cached_models_that_load_and_only_those() {
    let home = tempfile::tempdir().unwrap();
    let repo = home.path().join("hub/models--test--tiny-clip");
    let fixture = seer_testkit::repo_root().join("fixtures/models/hf-vit-quickgelu");
    let snapshot = |name: &str, files: &[&str]| {
        let dir = repo.join("snapshots").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for file in files {
            std::fs::copy(fixture.join(file), dir.join(file)).unwrap();
        }
    };
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_seer"))
            .args(args)
            .env("HF_HUB_OFFLINE", "1")
            .env("HF_HOME", home.path())
            .env(
                "SEER_TOKENIZER",
                shared_data().join("clip-tokenizer/bpe_simple_vocab_16e6.txt.gz"),
            )
            .output()
            .unwrap()
    };
    let listed = || {
        let o = run(&["models", "--json"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
        v["cached"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["id"].as_str().map(String::from))
            .collect::<Vec<_>>()
    };
    let embed = || run(&["embed", "--text", "a cat", "--model", "test/tiny-clip"]);
    // A config without weights is no model.
    snapshot("0000config", &["config.json"]);
    assert!(listed().is_empty());
    assert_eq!(embed().status.code(), Some(2));
    // One complete snapshot, no refs/main: listed, and it loads.
    snapshot(
        "1111complete",
        &[
            "config.json",
            "model.safetensors",
            "preprocessor_config.json",
        ],
    );
    assert_eq!(listed(), ["test/tiny-clip"]);
    let o = embed();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Two complete snapshots and no refs/main: which is meant is unknown.
    snapshot(
        "2222complete",
        &[
            "config.json",
            "model.safetensors",
            "preprocessor_config.json",
        ],
    );
    assert!(listed().is_empty());
    assert_eq!(embed().status.code(), Some(2));
    // refs/main says which.
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs/main"), "2222complete").unwrap();
    assert_eq!(listed(), ["test/tiny-clip"]);
    let o = embed();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[cfg(unix)]
#[test]
fn names_with_newlines_or_bytes_that_are_not_utf8_print_escaped_on_one_line() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir(&images).unwrap();
    let smoke = shared_data().join("smoke/skimage");
    std::fs::copy(smoke.join("chelsea.png"), images.join("two\nlines.png")).unwrap();
    std::fs::copy(
        smoke.join("rocket.jpg"),
        images.join(OsStr::from_bytes(b"caf\xe9.jpg")),
    )
    .unwrap();
    std::fs::write(images.join("bad\nname.jpg"), b"not an image").unwrap();
    let folder = images.to_str().unwrap();
    let expected = ["caf\\xe9.jpg", "two\\nlines.png"];
    let names = |lines: Vec<String>| {
        let mut names: Vec<String> = lines
            .iter()
            .map(|l| {
                let path = l.split('\t').next().unwrap();
                assert!(path.starts_with(folder), "{l}");
                path.rsplit('/').next().unwrap().to_string()
            })
            .collect();
        names.sort();
        names
    };

    // classify: one line per image, the failure on one line too.
    let o = seer(&[
        "classify",
        folder,
        "--model",
        &model(),
        "--labels",
        "cat,rocket",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(
        names(out.lines().map(str::to_string).collect()),
        expected,
        "{out}"
    );
    let err = stderr(&o);
    assert!(
        err.lines()
            .any(|l| l.starts_with("error: ") && l.contains("bad\\nname.jpg: ")),
        "{err}"
    );
    let o = seer(&[
        "classify",
        folder,
        "--model",
        &model(),
        "--labels",
        "cat,rocket",
        "--json",
    ]);
    let inputs: Vec<String> = json_lines(&o)
        .iter()
        .map(|l| l["input"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names(inputs), expected);

    // embed: plain lines, JSON inputs and the .inputs.txt listing alike.
    let o = seer(&["embed", "--model", &model(), "--image", folder]);
    let out = stdout(&o);
    assert_eq!(
        names(out.lines().map(str::to_string).collect()),
        expected,
        "{out}"
    );
    let o = seer(&["embed", "--model", &model(), "--image", folder, "--json"]);
    let inputs: Vec<String> = json_lines(&o)
        .iter()
        .map(|l| l["input"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names(inputs), expected);
    let npy = dir.path().join("emb.npy");
    seer(&[
        "embed",
        "--model",
        &model(),
        "--image",
        folder,
        "--out",
        npy.to_str().unwrap(),
    ]);
    let listing = std::fs::read_to_string(dir.path().join("emb.inputs.txt")).unwrap();
    assert_eq!(
        names(listing.lines().map(str::to_string).collect()),
        expected
    );
}
