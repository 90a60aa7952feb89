//! SemanticKITTI sequences: `ROOT/sequences/XX/{velodyne/NNNNNN.bin, labels/NNNNNN.label, poses.txt,
//! calib.txt}` and `PRED/sequences/XX/predictions/NNNNNN.label`.
//!
//! Poses are returned in the LiDAR frame of the sequence's first scan, as MotionBEV, MambaMOS and KDMOS
//! compute them: `P_L,i = inv(Tr) · inv(P_0) · P_i · Tr`, with KITTI's camera-frame poses `P_i` and
//! `Tr` (velodyne → camera 0) inverted as general 4×4 matrices.

use crate::cloud::PointCloud;
use crate::geometry::{kitti_row_from_matrix, matrix_from_kitti_row};
use nalgebra::Matrix4;
use std::io::Write;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DatasetError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {reason}")]
    Format { path: String, reason: String },
    #[error("{path}: line {line}: {reason}")]
    Line { path: String, line: usize, reason: String },
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io { path: path.display().to_string(), source }
}

/// One sequence of a SemanticKITTI-layout dataset.
#[derive(Debug, Clone)]
pub struct KittiSequence {
    pub id: String,
    pub dir: PathBuf,
    scans: Vec<PathBuf>,
    /// `Tr` (velodyne → camera 0); identity when there is no calib.txt (non-KITTI sensors).
    pub calib: Matrix4<f64>,
    /// LiDAR poses relative to the first scan's LiDAR frame, if poses.txt exists.
    lidar_poses: Option<Vec<Matrix4<f64>>>,
}

impl KittiSequence {
    /// Opens `root/sequences/<id>`; `id` may be given as `8` or `08`.
    pub fn open(root: &Path, id: &str) -> Result<Self, DatasetError> {
        let id = normalise_id(id);
        Self::open_dir(&root.join("sequences").join(&id), &id)
    }

    /// Opens a sequence folder directly (one that holds `velodyne/`), e.g. a recording laid out like
    /// a SemanticKITTI sequence outside a `sequences/` tree.
    pub fn open_dir(dir: &Path, id: &str) -> Result<Self, DatasetError> {
        let (dir, id) = (dir.to_path_buf(), id.to_string());
        let velodyne = dir.join("velodyne");
        let mut scans: Vec<PathBuf> = std::fs::read_dir(&velodyne)
            .map_err(io_err(&velodyne))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "bin"))
            .collect();
        scans.sort();
        let calib_path = dir.join("calib.txt");
        let calib = if calib_path.exists() { read_calib(&calib_path)? } else { Matrix4::identity() };
        let poses_path = dir.join("poses.txt");
        let lidar_poses = if poses_path.exists() {
            let camera = read_poses(&poses_path)?;
            if camera.len() < scans.len() {
                return Err(DatasetError::Format {
                    path: poses_path.display().to_string(),
                    reason: format!("{} poses for {} scans in {}", camera.len(), scans.len(), velodyne.display()),
                });
            }
            Some(lidar_frame_poses(&camera, &calib))
        } else {
            None
        };
        Ok(KittiSequence { id, dir, scans, calib, lidar_poses })
    }

    pub fn len(&self) -> usize {
        self.scans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scans.is_empty()
    }

    /// File stem of scan `i`, e.g. `000042`.
    pub fn scan_name(&self, i: usize) -> String {
        self.scans[i].file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default()
    }

    pub fn scan_path(&self, i: usize) -> &Path {
        &self.scans[i]
    }

    pub fn label_path(&self, i: usize) -> PathBuf {
        self.dir.join("labels").join(format!("{}.label", self.scan_name(i)))
    }

    pub fn has_labels(&self) -> bool {
        !self.scans.is_empty() && self.label_path(0).exists()
    }

    pub fn has_poses(&self) -> bool {
        self.lidar_poses.is_some()
    }

    pub fn read_scan(&self, i: usize) -> Result<PointCloud, DatasetError> {
        read_bin(&self.scans[i])
    }

    /// Labels of scan `i` (raw uint32: semantic id in the low 16 bits, instance in the high ones), or
    /// `None` when the sequence has no labels (test sequences).
    pub fn read_labels(&self, i: usize, expected_points: usize) -> Result<Option<Vec<u32>>, DatasetError> {
        let path = self.label_path(i);
        if !path.exists() {
            return Ok(None);
        }
        let labels = read_label_file(&path)?;
        if labels.len() != expected_points {
            return Err(DatasetError::Format {
                path: path.display().to_string(),
                reason: format!("{} labels for {} points in {}", labels.len(), expected_points, self.scans[i].display()),
            });
        }
        Ok(Some(labels))
    }

    /// LiDAR pose of scan `i` in the first scan's LiDAR frame.
    pub fn lidar_pose(&self, i: usize) -> Option<Matrix4<f64>> {
        self.lidar_poses.as_ref().map(|p| p[i])
    }
}

fn normalise_id(id: &str) -> String {
    match id.parse::<u32>() {
        Ok(n) => format!("{n:02}"),
        Err(_) => id.to_string(),
    }
}

/// `P_L,i = inv(Tr) · inv(P_0) · P_i · Tr`.
pub fn lidar_frame_poses(camera_poses: &[Matrix4<f64>], tr: &Matrix4<f64>) -> Vec<Matrix4<f64>> {
    let tr_inv = tr.try_inverse().unwrap_or_else(Matrix4::identity);
    let p0_inv = camera_poses.first().and_then(|p| p.try_inverse()).unwrap_or_else(Matrix4::identity);
    camera_poses.iter().map(|p| tr_inv * p0_inv * p * tr).collect()
}

/// Camera-frame poses that [`lidar_frame_poses`] maps back to `lidar` (for writing a dataset).
pub fn camera_frame_poses(lidar: &[Matrix4<f64>], tr: &Matrix4<f64>) -> Vec<Matrix4<f64>> {
    let tr_inv = tr.try_inverse().unwrap_or_else(Matrix4::identity);
    lidar.iter().map(|p| tr * p * tr_inv).collect()
}

pub fn read_bin(path: &Path) -> Result<PointCloud, DatasetError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    if bytes.len() % 16 != 0 {
        return Err(DatasetError::Format {
            path: path.display().to_string(),
            reason: format!("{} bytes is not a whole number of 16-byte points (x, y, z, remission as float32)", bytes.len()),
        });
    }
    let n = bytes.len() / 16;
    let mut columns = [Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n)];
    for point in bytes.chunks_exact(16) {
        for (k, column) in columns.iter_mut().enumerate() {
            column.push(f32::from_le_bytes([point[4 * k], point[4 * k + 1], point[4 * k + 2], point[4 * k + 3]]));
        }
    }
    let [x, y, z, intensity] = columns;
    Ok(PointCloud::from_xyzi(x, y, z, intensity))
}

pub fn write_bin(path: &Path, cloud: &PointCloud) -> Result<(), DatasetError> {
    let mut bytes = Vec::with_capacity(cloud.len() * 16);
    for i in 0..cloud.len() {
        for v in [cloud.x[i], cloud.y[i], cloud.z[i], cloud.intensity[i]] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    write_atomic(path, &bytes)
}

pub fn read_label_file(path: &Path) -> Result<Vec<u32>, DatasetError> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    if bytes.len() % 4 != 0 {
        return Err(DatasetError::Format { path: path.display().to_string(), reason: format!("{} bytes is not a whole number of uint32 labels", bytes.len()) });
    }
    Ok(bytes.chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

pub fn write_label_file(path: &Path, labels: &[u32]) -> Result<(), DatasetError> {
    let bytes: Vec<u8> = labels.iter().flat_map(|l| l.to_le_bytes()).collect();
    write_atomic(path, &bytes)
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DatasetError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    let tmp = path.with_extension(format!("{}.tmp", path.extension().and_then(|e| e.to_str()).unwrap_or("")));
    std::fs::File::create(&tmp).and_then(|mut f| f.write_all(bytes)).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

fn parse_row(values: &str, path: &Path, line: usize) -> Result<[f64; 12], DatasetError> {
    let numbers: Result<Vec<f64>, _> = values.split_whitespace().map(str::parse::<f64>).collect();
    let numbers = numbers.map_err(|e| DatasetError::Line { path: path.display().to_string(), line, reason: e.to_string() })?;
    numbers.try_into().map_err(|v: Vec<f64>| DatasetError::Line {
        path: path.display().to_string(),
        line,
        reason: format!("expected 12 numbers (a 3×4 matrix), found {}", v.len()),
    })
}

/// poses.txt: one 3×4 row-major matrix per line.
pub fn read_poses(path: &Path) -> Result<Vec<Matrix4<f64>>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| parse_row(l, path, i + 1).map(|row| matrix_from_kitti_row(&row)))
        .collect()
}

pub fn write_poses(path: &Path, poses: &[Matrix4<f64>]) -> Result<(), DatasetError> {
    let mut text = String::new();
    for p in poses {
        let row = kitti_row_from_matrix(p);
        text.push_str(&row.iter().map(|v| format!("{v:.12e}")).collect::<Vec<_>>().join(" "));
        text.push('\n');
    }
    write_atomic(path, text.as_bytes())
}

/// calib.txt: the `Tr:` line.
pub fn read_calib(path: &Path) -> Result<Matrix4<f64>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    parse_calib(&text, path)
}

/// The `Tr:` matrix of calib.txt content; `path` names the source in errors.
pub fn parse_calib(text: &str, path: &Path) -> Result<Matrix4<f64>, DatasetError> {
    for (i, line) in text.lines().enumerate() {
        if let Some(values) = line.strip_prefix("Tr:") {
            return Ok(matrix_from_kitti_row(&parse_row(values, path, i + 1)?));
        }
    }
    Err(DatasetError::Format { path: path.display().to_string(), reason: "no 'Tr:' line".into() })
}

pub fn write_calib(path: &Path, tr: &Matrix4<f64>) -> Result<(), DatasetError> {
    let fmt = |row: [f64; 12]| row.iter().map(|v| format!("{v:.12e}")).collect::<Vec<_>>().join(" ");
    // P0..P3 are camera projections nothing in kdseg uses; KITTI tools expect the lines to exist.
    let p = [7.188560e2, 0.0, 6.071928e2, 0.0, 0.0, 7.188560e2, 1.852157e2, 0.0, 0.0, 0.0, 1.0, 0.0];
    let text = format!("P0: {}\nP1: {}\nP2: {}\nP3: {}\nTr: {}\n", fmt(p), fmt(p), fmt(p), fmt(p), fmt(kitti_row_from_matrix(tr)));
    write_atomic(path, text.as_bytes())
}

/// Where a prediction file goes: `PRED/sequences/XX/predictions/NNNNNN.label`.
pub fn prediction_path(root: &Path, sequence: &str, scan_name: &str) -> PathBuf {
    root.join("sequences").join(normalise_id(sequence)).join("predictions").join(format!("{scan_name}.label"))
}
