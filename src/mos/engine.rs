//! The online MOS pipeline: scan + pose → motion features → appearance features → network →
//! per-point labels, everything after the upload on the compute device.
//!
//! In causal mode every scan's labels come back from [`MosEngine::process`] with that scan. In
//! reference mode (MotionBEV's motion features) a scan's labels come back 7 scans later; the result
//! carries the id and stamp of the scan it belongs to, and [`MosEngine::flush`] releases the last ones
//! at the end of a sequence.

use super::{inverse_label, moving_class, DeviceChoice, Precision, LABEL_MOVING, LABEL_STATIC, LABEL_UNKNOWN};
use crate::cloud::PointCloud;
use crate::features::{MotionFeatures, MotionMode, MotionScan, PolarGrid};
use crate::gpu::{CudaGraph, HostBuffer};
use crate::model::{BevInput, CheckpointError, PolarBevNet, Variant};
use nalgebra::Matrix4;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Kind, Tensor};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("device: {0}")]
    Device(String),
    #[error("libtorch failed on scan {id}: {message}")]
    Torch { id: u64, message: String },
    #[error("{0}")]
    Input(String),
}

/// What the engine runs and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Network weights (`.safetensors`, or a PyTorch `state_dict` `.pt`).
    pub weights: PathBuf,
    pub device: DeviceChoice,
    pub precision: Precision,
    /// Motion features: `causal` (labels with each scan) or `reference` (MotionBEV's, 7 scans late).
    pub motion: MotionMode,
    /// Multiplies the cloud's intensity to give KITTI-style remission in [0, 1] (1/255 for drivers
    /// that publish 0–255).
    pub intensity_scale: f32,
    /// On CUDA, capture everything from a scan's points and motion features to its labels (point
    /// features, network, argmax) in a CUDA graph after two scans and replay it: one launch instead
    /// of hundreds, which is most of the time on a busy host.
    pub cuda_graph: bool,
    /// On CUDA in bf16 or fp16, let cuDNN time its convolution algorithms on the first scans and
    /// keep the fastest: its heuristics pick legacy kernels for the full-resolution 3 × 3
    /// convolutions, and the bf16 network takes 4.3 instead of 3.4 ms on an H100, with the search
    /// within the memory budget (peak 0.30 GiB). Float32 always keeps the heuristics: there the
    /// search gains nothing measurable (4.19 against 4.34 ms) and its trial workspaces peak at
    /// 2.3 GiB, over the 1 GB inference budget, whatever `CUDNN_CONV_WSCAP_DBG` says.
    pub cudnn_benchmark: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            weights: PathBuf::from("weights/kdmos_sim.safetensors"),
            device: DeviceChoice::Auto,
            precision: Precision::Fp32,
            motion: MotionMode::Causal,
            intensity_scale: 1.0,
            cuda_graph: true,
            cudnn_benchmark: true,
        }
    }
}

/// One scan for the engine.
pub struct ScanInput<'a> {
    pub id: u64,
    pub stamp_ns: i64,
    pub cloud: &'a PointCloud,
    /// LiDAR pose in a fixed frame.
    pub pose: Matrix4<f64>,
}

/// Milliseconds spent per stage of the scan whose labels these are (stages synchronise the device
/// only when profiling is on; otherwise only `total_ms` is meaningful on a GPU).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct StageTimings {
    pub upload_ms: f64,
    pub motion_ms: f64,
    pub features_ms: f64,
    pub network_ms: f64,
    pub labels_ms: f64,
    pub total_ms: f64,
}

/// Labels of one scan, in its point order.
#[derive(Debug, Clone)]
pub struct ScanResult {
    pub id: u64,
    pub stamp_ns: i64,
    /// Network class per point (argmax).
    pub classes: Vec<u8>,
    /// Raw SemanticKITTI ids of the classes (KDMOS: 0, 9, 250, 251).
    pub labels: Vec<u32>,
    /// Probability that the point moves.
    pub moving_probability: Vec<f32>,
    /// Whether the motion history was complete for this scan.
    pub complete: bool,
    pub timings: StageTimings,
}

impl ScanResult {
    /// Moving/static labels for publishing: 251 moving, 9 static (movable-but-parked included), 0
    /// for every point while the history is too short.
    pub fn mos_labels(&self, variant: Variant) -> Vec<u32> {
        if !self.complete {
            return vec![LABEL_UNKNOWN; self.classes.len()];
        }
        let moving = moving_class(variant) as u8;
        self.classes.iter().map(|&c| if c == moving { LABEL_MOVING } else { LABEL_STATIC }).collect()
    }
}

struct PendingScan {
    id: u64,
    stamp_ns: i64,
    points: Tensor,
    timings: StageTimings,
}

/// The MOS engine: owns the network and the motion history.
pub struct MosEngine {
    net: PolarBevNet,
    motion: MotionFeatures,
    grid: PolarGrid,
    device: Device,
    precision: Precision,
    intensity_scale: f32,
    pending: VecDeque<PendingScan>,
    profile: bool,
    graph: GraphState,
    /// Points on their way up, labels on their way down.
    upload: HostBuffer,
    download: HostBuffer,
}

/// Eager runs at the graph's sizes before the capture (cuDNN and cuBLAS set themselves up, and
/// cuDNN times its algorithms, on the first ones).
const GRAPH_WARM_UP: usize = 2;

/// Points a captured graph is sized for, in steps of this many (a 120k-point scan: 147,456).
const GRAPH_POINT_STEP: i64 = 16_384;

/// Everything from a scan's points and motion features to its labels (point features, PointNet,
/// pooling, U-Net, per-point logits, argmax) in one CUDA graph, at a fixed number of points
/// (`capacity`): each scan is copied into the static inputs, the points past its count are masked
/// out of the pooling, and its outputs are the first `count` columns of `output`.
struct ScanGraph {
    graph: CudaGraph,
    points: Tensor,
    residuals: Tensor,
    count: Tensor,
    output: Tensor,
}

/// What the network takes for a scan's points.
struct PointInputs {
    features: Tensor,
    grid: Tensor,
    batch: Tensor,
}

enum GraphState {
    Off,
    Warming { runs: usize, capacity: i64 },
    Ready { graph: ScanGraph, capacity: i64 },
}

impl MosEngine {
    pub fn new(config: &EngineConfig) -> Result<Self, EngineError> {
        let device = config.device.resolve().map_err(EngineError::Device)?;
        let weights = resolve_weights(&config.weights);
        if device.is_cuda() {
            // process-wide in libtorch
            tch::Cuda::cudnn_set_benchmark(config.cudnn_benchmark && config.precision != Precision::Fp32);
        }
        let mut net = PolarBevNet::from_checkpoint(&weights, device)?;
        net.fold_batch_norm(config.precision.kind());
        match config.precision {
            Precision::Fp32 => {}
            Precision::Bf16 => net.vs.bfloat16(),
            Precision::Fp16 => net.vs.half(),
        }
        if config.precision != Precision::Fp32 && device == Device::Cpu {
            log::warn!("{} on the CPU is slow and meant for GPUs", config.precision);
        }
        let mut engine = Self::with_network(net, config.motion, config.precision, config.intensity_scale);
        engine.graph = if config.cuda_graph && device.is_cuda() { GraphState::Warming { runs: 0, capacity: 0 } } else { GraphState::Off };
        Ok(engine)
    }

    /// An engine around an already built network (training validation, tests).
    pub fn with_network(net: PolarBevNet, motion: MotionMode, precision: Precision, intensity_scale: f32) -> Self {
        let device = net.device();
        MosEngine {
            grid: net.grid,
            motion: MotionFeatures::new(motion, device),
            net,
            device,
            precision,
            intensity_scale,
            pending: VecDeque::new(),
            profile: false,
            graph: GraphState::Off,
            upload: HostBuffer::new(device),
            download: HostBuffer::new(device),
        }
    }

    pub fn network(&self) -> &PolarBevNet {
        &self.net
    }

    pub fn device(&self) -> Device {
        self.device
    }

    pub fn motion_mode(&self) -> MotionMode {
        self.motion.mode()
    }

    /// Scans between a scan's arrival and its labels.
    pub fn delay(&self) -> usize {
        self.motion.delay()
    }

    /// Synchronise the device between stages so that [`StageTimings`] are per stage (benchmarks).
    pub fn set_profiling(&mut self, on: bool) {
        self.profile = on;
    }

    /// Forgets the motion history (time jumped back, or a new sequence starts).
    pub fn reset(&mut self) {
        self.motion.reset();
        self.pending.clear();
    }

    fn sync(&self) {
        if self.profile {
            if let Device::Cuda(i) = self.device {
                tch::Cuda::synchronize(i as i64);
            }
        }
    }

    /// Adds a scan; returns the labels that became ready (this scan's in causal mode).
    pub fn process(&mut self, input: ScanInput) -> Result<Vec<ScanResult>, EngineError> {
        let id = input.id;
        guarded(id, || self.process_inner(input))
    }

    /// Releases the scans still waiting for their motion features (reference mode).
    pub fn flush(&mut self) -> Result<Vec<ScanResult>, EngineError> {
        guarded(u64::MAX, || {
            let outputs = self.motion.flush();
            let mut results = Vec::new();
            for output in outputs {
                if let Some(scan) = self.take_pending(output.id) {
                    results.push(self.label(scan, &output.residuals, output.complete));
                }
            }
            Ok(results)
        })
    }

    fn take_pending(&mut self, id: u64) -> Option<PendingScan> {
        let pos = self.pending.iter().position(|p| p.id == id)?;
        self.pending.remove(pos)
    }

    fn process_inner(&mut self, input: ScanInput) -> Result<Vec<ScanResult>, EngineError> {
        let _guard = tch::no_grad_guard();
        let start = Instant::now();
        let cloud = input.cloud;
        let n = cloud.len();
        let scale = self.intensity_scale;
        let host = self.upload.floats_mut(n * 4);
        let columns = cloud.x.iter().zip(&cloud.y).zip(cloud.z.iter().zip(&cloud.intensity));
        for (point, ((x, y), (z, intensity))) in host.chunks_exact_mut(4).zip(columns) {
            point.copy_from_slice(&[*x, *y, *z, intensity * scale]);
        }
        let staged = self.upload.view(&[n as i64, 4]);
        // the pending scans keep their points: a copy of their own, not the reused host buffer
        let points = if self.device == Device::Cpu { staged.copy() } else { staged.to_device(self.device) };
        self.sync();
        let mut timings = StageTimings { upload_ms: ms(start), ..Default::default() };
        let t = Instant::now();
        let xyz = points.narrow(1, 0, 3).to_kind(self.motion.point_kind());
        let outputs = self.motion.push(MotionScan { id: input.id, stamp_ns: input.stamp_ns, xyz, pose: input.pose });
        self.sync();
        timings.motion_ms = ms(t);
        self.pending.push_back(PendingScan { id: input.id, stamp_ns: input.stamp_ns, points, timings });
        let mut results = Vec::with_capacity(outputs.len());
        for output in outputs {
            match self.take_pending(output.id) {
                Some(scan) => results.push(self.label(scan, &output.residuals, output.complete)),
                None => return Err(EngineError::Input(format!("motion features for unknown scan {}", output.id))),
            }
        }
        if let Some(last) = results.last_mut() {
            last.timings.total_ms = ms(start);
        }
        Ok(results)
    }

    /// Features → network → labels for one scan whose motion features are known.
    fn label(&mut self, scan: PendingScan, residuals: &Tensor, complete: bool) -> ScanResult {
        let mut timings = scan.timings;
        let n = scan.points.size()[0];
        let variant = self.net.config.variant;
        if n == 0 {
            return ScanResult { id: scan.id, stamp_ns: scan.stamp_ns, classes: vec![], labels: vec![], moving_probability: vec![], complete, timings };
        }
        let t = Instant::now();
        let outputs = match self.graph_outputs(&scan.points, residuals) {
            Some(outputs) => {
                // one replay: point features, network and argmax are one stage here
                self.sync();
                timings.network_ms = ms(t);
                outputs
            }
            None => {
                let inputs = self.point_inputs(&scan.points, residuals);
                self.sync();
                timings.features_ms = ms(t);
                let t = Instant::now();
                let outputs = self.network_outputs(&inputs, None);
                self.sync();
                timings.network_ms = ms(t);
                outputs
            }
        };
        let t = Instant::now();
        // class and moving probability come down together: one copy, one wait for the device
        let host = self.download.download(&outputs);
        let (class, moving) = host.split_at(n as usize);
        let classes: Vec<u8> = class.iter().map(|&c| c as u8).collect();
        let moving_probability = moving.to_vec();
        let labels = classes.iter().map(|&c| inverse_label(variant, c)).collect();
        timings.labels_ms = ms(t);
        ScanResult { id: scan.id, stamp_ns: scan.stamp_ns, classes, labels, moving_probability, complete, timings }
    }

    /// The network's inputs for points `[M, 4]` with their motion features `[M, 8]`.
    fn point_inputs(&self, points: &Tensor, residuals: &Tensor) -> PointInputs {
        let (appearance, grid) = self.grid.point_features(&points.narrow(1, 0, 3), &points.select(1, 3));
        let features = Tensor::cat(&[appearance, residuals.shallow_clone()], 1).to_kind(self.precision.kind());
        let batch = Tensor::zeros([points.size()[0]], (Kind::Int64, self.device));
        PointInputs { features, grid, batch }
    }

    /// `[2, M]` on the device: each point's class (as float) and moving probability. With `valid`,
    /// only those points are pooled into the images (the others are padding).
    fn network_outputs(&self, inputs: &PointInputs, valid: Option<&Tensor>) -> Tensor {
        let input = BevInput { features: &inputs.features, grid: &inputs.grid, batch: &inputs.batch, batch_size: 1 };
        let (appearance, motion) = self.net.bev_images_of(&input, valid, false);
        let bev = self.net.unet_forward(&appearance, &motion);
        let logits = self.net.point_logits(&bev, &input).to_kind(Kind::Float);
        let class = logits.argmax(1, false).to_kind(Kind::Float);
        let moving = logits.softmax(1, Kind::Float).select(1, moving_class(self.net.config.variant));
        Tensor::stack(&[class, moving], 0)
    }

    /// [`MosEngine::network_outputs`] of padded points, the first `count` of them real.
    fn padded_outputs(&self, points: &Tensor, residuals: &Tensor, count: &Tensor) -> Tensor {
        let valid = Tensor::arange(points.size()[0], (Kind::Int64, self.device)).lt_tensor(count);
        self.network_outputs(&self.point_inputs(points, residuals), Some(&valid))
    }

    /// The scan's outputs through the CUDA graph: `None` when it is off, still warming up, or failed
    /// (then off for good). A scan larger than the graph's capacity starts a new warm-up at a larger
    /// size.
    fn graph_outputs(&mut self, points: &Tensor, residuals: &Tensor) -> Option<Tensor> {
        let n = points.size()[0];
        let needed = (n * 5 / 4 + GRAPH_POINT_STEP - 1) / GRAPH_POINT_STEP * GRAPH_POINT_STEP;
        let (runs, capacity) = match &self.graph {
            GraphState::Off => return None,
            GraphState::Ready { graph, capacity } if n <= *capacity => {
                let _ = graph.points.narrow(0, 0, n).copy_(points);
                let _ = graph.residuals.narrow(0, 0, n).copy_(residuals);
                let _ = graph.count.shallow_clone().fill_(n);
                return match graph.graph.replay() {
                    Ok(()) => Some(graph.output.narrow(1, 0, n)),
                    Err(e) => {
                        log::warn!("CUDA graph replay failed ({e}); scans run eagerly from now on");
                        self.graph = GraphState::Off;
                        None
                    }
                };
            }
            GraphState::Ready { .. } => (0, needed),
            GraphState::Warming { runs, capacity } if n <= *capacity => (*runs, *capacity),
            GraphState::Warming { .. } => (0, needed),
        };
        let pad = |t: &Tensor| Tensor::cat(&[t.shallow_clone(), Tensor::zeros([capacity - n, t.size()[1]], (t.kind(), t.device()))], 0);
        let count = Tensor::full([1], n, (Kind::Int64, self.device));
        if runs < GRAPH_WARM_UP {
            self.graph = GraphState::Warming { runs: runs + 1, capacity };
            return Some(self.padded_outputs(&pad(points), &pad(residuals), &count).narrow(1, 0, n));
        }
        // capture: the graph reads these buffers, which later scans are copied into
        let (static_points, static_residuals) = (pad(points), pad(residuals));
        let captured = CudaGraph::capture(self.device, || self.padded_outputs(&static_points, &static_residuals, &count));
        let Some((graph, output)) = captured else {
            self.graph = GraphState::Off;
            return None;
        };
        if let Err(e) = graph.replay() {
            log::warn!("CUDA graph replay failed ({e}); scans run eagerly");
            self.graph = GraphState::Off;
            return None;
        }
        log::info!("point features, network and labels captured in a CUDA graph for up to {capacity} points");
        let outputs = output.narrow(1, 0, n);
        self.graph = GraphState::Ready { graph: ScanGraph { graph, points: static_points, residuals: static_residuals, count, output }, capacity };
        Some(outputs)
    }

    /// Per-point logits `[N, classes]` of one scan whose motion features are given (`[N, 8]`), as
    /// `kdseg mos forward` computes them for parity checks.
    pub fn logits_with_residuals(&self, cloud: &PointCloud, residuals: &Tensor) -> Result<Tensor, EngineError> {
        guarded(0, || {
            let _guard = tch::no_grad_guard();
            let n = cloud.len() as i64;
            if residuals.size() != [n, crate::features::motion::COLUMNS] {
                return Err(EngineError::Input(format!("motion features have shape {:?}, the scan needs [{n}, 8]", residuals.size())));
            }
            let xyz = Tensor::stack(&[Tensor::from_slice(&cloud.x), Tensor::from_slice(&cloud.y), Tensor::from_slice(&cloud.z)], 1).to_device(self.device);
            let remission = (Tensor::from_slice(&cloud.intensity) * f64::from(self.intensity_scale)).to_device(self.device);
            let (appearance, grid) = self.grid.point_features(&xyz, &remission);
            let features = Tensor::cat(&[appearance, residuals.to_kind(Kind::Float).to_device(self.device)], 1).to_kind(self.precision.kind());
            let batch = Tensor::zeros([n], (Kind::Int64, self.device));
            let input = BevInput { features: &features, grid: &grid, batch: &batch, batch_size: 1 };
            let bev = self.net.forward(&input, false);
            Ok(self.net.point_logits(&bev, &input).to_kind(Kind::Float).to_device(Device::Cpu))
        })
    }
}

/// Finds weights given by a relative path: as given (from the working directory), else in the
/// installed package (`<prefix>/share/kdseg/` of AMENT_PREFIX_PATH, or next to the executable as
/// colcon lays it out: `lib/kdseg/kdseg` → `share/kdseg/`), else in the source tree the binary was
/// built in (`target/release/kdseg` → the repository).
pub fn resolve_weights(path: &std::path::Path) -> PathBuf {
    if path.exists() || path.is_absolute() {
        return path.to_path_buf();
    }
    let mut candidates: Vec<PathBuf> = std::env::var("AMENT_PREFIX_PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|p| !p.is_empty())
        .map(|p| std::path::Path::new(p).join("share").join("kdseg").join(path))
        .collect();
    if let Ok(exe) = std::env::current_exe() {
        for up in [2usize, 3] {
            if let Some(base) = exe.ancestors().nth(up) {
                candidates.push(base.join("share").join("kdseg").join(path));
                candidates.push(base.join(path));
            }
        }
    }
    candidates.into_iter().find(|c| c.exists()).unwrap_or_else(|| path.to_path_buf())
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

/// Runs libtorch work, turning a libtorch panic (e.g. CUDA out of memory) into an error so a node
/// survives it.
fn guarded<T>(id: u64, f: impl FnOnce() -> Result<T, EngineError>) -> Result<T, EngineError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(EngineError::Torch { id, message: message.lines().next().unwrap_or_default().to_string() })
        }
    }
}
