//! Moving-object segmentation metrics exactly as semantic-kitti-api's `evaluate_mos.py` computes them.
//!
//! Labels and predictions are raw SemanticKITTI ids (lower 16 bits used), mapped by the official MOS
//! learning map: 0/1 → class 0 (ignored), 9, 10–99 → 1 static, 251–259 → 2 moving; every other id
//! (250 "movable" among them) → 0. One confusion matrix (rows = prediction, columns = ground truth)
//! is accumulated over all scans; columns of ignored ground truth are zeroed; IoU = TP / (TP + FP + FN
//! + 1e-15). Ids beyond the official lookup table (≥ 359), on which the script would crash, map to 0.

use crate::dataset::semantic_kitti::{self, DatasetError};
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum EvaluationError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error("{0}")]
    Input(String),
}

/// Classes of the official MOS evaluation.
pub const IGNORED: usize = 0;
pub const STATIC: usize = 1;
pub const MOVING: usize = 2;
const CLASSES: usize = 3;
/// Size of the official lookup table: max key (259) + 100.
const LUT_SIZE: u32 = 359;

/// The official MOS learning map (`config/semantic-kitti-mos.yaml`).
pub fn mos_class(raw: u32) -> usize {
    let id = raw & 0xFFFF;
    if id >= LUT_SIZE {
        return IGNORED;
    }
    match id {
        9 | 10 | 11 | 13 | 15 | 16 | 18 | 20 | 30 | 31 | 32 | 40 | 44 | 48 | 49 | 50 | 51 | 52 | 60 | 70 | 71 | 72 | 80 | 81 | 99 => STATIC,
        251..=259 => MOVING,
        _ => IGNORED,
    }
}

/// A confusion matrix over the three MOS classes (rows = prediction, columns = ground truth).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MosConfusion {
    pub counts: [[u64; CLASSES]; CLASSES],
}

/// What `evaluate_mos.py` reports (and what it computes without printing).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MosScores {
    pub iou_moving: f64,
    pub iou_static: f64,
    pub accuracy: f64,
    pub tp_moving: u64,
    pub fp_moving: u64,
    pub fn_moving: u64,
}

impl MosConfusion {
    /// Adds one scan of raw predicted and ground-truth ids.
    pub fn add(&mut self, predicted: &[u32], ground_truth: &[u32]) {
        for (&p, &g) in predicted.iter().zip(ground_truth) {
            self.counts[mos_class(p)][mos_class(g)] += 1;
        }
    }

    pub fn merge(&mut self, other: &MosConfusion) {
        for r in 0..CLASSES {
            for c in 0..CLASSES {
                self.counts[r][c] += other.counts[r][c];
            }
        }
    }

    pub fn scores(&self) -> MosScores {
        let mut conf = self.counts;
        for row in conf.iter_mut() {
            row[IGNORED] = 0;
        }
        let tp: Vec<f64> = (0..CLASSES).map(|i| conf[i][i] as f64).collect();
        let row_sum: Vec<f64> = (0..CLASSES).map(|i| conf[i].iter().sum::<u64>() as f64).collect();
        let col_sum: Vec<f64> = (0..CLASSES).map(|j| (0..CLASSES).map(|i| conf[i][j]).sum::<u64>() as f64).collect();
        let fp: Vec<f64> = (0..CLASSES).map(|i| row_sum[i] - tp[i]).collect();
        let fn_: Vec<f64> = (0..CLASSES).map(|i| col_sum[i] - tp[i]).collect();
        let iou = |i: usize| tp[i] / (tp[i] + fp[i] + fn_[i] + 1e-15);
        let total_tp: f64 = tp.iter().sum();
        let included = [STATIC, MOVING];
        let accuracy = total_tp / (included.iter().map(|&i| tp[i] + fp[i]).sum::<f64>() + 1e-15);
        MosScores {
            iou_moving: iou(MOVING),
            iou_static: iou(STATIC),
            accuracy,
            tp_moving: tp[MOVING] as u64,
            fp_moving: fp[MOVING] as u64,
            fn_moving: fn_[MOVING] as u64,
        }
    }
}

/// The result of evaluating a set of sequences.
#[derive(Debug, Clone)]
pub struct MosReport {
    pub confusion: MosConfusion,
    pub scans: usize,
    pub sequences: Vec<String>,
}

impl MosReport {
    /// The lines `evaluate_mos.py` prints for the paper table, plus the full-precision figures.
    pub fn render(&self) -> String {
        let s = self.confusion.scores();
        format!(
            "sequences: {}\nscans: {}\niou_moving: {:.3}\niou_moving_full_precision: {}\ntp_moving: {}\nfp_moving: {}\nfn_moving: {}\niou_static: {}\naccuracy: {}\nconfusion (rows predicted, columns ground truth; 0 ignored, 1 static, 2 moving): {:?}\n",
            self.sequences.join(" "),
            self.scans,
            s.iou_moving,
            s.iou_moving,
            s.tp_moving,
            s.fp_moving,
            s.fn_moving,
            s.iou_static,
            s.accuracy,
            self.confusion.counts
        )
    }
}

fn label_files(dir: &Path) -> Result<Vec<PathBuf>, EvaluationError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| DatasetError::Io { path: dir.display().to_string(), source: e })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.contains(".label")))
        .collect();
    files.sort();
    Ok(files)
}

/// Evaluates `predictions/sequences/XX/predictions/*.label` against `dataset/sequences/XX/labels/*.label`
/// for each sequence, pairing files by sorted name as the official script does.
pub fn evaluate(dataset: &Path, predictions: &Path, sequences: &[String]) -> Result<MosReport, EvaluationError> {
    let mut confusion = MosConfusion::default();
    let mut scans = 0;
    let mut names = Vec::new();
    for sequence in sequences {
        let id = match sequence.parse::<u32>() {
            Ok(n) => format!("{n:02}"),
            Err(_) => sequence.clone(),
        };
        let labels = label_files(&dataset.join("sequences").join(&id).join("labels"))?;
        let preds = label_files(&predictions.join("sequences").join(&id).join("predictions"))?;
        if labels.len() != preds.len() {
            log::warn!("sequence {id}: {} label files but {} prediction files; pairing the first {} by name", labels.len(), preds.len(), labels.len().min(preds.len()));
        }
        for (label_path, pred_path) in labels.iter().zip(&preds) {
            let gt = semantic_kitti::read_label_file(label_path)?;
            let pred = semantic_kitti::read_label_file(pred_path)?;
            if gt.len() != pred.len() {
                return Err(EvaluationError::Input(format!(
                    "{} has {} predictions but {} has {} labels",
                    pred_path.display(),
                    pred.len(),
                    label_path.display(),
                    gt.len()
                )));
            }
            confusion.add(&pred, &gt);
            scans += 1;
        }
        names.push(id);
    }
    Ok(MosReport { confusion, scans, sequences: names })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learning_map_matches_the_official_config() {
        assert_eq!(mos_class(0), IGNORED);
        assert_eq!(mos_class(1), IGNORED);
        assert_eq!(mos_class(9), STATIC);
        assert_eq!(mos_class(40 | (7 << 16)), STATIC);
        assert_eq!(mos_class(250), IGNORED, "movable is not in the official map");
        assert_eq!(mos_class(252), MOVING);
        assert_eq!(mos_class(100), IGNORED);
        assert_eq!(mos_class(5000), IGNORED);
    }

    #[test]
    fn iou_counts_movable_on_moving_as_a_miss() {
        let mut c = MosConfusion::default();
        c.add(&[251, 251, 9, 250, 9, 251], &[251, 9, 251, 251, 9, 0]);
        let s = c.scores();
        assert_eq!((s.tp_moving, s.fp_moving, s.fn_moving), (1, 1, 2));
        assert!((s.iou_moving - 0.25).abs() < 1e-12);
    }
}
