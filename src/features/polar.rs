//! The KDMOS/MotionBEV polar grid and per-point appearance features.
//!
//! Points are binned in a fixed cylindrical volume ρ ∈ [1.85, 50.15] m, φ ∈ [−π, π], z ∈ [−4, 2] m on a
//! 480 × 360 × 32 grid; points outside are clipped into the edge cells, not dropped. The numerics
//! follow the reference data loader exactly: ρ = √(x² + y²) and φ = atan2(y, x) in float32, the bin
//! arithmetic and voxel centres in float64, the offsets rounded to float32 at the end.

use tch::{Device, Kind, Tensor};

/// Geometry of the polar grid.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolarGrid {
    /// Cells along ρ, φ, z.
    pub size: [i64; 3],
    pub min: [f64; 3],
    pub max: [f64; 3],
}

impl Default for PolarGrid {
    fn default() -> Self {
        PolarGrid { size: [480, 360, 32], min: [1.85, -std::f64::consts::PI, -4.0], max: [50.15, std::f64::consts::PI, 2.0] }
    }
}

/// Number of appearance feature columns (offsets to the voxel centre, ρ φ z, x y, remission).
pub const APPEARANCE_COLUMNS: i64 = 9;

impl PolarGrid {
    /// Cell size per axis: (max − min) / (size − 1), as the reference defines it.
    pub fn intervals(&self) -> [f64; 3] {
        [0, 1, 2].map(|k| (self.max[k] - self.min[k]) / (self.size[k] - 1) as f64)
    }

    /// Cells of the BEV image (ρ × φ).
    pub fn bev_cells(&self) -> i64 {
        self.size[0] * self.size[1]
    }

    /// Appearance features `[N, 9]` (float32) and grid indices `[N, 3]` (int64: ρ, φ, z) of points
    /// given as `xyz [N, 3]` and `remission [N]` (float32, on any device).
    pub fn point_features(&self, xyz: &Tensor, remission: &Tensor) -> (Tensor, Tensor) {
        let device = xyz.device();
        let x = xyz.select(1, 0);
        let y = xyz.select(1, 1);
        let z = xyz.select(1, 2);
        // square root through float64: the correctly rounded float32 result on every device
        // (libtorch's vectorised float32 sqrt is not always correctly rounded)
        let rho = (&x * &x + &y * &y).to_kind(Kind::Double).sqrt().to_kind(Kind::Float);
        let phi = y.atan2(&x);
        let polar = Tensor::stack(&[&rho, &phi, &z], 1);
        let grid = self.grid_indices(&polar);
        let interval = f64_row(&self.intervals(), device);
        let min = f64_row(&self.min, device);
        // centre = (float32(index) + 0.5) · interval + min, in float64
        let centre = (grid.to_kind(Kind::Float) + 0.5).to_kind(Kind::Double) * &interval + &min;
        let offset = (polar.to_kind(Kind::Double) - centre).to_kind(Kind::Float);
        let features = Tensor::cat(&[offset, polar, x.unsqueeze(1), y.unsqueeze(1), remission.unsqueeze(1)], 1);
        (features, grid)
    }

    /// Grid indices `[N, 3]` (int64) of polar coordinates `[N, 3]` (float32 ρ, φ, z).
    pub fn grid_indices(&self, polar: &Tensor) -> Tensor {
        let device = polar.device();
        let min = f64_row(&self.min, device);
        let max = f64_row(&self.max, device);
        let interval = f64_row(&self.intervals(), device);
        let clipped = polar.to_kind(Kind::Double).clamp_tensor(Some(&min), Some(&max));
        ((clipped - &min) / interval).floor().to_kind(Kind::Int64)
    }
}

/// A `[1, 3]` float64 row made on the device itself: an upload from the host would synchronise the
/// stream (libtorch waits for blocking copies), three fills do not.
fn f64_row(values: &[f64; 3], device: Device) -> Tensor {
    Tensor::cat(&values.map(|v| Tensor::full([1, 1], v, (Kind::Double, device))), 1)
}
