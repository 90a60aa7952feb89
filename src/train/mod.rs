//! Training the polar-BEV network, with or without knowledge distillation (KDMOS, spec §4).
//!
//! One step: a batch of scans (shuffled per epoch, augmented by a random yaw, flip and translation
//! applied to the points — motion features stay as they are, as in the reference), per-point
//! features on the device, the network in training mode, the loss of [`loss`] on occupied voxels and
//! points, and an SGD update with a one-epoch linear warm-up then ×`lr_decay` per epoch.
//!
//! Every random draw is seeded from (seed, step), so a run resumed from its last checkpoint takes
//! exactly the steps it would have taken. Validation computes moving IoU by the official rules on the
//! validation sequences and keeps the best weights (written atomically); the last state is
//! checkpointed regularly and on interruption.

pub mod data;
pub mod loss;
pub mod optimizer;
pub mod plot;

use crate::config::SplitConfig;
use crate::evaluation::MosConfusion;
use crate::features::PolarGrid;
use crate::model::{BevInput, CheckpointError, NetConfig, PolarBevNet, Variant};
use crate::mos::{inverse_label, DeviceChoice};
use crate::random::Rng;
use data::{DataError, LoadOptions, MotionInput, Scan, TeacherLogitNames};
use loss::kdmos_loss;
use optimizer::FlatSgd;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io { path: path.display().to_string(), source }
}

/// Numeric precision of training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrainPrecision {
    /// bfloat16 mixed precision on CUDA, float32 on the CPU.
    Auto,
    Fp32,
    /// bfloat16 activations, float32 master weights and loss.
    Bf16,
}

/// Data augmentation, applied to the points of each training scan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Augmentation {
    /// Uniform random yaw.
    pub rotate: bool,
    /// One of none, x → −x, y → −y, both.
    pub flip: bool,
    /// Standard deviation of a random translation per axis, metres.
    pub translate_std: f64,
}

impl Default for Augmentation {
    fn default() -> Self {
        Augmentation { rotate: true, flip: true, translate_std: 0.1 }
    }
}

/// The network to train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSpec {
    pub variant: Variant,
    /// Base channel width (32 = the KDMOS student).
    pub width: i64,
    /// Motion features the model sees.
    pub motion: MotionInput,
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec { variant: Variant::Kdmos, width: 32, motion: MotionInput::Causal }
    }
}

/// `train:` section of the configuration. Defaults are the KDMOS recipe (spec §4.4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Run directory: checkpoints, log.csv, curves.png, run.json.
    pub out: PathBuf,
    pub model: ModelSpec,
    /// Training and validation sequences (absent: the dataset's train and valid splits; an empty
    /// validation list trains without validation).
    pub train_sequences: Option<Vec<String>>,
    pub valid_sequences: Option<Vec<String>>,
    pub batch_size: usize,
    /// Training length in epochs, unless `max_steps` is set.
    pub epochs: usize,
    pub max_steps: Option<usize>,
    pub lr: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub warmup_epochs: f64,
    /// Learning-rate factor per epoch after the warm-up.
    pub lr_decay: f64,
    /// Weight of the distillation loss (0: train on labels only).
    pub kd_weight: f64,
    pub temperature: f64,
    /// Folder of teacher logits in the KDMOS format (needed when kd_weight > 0).
    pub teacher_logits: Option<PathBuf>,
    pub teacher_logit_names: TeacherLogitNames,
    pub drop_few_static_frames: bool,
    pub augment: Augmentation,
    /// Validate every this many steps (default: once per epoch).
    pub validate_every: Option<usize>,
    /// Checkpoint the training state every this many steps.
    pub checkpoint_every: usize,
    pub precision: TrainPrecision,
    pub device: DeviceChoice,
    /// On CUDA, let cuDNN time its convolution algorithms on the first steps and keep the fastest
    /// (every step has the same shapes). Without it cuDNN's heuristics pick slow non-tensor-core
    /// kernels for the full-resolution layers: 93 instead of 83 ms per H100 step.
    pub cudnn_benchmark: bool,
    pub seed: u64,
    /// Grid size (ρ, φ, z) override, for quick experiments; the reference uses 480 × 360 × 32.
    pub grid: Option<[i64; 3]>,
    /// Continue from `out/last.safetensors` when it exists.
    pub resume: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            out: PathBuf::from("runs/student"),
            model: ModelSpec::default(),
            train_sequences: None,
            valid_sequences: None,
            batch_size: 8,
            epochs: 150,
            max_steps: None,
            lr: 0.01,
            momentum: 0.9,
            weight_decay: 1e-4,
            warmup_epochs: 1.0,
            lr_decay: 0.99,
            kd_weight: 0.3,
            temperature: 4.0,
            teacher_logits: None,
            teacher_logit_names: TeacherLogitNames::FilteredIndex,
            drop_few_static_frames: true,
            augment: Augmentation::default(),
            validate_every: None,
            checkpoint_every: 200,
            precision: TrainPrecision::Auto,
            device: DeviceChoice::Auto,
            cudnn_benchmark: true,
            seed: 114_514,
            grid: None,
            resume: true,
        }
    }
}

impl TrainConfig {
    /// Checks the values; errors name the parameter (`train.lr`).
    pub fn validate(&self) -> Result<(), crate::config::ConfigError> {
        let bad = |name: &str, why: String| Err(crate::config::ConfigError::Invalid { parameter: format!("train.{name}"), reason: why });
        if self.batch_size == 0 {
            return bad("batch_size", "must be positive".into());
        }
        if !(self.lr > 0.0) {
            return bad("lr", format!("{} must be positive", self.lr));
        }
        if !(self.temperature > 0.0) {
            return bad("temperature", format!("{} must be positive", self.temperature));
        }
        if !(self.warmup_epochs >= 0.0) {
            return bad("warmup_epochs", format!("{} must not be negative", self.warmup_epochs));
        }
        if !(self.lr_decay > 0.0 && self.lr_decay <= 1.0) {
            return bad("lr_decay", format!("{} must be in (0, 1]", self.lr_decay));
        }
        if self.kd_weight < 0.0 {
            return bad("kd_weight", format!("{} must not be negative", self.kd_weight));
        }
        if self.model.width < 8 || self.model.width % 8 != 0 {
            return bad("model.width", format!("{} must be a positive multiple of 8", self.model.width));
        }
        if let Some(g) = self.grid {
            if g.iter().any(|&v| v < 16) {
                return bad("grid", format!("{g:?}: every size must be at least 16"));
            }
        }
        Ok(())
    }

    pub fn net_config(&self) -> NetConfig {
        let base = match self.model.variant {
            Variant::Kdmos => NetConfig::KDMOS,
            Variant::MotionBev => NetConfig::MOTIONBEV,
        };
        NetConfig { width: self.model.width, motion_channels: self.model.motion.channels(), classes: 4, ..base }
    }
}

/// What a run reports (also written as `run.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub config: TrainConfig,
    pub dataset: String,
    pub train_scans: usize,
    pub valid_scans: usize,
    pub steps: usize,
    pub epochs: f64,
    pub best_valid_iou: Option<f64>,
    pub best_step: Option<usize>,
    pub last_valid_iou: Option<f64>,
    pub mean_step_ms: f64,
    pub device: String,
    pub precision: String,
    pub parameters: i64,
    pub wall_s: f64,
}

/// Learning rate at `step`: linear warm-up over `warmup_epochs`, then ×`lr_decay` per epoch.
pub fn learning_rate(config: &TrainConfig, step: usize, steps_per_epoch: usize) -> f64 {
    let spe = steps_per_epoch.max(1) as f64;
    let warmup = config.warmup_epochs * spe;
    let s = step as f64;
    if s < warmup {
        config.lr * (s + 1.0) / warmup
    } else {
        config.lr * config.lr_decay.powf((s - warmup) / spe)
    }
}

/// A batch on the device, ready for the network and the loss.
pub struct Batch {
    pub features: Tensor,
    pub grid: Tensor,
    pub batch: Tensor,
    pub batch_size: i64,
    pub classes: Tensor,
    pub teacher: Option<Tensor>,
}

/// Builds a batch from scans; `augment` draws from `rng` when given.
pub fn make_batch(scans: &[&Scan], grid: &PolarGrid, augment: Option<(&Augmentation, &mut Rng)>, kind: Kind, want_teacher: bool) -> Batch {
    let device = scans[0].xyz.device();
    let mut features = Vec::with_capacity(scans.len());
    let mut grids = Vec::with_capacity(scans.len());
    let mut batch = Vec::with_capacity(scans.len());
    let mut classes = Vec::with_capacity(scans.len());
    let mut teacher = Vec::with_capacity(scans.len());
    let mut augment = augment;
    for (b, scan) in scans.iter().enumerate() {
        let mut xyz = scan.xyz.shallow_clone();
        if let Some((a, rng)) = augment.as_mut() {
            xyz = augment_points(&xyz, a, rng);
        }
        let (appearance, g) = grid.point_features(&xyz, &scan.remission);
        features.push(Tensor::cat(&[appearance, scan.residuals.to_kind(Kind::Float)], 1).to_kind(kind));
        grids.push(g);
        batch.push(Tensor::full([scan.len() as i64], b as i64, (Kind::Int64, device)));
        classes.push(scan.classes.shallow_clone());
        if want_teacher {
            if let Some(t) = &scan.teacher {
                teacher.push(t.shallow_clone());
            }
        }
    }
    Batch {
        features: Tensor::cat(&features, 0),
        grid: Tensor::cat(&grids, 0),
        batch: Tensor::cat(&batch, 0),
        batch_size: scans.len() as i64,
        classes: Tensor::cat(&classes, 0),
        teacher: (want_teacher && teacher.len() == scans.len()).then(|| Tensor::cat(&teacher, 0)),
    }
}

fn augment_points(xyz: &Tensor, a: &Augmentation, rng: &mut Rng) -> Tensor {
    let device = xyz.device();
    let mut m = [[1.0f32, 0.0], [0.0, 1.0]];
    if a.rotate {
        let angle = (rng.uniform() * 360.0).to_radians();
        let (s, c) = (angle.sin() as f32, angle.cos() as f32);
        m = [[c, s], [-s, c]];
    }
    let mut sign = [1.0f32, 1.0];
    if a.flip {
        match rng.below(4) {
            1 => sign[0] = -1.0,
            2 => sign[1] = -1.0,
            3 => sign = [-1.0, -1.0],
            _ => {}
        }
    }
    let mut shift = [0.0f32; 3];
    if a.translate_std > 0.0 {
        for s in &mut shift {
            *s = (rng.normal() * a.translate_std) as f32;
        }
    }
    // xy · m (row vectors, as the reference's np.dot(xyz[:, :2], j)), then flips, then the shift
    // one non-blocking upload: a blocking one would wait for all the work queued before it
    let params = Tensor::from_slice(&[m[0][0], m[0][1], m[1][0], m[1][1], sign[0], sign[1], shift[0], shift[1], shift[2]]).to_device_(device, Kind::Float, true, false);
    let rotation = params.narrow(0, 0, 4).view([2, 2]);
    let xy = xyz.narrow(1, 0, 2).matmul(&rotation) * params.narrow(0, 4, 2).view([1, 2]);
    let out = Tensor::cat(&[xy, xyz.narrow(1, 2, 1)], 1);
    out + params.narrow(0, 6, 3).view([1, 3])
}

/// What the loss needs from one forward pass.
pub struct TrainingLogits {
    /// Logits `[V, classes]` of the occupied voxels.
    pub voxel: Tensor,
    /// Majority point class per occupied voxel (ties to the lower class).
    pub voxel_labels: Tensor,
    /// Logits `[N, classes]` of every point: its voxel's.
    pub point: Tensor,
}

/// Reads the occupied voxels' logits out of the BEV output, and each point's from its voxel's, so
/// that the backward pass scatters into the huge BEV gradient once, not twice.
pub fn training_logits(net: &PolarBevNet, batch: &Batch, bev: &Tensor) -> TrainingLogits {
    let [h, w, z] = net.grid.size;
    let classes = net.config.classes;
    let voxel = ((&batch.batch * h + batch.grid.select(1, 0)) * w + batch.grid.select(1, 1)) * z + batch.grid.select(1, 2);
    let (voxels, inverse, _) = voxel.internal_unique2(true, true, false);
    let v = voxels.size()[0];
    let counts = (&inverse * classes + &batch.classes).bincount::<Tensor>(None, v * classes).view([v, classes]);
    let voxel_labels = counts.argmax(1, false);
    let zi = voxels.remainder(z);
    let rest = voxels.divide_scalar_mode(z, "floor");
    let phi = rest.remainder(w);
    let rest = rest.divide_scalar_mode(w, "floor");
    let rho = rest.remainder(h);
    let b = rest.divide_scalar_mode(h, "floor");
    let base = ((b * (classes * z) + zi * classes) * h + rho) * w + phi;
    let offsets = Tensor::arange(classes, (Kind::Int64, base.device())) * (h * w);
    let index = base.unsqueeze(1) + offsets.unsqueeze(0);
    let voxel_logits = bev.reshape([-1]).index_select(0, &index.view([-1])).view([-1, classes]);
    let point = voxel_logits.index_select(0, &inverse);
    TrainingLogits { voxel: voxel_logits, voxel_labels, point }
}

/// The official MOS confusion of `net` on `scans`, in evaluation mode.
pub fn evaluate(net: &PolarBevNet, scans: &[Scan], batch_size: usize, kind: Kind) -> MosConfusion {
    let _guard = tch::no_grad_guard();
    let mut confusion = MosConfusion::default();
    for chunk in scans.chunks(batch_size.max(1)) {
        let refs: Vec<&Scan> = chunk.iter().collect();
        let batch = make_batch(&refs, &net.grid, None, kind, false);
        let input = BevInput { features: &batch.features, grid: &batch.grid, batch: &batch.batch, batch_size: batch.batch_size };
        let bev = net.forward(&input, false);
        let predicted = net.point_logits(&bev, &input).argmax(1, false).to_kind(Kind::Uint8).to_device(Device::Cpu);
        let predicted: Vec<u8> = Vec::try_from(&predicted).unwrap_or_default();
        let mut offset = 0;
        for scan in chunk {
            let n = scan.len();
            let labels: Vec<u32> = predicted[offset..offset + n].iter().map(|&c| inverse_label(net.config.variant, c)).collect();
            confusion.add(&labels, &scan.raw_labels);
            offset += n;
        }
    }
    confusion
}

/// Saves the training state (parameters, momentum, step) atomically.
const LOG_HEADER: &str = "step,epoch,lr,loss,lovasz,cross_entropy,nckd,tckd,step_ms,valid_iou";

/// Opens `log.csv` for a run at `step`: from step 0 (also `--no-resume` over an old run) a new log;
/// when resuming, the old log without the rows after the checkpoint, which the run repeats.
fn open_log(path: &Path, step: usize) -> Result<std::fs::File, TrainError> {
    let old = if step == 0 { String::new() } else { std::fs::read_to_string(path).unwrap_or_default() };
    let mut text = format!("{LOG_HEADER}\n");
    for line in old.lines().skip(1) {
        match line.split(',').next().and_then(|s| s.parse::<usize>().ok()) {
            Some(s) if s <= step => text.push_str(&format!("{line}\n")),
            _ => {}
        }
    }
    std::fs::write(path, text).map_err(io_err(path))?;
    std::fs::OpenOptions::new().append(true).open(path).map_err(io_err(path))
}

fn save_state(net: &PolarBevNet, optimizer: &FlatSgd, step: usize, best: Option<(f64, usize)>, path: &Path) -> Result<(), TrainError> {
    let mut named: Vec<(String, Tensor)> = net.vs.variables().into_iter().map(|(k, v)| (format!("model.{k}"), v.to_device(Device::Cpu))).collect();
    if let Some(buffer) = optimizer.momentum_buffer() {
        named.push(("optimizer.momentum".into(), buffer.to_device(Device::Cpu)));
    }
    named.push(("state.step".into(), Tensor::from_slice(&[step as i64])));
    if let Some((iou, at)) = best {
        named.push(("state.best_iou".into(), Tensor::from_slice(&[iou])));
        named.push(("state.best_step".into(), Tensor::from_slice(&[at as i64])));
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let tmp = path.with_extension("tmp.safetensors");
    Tensor::write_safetensors(&named, &tmp)?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Restores a state written by [`save_state`]; returns the step and the best validation so far.
fn load_state(net: &mut PolarBevNet, optimizer: &mut FlatSgd, path: &Path) -> Result<(usize, Option<(f64, usize)>), TrainError> {
    let tensors: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(path)?.into_iter().collect();
    let model: std::collections::HashMap<String, Tensor> = tensors.iter().filter_map(|(k, v)| k.strip_prefix("model.").map(|k| (k.to_string(), v.shallow_clone()))).collect();
    crate::model::checkpoint::load_strict(&mut net.vs, path, model)?;
    let device = net.device();
    optimizer.set_momentum_buffer(tensors.get("optimizer.momentum").map(|t| t.to_device(device))).map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?;
    let step = tensors.get("state.step").map(|t| t.int64_value(&[0]) as usize).unwrap_or(0);
    let best = match (tensors.get("state.best_iou"), tensors.get("state.best_step")) {
        (Some(i), Some(s)) => Some((i.double_value(&[0]), s.int64_value(&[0]) as usize)),
        _ => None,
    };
    Ok((step, best))
}

/// Progress callbacks of a run (the CLI draws a progress bar).
pub trait Progress {
    fn step(&mut self, step: usize, total: usize, loss: f64, lr: f64);
    fn validated(&mut self, step: usize, iou: f64, best: bool);
}

/// Trains a network as `config` says on the dataset at `root`; stops early (checkpointing) when
/// `interrupted` returns true.
pub fn train(config: &TrainConfig, root: &Path, splits: &SplitConfig, progress: &mut dyn Progress, interrupted: &dyn Fn() -> bool) -> Result<RunReport, TrainError> {
    config.validate().map_err(|e| TrainError::Config(e.to_string()))?;
    if config.kd_weight > 0.0 && config.teacher_logits.is_none() {
        return Err(TrainError::Config(format!("parameter train.teacher_logits: kd_weight is {} but no teacher logits are given (set train.teacher_logits, or kd_weight 0 for the baseline)", config.kd_weight)));
    }
    let started = Instant::now();
    let device = config.device.resolve().map_err(TrainError::Config)?;
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(config.cudnn_benchmark);
    }
    let kind = match (config.precision, device) {
        (TrainPrecision::Bf16, _) | (TrainPrecision::Auto, Device::Cuda(_)) => Kind::BFloat16,
        _ => Kind::Float,
    };
    let train_ids = config.train_sequences.clone().unwrap_or_else(|| splits.train.clone());
    let valid_ids = config.valid_sequences.clone().unwrap_or_else(|| splits.valid.clone());
    let residual_kind = if device == Device::Cpu { Kind::Float } else { Kind::Half };
    let load = |ids: &[String], drop: bool| data::load_sequences(root, ids, &LoadOptions { motion: config.model.motion, device, drop_few_static_frames: drop, residual_kind });
    log::info!("loading training sequences {train_ids:?} and validation sequences {valid_ids:?}");
    let mut train_scans = load(&train_ids, config.drop_few_static_frames)?;
    let valid_scans = if valid_ids.is_empty() { Vec::new() } else { load(&valid_ids, false)? };
    if train_scans.is_empty() {
        return Err(TrainError::Config("no training scans".into()));
    }
    let use_teacher = config.kd_weight > 0.0;
    if use_teacher {
        let dir = config.teacher_logits.as_ref().ok_or_else(|| TrainError::Config("teacher logits missing".into()))?;
        data::attach_teacher_logits(&mut train_scans, dir, config.teacher_logit_names, if device == Device::Cpu { Kind::Float } else { Kind::Half })?;
    }
    tch::manual_seed(config.seed as i64);
    let mut net = PolarBevNet::new(config.net_config(), device);
    if let Some(g) = config.grid {
        net.grid.size = g;
    }
    let mut optimizer = FlatSgd::new(net.vs.trainable_variables(), config.momentum, config.weight_decay);
    std::fs::create_dir_all(&config.out).map_err(io_err(&config.out))?;
    let last_path = config.out.join("last.safetensors");
    let best_path = config.out.join("best.safetensors");
    let (mut step, mut best) = (0usize, None::<(f64, usize)>);
    if config.resume && last_path.exists() {
        (step, best) = load_state(&mut net, &mut optimizer, &last_path)?;
        log::info!("resuming {} at step {step}", last_path.display());
    }
    let steps_per_epoch = train_scans.len().div_ceil(config.batch_size);
    let total = config.max_steps.unwrap_or(config.epochs * steps_per_epoch);
    let validate_every = config.validate_every.unwrap_or(steps_per_epoch).max(1);
    let log_path = config.out.join("log.csv");
    let mut log = open_log(&log_path, step)?;
    let mut last_iou = None;
    let mut step_ms_sum = 0.0;
    let mut steps_run = 0usize;
    let mut order: Vec<usize> = Vec::new();
    let mut order_epoch = usize::MAX;
    while step < total {
        if interrupted() {
            log::warn!("interrupted at step {step}: saving the training state");
            break;
        }
        let epoch = step / steps_per_epoch;
        if epoch != order_epoch {
            order = (0..train_scans.len()).collect();
            Rng::new(crate::random::hash2(config.seed, epoch as u64)).shuffle(&mut order);
            order_epoch = epoch;
        }
        let t = Instant::now();
        tch::manual_seed((config.seed as i64).wrapping_add(step as i64));
        let mut rng = Rng::stream(crate::random::hash2(config.seed, step as u64), "augmentation");
        let first = (step % steps_per_epoch) * config.batch_size;
        let chosen: Vec<&Scan> = order[first..(first + config.batch_size).min(order.len())].iter().map(|&i| &train_scans[i]).collect();
        let batch = make_batch(&chosen, &net.grid, Some((&config.augment, &mut rng)), kind, use_teacher);
        let input = BevInput { features: &batch.features, grid: &batch.grid, batch: &batch.batch, batch_size: batch.batch_size };
        let bev = net.forward(&input, true);
        let logits = training_logits(&net, &batch, &bev);
        let terms = kdmos_loss(&logits.voxel, &logits.voxel_labels, &logits.point, &batch.classes, batch.teacher.as_ref(), config.kd_weight, config.temperature);
        optimizer.zero_grad();
        terms.total.backward();
        let lr = learning_rate(config, step, steps_per_epoch);
        optimizer.step(lr);
        let loss = terms.total.double_value(&[]);
        if !loss.is_finite() {
            return Err(TrainError::Config(format!("the loss became {loss} at step {step}; lower train.lr")));
        }
        let ms = t.elapsed().as_secs_f64() * 1e3;
        step_ms_sum += ms;
        steps_run += 1;
        step += 1;
        progress.step(step, total, loss, lr);
        let value = |t: &Option<Tensor>| t.as_ref().map(|t| format!("{:.6}", t.double_value(&[]))).unwrap_or_default();
        let mut valid_iou = String::new();
        if step % validate_every == 0 || step == total {
            if !valid_scans.is_empty() {
                // validation in float32, as the evaluation of the finished network runs
                let scores = evaluate(&net, &valid_scans, config.batch_size, Kind::Float).scores();
                let improved = best.is_none_or(|(b, _)| scores.iou_moving > b);
                if improved {
                    best = Some((scores.iou_moving, step));
                    net.save(&best_path)?;
                }
                last_iou = Some(scores.iou_moving);
                valid_iou = format!("{:.6}", scores.iou_moving);
                progress.validated(step, scores.iou_moving, improved);
            }
        }
        writeln!(
            log,
            "{step},{:.4},{lr:.6},{loss:.6},{:.6},{:.6},{},{},{ms:.1},{valid_iou}",
            step as f64 / steps_per_epoch as f64,
            terms.lovasz.double_value(&[]),
            terms.cross_entropy.double_value(&[]),
            value(&terms.nckd),
            // a batch without moving points has no TCKD term: an empty cell, as before
            if terms.moving_points.as_ref().is_some_and(|m| m.double_value(&[]) > 0.0) { value(&terms.tckd) } else { String::new() }
        )
        .map_err(io_err(&log_path))?;
        if step % config.checkpoint_every.max(1) == 0 {
            save_state(&net, &optimizer, step, best, &last_path)?;
        }
    }
    save_state(&net, &optimizer, step, best, &last_path)?;
    if valid_scans.is_empty() {
        // without validation the deliverable is the last state
        net.save(&best_path)?;
    }
    let curves = config.out.join("curves.png");
    if let Err(e) = plot::training_curves(&log_path, &curves) {
        log::warn!("curves: {e}");
    }
    let report = RunReport {
        config: config.clone(),
        dataset: root.display().to_string(),
        train_scans: train_scans.len(),
        valid_scans: valid_scans.len(),
        steps: step,
        epochs: step as f64 / steps_per_epoch as f64,
        best_valid_iou: best.map(|b| b.0),
        best_step: best.map(|b| b.1),
        last_valid_iou: last_iou,
        mean_step_ms: if steps_run > 0 { step_ms_sum / steps_run as f64 } else { 0.0 },
        device: format!("{device:?}"),
        precision: format!("{kind:?}"),
        parameters: net.parameter_count(),
        wall_s: started.elapsed().as_secs_f64(),
    };
    let json = config.out.join("run.json");
    std::fs::write(&json, serde_json::to_string_pretty(&report).unwrap_or_default()).map_err(io_err(&json))?;
    Ok(report)
}
