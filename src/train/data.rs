//! Training data: SemanticKITTI-layout sequences read once, their motion features computed online by
//! running the generator over each sequence in order (never written to disk), kept in memory on the
//! training device, and teacher logits in the KDMOS on-disk format.
//!
//! # Teacher logits on disk (KDMOS format)
//! One `.npy` per training sample: float32 `[N, 4]`, rows in the scan's `.bin` order, columns the
//! classes (0 unlabelled, 1 static, 2 movable, 3 moving), pre-softmax. File names follow the KDMOS
//! training code: `<seq>_<k>.npy` with `k` the index of the sample within its sequence **after**
//! `drop_few_static_frames` filtering, unpadded (`00_0.npy`, `00_1.npy`, ...). The alternative
//! naming of KDMOS's logit generator, `<seq>_<frame:06>.npy` (`00_000123.npy`), is accepted with
//! `teacher_logit_names: frame`.

use crate::dataset::semantic_kitti::{DatasetError, KittiSequence};
use crate::features::{MotionFeatures, MotionMode, MotionScan};
use crate::mos::kdmos_class;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DataError {
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error("teacher logits {path}: {reason}")]
    TeacherLogits { path: String, reason: String },
    #[error("{0}")]
    Input(String),
}

/// Which motion features a model consumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MotionInput {
    Causal,
    Reference,
    /// Causal columns then reference columns (16): the offline teacher sees past and future.
    Both,
}

impl MotionInput {
    pub fn channels(self) -> i64 {
        match self {
            MotionInput::Both => 16,
            _ => 8,
        }
    }
}

impl std::str::FromStr for MotionInput {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "causal" => Ok(MotionInput::Causal),
            "reference" => Ok(MotionInput::Reference),
            "both" => Ok(MotionInput::Both),
            other => Err(format!("unknown motion input '{other}' (causal, reference or both)")),
        }
    }
}

/// How teacher-logit files are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TeacherLogitNames {
    /// `<seq>_<k>.npy`, k the sample index after frame filtering (KDMOS training).
    FilteredIndex,
    /// `<seq>_<frame:06>.npy` (KDMOS's logit generator).
    Frame,
}

/// One scan, ready for the network, on the training device.
pub struct Scan {
    pub sequence: String,
    pub frame: usize,
    /// Index among the kept frames of its sequence (for teacher-logit names).
    pub sample_index: usize,
    pub xyz: Tensor,
    pub remission: Tensor,
    /// KDMOS classes per point (int64).
    pub classes: Tensor,
    /// Raw SemanticKITTI labels (for the official evaluation), host side.
    pub raw_labels: Vec<u32>,
    pub residuals: Tensor,
    pub moving_points: usize,
    pub teacher: Option<Tensor>,
}

impl Scan {
    pub fn len(&self) -> usize {
        self.raw_labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.raw_labels.is_empty()
    }
}

/// Options for loading sequences.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub motion: MotionInput,
    pub device: Device,
    /// Keep only frames with moving points plus every 10th frame (training only).
    pub drop_few_static_frames: bool,
    /// Stored precision of the motion features on the device.
    pub residual_kind: Kind,
}

/// Reads sequences and computes their motion features.
pub fn load_sequences(root: &Path, ids: &[String], options: &LoadOptions) -> Result<Vec<Scan>, DataError> {
    let mut scans = Vec::new();
    for id in ids {
        let sequence = KittiSequence::open(root, id)?;
        if !sequence.has_poses() {
            return Err(DataError::Input(format!("{}: poses.txt is missing", sequence.dir.display())));
        }
        if !sequence.has_labels() {
            return Err(DataError::Input(format!("{}: labels/ is missing; training and validation need ground truth", sequence.dir.display())));
        }
        scans.extend(load_sequence(&sequence, options)?);
    }
    Ok(scans)
}

fn load_sequence(sequence: &KittiSequence, options: &LoadOptions) -> Result<Vec<Scan>, DataError> {
    let _guard = tch::no_grad_guard();
    let device = options.device;
    let modes: Vec<MotionMode> = match options.motion {
        MotionInput::Causal => vec![MotionMode::Causal],
        MotionInput::Reference => vec![MotionMode::Reference],
        MotionInput::Both => vec![MotionMode::Causal, MotionMode::Reference],
    };
    let mut generators: Vec<MotionFeatures> = modes.iter().map(|&m| MotionFeatures::new(m, device)).collect();
    let n = sequence.len();
    let mut residuals: Vec<Vec<Option<Tensor>>> = (0..modes.len()).map(|_| (0..n).map(|_| None).collect()).collect();
    let mut scans = Vec::with_capacity(n);
    for i in 0..n {
        let cloud = sequence.read_scan(i)?;
        let raw = sequence.read_labels(i, cloud.len())?.ok_or_else(|| DataError::Input(format!("{}: no labels", sequence.label_path(i).display())))?;
        let xyz = Tensor::stack(&[Tensor::from_slice(&cloud.x), Tensor::from_slice(&cloud.y), Tensor::from_slice(&cloud.z)], 1).to_device(device);
        let pose = sequence.lidar_pose(i).ok_or_else(|| DataError::Input("pose missing".into()))?;
        for (k, g) in generators.iter_mut().enumerate() {
            for out in g.push(MotionScan { id: i as u64, stamp_ns: i as i64, xyz: xyz.to_kind(Kind::Double), pose }) {
                residuals[k][out.id as usize] = Some(out.residuals.to_kind(options.residual_kind));
            }
        }
        let classes: Vec<i64> = raw.iter().map(|&l| i64::from(kdmos_class(l))).collect();
        let moving_points = classes.iter().filter(|&&c| c == 3).count();
        scans.push(Scan {
            sequence: sequence.id.clone(),
            frame: i,
            sample_index: 0,
            xyz,
            remission: Tensor::from_slice(&cloud.intensity).to_device(device),
            classes: Tensor::from_slice(&classes).to_device(device),
            raw_labels: raw,
            residuals: Tensor::zeros([0], (options.residual_kind, device)),
            moving_points,
            teacher: None,
        });
    }
    for (k, g) in generators.iter_mut().enumerate() {
        for out in g.flush() {
            residuals[k][out.id as usize] = Some(out.residuals.to_kind(options.residual_kind));
        }
    }
    for (i, scan) in scans.iter_mut().enumerate() {
        let parts: Vec<Tensor> = residuals.iter_mut().map(|r| r[i].take().unwrap_or_else(|| Tensor::zeros([scan.len() as i64, 8], (options.residual_kind, device)))).collect();
        scan.residuals = Tensor::cat(&parts, 1);
    }
    let mut kept: Vec<Scan> = if options.drop_few_static_frames {
        scans.into_iter().filter(|s| s.moving_points > 0 || s.frame % 10 == 0).collect()
    } else {
        scans
    };
    for (k, scan) in kept.iter_mut().enumerate() {
        scan.sample_index = k;
    }
    Ok(kept)
}

/// The teacher-logit file of a scan.
pub fn teacher_logit_path(dir: &Path, scan: &Scan, names: TeacherLogitNames) -> PathBuf {
    match names {
        TeacherLogitNames::FilteredIndex => dir.join(format!("{}_{}.npy", scan.sequence, scan.sample_index)),
        TeacherLogitNames::Frame => dir.join(format!("{}_{:06}.npy", scan.sequence, scan.frame)),
    }
}

/// Attaches teacher logits to every scan. A missing, short or misnamed file is an error naming it.
pub fn attach_teacher_logits(scans: &mut [Scan], dir: &Path, names: TeacherLogitNames, kind: Kind) -> Result<(), DataError> {
    for scan in scans.iter_mut() {
        let path = teacher_logit_path(dir, scan, names);
        let err = |reason: String| DataError::TeacherLogits { path: path.display().to_string(), reason };
        if !path.is_file() {
            let hint = match names {
                TeacherLogitNames::FilteredIndex => format!("expected for sequence {} sample {} (frame {}); logits are named <seq>_<index after frame filtering>.npy", scan.sequence, scan.sample_index, scan.frame),
                TeacherLogitNames::Frame => format!("expected for sequence {} frame {}", scan.sequence, scan.frame),
            };
            return Err(err(format!("missing ({hint})")));
        }
        let logits = Tensor::read_npy(&path).map_err(|e| err(e.to_string()))?;
        let n = scan.len() as i64;
        // [N, 4] exactly: a transposed [4, N] array has the right size but the wrong rows
        if logits.size() != [n, 4] {
            return Err(err(format!("has shape {:?}, the scan ({} frame {}) needs [{n}, 4] (rows in .bin order)", logits.size(), scan.sequence, scan.frame)));
        }
        if logits.kind() != Kind::Float {
            return Err(err(format!("is {:?}, expected float32", logits.kind())));
        }
        scan.teacher = Some(logits.to_kind(kind).to_device(scan.xyz.device()));
    }
    Ok(())
}

/// Writes a scan's logits in the KDMOS format.
pub fn write_teacher_logits(dir: &Path, scan: &Scan, names: TeacherLogitNames, logits: &Tensor) -> Result<PathBuf, DataError> {
    let path = teacher_logit_path(dir, scan, names);
    std::fs::create_dir_all(dir).map_err(|e| DataError::TeacherLogits { path: dir.display().to_string(), reason: e.to_string() })?;
    logits
        .to_kind(Kind::Float)
        .to_device(Device::Cpu)
        .write_npy(&path)
        .map_err(|e| DataError::TeacherLogits { path: path.display().to_string(), reason: e.to_string() })?;
    Ok(path)
}
