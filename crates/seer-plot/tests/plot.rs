//! End-to-end: parse metrics files, render, write and re-read PNGs.

use std::path::Path;

use seer_plot::{panel_rects, plot_metrics, read_metrics, render, Metrics, PlotError, PlotRect};

/// A synthetic run: loss decreasing over `steps`, warmup + cosine lr, rising logit
/// scale, and an eval every `steps / 5` steps.
fn synthetic_run(steps: u32) -> String {
    let mut s = String::new();
    for step in 1..=steps {
        let t = step as f64;
        let wiggle = 0.1 * (t * 0.7).sin();
        let loss = 4.5 * (-t / 250.0).exp() + 0.9 + wiggle;
        let lr = if step <= 50 {
            1e-3 * t / 50.0
        } else {
            0.5e-3 * (1.0 + (std::f64::consts::PI * (t - 50.0) / (steps as f64 - 50.0)).cos())
        };
        let scale = 14.3 + 40.0 * (1.0 - (-t / 400.0).exp());
        s += &format!(
            "{{\"kind\":\"train\",\"step\":{step},\"epoch\":{},\"samples\":{},\"loss\":{loss},\"lr\":{lr},\"logit_scale\":{scale},\"samples_per_sec\":80.1,\"elapsed_s\":{}}}\n",
            t / 200.0,
            step * 256,
            t * 0.3
        );
        if step % (steps / 5).max(1) == 0 {
            let f = 1.0 - (-t / 400.0).exp();
            s += &format!(
                "{{\"kind\":\"eval\",\"step\":{step},\"epoch\":{},\"elapsed_s\":{},\"zeroshot_top1\":{},\"zeroshot_top5\":{},\"recall@1\":{}}}\n",
                t / 200.0,
                t * 0.3,
                0.45 * f,
                0.85 * f,
                0.25 * f
            );
        }
    }
    s
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write metrics");
    path
}

/// Coloured (not white, grey or black) pixels in `rect`, as `(x, y)`.
fn coloured(img: &image::RgbImage, rect: PlotRect) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    for y in rect.y..rect.y + rect.height {
        for x in rect.x..rect.x + rect.width {
            let [r, g, b] = img.get_pixel(x, y).0;
            if r.max(g).max(b) - r.min(g).min(b) >= 40 {
                out.push((x, y));
            }
        }
    }
    out
}

fn non_white(img: &image::RgbImage, rect: PlotRect) -> usize {
    let mut n = 0;
    for y in rect.y..rect.y + rect.height {
        for x in rect.x..rect.x + rect.width {
            n += usize::from(img.get_pixel(x, y).0 != [255; 3]);
        }
    }
    n
}

#[test]
fn parsing_counts_good_and_bad_lines() {
    let text = [
        r#"{"kind":"train","step":1,"loss":2.5,"lr":0.0001,"logit_scale":14.3}"#,
        "",
        "   ",
        "not json at all",
        r#"{"kind":"train","loss":2.0}"#,
        r#"{"kind":"train","step":"two","loss":2.0}"#,
        r#"[1, 2, 3]"#,
        r#"{"step":2,"loss":2.25}"#,
        r#"{"kind":"weird","step":3,"loss":2.0,"lr":0.0002}"#,
        r#"{"kind":"weird","step":3}"#,
        r#"{"kind":"train","step":4,"loss":NaN,"lr":0.0003}"#,
        r#"{"kind":"eval","step":4,"epoch":0.1,"elapsed_s":9.0,"samples":1024,"zeroshot_top1":0.25,"recall@5":Infinity,"note":"x"}"#,
        r#"{"kind":"eval","step":8,"zeroshot_top1":0.5,"recall@5":0.75}"#,
        r#"{"kind":"train","step":5,"loss":1.5"#,
    ]
    .join("\n");
    let m = Metrics::parse(&text);
    assert_eq!(m.train_points, 4);
    assert_eq!(m.eval_points, 2);
    assert_eq!(m.skipped_lines, 8);
    assert_eq!(m.loss.points, vec![(1.0, 2.5), (2.0, 2.25), (3.0, 2.0)]);
    assert_eq!(
        m.lr.points,
        vec![(1.0, 0.0001), (3.0, 0.0002), (4.0, 0.0003)]
    );
    let names: Vec<&str> = m.eval.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["recall@5", "zeroshot_top1"]);
    assert_eq!(m.eval[0].points, vec![(8.0, 0.75)]);
    assert_eq!(m.eval[1].points, vec![(4.0, 0.25), (8.0, 0.5)]);
}

#[test]
fn empty_and_missing_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let empty = write(dir.path(), "empty.jsonl", "");
    let junk = write(dir.path(), "junk.jsonl", "\nnope\n{\"loss\":1}\n");
    let missing = dir.path().join("missing.jsonl");
    let out = dir.path().join("out.png");

    let err = read_metrics(&empty).expect_err("empty file");
    assert!(
        matches!(err, PlotError::NoData { skipped: 0, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("empty.jsonl"), "{err}");

    let err = plot_metrics(&junk, &out, "t").expect_err("junk file");
    assert!(
        matches!(err, PlotError::NoData { skipped: 3, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("junk.jsonl"), "{err}");

    let err = plot_metrics(&missing, &out, "t").expect_err("missing file");
    assert!(matches!(err, PlotError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.jsonl"), "{err}");
    assert!(!out.exists());
}

#[test]
fn synthetic_run_renders_three_panels_and_loss_goes_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics = write(dir.path(), "metrics.jsonl", &synthetic_run(1000));
    let out = dir.path().join("plot.png");
    let summary = plot_metrics(&metrics, &out, "synthetic run").expect("plot");
    assert_eq!(summary.train_points, 1000);
    assert_eq!(summary.eval_points, 5);
    assert_eq!(summary.skipped_lines, 0);
    assert_eq!(
        summary.series,
        [
            "loss",
            "recall@1",
            "zeroshot_top1",
            "zeroshot_top5",
            "lr",
            "logit_scale"
        ]
    );
    assert_eq!(
        (summary.width, summary.height),
        (seer_plot::WIDTH, seer_plot::HEIGHT)
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    let img = image::open(&out).expect("decode PNG").to_rgb8();
    assert_eq!(img.dimensions(), (summary.width, summary.height));
    let panels = panel_rects();
    for (i, rect) in panels.iter().enumerate() {
        assert!(rect.x + rect.width <= img.width() && rect.y + rect.height <= img.height());
        assert!(coloured(&img, *rect).len() > 200, "panel {i} has no curve");
    }

    // The loss curve sits higher (smaller y) in the left tenth than in the right tenth.
    let loss = panels[0];
    let tenth = loss.width / 10;
    let mean_y = |from: u32, to: u32| {
        let ys: Vec<f64> = coloured(&img, loss)
            .into_iter()
            .filter(|&(x, _)| x >= from && x < to)
            .map(|(_, y)| y as f64)
            .collect();
        assert!(!ys.is_empty(), "no loss pixels in x {from}..{to}");
        ys.iter().sum::<f64>() / ys.len() as f64
    };
    let left = mean_y(loss.x + 2, loss.x + tenth);
    let right = mean_y(loss.x + loss.width - tenth, loss.x + loss.width - 2);
    assert!(
        left + 50.0 < right,
        "loss does not go down: left y {left}, right y {right}"
    );

    // The eval curves rise: the last marker is above the first for each series, so the
    // coloured pixels of the evaluation panel span a good part of its height.
    let eval = coloured(&img, panels[1]);
    let (top, bottom) = eval
        .iter()
        .fold((u32::MAX, 0), |(t, b), &(_, y)| (t.min(y), b.max(y)));
    assert!(bottom - top > panels[1].height / 3);
}

#[test]
fn single_line_and_no_eval_still_render() {
    let dir = tempfile::tempdir().expect("tempdir");
    let one = write(
        dir.path(),
        "one.jsonl",
        r#"{"kind":"train","step":0,"loss":6.2,"lr":0.0}"#,
    );
    let out = dir.path().join("one.png");
    let summary = plot_metrics(&one, &out, "one line").expect("plot");
    assert_eq!((summary.train_points, summary.eval_points), (1, 0));
    assert_eq!(summary.series, ["loss", "lr"]);
    let img = image::open(&out).expect("decode").to_rgb8();
    let panels = panel_rects();
    assert!(
        !coloured(&img, panels[0]).is_empty(),
        "single loss point not drawn"
    );
    // "no evaluation yet" is written in the empty evaluation panel.
    let mut inner = panels[1];
    inner.x += 2;
    inner.y += 2;
    inner.width -= 4;
    inner.height -= 4;
    let grid_only = Metrics::parse(r#"{"kind":"eval","step":1}"#);
    let empty_panel = render(&grid_only, "").expect("render");
    assert!(non_white(&img, inner) > 0);
    assert!(non_white(&empty_panel, inner) > 0);

    let train_only = synthetic_run(300)
        .lines()
        .filter(|l| !l.contains("eval"))
        .collect::<Vec<_>>()
        .join("\n");
    let img = render(&Metrics::parse(&train_only), "train only").expect("render");
    assert_eq!(img.dimensions(), (seer_plot::WIDTH, seer_plot::HEIGHT));
    assert!(coloured(&img, panels[1]).is_empty());
    assert!(coloured(&img, panels[2]).len() > 100);
}

#[test]
fn hostile_inputs_do_not_panic() {
    let cases = [
        "{\"kind\":\"train\",\"step\":5,\"loss\":1e308,\"lr\":-1e308,\"logit_scale\":1e-300}\n{\"kind\":\"train\",\"step\":6,\"loss\":-1e308}",
        "{\"kind\":\"train\",\"step\":3,\"loss\":1}\n{\"kind\":\"train\",\"step\":3,\"loss\":1}\n{\"kind\":\"train\",\"step\":3,\"loss\":1}",
        "{\"kind\":\"train\",\"step\":-1e300,\"loss\":2}\n{\"kind\":\"train\",\"step\":1e300,\"loss\":2}",
        "{\"kind\":\"eval\",\"step\":1,\"val_loss\":3.5,\"weird\":-7,\"acc\":1.0}\n{\"kind\":\"eval\",\"step\":2,\"val_loss\":2.5,\"acc\":0.0}",
        "{\"kind\":\"eval\",\"step\":1,\"a_very_long_metric_name_that_cannot_fit_in_the_legend\":0.5,\"b\":0.1,\"c\":0.2,\"d\":0.3,\"e\":0.4,\"f\":0.5,\"g\":0.6,\"h\":0.7,\"i\":0.8}",
        "{\"kind\":\"train\",\"step\":1,\"loss\":1,\"lr\":0}\n{\"kind\":\"train\",\"step\":2,\"loss\":1,\"lr\":0}",
        "",
    ];
    for text in cases {
        let m = Metrics::parse(text);
        let img = render(&m, "títle ünïcode \u{1F600} and a title far too long to fit across the top of the picture at all")
            .expect("render");
        assert_eq!(img.dimensions(), (seer_plot::WIDTH, seer_plot::HEIGHT));
    }
    let m = Metrics::parse(cases[3]);
    assert_eq!(m.eval.len(), 3);
}
