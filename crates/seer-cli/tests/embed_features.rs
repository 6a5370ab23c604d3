//! `seer embed --features cls|mean|patch` on the DINOv2 fixtures against their
//! `reference.json` (fixtures/families): the mean of the patch tokens and the
//! patch grid from image files within 1e-4 of transformers, the `.npy` layout
//! of the grid, and the refusals (a model without patch tokens, texts, no --out).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use seer_testkit::{matrix, max_abs_diff, read_json, repo_root, shared_data, strings};
use serde_json::Value;

fn seer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_seer"))
        .args(args)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("run seer")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn json_lines(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

fn family(name: &str) -> PathBuf {
    repo_root().join("fixtures/families").join(name)
}

/// The fixture's `crop224` case (the checkpoint's own preprocessing) and its
/// image files in the shared data.
fn crop224(name: &str) -> (Value, Vec<String>) {
    let reference = read_json(&family(name).join("reference.json"));
    let case = reference["cases"][0].clone();
    assert_eq!(case["name"], "crop224");
    let paths = strings(&case["images"])
        .iter()
        .map(|p| shared_data().join(p).display().to_string())
        .collect();
    (case, paths)
}

fn embed(model: &Path, images: &[String], extra: &[&str]) -> Output {
    let model = model.display().to_string();
    let mut args = vec!["embed", "--model", &model, "--image"];
    args.extend(images.iter().map(String::as_str));
    args.extend(extra);
    seer(&args)
}

fn embeddings(o: &Output) -> Vec<Vec<f32>> {
    json_lines(o)
        .iter()
        .map(|l| {
            l["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect()
}

/// An f32 `.npy`: its shape and values, with the header checked as NumPy
/// writes and reads it.
fn read_npy(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    assert_eq!((10 + header_len) % 64, 0, "data not 64-byte aligned");
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(header.ends_with('\n'), "{header:?}");
    assert!(header.contains("'descr': '<f4'"), "{header}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    let inside = header.split("'shape': (").nth(1).unwrap();
    let shape: Vec<usize> = inside[..inside.find(')').unwrap()]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    let data = &bytes[10 + header_len..];
    assert_eq!(data.len(), shape.iter().product::<usize>() * 4, "{header}");
    let values = data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (shape, values)
}

fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter().map(|x| x / norm).collect()
}

#[test]
fn mean_is_the_reference_patch_mean_and_cls_its_pooler_output() {
    for name in ["dinov2-tiny", "dinov2-registers-tiny"] {
        let (case, images) = crop224(name);
        let want = matrix(&case["patch_mean"]);
        let raw = embed(
            &family(name),
            &images,
            &["--features", "mean", "--raw", "--json"],
        );
        assert!(raw.status.success(), "{}", stderr(&raw));
        let diff = max_abs_diff(&embeddings(&raw), &want);
        println!("{name}: --features mean --raw max |diff| = {diff:.2e}");
        assert!(diff <= 1e-4, "{name}: {diff}");

        let unit = embed(&family(name), &images, &["--features", "mean", "--json"]);
        assert!(unit.status.success(), "{}", stderr(&unit));
        let want_unit: Vec<Vec<f32>> = want.iter().map(|v| normalized(v)).collect();
        assert!(
            max_abs_diff(&embeddings(&unit), &want_unit) <= 1e-4,
            "{name}"
        );

        // cls is the default and is pooler_output, which the mean is not.
        let cls = embed(&family(name), &images[..2], &["--raw", "--json"]);
        let explicit = embed(
            &family(name),
            &images[..2],
            &["--features", "cls", "--raw", "--json"],
        );
        assert_eq!(embeddings(&cls), embeddings(&explicit));
        let pooler = matrix(&case["pooler_output"]);
        assert!(max_abs_diff(&embeddings(&cls), &pooler[..2]) <= 1e-4);
        assert!(max_abs_diff(&embeddings(&cls), &want[..2]) > 1e-2);
    }
}

#[test]
fn patch_writes_the_raw_grid_as_an_n_h_w_d_npy_and_json_describes_the_rows() {
    for (name, registers) in [("dinov2-tiny", 0), ("dinov2-registers-tiny", 4)] {
        let (case, images) = crop224(name);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("grid.npy");
        let o = embed(
            &family(name),
            &images,
            &[
                "--features",
                "patch",
                "--out",
                out.to_str().unwrap(),
                "--json",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let (shape, values) = read_npy(&out);
        assert_eq!(shape, vec![images.len(), 16, 16, 40], "{name}");

        // Image 0's grid against the reference's whole last_hidden_state:
        // the tokens after CLS and the registers, row-major.
        let tokens = matrix(&case["last_hidden_state_image0"]);
        assert_eq!(tokens.len(), 1 + registers + 256);
        let grid0: Vec<Vec<f32>> = values[..256 * 40].chunks(40).map(<[f32]>::to_vec).collect();
        let diff = max_abs_diff(&grid0, &tokens[1 + registers..]);
        println!("{name}: patch grid of image 0 max |diff| = {diff:.2e}");
        assert!(diff <= 1e-4, "{name}: {diff}");
        // Every image's grid: its mean is the reference's patch_mean. Raw: a
        // token's norm is not 1.
        let means: Vec<Vec<f32>> = values
            .chunks(256 * 40)
            .map(|g| {
                (0..40)
                    .map(|d| g.iter().skip(d).step_by(40).sum::<f32>() / 256.0)
                    .collect()
            })
            .collect();
        assert!(max_abs_diff(&means, &matrix(&case["patch_mean"])) <= 1e-4);
        let norm0 = grid0[0].iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm0 - 1.0).abs() > 1e-2, "token norm {norm0}");

        // --json describes each row; it never prints the grid.
        let lines = json_lines(&o);
        assert_eq!(lines.len(), images.len());
        for (i, (line, image)) in lines.iter().zip(&images).enumerate() {
            assert_eq!(line["input"], image.as_str());
            assert_eq!(line["row"], i);
            assert_eq!(line["grid"], serde_json::json!([16, 16]));
            assert_eq!(line["dim"], 40);
            assert!(line.get("embedding").is_none());
        }
        let listing = std::fs::read_to_string(dir.path().join("grid.inputs.txt")).unwrap();
        assert_eq!(listing.lines().collect::<Vec<_>>(), images);
    }
}

#[test]
fn bad_files_in_a_patch_batch_are_named_and_the_rest_is_written() {
    let (case, images) = crop224("dinov2-tiny");
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.jpg");
    std::fs::write(&empty, b"").unwrap();
    let missing = dir.path().join("missing.png");
    let out = dir.path().join("grid.npy");
    let inputs = [
        empty.display().to_string(),
        images[0].clone(),
        missing.display().to_string(),
        images[1].clone(),
    ];
    let o = embed(
        &family("dinov2-tiny"),
        &inputs,
        &["--features", "patch", "--out", out.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    for bad in [&empty, &missing] {
        assert!(err.contains(&bad.display().to_string()), "{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    assert!(o.stdout.is_empty(), "without --json stdout stays empty");
    let (shape, values) = read_npy(&out);
    assert_eq!(shape, vec![2, 16, 16, 40]);
    let tokens = matrix(&case["last_hidden_state_image0"]);
    let grid0: Vec<Vec<f32>> = values[..256 * 40].chunks(40).map(<[f32]>::to_vec).collect();
    assert!(max_abs_diff(&grid0, &tokens[1..]) <= 1e-4);
    let listing = std::fs::read_to_string(dir.path().join("grid.inputs.txt")).unwrap();
    assert_eq!(listing.lines().collect::<Vec<_>>(), images[..2].to_vec());
}

#[test]
fn patch_features_are_refused_where_they_do_not_apply() {
    let (_, images) = crop224("dinov2-tiny");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.npy");
    let out = out.to_str().unwrap();
    // SigLIP pools its tokens with its attention head: it has no patch features.
    for features in ["mean", "patch"] {
        let o = embed(
            &family("siglip-tiny"),
            &images[..1],
            &["--features", features, "--out", out],
        );
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("(siglip)") && err.contains("patch"), "{err}");
        assert!(!Path::new(out).exists(), "nothing is written");
    }
    let dinov2 = family("dinov2-tiny").display().to_string();
    for (args, says) in [
        (vec!["--image", &images[0], "--features", "patch"], "--out"),
        (
            vec!["--image", &images[0], "--features", "patch", "--json"],
            "--out",
        ),
        (vec!["--text", "a cat", "--features", "mean"], "texts"),
        (
            vec!["--image", &images[0], "--json", "--out", out],
            "--json and --out",
        ),
        (vec!["--image", &images[0], "--features", "grid"], "grid"),
    ] {
        let mut all = vec!["embed", "--model", &dinov2];
        all.extend(args.iter().copied());
        let o = seer(&all);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn help_says_the_patch_grid_is_raw() {
    let o = seer(&["embed", "--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(help.contains("--features"), "{help}");
    assert!(help.contains("never normalised"), "{help}");
}
