//! Datasets on disk: SemanticKITTI layout (LiDAR scans, labels, poses, calibration, predictions).

pub mod semantic_kitti;

pub use semantic_kitti::{DatasetError, KittiSequence};
