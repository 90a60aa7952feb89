//! Network inputs computed from point clouds, as tensors on the compute device (CPU or CUDA):
//! per-point appearance features and polar grid indices ([`polar`]), and motion ("residual")
//! features from a buffer of past scans and their poses ([`motion`]).

pub mod motion;
pub mod polar;

pub use motion::{MotionFeatures, MotionMode, MotionOutput, MotionScan};
pub use polar::PolarGrid;
