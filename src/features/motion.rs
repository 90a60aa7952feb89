//! Motion ("residual") features: per-point height-extent differences between sub-maps of past scans,
//! computed online as scans arrive, on the compute device.
//!
//! # The shared machinery
//! Every buffered scan is re-expressed in the newest scan's LiDAR frame (float64 transforms, then
//! float32 points, as MotionBEV does) and binned into a 360 (azimuth, 1°) × 480 (range, 0.125 m)
//! polar BEV image over 0–60 m of **3-D** range and −4 < z < 2 m. A sub-map (a window of scans) gives
//! a height-extent image Δz = |max z − min z| per cell (0 where empty) and an occlusion mask (per
//! azimuth, the cells beyond the farthest non-zero Δz). Comparing two windows P (earlier) and L
//! (later) gives, per cell:
//! * "appeared" A(L, P) = Δz_L − Δz_P, zeroed where Δz_P > 0.2 Δz_L, Δz_L < 0.4 m, Δz_L > 4 m, or
//!   the cell lies in P's occlusion mask;
//! * "disappeared" D(P, L) = Δz_P − Δz_L with the symmetric conditions (L's occlusion mask).
//!
//! Values are therefore 0 or within about [0.32, 4] m.
//!
//! # Reference mode (MotionBEV's generator, bit-for-bit semantics)
//! Windows W_prev(t) = scans t−7…t−4 and W_last(t) = t−3…t. At each step t the points of W_prev
//! scans receive D(W_prev, W_last) and those of W_last receive A(W_last, W_prev), in the column equal
//! to the scan's age t − k. Scan k's 8 columns are thus complete at t = k + 7: **its features come out
//! when scan k + 7 arrives** ([`MotionFeatures::delay`] = 7). [`MotionFeatures::flush`] releases the
//! last 7 scans at the end of a sequence with the columns they have.
//!
//! # Causal mode (kdseg's definition, for online use without delay)
//! Features for scan t use only scans t−7…t and come out with scan t. With windows (in scan t's
//! frame) W_a = t−3…t, W_b = t−7…t−4, W_c = t−1…t, W_d = t−3…t−2, W_e = t, W_f = t−1,
//! W_g = t−7…t−6, the columns of scan t's points are
//! `[A(W_a,W_b), A(W_c,W_d), A(W_e,W_f), A(W_c,W_g), D(W_b,W_a), D(W_d,W_c), D(W_f,W_e), D(W_g,W_c)]`:
//! "something appeared here" and "something left here" at long (4-scan windows), short (2-scan),
//! immediate (1-scan) and long-gap (2 vs 2 scans, 0.4–0.7 s apart) baselines. Column 0 equals the
//! reference's column 0. Until 8 scans are buffered the missing windows are empty, which gates their
//! columns to 0; outputs say whether the history was complete.

use nalgebra::Matrix4;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use tch::{Device, Kind, Tensor};

/// How motion features are defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MotionMode {
    /// MotionBEV's non-causal generator: features of scan k are ready when scan k+7 arrives.
    Reference,
    /// Features from scan k and the 7 before it, ready with scan k.
    Causal,
}

impl std::str::FromStr for MotionMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reference" => Ok(MotionMode::Reference),
            "causal" => Ok(MotionMode::Causal),
            other => Err(format!("unknown motion mode '{other}' (reference or causal)")),
        }
    }
}

impl std::fmt::Display for MotionMode {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            MotionMode::Reference => "reference",
            MotionMode::Causal => "causal",
        })
    }
}

/// Scans per window in the reference generator (`num_prev_n`, `num_last_n`).
const WINDOW: usize = 4;
/// Scans the features of one scan depend on, and feature columns.
pub const HISTORY: usize = 2 * WINDOW;
pub const COLUMNS: i64 = HISTORY as i64;

/// The residual BEV image: 360 azimuth rows × 480 range columns over 0–60 m, −4 < z < 2 m.
const ROWS: i64 = 360;
const COLS: i64 = 480;
const CELLS: i64 = ROWS * COLS;
/// The causal windows as (from age, to age), scans t-a..=t-b: A = t-3..t, B = t-7..t-4, C = t-1..t,
/// D = t-3..t-2, E = t, F = t-1, G = t-7..t-6.
const CAUSAL_WINDOWS: [(i64, i64); 7] = [(3, 0), (7, 4), (1, 0), (3, 2), (0, 0), (1, 1), (7, 6)];
/// The eight causal columns as gated differences of windows: A−B, C−D, E−F, C−G, then the reverses.
const CAUSAL_PAIRS: [(i64, i64); 8] = [(0, 1), (2, 3), (4, 5), (2, 6), (1, 0), (3, 2), (5, 4), (6, 2)];
/// Cells per buffer slot in the projection: the image and one spare cell for points outside it.
const SLOT_CELLS: i64 = CELLS + 1;
const MAX_RANGE: f64 = 60.0;
const MIN_Z: f64 = -4.0;
const MAX_Z: f64 = 2.0;
const MIN_EXTENT: f64 = 0.4;
const MAX_EXTENT: f64 = 4.0;
const RATIO: f64 = 0.2;

/// One scan entering the feature generator.
pub struct MotionScan {
    /// Caller's identifier, returned with the features.
    pub id: u64,
    pub stamp_ns: i64,
    /// Points in the scan's LiDAR frame, `[N, 3]` on the compute device (float32 or float64; the
    /// generator keeps them in [`MotionFeatures::point_kind`]).
    pub xyz: Tensor,
    /// LiDAR pose in a fixed frame (homogeneous, float64).
    pub pose: Matrix4<f64>,
}

/// Features of one scan.
pub struct MotionOutput {
    pub id: u64,
    pub stamp_ns: i64,
    /// `[N, 8]` float32 on the compute device, rows in the scan's point order.
    pub residuals: Tensor,
    /// Whether all 8 columns could be computed (false for the first and, in reference mode, last 7
    /// scans of a sequence).
    pub complete: bool,
}

struct Buffered {
    scan: MotionScan,
    /// Reference mode: the columns accumulated so far.
    accumulated: Option<Tensor>,
    /// Reference mode: residual steps this scan took part in.
    steps: usize,
}

/// Where each buffered scan's points fall in the current frame's BEV image.
struct Projection {
    /// Per buffered scan: the cell of each point (the spare cell [`CELLS`] outside the volume).
    cells: Vec<Tensor>,
    /// `[slots, CELLS]` max and min z per scan (−∞ / +∞ where empty).
    zmax: Tensor,
    zmin: Tensor,
}

/// A height-extent image with its occlusion mask.
struct Extent {
    dz: Tensor,
    occluded: Tensor,
}

/// The online motion-feature generator.
pub struct MotionFeatures {
    mode: MotionMode,
    device: Device,
    buffer: VecDeque<Buffered>,
    /// [`CAUSAL_PAIRS`] on the device: the minuend and subtrahend window of each column.
    causal_pairs: (Tensor, Tensor),
    /// [`CAUSAL_WINDOW_ROWS`] on the device.
    window_rows: Tensor,
}

impl MotionFeatures {
    pub fn new(mode: MotionMode, device: Device) -> Self {
        let pairs = |side: fn(&(i64, i64)) -> i64| Tensor::from_slice(&CAUSAL_PAIRS.iter().map(side).collect::<Vec<_>>()).to_device(device);
        MotionFeatures {
            mode,
            device,
            buffer: VecDeque::with_capacity(HISTORY),
            causal_pairs: (pairs(|p| p.0), pairs(|p| p.1)),
            window_rows: Tensor::from_slice(&CAUSAL_WINDOW_ROWS).to_device(device),
        }
    }

    pub fn mode(&self) -> MotionMode {
        self.mode
    }

    /// The precision points are transformed in: float64 in reference mode, as MotionBEV's generator
    /// does, float32 in causal mode, where a GPU's float64 matrix products cost half a millisecond a
    /// scan (the poses are still combined in float64 on the host, so the relative transforms are
    /// exact to float32 rounding: about 1e-5 m at 60 m).
    pub fn point_kind(&self) -> Kind {
        match self.mode {
            MotionMode::Reference => Kind::Double,
            MotionMode::Causal => Kind::Float,
        }
    }

    /// Scans between a scan's arrival and its features coming out.
    pub fn delay(&self) -> usize {
        match self.mode {
            MotionMode::Reference => HISTORY - 1,
            MotionMode::Causal => 0,
        }
    }

    /// Scans currently held.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Forgets the history (after a jump back in time, or between sequences).
    pub fn reset(&mut self) {
        self.buffer.clear();
    }

    /// Adds the newest scan; returns the features that became ready (at most one).
    pub fn push(&mut self, mut scan: MotionScan) -> Vec<MotionOutput> {
        let _guard = tch::no_grad_guard();
        scan.xyz = scan.xyz.to_kind(self.point_kind());
        match self.mode {
            MotionMode::Causal => {
                self.buffer.push_back(Buffered { scan, accumulated: None, steps: 0 });
                if self.buffer.len() > HISTORY {
                    self.buffer.pop_front();
                }
                vec![self.causal_step()]
            }
            MotionMode::Reference => {
                let n = scan.xyz.size()[0];
                let accumulated = Tensor::zeros([n, COLUMNS], (Kind::Float, self.device));
                self.buffer.push_back(Buffered { scan, accumulated: Some(accumulated), steps: 0 });
                if self.buffer.len() < HISTORY {
                    return Vec::new();
                }
                self.reference_step();
                self.buffer.pop_front().map(|b| reference_output(b)).into_iter().collect()
            }
        }
    }

    /// Releases every scan still held with the columns computed so far (reference mode); the
    /// generator is empty afterwards.
    pub fn flush(&mut self) -> Vec<MotionOutput> {
        let flushed: Vec<MotionOutput> = match self.mode {
            MotionMode::Reference => self.buffer.drain(..).map(reference_output).collect(),
            MotionMode::Causal => Vec::new(),
        };
        self.buffer.clear();
        flushed
    }

    /// Projects every buffered scan into the newest scan's frame.
    ///
    /// Nothing here waits for the device: the slot transforms go up in one non-blocking copy, the
    /// transformed slots are binned together, and points outside the volume land in a spare cell at
    /// the end of each slot's image instead of being selected out (`nonzero` would synchronise the
    /// stream). Few kernels, which is what matters on a GPU whose host launches them slowly.
    fn project(&self) -> Projection {
        let current = &self.buffer.back().expect("project on an empty buffer").scan;
        let to_current = current.pose.try_inverse().unwrap_or_else(Matrix4::identity);
        let slots = self.buffer.len() as i64;
        let counts: Vec<i64> = self.buffer.iter().map(|b| b.scan.xyz.size()[0]).collect();
        let total: i64 = counts.iter().sum();
        // per slot: the rotation transposed (row-vector points) then the translation
        let mut transforms = Vec::with_capacity(self.buffer.len() * 12);
        for b in &self.buffer {
            let transform = to_current * b.scan.pose;
            transforms.extend((0..3).flat_map(|r| (0..3).map(move |c| transform[(c, r)])));
            transforms.extend([transform[(0, 3)], transform[(1, 3)], transform[(2, 3)]]);
        }
        let upload = |t: Tensor, kind: Kind| t.to_device_(self.device, kind, true, false);
        let kind = self.point_kind();
        let transforms = upload(Tensor::from_slice(&transforms).view([slots, 12]), kind);
        // each point's slot: the number of slot ends at or before its index (a binary search per
        // point, one kernel; `repeat_interleave` took eight times longer on an H100)
        let ends: Vec<i64> = counts.iter().scan(0, |end, &n| {
            *end += n;
            Some(*end)
        }).collect();
        let ends = upload(Tensor::from_slice(&ends), Kind::Int64);
        let slot_of = Tensor::arange(total, (Kind::Int64, self.device)).bucketize(&ends, false, true);
        // p' = p Rᵀ + t with each slot's transform, in `point_kind`, then float32. One matrix product
        // moves every point by every slot's transform ([N, 3] × [3, 3·slots]) and each slot's rows
        // keep their own three columns: three launches in all, where a product per slot costs the
        // host of an H100 about 75 µs a launch and a per-point gather of the transforms 0.3 ms of GPU
        let xyz = Tensor::cat(&self.buffer.iter().map(|b| b.scan.xyz.shallow_clone()).collect::<Vec<_>>(), 0);
        let rotations = transforms.narrow(1, 0, 9).view([slots, 3, 3]).permute([1, 0, 2]).reshape([3, 3 * slots]);
        let translations = transforms.narrow(1, 9, 3).reshape([1, 3 * slots]);
        let every = translations.addmm(&xyz, &rotations);
        let mut start = 0;
        let own: Vec<Tensor> = counts
            .iter()
            .enumerate()
            .map(|(slot, &n)| {
                let rows = every.narrow(0, start, n).narrow(1, 3 * slot as i64, 3);
                start += n;
                rows
            })
            .collect();
        let (cells, z) = polar_cells(&Tensor::cat(&own, 0).to_kind(Kind::Float));
        let index = &cells + slot_of * SLOT_CELLS;
        let extreme = |fill: f64, reduce: &str| {
            Tensor::full([slots * SLOT_CELLS], fill, (Kind::Float, self.device)).internal_scatter_reduce(0, &index, &z, reduce, true).view([slots, SLOT_CELLS]).narrow(1, 0, CELLS)
        };
        let mut offset = 0;
        let cells_of = counts
            .iter()
            .map(|&n| {
                let c = cells.narrow(0, offset, n);
                offset += n;
                c
            })
            .collect();
        Projection { cells: cells_of, zmax: extreme(f64::NEG_INFINITY, "amax"), zmin: extreme(f64::INFINITY, "amin") }
    }

    /// Height extent of the window made of the buffer slots `slots` (consecutive; an empty window
    /// gives all-zero Δz).
    fn extent(&self, projection: &Projection, slots: std::ops::Range<i64>) -> Extent {
        if slots.is_empty() {
            let dz = Tensor::zeros([CELLS], (Kind::Float, self.device));
            return Extent { occluded: occlusion(&dz), dz };
        }
        let zmax = projection.zmax.narrow(0, slots.start, slots.end - slots.start).amax(0, false);
        let zmin = projection.zmin.narrow(0, slots.start, slots.end - slots.start).amin(0, false);
        let occupied = zmax.isfinite();
        let dz = (zmax - zmin).abs().where_self(&occupied, &Tensor::zeros([], (Kind::Float, self.device)));
        Extent { occluded: occlusion(&dz), dz }
    }

    /// One step of MotionBEV's generator at the newest scan (buffer holds exactly 8 scans).
    fn reference_step(&mut self) {
        let projection = self.project();
        let prev = self.extent(&projection, 0..4);
        let last = self.extent(&projection, 4..8);
        let disappeared = gated_difference(&prev, &last);
        let appeared = gated_difference(&last, &prev);
        let newest = self.buffer.len() - 1;
        for (slot, b) in self.buffer.iter_mut().enumerate() {
            let age = (newest - slot) as i64;
            let image = if slot < WINDOW { &disappeared } else { &appeared };
            if let Some(acc) = b.accumulated.as_mut() {
                // points outside the volume read the spare cell's 0
                let values = with_spare_cell(image).index_select(0, &projection.cells[slot]);
                let mut column = acc.select(1, age);
                let _ = column.g_add_(&values);
            }
            b.steps += 1;
        }
    }

    /// Causal features of the newest scan: the height extents of seven windows of the history, and
    /// eight gated differences between them, each computed for all windows or pairs at once.
    fn causal_step(&self) -> MotionOutput {
        let projection = self.project();
        let slots = self.buffer.len() as i64;
        let newest = slots - 1;
        let zmax = causal_windows(&projection.zmax, &self.window_rows, |t, d| t.amax(d, false), f64::NEG_INFINITY);
        let zmin = causal_windows(&projection.zmin, &self.window_rows, |t, d| t.amin(d, false), f64::INFINITY);
        let windows = CAUSAL_WINDOWS.len() as i64;
        // an empty window (at the start of a sequence) has no finite extent: Δz 0 everywhere
        let dz = (&zmax - zmin).abs().where_scalarother(&zmax.isfinite(), 0.0);
        let occluded = dz.view([windows, ROWS, COLS]).ne(0.0).cumsum(2, Kind::Int64).eq(0).view([windows, CELLS]);
        let (a, b) = (&self.causal_pairs.0, &self.causal_pairs.1);
        let (dz_a, dz_b) = (dz.index_select(0, a), dz.index_select(0, b));
        let rejected = (&dz_a * RATIO).lt_tensor(&dz_b).logical_or(&dz_a.lt(MIN_EXTENT)).logical_or(&dz_a.gt(MAX_EXTENT)).logical_or(&occluded.index_select(0, b));
        let images = (&dz_a - &dz_b).where_scalarother(&rejected.logical_not(), 0.0);
        let current = &self.buffer[newest as usize].scan;
        // points outside the volume read the spare cell's zeros
        let residuals = with_spare_cell(&images.transpose(0, 1)).index_select(0, &projection.cells[newest as usize]);
        MotionOutput { id: current.id, stamp_ns: current.stamp_ns, residuals, complete: self.buffer.len() == HISTORY }
    }
}

/// Rows of [`causal_windows`]' stacked reductions that are the [`CAUSAL_WINDOWS`], in order.
/// The stack holds the two 4-scan windows (ages 7–4, 3–0), the four 2-scan ones (7–6, 5–4, 3–2,
/// 1–0), then the eight scans oldest first (age 7 − row + 6).
const CAUSAL_WINDOW_ROWS: [i64; 7] = [1, 0, 5, 4, 13, 12, 2];

/// The [`CAUSAL_WINDOWS`] reductions (`reduce` = max or min over a dimension) of per-scan images
/// `z` `[slots, CELLS]` (oldest first, at most 8): scans missing at the start of a sequence are
/// `empty` images, so their windows reduce to `empty`. Pairs, then pairs of pairs, in two
/// reductions for all seven windows (fourteen separate ones cost the host a launch each).
fn causal_windows(z: &Tensor, rows: &Tensor, reduce: fn(&Tensor, i64) -> Tensor, empty: f64) -> Tensor {
    let slots = z.size()[0];
    let z = if slots < HISTORY as i64 {
        let missing = Tensor::full([HISTORY as i64 - slots, CELLS], empty, (z.kind(), z.device()));
        Tensor::cat(&[missing, z.shallow_clone()], 0)
    } else {
        z.shallow_clone()
    };
    let pairs = reduce(&z.view([4, 2, CELLS]), 1);
    let quads = reduce(&pairs.view([2, 2, CELLS]), 1);
    Tensor::cat(&[quads, pairs, z], 0).index_select(0, rows)
}

fn reference_output(b: Buffered) -> MotionOutput {
    let n = b.scan.xyz.size()[0];
    let device = b.scan.xyz.device();
    MotionOutput {
        id: b.scan.id,
        stamp_ns: b.scan.stamp_ns,
        residuals: b.accumulated.unwrap_or_else(|| Tensor::zeros([n, COLUMNS], (Kind::Float, device))),
        complete: b.steps == HISTORY,
    }
}

/// Image cells of points `[N, 3]` (float32, current frame), row-major azimuth × range, with
/// [`CELLS`] (the spare cell) for points outside the volume, and the points' z.
fn polar_cells(points: &Tensor) -> (Tensor, Tensor) {
    let x = points.select(1, 0);
    let y = points.select(1, 1);
    let z = points.select(1, 2);
    // 3-D range, summed in the order numpy's norm uses for three elements
    // (square root through float64 for a correctly rounded float32 result, as numpy computes it)
    let rho = (&x * &x + &y * &y + &z * &z).to_kind(Kind::Double).sqrt().to_kind(Kind::Float);
    let yaw = y.atan2(&x);
    let inside = rho.gt(0.0).logical_and(&rho.lt(MAX_RANGE)).logical_and(&z.lt(MAX_Z)).logical_and(&z.gt(MIN_Z));
    // float32 bin arithmetic as the reference: floor((1 − ρ/60)·480), floor(0.5·(yaw/π + 1)·360)
    let col = ((-(rho / MAX_RANGE) + 1.0) * COLS as f64).floor().clamp(0.0, (COLS - 1) as f64).to_kind(Kind::Int64);
    let row = (((yaw / std::f64::consts::PI) + 1.0) * 0.5 * ROWS as f64).floor().clamp(0.0, (ROWS - 1) as f64).to_kind(Kind::Int64);
    let cells = (row * COLS + col).where_self(&inside, &Tensor::full([], CELLS, (Kind::Int64, points.device())));
    (cells, z)
}

/// An image `[CELLS, ...]` with one more, all-zero cell at the end (the spare cell).
fn with_spare_cell(image: &Tensor) -> Tensor {
    let mut shape = image.size();
    shape[0] = 1;
    Tensor::cat(&[image.shallow_clone(), Tensor::zeros(shape.as_slice(), (image.kind(), image.device()))], 0)
}

/// Per azimuth row, cells from the far end inwards up to the first non-zero extent.
fn occlusion(dz: &Tensor) -> Tensor {
    dz.view([ROWS, COLS]).ne(0.0).cumsum(1, Kind::Int64).eq(0).view([CELLS])
}

/// `a − b`, zeroed where `b > 0.2 a`, `a < 0.4`, `a > 4` or the cell is hidden in `b`'s image.
fn gated_difference(a: &Extent, b: &Extent) -> Tensor {
    let zero = Tensor::zeros([], (Kind::Float, a.dz.device()));
    let rejected = (&a.dz * RATIO)
        .lt_tensor(&b.dz)
        .logical_or(&a.dz.lt(MIN_EXTENT))
        .logical_or(&a.dz.gt(MAX_EXTENT))
        .logical_or(&b.occluded);
    (&a.dz - &b.dz).where_self(&rejected.logical_not(), &zero)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The windows straight from their definition: scans t-a..=t-b that exist, `empty` if none.
    fn direct_windows(z: &Tensor, reduce: fn(&Tensor, i64) -> Tensor, empty: f64) -> Tensor {
        let newest = z.size()[0] - 1;
        let windows = CAUSAL_WINDOWS.map(|(from_age, to_age)| {
            let (first, last) = ((newest - from_age).max(0), newest - to_age);
            if last < first {
                Tensor::full([CELLS], empty, (Kind::Float, Device::Cpu))
            } else {
                reduce(&z.narrow(0, first, last - first + 1), 0)
            }
        });
        Tensor::stack(&windows, 0)
    }

    #[test]
    fn causal_windows_equal_their_definition_for_every_history_length() {
        tch::manual_seed(3);
        let rows = Tensor::from_slice(&CAUSAL_WINDOW_ROWS);
        for slots in 1..=HISTORY as i64 {
            let z = Tensor::randn([slots, CELLS], (Kind::Float, Device::Cpu));
            let max = |t: &Tensor, d: i64| t.amax(d, false);
            let min = |t: &Tensor, d: i64| t.amin(d, false);
            assert!(causal_windows(&z, &rows, max, f64::NEG_INFINITY).equal(&direct_windows(&z, max, f64::NEG_INFINITY)), "max, {slots} scans");
            assert!(causal_windows(&z, &rows, min, f64::INFINITY).equal(&direct_windows(&z, min, f64::INFINITY)), "min, {slots} scans");
        }
    }
}
