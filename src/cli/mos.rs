//! `kdseg infer`, `kdseg replay`, `kdseg eval` and the power-user `kdseg mos ...` commands.

use super::interrupt::interrupted;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use kdseg::bag::{Bag, WriterOptions};
use kdseg::config::{Config, PoseSource};
use kdseg::dataset::semantic_kitti::{self, KittiSequence};
use kdseg::evaluation;
use kdseg::features::{MotionFeatures, MotionMode, MotionScan};
use kdseg::mos::{DeviceChoice, MosEngine, Precision, ScanInput};
use kdseg::replay;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Engine options shared by the commands that run the network (they override the configuration).
#[derive(Debug, Args, Clone)]
pub struct EngineArgs {
    /// Configuration file (YAML; a ROS parameters file works too)
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Network weights (.safetensors, or a PyTorch state_dict .pt)
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N
    #[arg(long)]
    pub device: Option<DeviceChoice>,
    /// fp32, bf16 or fp16 (reduced precision on GPUs)
    #[arg(long)]
    pub precision: Option<Precision>,
    /// Motion features: causal (labels with each scan) or reference (MotionBEV's, 7 scans late)
    #[arg(long)]
    pub motion: Option<MotionMode>,
}

impl EngineArgs {
    pub fn config(&self) -> Result<Config> {
        let mut config = super::bag::load_config(&self.config)?;
        if let Some(w) = &self.weights {
            config.mos.weights = w.clone();
        }
        if let Some(d) = self.device {
            config.mos.device = d;
        }
        if let Some(p) = self.precision {
            config.mos.precision = p;
        }
        if let Some(m) = self.motion {
            config.mos.motion = m;
        }
        config.validate()?;
        Ok(config)
    }
}

pub fn engine(config: &Config) -> Result<MosEngine> {
    let engine = MosEngine::new(&config.mos).with_context(|| format!("loading {}", config.mos.weights.display()))?;
    log::info!(
        "{:?} network ({} parameters) on {:?}, {}, {} motion features",
        engine.network().config.variant,
        engine.network().parameter_count(),
        engine.device(),
        config.mos.precision,
        engine.motion_mode()
    );
    check_card(&config.mos.weights, engine.motion_mode());
    Ok(engine)
}

/// Warns when the weights' model card says they were trained for other motion features.
fn check_card(weights: &Path, motion: MotionMode) {
    let weights = kdseg::mos::engine::resolve_weights(weights);
    let Some(card) = kdseg::model::ModelCard::read(&weights) else { return };
    if let Some(trained) = card.motion.as_deref() {
        if trained != motion.to_string() {
            log::warn!("{} was trained with {trained} motion features, but {motion} features are in use", weights.display());
        }
    }
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {per_sec} eta {eta}").unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> "));
    bar.set_prefix(what.to_string());
    bar
}

#[derive(Debug, Args)]
pub struct InferArgs {
    /// Dataset root (with sequences/)
    #[arg(long)]
    pub dataset: PathBuf,
    /// Sequences to segment, e.g. 08 or 08,09
    #[arg(long, num_args = 1.., value_delimiter = ',', required = true)]
    pub sequences: Vec<String>,
    /// Output root: predictions go to OUT/sequences/XX/predictions/NNNNNN.label
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub engine: EngineArgs,
}

pub fn infer(args: InferArgs) -> Result<()> {
    let config = args.engine.config()?;
    let mut engine = engine(&config)?;
    for id in &args.sequences {
        let sequence = KittiSequence::open(&args.dataset, id)?;
        anyhow::ensure!(sequence.has_poses(), "{}: poses.txt is missing; motion features need poses", sequence.dir.display());
        engine.reset();
        let bar = progress(sequence.len() as u64, &format!("sequence {}", sequence.id));
        let write = |results: Vec<kdseg::mos::ScanResult>| -> Result<()> {
            for r in results {
                let name = sequence.scan_name(r.id as usize);
                semantic_kitti::write_label_file(&semantic_kitti::prediction_path(&args.out, &sequence.id, &name), &r.labels)?;
            }
            Ok(())
        };
        for i in 0..sequence.len() {
            if interrupted() {
                bail!("interrupted at scan {i} of sequence {}", sequence.id);
            }
            let cloud = sequence.read_scan(i)?;
            let pose = sequence.lidar_pose(i).context("pose missing")?;
            let results = engine.process(ScanInput { id: i as u64, stamp_ns: i as i64 * 100_000_000, cloud: &cloud, pose })?;
            write(results)?;
            bar.inc(1);
        }
        write(engine.flush()?)?;
        bar.finish();
        println!("sequence {}: {} scans → {}", sequence.id, sequence.len(), args.out.join("sequences").join(&sequence.id).join("predictions").display());
    }
    Ok(())
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Input bag (directory, .mcap or .db3)
    pub bag: PathBuf,
    /// Output bag: inputs plus labelled clouds (a path ending in .mcap for a single file)
    #[arg(long)]
    pub out: PathBuf,
    /// LiDAR topic (overrides topics.lidar)
    #[arg(long)]
    pub lidar_topic: Option<String>,
    /// Take poses from /tf + /tf_static instead of odometry
    #[arg(long)]
    pub tf: bool,
    /// Replace an existing output
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub engine: EngineArgs,
}

pub fn run_replay(args: ReplayArgs) -> Result<()> {
    let mut config = args.engine.config()?;
    if let Some(t) = args.lidar_topic {
        config.topics.lidar = t;
    }
    if args.tf {
        config.pose.source = PoseSource::Tf;
    }
    let bag = Bag::open(&args.bag)?;
    let mut engine = engine(&config)?;
    let start = std::time::Instant::now();
    let summary = replay::replay(&bag, &args.out, &config, &mut engine, WriterOptions { overwrite: args.overwrite, ..Default::default() }, &interrupted)?;
    println!("clouds: {}", summary.clouds);
    println!("segmented: {}", summary.segmented);
    println!("skipped (no pose): {}", summary.skipped_no_pose);
    println!("malformed: {}", summary.malformed);
    println!("non-finite points dropped: {}", summary.dropped_nonfinite_points);
    println!("time jumps: {}", summary.time_jumps);
    println!("engine time per scan: {:.1} ms (wall {:.1} s)", summary.mean_scan_ms, start.elapsed().as_secs_f64());
    match summary.scores {
        Some(s) => println!("iou_moving: {:.3} (tp {}, fp {}, fn {})", s.iou_moving, s.tp_moving, s.fp_moving, s.fn_moving),
        None => println!("iou_moving: no ground truth in the clouds"),
    }
    println!("wrote {}", args.out.display());
    Ok(())
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Dataset root with ground-truth labels
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Prediction root (OUT of `kdseg infer`)
    #[arg(long, required_unless_present = "weights", conflicts_with = "weights")]
    pub predictions: Option<PathBuf>,
    /// Evaluate a network directly instead of prediction files (motion features computed online)
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// The network's motion features: causal, reference or both (default: its model card, or both
    /// for 16 motion channels)
    #[arg(long)]
    pub motion: Option<kdseg::train::data::MotionInput>,
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
    /// Also write the scores as JSON
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Sequences to evaluate
    #[arg(long, num_args = 1.., value_delimiter = ',')]
    pub sequences: Vec<String>,
    /// A split of the configuration's dataset.splits instead of --sequences: train, valid or test
    #[arg(long, conflicts_with = "sequences")]
    pub split: Option<String>,
    #[arg(long)]
    pub config: Option<PathBuf>,
}

pub fn eval(args: EvalArgs) -> Result<()> {
    let config = super::bag::load_config(&args.config)?;
    let dataset = args.dataset.or(config.dataset.root.clone()).context("give --dataset (or dataset.root in the configuration)")?;
    let splits = config.dataset.splits_for(&dataset)?;
    let sequences = match &args.split {
        Some(name) => splits.get(name).with_context(|| format!("unknown split '{name}' (train, valid, test)"))?.to_vec(),
        None if !args.sequences.is_empty() => args.sequences.clone(),
        None => bail!("give --sequences or --split"),
    };
    let report = match (&args.predictions, &args.weights) {
        (Some(predictions), _) => evaluation::evaluate(&dataset, predictions, &sequences)?,
        (None, Some(weights)) => evaluate_network(weights, args.motion, args.device, &dataset, &sequences)?,
        (None, None) => bail!("give --predictions or --weights"),
    };
    print!("{}", report.render());
    if let Some(path) = &args.json {
        let s = report.confusion.scores();
        let json = serde_json::json!({
            "sequences": report.sequences, "scans": report.scans, "iou_moving": s.iou_moving, "iou_static": s.iou_static,
            "accuracy": s.accuracy, "tp_moving": s.tp_moving, "fp_moving": s.fp_moving, "fn_moving": s.fn_moving,
            "confusion": report.confusion.counts, "weights": args.weights, "date": kdseg::bench::today(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)?).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Runs a network over sequences (motion features online, in order) and scores it officially.
fn evaluate_network(weights: &Path, motion: Option<kdseg::train::data::MotionInput>, device: DeviceChoice, root: &Path, sequences: &[String]) -> Result<evaluation::MosReport> {
    use kdseg::train::data::{self, LoadOptions, MotionInput};
    let device = device.resolve().map_err(anyhow::Error::msg)?;
    let net = kdseg::model::PolarBevNet::from_checkpoint(weights, device)?;
    let from_card = kdseg::model::ModelCard::read(weights).and_then(|c| c.motion).and_then(|m| m.parse::<MotionInput>().ok());
    let motion = motion.or(from_card).unwrap_or(if net.config.motion_channels == 16 { MotionInput::Both } else { MotionInput::Causal });
    anyhow::ensure!(motion.channels() == net.config.motion_channels, "{} takes {} motion channels, {motion:?} gives {}", weights.display(), net.config.motion_channels, motion.channels());
    let mut confusion = evaluation::MosConfusion::default();
    let mut scans = 0;
    for id in sequences {
        // one sequence at a time, so that only one is held in memory
        let loaded = data::load_sequences(root, std::slice::from_ref(id), &LoadOptions { motion, device, drop_few_static_frames: false, residual_kind: Kind::Float })?;
        confusion.merge(&kdseg::train::evaluate(&net, &loaded, 4, Kind::Float));
        scans += loaded.len();
    }
    Ok(evaluation::MosReport { confusion, scans, sequences: sequences.to_vec() })
}

#[derive(Debug, Subcommand)]
pub enum MosCommand {
    /// Per-point logits (float32 N×classes .npy, in .bin order) of one scan with given motion features
    Forward(ForwardArgs),
    /// Motion features of every scan of a sequence (float32 N×8 .npy per scan, DIR/NNNNNN.npy)
    Residuals(ResidualArgs),
}

#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// Scan in SemanticKITTI .bin layout (float32 x, y, z, remission)
    #[arg(long)]
    pub points: PathBuf,
    /// Motion features, float32 N×8 .npy
    #[arg(long)]
    pub residuals: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Args)]
pub struct ResidualArgs {
    #[arg(long)]
    pub dataset: PathBuf,
    #[arg(long)]
    pub sequence: String,
    /// reference or causal
    #[arg(long, default_value = "reference")]
    pub mode: MotionMode,
    #[arg(long)]
    pub out: PathBuf,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
}

pub fn run_mos(command: MosCommand) -> Result<()> {
    match command {
        MosCommand::Forward(args) => {
            let config = args.engine.config()?;
            let engine = engine(&config)?;
            let cloud = semantic_kitti::read_bin(&args.points)?;
            let residuals = Tensor::read_npy(&args.residuals).with_context(|| format!("reading {}", args.residuals.display()))?;
            let logits = engine.logits_with_residuals(&cloud, &residuals).with_context(|| format!("{} with {}", args.points.display(), args.residuals.display()))?;
            if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            logits.write_npy(&args.out).with_context(|| format!("writing {}", args.out.display()))?;
            println!("wrote {} ({} points × {} classes)", args.out.display(), logits.size()[0], logits.size()[1]);
            Ok(())
        }
        MosCommand::Residuals(args) => {
            let device = args.device.resolve().map_err(anyhow::Error::msg)?;
            let sequence = KittiSequence::open(&args.dataset, &args.sequence)?;
            anyhow::ensure!(sequence.has_poses(), "{}: poses.txt is missing", sequence.dir.display());
            std::fs::create_dir_all(&args.out)?;
            let mut generator = MotionFeatures::new(args.mode, device);
            let names: HashMap<u64, String> = (0..sequence.len()).map(|i| (i as u64, sequence.scan_name(i))).collect();
            let bar = progress(sequence.len() as u64, &format!("sequence {}", sequence.id));
            let save = |outputs: Vec<kdseg::features::MotionOutput>| -> Result<()> {
                for o in outputs {
                    let path = args.out.join(format!("{}.npy", names[&o.id]));
                    o.residuals.to_device(tch::Device::Cpu).to_kind(Kind::Float).write_npy(&path).with_context(|| format!("writing {}", path.display()))?;
                }
                Ok(())
            };
            for i in 0..sequence.len() {
                let c = sequence.read_scan(i)?;
                let xyz = Tensor::stack(&[Tensor::from_slice(&c.x), Tensor::from_slice(&c.y), Tensor::from_slice(&c.z)], 1).to_kind(Kind::Double).to_device(device);
                let pose = sequence.lidar_pose(i).context("pose missing")?;
                save(generator.push(MotionScan { id: i as u64, stamp_ns: i as i64, xyz, pose }))?;
                bar.inc(1);
            }
            save(generator.flush())?;
            bar.finish();
            println!("wrote {} files to {}", sequence.len(), args.out.display());
            Ok(())
        }
    }
}
