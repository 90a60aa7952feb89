//! Training: the KDMOS loss terms against values computed by hand, training that lowers the loss,
//! exact resume from a checkpoint, and teacher logits in the KDMOS on-disk format.

mod common;

use common::*;
use kdseg::model::{NetConfig, PolarBevNet};
use kdseg::train::loss::{self, CLASS_WEIGHTS};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

fn softmax(z: &[f64]) -> Vec<f64> {
    let m = z.iter().cloned().fold(f64::MIN, f64::max);
    let e: Vec<f64> = z.iter().map(|v| (v - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

/// NCKD and TCKD written out from the reference's formulas, in f64.
fn reference_kd(student: &[[f64; 4]], teacher: &[[f64; 4]], labels: &[usize], t: f64) -> (f64, Option<f64>) {
    let (mut nckd, mut wsum) = (0.0, 0.0);
    let (mut tckd, mut moving) = (0.0, 0.0);
    for i in 0..labels.len() {
        let y = labels[i];
        let w = CLASS_WEIGHTS[y];
        let masked = |z: &[f64; 4]| -> Vec<f64> { (0..4).map(|c| z[c] / t - if c == y { 1000.0 } else { 0.0 }).collect() };
        let pt: Vec<f64> = softmax(&masked(&teacher[i])).iter().map(|p| p + 1e-8).collect();
        // log_softmax, computed stably (the target is pushed down by 1000)
        let zs = masked(&student[i]);
        let m = zs.iter().cloned().fold(f64::MIN, f64::max);
        let log_sum = zs.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
        let log_q: Vec<f64> = zs.iter().map(|v| v - m - log_sum + 1e-8).collect();
        for c in 0..4 {
            nckd += w * pt[c] * (pt[c].ln() - log_q[c]);
        }
        wsum += w;
        if y == 3 {
            let bin = |z: &[f64; 4]| {
                let p: Vec<f64> = softmax(&z.map(|v| v / t)).iter().map(|p| p + 1e-8).collect();
                [p[y], (0..4).filter(|&c| c != y).map(|c| p[c]).sum::<f64>()]
            };
            let (bs, bt) = (bin(&student[i]), bin(&teacher[i]));
            for k in 0..2 {
                tckd += bt[k] * (bt[k].ln() - bs[k].ln());
            }
            moving += 1.0;
        }
    }
    (nckd / wsum, (moving > 0.0).then(|| tckd / moving))
}

fn tensor(rows: &[[f64; 4]]) -> Tensor {
    Tensor::from_slice(&rows.iter().flatten().map(|&v| v as f32).collect::<Vec<f32>>()).view([rows.len() as i64, 4])
}

#[test]
fn kd_terms_match_hand_computed_values() {
    let student = [[0.5, 2.0, -1.0, 0.3], [1.0, -0.5, 0.2, 2.5], [0.0, 0.1, 3.0, -2.0], [-1.0, 0.4, 0.9, 1.7]];
    let teacher = [[0.1, 3.0, -2.0, 0.0], [0.3, 0.2, -1.0, 4.0], [2.0, -1.0, 1.0, 0.5], [0.0, 0.0, 0.5, 3.0]];
    let labels = [1usize, 3, 2, 3];
    let (expected_nckd, expected_tckd) = reference_kd(&student, &teacher, &labels, 4.0);
    let y = Tensor::from_slice(&labels.map(|l| l as i64));
    let nckd = loss::nckd(&tensor(&student), &tensor(&teacher), &y, 4.0).unwrap().double_value(&[]);
    let tckd = loss::tckd(&tensor(&student), &tensor(&teacher), &y, 4.0).unwrap().double_value(&[]);
    assert!((nckd - expected_nckd).abs() < 1e-5 * (1.0 + expected_nckd.abs()), "nckd {nckd} vs {expected_nckd}");
    let expected_tckd = expected_tckd.unwrap();
    assert!((tckd - expected_tckd).abs() < 1e-5 * (1.0 + expected_tckd.abs()), "tckd {tckd} vs {expected_tckd}");
    assert!(nckd > 0.0 && tckd > 0.0);
}

#[test]
fn a_batch_without_moving_points_has_no_tckd_and_no_nan() {
    let student = [[0.5, 2.0, -1.0, 0.3], [0.0, 0.1, 3.0, -2.0], [0.2, 0.2, 0.2, 0.2]];
    let teacher = [[0.1, 3.0, -2.0, 0.0], [2.0, -1.0, 1.0, 0.5], [1.0, 0.0, 0.0, 0.0]];
    let labels = [1usize, 2, 0];
    let y = Tensor::from_slice(&labels.map(|l| l as i64));
    let (s, t) = (tensor(&student), tensor(&teacher));
    assert!(loss::tckd(&s, &t, &y, 4.0).is_none());
    let (expected_nckd, expected_tckd) = reference_kd(&student, &teacher, &labels, 4.0);
    assert!(expected_tckd.is_none());
    let nckd = loss::nckd(&s, &t, &y, 4.0).unwrap().double_value(&[]);
    assert!((nckd - expected_nckd).abs() < 1e-5 * (1.0 + expected_nckd));
    // the whole loss stays finite: KD = 3 · NCKD only
    let voxel_logits = tensor(&student);
    let terms = loss::kdmos_loss(&voxel_logits, &y, &voxel_logits, &y, Some(&t), 0.3, 4.0);
    let total = terms.total.double_value(&[]);
    let base = terms.lovasz.double_value(&[]) + terms.cross_entropy.double_value(&[]);
    assert!(total.is_finite());
    assert!((total - (base + 0.3 * 3.0 * nckd)).abs() < 1e-5, "{total} vs {base} + 0.9 · {nckd}");
    assert_eq!(terms.tckd.expect("KD on: the term is there").double_value(&[]), 0.0);
    assert_eq!(terms.moving_points.expect("KD on: the count is there").double_value(&[]), 0.0);
    // points labelled 0 only: no NCKD either, and the whole loss still has no NaN
    let zeros = Tensor::zeros([3], (Kind::Int64, Device::Cpu));
    assert!(loss::nckd(&s, &t, &zeros, 4.0).is_none());
    let terms = loss::kdmos_loss(&voxel_logits, &zeros, &voxel_logits, &zeros, Some(&t), 0.3, 4.0);
    assert_eq!(terms.nckd.expect("KD on").double_value(&[]), 0.0);
    assert_eq!(terms.total.double_value(&[]), 0.0, "every voxel ignored and no weighted point: nothing to learn");
}

#[test]
fn lovasz_softmax_matches_a_hand_computation() {
    // two voxels of class 1 and one of class 2, one ignored (0)
    let probabilities = Tensor::from_slice(&[0.1f32, 0.7, 0.2, 0.0, 0.2, 0.4, 0.4, 0.0, 0.1, 0.3, 0.6, 0.0, 0.5, 0.2, 0.3, 0.0]).view([4, 4]);
    let labels = Tensor::from_slice(&[1i64, 1, 2, 0]);
    let value = loss::lovasz_softmax(&probabilities, &labels, 0).double_value(&[]);
    // class 1: fg [1,1,0], p [0.7,0.4,0.3] → errors [0.3,0.6,0.3] sorted [0.6,0.3,0.3] with fg [1,1,0] (stable order)
    //   jaccard: 1 - (2-1)/(2+0)=0.5, 1-(2-2)/(2+0)=1, 1-0/(2+1)=1 → grad [0.5,0.5,0] → 0.6·0.5+0.3·0.5 = 0.45
    // class 2: fg [0,0,1], p [0.2,0.4,0.6] → errors [0.2,0.4,0.4] sorted [0.4,0.4,0.2] fg [0,1,0] or [1,0,0]
    //   either order: jaccard steps sum to 1 over the first two → 0.4·(1/2) + 0.4·(1/2) = 0.4
    let expected = (0.45 + 0.4) / 2.0;
    assert!((value - expected).abs() < 1e-6, "{value} vs {expected}");
}

/// Two six-scan VLP-16 sequences (00 train, 01 valid) with moving cars in every scan.
fn tiny_dataset(dir: &Path) -> PathBuf {
    let root = dir.join("data");
    kdseg_ok(&["simulate", "--split", "--train", "1", "--valid", "1", "--test", "0", "--scans", "6", "--lidar", "vlp16", "--preset", "urban", "--seed", "1006", "--out", root.to_str().unwrap()]);
    root
}

/// A training configuration for the tiny set: a 96 × 72 × 32 grid on the CPU, no augmentation, no
/// warm-up, no frame dropping, sequence 01 for validation unless `extra` says otherwise; `extra`
/// lines go into the `train:` section.
fn train_config(dir: &Path, root: &Path, name: &str, extra: &str) -> (PathBuf, PathBuf) {
    let out = dir.join(name);
    let valid = if extra.contains("valid_sequences") { "" } else { "  valid_sequences: [\"01\"]\n" };
    let text = format!(
        "dataset:\n  root: {}\ntrain:\n  out: {}\n  grid: [96, 72, 32]\n  train_sequences: [\"00\"]\n{valid}  warmup_epochs: 0\n  drop_few_static_frames: false\n  augment: {{rotate: false, flip: false, translate_std: 0.0}}\n  device: cpu\n{extra}",
        root.display(),
        out.display()
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    (path, out)
}

/// `log.csv` rows as (step, loss, nckd) with the loss as written (6 decimals).
fn log_rows(run: &Path) -> Vec<(usize, String, String)> {
    let text = std::fs::read_to_string(run.join("log.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("step,epoch,lr,loss,lovasz,cross_entropy,nckd,tckd,step_ms,valid_iou"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[3].to_string(), f[6].to_string())
        })
        .collect()
}

fn loss_of(row: &(usize, String, String)) -> f64 {
    row.1.parse().unwrap()
}

#[test]
fn training_steps_lower_the_loss_and_keep_the_best_weights() {
    let dir = tempdir();
    let root = tiny_dataset(dir.path());
    // one batch holds the whole sequence, so every step sees the same data
    let (config, out) = train_config(dir.path(), &root, "run", "  batch_size: 6\n  max_steps: 5\n  kd_weight: 0\n  validate_every: 5\n");
    let stdout = kdseg_ok(&["train", "--config", config.to_str().unwrap()]);
    assert!(stdout.contains("train: 5 steps"), "{stdout}");
    let rows = log_rows(&out);
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5]);
    let losses: Vec<f64> = rows.iter().map(loss_of).collect();
    assert!(losses.iter().all(|l| l.is_finite() && *l > 0.0));
    assert!(losses[4] < 0.95 * losses[0], "loss should fall over 5 steps on one batch: {losses:?}");
    assert!(losses[3] + losses[4] < losses[0] + losses[1], "{losses:?}");
    // validation ran on the held-out sequence and its weights load as a student
    let last = std::fs::read_to_string(out.join("log.csv")).unwrap();
    let iou: f64 = last.lines().last().unwrap().rsplit(',').next().unwrap().parse().expect("validation IoU in the last row");
    assert!((0.0..=1.0).contains(&iou));
    let best = PolarBevNet::from_checkpoint(&out.join("best.safetensors"), Device::Cpu).unwrap();
    assert_eq!(best.config.motion_channels, 8);
    assert!(out.join("curves.png").is_file() && out.join("best.yaml").is_file() && out.join("run.json").is_file());
}

#[test]
fn resuming_from_a_checkpoint_gives_the_same_next_step() {
    let dir = tempdir();
    let root = tiny_dataset(dir.path());
    // batches of 3 and a shuffle per epoch: the resumed step must find its place in the order
    let settings = "  batch_size: 3\n  kd_weight: 0\n  validate_every: 100\n  checkpoint_every: 1\n  lr: 0.02\n";
    let (whole, whole_out) = train_config(dir.path(), &root, "whole", &format!("{settings}  max_steps: 3\n"));
    kdseg_ok(&["train", "--config", whole.to_str().unwrap()]);
    let (first, split_out) = train_config(dir.path(), &root, "split", &format!("{settings}  max_steps: 2\n"));
    kdseg_ok(&["train", "--config", first.to_str().unwrap()]);
    assert_eq!(log_rows(&split_out).len(), 2);
    // the same run directory with a longer budget continues from last.safetensors
    kdseg_ok(&["train", "--config", first.to_str().unwrap(), "--max-steps", "3"]);
    let (a, b) = (log_rows(&whole_out), log_rows(&split_out));
    assert_eq!(b.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2, 3], "resumed at step 3, not from scratch");
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.1, y.1, "loss of step {} differs after resuming: {a:?} vs {b:?}", x.0);
    }
    assert_ne!(a[1].1, a[2].1);
    // --no-resume starts again from step 1
    kdseg_ok(&["train", "--config", first.to_str().unwrap(), "--max-steps", "1", "--no-resume"]);
    assert_eq!(log_rows(&split_out).last().unwrap().0, 1);
}

#[test]
fn teacher_logits_round_trip_in_the_kdmos_format() {
    let Some(python) = python() else { return };
    let dir = tempdir();
    let root = tiny_dataset(dir.path());
    // a teacher with both motion inputs (16 channels); random weights are enough for the format
    tch::manual_seed(7);
    let teacher = dir.path().join("teacher.safetensors");
    PolarBevNet::new(NetConfig { width: 8, motion_channels: 16, ..NetConfig::KDMOS }, Device::Cpu).save(&teacher).unwrap();
    let ours = dir.path().join("logits");
    let stdout = kdseg_ok(&["teacher", "logits", "--weights", teacher.to_str().unwrap(), "--dataset", root.to_str().unwrap(), "--sequences", "00", "--all-frames", "--device", "cpu", "--out", ours.to_str().unwrap()]);
    assert!(stdout.contains("wrote 6 teacher logit files"), "{stdout}");
    // numpy reads them as float32 [N, 4] in .bin order, N from the scan files
    let summary: serde_json::Value = serde_json::from_str(&run_python(&python, "teacher_logits.py", &["check", ours.to_str().unwrap(), root.to_str().unwrap(), "00"])).unwrap();
    assert_eq!(summary.as_object().unwrap().len(), 6);
    assert!(summary.as_object().unwrap().values().all(|v| v["spread"].as_f64().unwrap() > 0.0));
    // files numpy wrote train exactly as ours do: the same distillation loss, step by step
    let theirs = dir.path().join("numpy_logits");
    run_python(&python, "teacher_logits.py", &["copy", ours.to_str().unwrap(), theirs.to_str().unwrap()]);
    let kd = |name: &str, logits: &Path| {
        let (config, out) = train_config(dir.path(), &root, name, &format!("  batch_size: 3\n  max_steps: 2\n  kd_weight: 0.3\n  teacher_logits: {}\n  valid_sequences: []\n", logits.display()));
        (config, out)
    };
    let (config, out) = kd("kd_ours", &ours);
    kdseg_ok(&["train", "--config", config.to_str().unwrap()]);
    let (config_theirs, out_theirs) = kd("kd_numpy", &theirs);
    kdseg_ok(&["train", "--config", config_theirs.to_str().unwrap()]);
    let (a, b) = (log_rows(&out), log_rows(&out_theirs));
    assert!(a.iter().all(|r| r.2.parse::<f64>().is_ok_and(|v| v > 0.0)), "NCKD in every step: {a:?}");
    assert_eq!(a, b);

    // missing, short and transposed files are errors naming the file, not skipped steps
    let broken = |name: &str, damage: &dyn Fn(&Path)| -> String {
        let logits = dir.path().join(format!("logits_{name}"));
        run_python(&python, "teacher_logits.py", &["copy", ours.to_str().unwrap(), logits.to_str().unwrap()]);
        damage(&logits.join("00_3.npy"));
        let (config, _) = kd(&format!("kd_{name}"), &logits);
        kdseg_err(&["train", "--config", config.to_str().unwrap()])
    };
    let err = broken("missing", &|f| std::fs::remove_file(f).unwrap());
    assert!(err.contains("00_3.npy") && err.contains("missing") && err.contains("frame 3"), "{err}");
    let err = broken("short", &|f| {
        run_python(&python, "teacher_logits.py", &["short", f.to_str().unwrap()]);
    });
    assert!(err.contains("00_3.npy") && err.contains("needs ["), "{err}");
    let err = broken("transposed", &|f| {
        run_python(&python, "teacher_logits.py", &["transpose", f.to_str().unwrap()]);
    });
    assert!(err.contains("00_3.npy") && err.contains("has shape [4, "), "{err}");
    // KD without logits is a configuration error naming the parameter
    let (config, _) = train_config(dir.path(), &root, "kd_none", "  max_steps: 1\n  kd_weight: 0.3\n");
    let err = kdseg_err(&["train", "--config", config.to_str().unwrap()]);
    assert!(err.contains("train.teacher_logits"), "{err}");
}
