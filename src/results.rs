//! `RESULTS.md` from the records of a distillation experiment (`scripts/experiments.sh`): each run
//! directory holds `run.json` (what was trained, how long, validation) and `test.json` (moving IoU
//! on the test sequences by the official rules). Every figure and every comparison in the report is
//! computed here from those files.

use crate::train::data::MotionInput;
use crate::train::RunReport;
use serde::Deserialize;
use std::path::Path;

#[derive(Debug, Clone, Deserialize)]
pub struct TestScores {
    pub sequences: Vec<String>,
    pub scans: usize,
    pub iou_moving: f64,
    pub iou_static: f64,
    pub tp_moving: u64,
    pub fp_moving: u64,
    pub fn_moving: u64,
    pub date: String,
}

/// One row of the report.
pub struct Row {
    pub name: String,
    pub run: RunReport,
    pub test: TestScores,
}

impl Row {
    fn role(&self) -> &'static str {
        if self.run.config.model.width > 32 || self.run.config.model.motion == MotionInput::Both {
            "teacher"
        } else if self.run.config.kd_weight > 0.0 {
            "student, KD"
        } else {
            "student, no KD"
        }
    }
}

/// Reads every run directory under `dir` that has both records.
pub fn read_rows(dir: &Path) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_dir()).collect();
    entries.sort();
    for path in entries {
        let (run, test) = (path.join("run.json"), path.join("test.json"));
        if !(run.exists() && test.exists()) {
            continue;
        }
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
        let run: RunReport = serde_json::from_str(&read(&run)?).map_err(|e| format!("{}: {e}", run.display()))?;
        let test: TestScores = serde_json::from_str(&read(&test)?).map_err(|e| format!("{}: {e}", test.display()))?;
        let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        rows.push(Row { name, run, test });
    }
    // teachers first, then students by motion mode, without KD before with
    rows.sort_by_key(|r| (r.role() != "teacher", r.run.config.model.motion != MotionInput::Causal, r.run.config.kd_weight > 0.0, r.name.clone()));
    Ok(rows)
}

fn motion_name(m: MotionInput) -> &'static str {
    match m {
        MotionInput::Causal => "causal",
        MotionInput::Reference => "reference",
        MotionInput::Both => "causal + reference",
    }
}

fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = values.collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn list(values: impl Iterator<Item = f64>) -> String {
    values.map(|v| format!("{v:.4}")).collect::<Vec<_>>().join(", ")
}

/// Students of one motion mode grouped by their distillation setting (KD weight, T); runs of a group
/// differ only in their seed. Compares every distilled setting with training on labels only, by the
/// mean over seeds and seed by seed, and says which setting validation would pick.
fn distillation_verdict(rows: &[Row], motion: MotionInput) -> String {
    let students: Vec<&Row> = rows.iter().filter(|r| r.role() != "teacher" && r.run.config.model.motion == motion).collect();
    let mut settings: Vec<(f64, f64)> = Vec::new();
    for r in &students {
        let key = (r.run.config.kd_weight, if r.run.config.kd_weight > 0.0 { r.run.config.temperature } else { 0.0 });
        if !settings.contains(&key) {
            settings.push(key);
        }
    }
    let group = |key: (f64, f64)| -> Vec<&Row> { students.iter().copied().filter(|r| r.run.config.kd_weight == key.0 && (key.0 == 0.0 || r.run.config.temperature == key.1)).collect() };
    let valid = |r: &Row| r.run.best_valid_iou.unwrap_or(f64::NAN);
    let names = |g: &[&Row]| g.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ");
    let Some(baseline_key) = settings.iter().copied().find(|k| k.0 == 0.0) else { return String::new() };
    let baseline = group(baseline_key);
    let distilled: Vec<(f64, f64)> = settings.iter().copied().filter(|k| k.0 > 0.0).collect();
    if distilled.is_empty() {
        return String::new();
    }
    let base_test = mean(baseline.iter().map(|r| r.test.iou_moving));
    let mut out = format!(
        "- {} motion features, labels only ({}; {} seed{}): test moving IoU {} (mean {base_test:.4}), validation {}.\n",
        motion_name(motion),
        names(&baseline),
        baseline.len(),
        if baseline.len() == 1 { "" } else { "s" },
        list(baseline.iter().map(|r| r.test.iou_moving)),
        list(baseline.iter().map(|r| valid(r)))
    );
    for &key in &distilled {
        let g = group(key);
        let test = mean(g.iter().map(|r| r.test.iou_moving));
        // seed by seed against the labels-only run with the same seed
        let paired: Vec<String> = g
            .iter()
            .filter_map(|r| baseline.iter().find(|b| b.run.config.seed == r.run.config.seed).map(|b| format!("{:+.2}", (r.test.iou_moving - b.test.iou_moving) * 100.0)))
            .collect();
        let ratio = |a: u64, b: u64| if b == 0 { f64::NAN } else { a as f64 / b as f64 };
        let (fp, fneg) = (mean(g.iter().map(|r| r.test.fp_moving as f64)), mean(baseline.iter().map(|r| r.test.fp_moving as f64)));
        let (fnk, fnb) = (mean(g.iter().map(|r| r.test.fn_moving as f64)), mean(baseline.iter().map(|r| r.test.fn_moving as f64)));
        out.push_str(&format!(
            "  - KD weight {}, T = {} ({}; {} seed{}): test {} (mean {test:.4}, {:+.2} points against labels only{}); validation {}; false positives ×{:.2}, false negatives ×{:.2} of labels only.\n",
            key.0,
            key.1,
            names(&g),
            g.len(),
            if g.len() == 1 { "" } else { "s" },
            list(g.iter().map(|r| r.test.iou_moving)),
            (test - base_test) * 100.0,
            if paired.is_empty() { String::new() } else { format!("; same seed: {}", paired.join(", ")) },
            list(g.iter().map(|r| valid(r))),
            ratio(fp as u64, fneg as u64),
            ratio(fnk as u64, fnb as u64)
        ));
    }
    // what an honest model selection would pick: the distilled setting best on validation
    let by_valid = distilled.iter().copied().max_by(|a, b| mean(group(*a).iter().map(|r| valid(r))).total_cmp(&mean(group(*b).iter().map(|r| valid(r)))));
    if let Some(key) = by_valid {
        let g = group(key);
        let delta = (mean(g.iter().map(|r| r.test.iou_moving)) - base_test) * 100.0;
        out.push_str(&format!(
            "  - Chosen on validation, the distilled setting is KD weight {}, T = {}: on the test sequences it {} training on labels only ({:+.2} points, mean over seeds).\n",
            key.0,
            key.1,
            if delta > 0.0 { "beats" } else { "does not beat" },
            delta
        ));
    }
    if baseline.len() > 1 {
        let tests: Vec<f64> = baseline.iter().map(|r| r.test.iou_moving).collect();
        let spread = (tests.iter().cloned().fold(f64::MIN, f64::max) - tests.iter().cloned().fold(f64::MAX, f64::min)) * 100.0;
        out.push_str(&format!(
            "  - Seed spread: labels-only runs that differ only in their seed land {spread:.2} points apart on test; a difference between settings smaller than that, from one or two seeds, is not evidence either way.\n"
        ));
    }
    out
}

/// The report. `data_manifest` is the dataset's `split.yaml` text, quoted as the data description.
pub fn render(rows: &[Row], data_manifest: Option<&str>, command: &str) -> String {
    let mut out = String::new();
    out.push_str("# Results\n\n");
    out.push_str(&format!(
        "Generated by `{command}` from the run records under `results/`; the runs themselves come from \
         `scripts/experiments.sh` (simulated data, teacher, teacher logits, students with and without \
         distillation, test evaluation). Do not edit by hand.\n\n"
    ));
    out.push_str("Moving IoU is computed by the rules of semantic-kitti-api's `evaluate_mos.py` (one confusion matrix over all scans of the split, unlabelled ground truth ignored), on the test sequences, with the checkpoint that was best on the validation sequence.\n\n");
    out.push_str("## Runs\n\n");
    out.push_str("| run | role | network | motion features | KD weight (T) | seed | steps (epochs) | ms/step | device, precision | best valid IoU (step) | **test moving IoU** | test TP / FP / FN |\n");
    out.push_str("|---|---|---|---|---|---|---|---:|---|---|---:|---|\n");
    for r in rows {
        let c = &r.run.config;
        let kd = if c.kd_weight > 0.0 { format!("{} ({})", c.kd_weight, c.temperature) } else { "0 (no KD)".into() };
        out.push_str(&format!(
            "| {} | {} | {:?}, width {} ({:.2} M parameters) | {} | {} | {} | {} ({:.1}) | {:.0} | {}, {} | {} | **{:.4}** | {} / {} / {} |\n",
            r.name,
            r.role(),
            c.model.variant,
            c.model.width,
            r.run.parameters as f64 / 1e6,
            motion_name(c.model.motion),
            kd,
            c.seed,
            r.run.steps,
            r.run.epochs,
            r.run.mean_step_ms,
            r.run.device,
            r.run.precision,
            r.run.best_valid_iou.map(|v| format!("{v:.4} ({})", r.run.best_step.unwrap_or(0))).unwrap_or_else(|| "–".into()),
            r.test.iou_moving,
            r.test.tp_moving,
            r.test.fp_moving,
            r.test.fn_moving
        ));
    }
    out.push_str("\n## What the numbers say\n\n");
    for motion in [MotionInput::Causal, MotionInput::Reference] {
        out.push_str(&distillation_verdict(rows, motion));
    }
    let teachers: Vec<&Row> = rows.iter().filter(|r| r.role() == "teacher").collect();
    for t in &teachers {
        for p in rows.iter().filter(|r| r.role() == "student, no KD") {
            let valid = |r: &Row| r.run.best_valid_iou.unwrap_or(f64::NAN);
            out.push_str(&format!(
                "- Teacher strength: {} ({} motion features, width {}) against {}: validation moving IoU {:.4} against {:.4} ({:+.2} points), test {:.4} against {:.4} ({:+.2} points).\n",
                t.name,
                motion_name(t.run.config.model.motion),
                t.run.config.model.width,
                p.name,
                valid(t),
                valid(p),
                (valid(t) - valid(p)) * 100.0,
                t.test.iou_moving,
                p.test.iou_moving,
                (t.test.iou_moving - p.test.iou_moving) * 100.0
            ));
        }
    }
    let budgets: Vec<usize> = rows.iter().map(|r| r.run.steps).collect();
    if let (Some(min), Some(max)) = (budgets.iter().min(), budgets.iter().max()) {
        out.push_str(&format!("- Budget: every run trained for {} steps at batch {} (same data, same schedule).\n", if min == max { min.to_string() } else { format!("{min}–{max}") }, rows.first().map(|r| r.run.config.batch_size).unwrap_or(0)));
    }
    if let Some(first) = rows.first() {
        out.push_str(&format!(
            "- Training scans used (KDMOS's `drop_few_static_frames`: frames without moving points dropped except every 10th): {}; validation scans: {}; test scans: {} in {} sequences.\n",
            first.run.train_scans,
            first.run.valid_scans,
            first.test.scans,
            first.test.sequences.len()
        ));
    }
    out.push_str("\nTraining curves (loss, learning rate, validation moving IoU): ");
    out.push_str(&rows.iter().map(|r| format!("[{}](results/experiments/{}/curves.png)", r.name, r.name)).collect::<Vec<_>>().join(", "));
    out.push_str(".\n");
    if let Some(manifest) = data_manifest {
        out.push_str("\n## Data\n\nSimulated with `kdseg simulate --split` (train, valid and test sequences from disjoint seeds); its `split.yaml`:\n\n```yaml\n");
        out.push_str(manifest.trim_end());
        out.push_str("\n```\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::TrainConfig;

    fn row(name: &str, kd_weight: f64, seed: u64, valid: f64, test: f64) -> Row {
        let config = TrainConfig { kd_weight, seed, temperature: 4.0, ..TrainConfig::default() };
        let run = RunReport {
            config,
            dataset: "d".into(),
            train_scans: 10,
            valid_scans: 5,
            steps: 100,
            epochs: 1.0,
            best_valid_iou: Some(valid),
            best_step: Some(100),
            last_valid_iou: Some(valid),
            mean_step_ms: 1.0,
            device: "Cpu".into(),
            precision: "Float".into(),
            parameters: 1,
            wall_s: 1.0,
        };
        let test = TestScores { sequences: vec!["12".into()], scans: 5, iou_moving: test, iou_static: 0.9, tp_moving: 100, fp_moving: 10, fn_moving: 20, date: "2026-11-22".into() };
        Row { name: name.into(), run, test }
    }

    #[test]
    fn distillation_is_judged_over_seeds_and_chosen_on_validation() {
        let mut rows = vec![
            row("plain", 0.0, 1, 0.70, 0.50),
            row("plain_s2", 0.0, 2, 0.66, 0.40),
            row("kd_heavy", 0.3, 1, 0.69, 0.42),
            row("kd_light", 0.1, 1, 0.68, 0.53),
            row("kd_light_s2", 0.1, 2, 0.685, 0.48),
        ];
        rows[3].run.config.temperature = 4.0;
        let text = distillation_verdict(&rows, MotionInput::Causal);
        assert!(text.contains("labels only (plain, plain_s2; 2 seeds): test moving IoU 0.5000, 0.4000 (mean 0.4500)"), "{text}");
        // weight 0.1: mean 0.505, +5.50 points; seed by seed +3.00 and +8.00
        assert!(text.contains("KD weight 0.1, T = 4 (kd_light, kd_light_s2; 2 seeds)") && text.contains("+5.50 points") && text.contains("same seed: +3.00, +8.00"), "{text}");
        assert!(text.contains("KD weight 0.3, T = 4 (kd_heavy; 1 seed)") && text.contains("-3.00 points"), "{text}");
        // validation picks weight 0.3 (0.69 against a mean of 0.6825), which loses on test
        assert!(text.contains("Chosen on validation, the distilled setting is KD weight 0.3, T = 4: on the test sequences it does not beat"), "{text}");
        assert!(text.contains("land 10.00 points apart"), "{text}");
        // no distilled runs: nothing to say
        assert_eq!(distillation_verdict(&rows[..2], MotionInput::Causal), "");
    }
}
