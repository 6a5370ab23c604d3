//! Writes a synthetic `metrics.jsonl` (decreasing loss, warmup + cosine learning rate,
//! rising logit scale, five evaluations) and plots it.
//!
//! `cargo run --release -p seer-plot --example synthetic -- OUT.png`

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "seer-plot-example.png".into()),
    );
    let dir = std::env::temp_dir().join(format!("seer-plot-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let metrics = dir.join("metrics.jsonl");
    std::fs::write(&metrics, synthetic_run(1000))?;
    let summary = seer_plot::plot_metrics(&metrics, &out, "seer train: ViT-B/32 on cc3m-subset")?;
    std::fs::remove_dir_all(&dir)?;
    println!("{summary:?}\nwrote {}", out.display());
    Ok(())
}

fn synthetic_run(steps: u32) -> String {
    let mut s = String::new();
    let mut noise = 12345u32;
    for step in 1..=steps {
        noise = noise.wrapping_mul(1_103_515_245).wrapping_add(12345);
        let jitter = ((noise >> 16) % 1000) as f64 / 1000.0 - 0.5;
        let t = step as f64;
        let loss = 4.5 * (-t / 250.0).exp() + 0.9 + 0.25 * jitter;
        let lr = if step <= 50 {
            1e-3 * t / 50.0
        } else {
            0.5e-3 * (1.0 + (std::f64::consts::PI * (t - 50.0) / (steps as f64 - 50.0)).cos())
        };
        let scale = 14.3 + 40.0 * (1.0 - (-t / 400.0).exp());
        s += &format!(
            "{{\"kind\":\"train\",\"step\":{step},\"epoch\":{:.3},\"loss\":{loss},\"lr\":{lr},\"logit_scale\":{scale}}}\n",
            t / 200.0
        );
        if step % 200 == 0 {
            let f = 1.0 - (-t / 400.0).exp();
            s += &format!(
                "{{\"kind\":\"eval\",\"step\":{step},\"epoch\":{:.1},\"elapsed_s\":{},\"zeroshot_top1\":{},\"zeroshot_top5\":{},\"recall@1\":{},\"recall@5\":{}}}\n",
                t / 200.0, t * 0.3, 0.45 * f, 0.85 * f, 0.25 * f, 0.55 * f
            );
        }
    }
    s
}
