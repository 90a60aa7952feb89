//! `kdseg train`, `kdseg teacher train`, `kdseg teacher logits`.

use super::interrupt::interrupted;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use kdseg::config::Config;
use kdseg::model::PolarBevNet;
use kdseg::mos::DeviceChoice;
use kdseg::train::data::{self, LoadOptions, MotionInput, Scan, TeacherLogitNames};
use kdseg::train::{self, Progress, TrainConfig};
use std::path::PathBuf;
use tch::{Device, Kind};

#[derive(Debug, Args, Clone)]
pub struct TrainArgs {
    /// Configuration file with a `train:` section (and `dataset:` for the root and splits)
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Dataset root (overrides dataset.root)
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Run directory (overrides train.out)
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Distillation weight; 0 trains on labels only (the no-KD baseline)
    #[arg(long)]
    pub kd_weight: Option<f64>,
    /// Folder of teacher logits in the KDMOS format
    #[arg(long)]
    pub teacher_logits: Option<PathBuf>,
    /// Motion features: causal, reference (or both, for a teacher)
    #[arg(long)]
    pub motion: Option<MotionInput>,
    /// Base channel width of the network (32: the KDMOS student)
    #[arg(long)]
    pub width: Option<i64>,
    #[arg(long)]
    pub max_steps: Option<usize>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub temperature: Option<f64>,
    #[arg(long)]
    pub validate_every: Option<usize>,
    #[arg(long)]
    pub device: Option<DeviceChoice>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Start from scratch even if the run directory has a checkpoint
    #[arg(long)]
    pub no_resume: bool,
}

impl TrainArgs {
    fn apply(&self, config: &mut Config) -> Result<()> {
        let t = &mut config.train;
        if let Some(v) = &self.out {
            t.out = v.clone();
        }
        if let Some(v) = self.kd_weight {
            t.kd_weight = v;
        }
        if let Some(v) = &self.teacher_logits {
            t.teacher_logits = Some(v.clone());
        }
        if let Some(v) = self.motion {
            t.model.motion = v;
        }
        if let Some(v) = self.width {
            t.model.width = v;
        }
        if let Some(v) = self.max_steps {
            t.max_steps = Some(v);
        }
        if let Some(v) = self.epochs {
            t.epochs = v;
        }
        if let Some(v) = self.batch_size {
            t.batch_size = v;
        }
        if let Some(v) = self.lr {
            t.lr = v;
        }
        if let Some(v) = self.temperature {
            t.temperature = v;
        }
        if let Some(v) = self.validate_every {
            t.validate_every = Some(v);
        }
        if let Some(v) = self.device {
            t.device = v;
        }
        if let Some(v) = self.seed {
            t.seed = v;
        }
        if self.no_resume {
            t.resume = false;
        }
        if let Some(v) = &self.dataset {
            config.dataset.root = Some(v.clone());
        }
        config.validate()?;
        Ok(())
    }
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn step(&mut self, step: usize, total: usize, loss: f64, lr: f64) {
        self.0.set_length(total as u64);
        self.0.set_position(step as u64);
        self.0.set_message(format!("loss {loss:.4} lr {lr:.5}"));
    }

    fn validated(&mut self, step: usize, iou: f64, best: bool) {
        self.0.println(format!("step {step}: validation moving IoU {iou:.4}{}", if best { " (best)" } else { "" }));
    }
}

fn run(mut config: Config, args: &TrainArgs, what: &str) -> Result<()> {
    args.apply(&mut config)?;
    let root = config.dataset.root.clone().context("give --dataset (or dataset.root in the configuration)")?;
    let bar = ProgressBar::new(1);
    bar.set_style(ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {per_sec} eta {eta} {msg}").unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> "));
    bar.set_prefix(what.to_string());
    let mut progress = Bar(bar);
    let splits = config.dataset.splits_for(&root)?;
    let report = train::train(&config.train, &root, &splits, &mut progress, &interrupted)?;
    progress.0.finish();
    write_card(&config.train, &report)?;
    println!("{what}: {} steps ({:.2} epochs) in {:.0} s, {:.1} ms/step on {} ({})", report.steps, report.epochs, report.wall_s, report.mean_step_ms, report.device, report.precision);
    match report.best_valid_iou {
        Some(iou) => println!("best validation moving IoU {iou:.4} at step {}", report.best_step.unwrap_or(0)),
        None => println!("no validation sequences"),
    }
    println!("weights: {}", config.train.out.join("best.safetensors").display());
    if interrupted() {
        anyhow::bail!("interrupted; run the same command again to resume from {}", config.train.out.join("last.safetensors").display());
    }
    Ok(())
}

/// `best.yaml` beside `best.safetensors`: what the weights are and how they were made.
fn write_card(config: &TrainConfig, report: &train::RunReport) -> Result<()> {
    let card = serde_yaml::to_string(&serde_json::json!({
        "network": format!("{:?}", config.model.variant),
        "width": config.model.width,
        "motion": config.model.motion,
        "classes": 4,
        "dataset": report.dataset,
        "train_sequences": config.train_sequences,
        "steps": report.steps,
        "kd_weight": config.kd_weight,
        "best_valid_iou": report.best_valid_iou,
        "grid": config.grid,
        "date": kdseg::bench::today(),
    }))?;
    let path = config.out.join("best.yaml");
    std::fs::write(&path, card).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

pub fn student(args: TrainArgs) -> Result<()> {
    let config = super::bag::load_config(&args.config)?;
    run(config, &args, "train")
}

#[derive(Debug, Subcommand)]
pub enum TeacherCommand {
    /// Train the teacher: a wider network (width 64) that sees causal and reference motion features
    Train(TrainArgs),
    /// Write per-scan teacher logits in the KDMOS format (<seq>_<k>.npy, float32 N×4)
    Logits(LogitArgs),
}

#[derive(Debug, Args)]
pub struct LogitArgs {
    #[arg(long)]
    pub weights: PathBuf,
    #[arg(long)]
    pub dataset: PathBuf,
    /// Sequences to write logits for
    #[arg(long, num_args = 1.., value_delimiter = ',', required_unless_present = "split")]
    pub sequences: Vec<String>,
    /// A split of the dataset instead of --sequences (train, valid, test)
    #[arg(long, conflicts_with = "sequences")]
    pub split: Option<String>,
    #[arg(long)]
    pub out: PathBuf,
    /// Motion features the teacher was trained with (default: both for 16 motion channels)
    #[arg(long)]
    pub motion: Option<MotionInput>,
    /// Name files <seq>_<frame:06>.npy instead of <seq>_<index after filtering>.npy
    #[arg(long)]
    pub frame_names: bool,
    /// Write logits for every frame (no drop_few_static_frames filtering)
    #[arg(long)]
    pub all_frames: bool,
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
}

pub fn teacher(command: TeacherCommand) -> Result<()> {
    match command {
        TeacherCommand::Train(args) => {
            let mut config = super::bag::load_config(&args.config)?;
            // the teacher's defaults; the configuration file and flags still win
            if args.config.is_none() {
                config.train.model.width = 64;
                config.train.model.motion = MotionInput::Both;
                config.train.kd_weight = 0.0;
                config.train.out = PathBuf::from("runs/teacher");
            }
            run(config, &args, "teacher")
        }
        TeacherCommand::Logits(args) => {
            let device = args.device.resolve().map_err(anyhow::Error::msg)?;
            let net = PolarBevNet::from_checkpoint(&args.weights, device)?;
            let motion = match (args.motion, net.config.motion_channels) {
                (Some(m), _) => m,
                (None, 16) => MotionInput::Both,
                (None, c) => anyhow::bail!("{} takes {c} motion channels: say --motion causal or --motion reference", args.weights.display()),
            };
            anyhow::ensure!(motion.channels() == net.config.motion_channels, "{} takes {} motion channels but {motion:?} gives {}", args.weights.display(), net.config.motion_channels, motion.channels());
            let options = LoadOptions { motion, device, drop_few_static_frames: !args.all_frames, residual_kind: Kind::Float };
            let sequences = match &args.split {
                Some(name) => kdseg::config::DatasetConfig::default().splits_for(&args.dataset)?.get(name).with_context(|| format!("unknown split '{name}'"))?.to_vec(),
                None => args.sequences.clone(),
            };
            let scans: Vec<Scan> = data::load_sequences(&args.dataset, &sequences, &options)?;
            let names = if args.frame_names { TeacherLogitNames::Frame } else { TeacherLogitNames::FilteredIndex };
            let bar = ProgressBar::new(scans.len() as u64);
            for chunk in scans.chunks(4) {
                let refs: Vec<&Scan> = chunk.iter().collect();
                let batch = train::make_batch(&refs, &net.grid, None, Kind::Float, false);
                let logits = tch::no_grad(|| {
                    let input = kdseg::model::BevInput { features: &batch.features, grid: &batch.grid, batch: &batch.batch, batch_size: batch.batch_size };
                    let bev = net.forward(&input, false);
                    net.point_logits(&bev, &input).to_device(Device::Cpu)
                });
                let mut offset = 0;
                for scan in chunk {
                    let n = scan.len() as i64;
                    data::write_teacher_logits(&args.out, scan, names, &logits.narrow(0, offset, n))?;
                    offset += n;
                    bar.inc(1);
                }
            }
            bar.finish();
            println!("wrote {} teacher logit files to {}", scans.len(), args.out.display());
            Ok(())
        }
    }
}

#[derive(Debug, Args)]
pub struct ResultsArgs {
    /// Folder of run directories (each with run.json and test.json) and the data's split.yaml
    #[arg(long, default_value = "results/experiments")]
    pub runs: PathBuf,
    #[arg(long, default_value = "RESULTS.md")]
    pub out: PathBuf,
}

pub fn results(args: ResultsArgs) -> Result<()> {
    let rows = kdseg::results::read_rows(&args.runs).map_err(anyhow::Error::msg)?;
    anyhow::ensure!(!rows.is_empty(), "no runs with run.json and test.json under {}", args.runs.display());
    let manifest = std::fs::read_to_string(args.runs.join("split.yaml")).ok();
    let text = kdseg::results::render(&rows, manifest.as_deref(), "kdseg results");
    std::fs::write(&args.out, text).with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {} ({} runs)", args.out.display(), rows.len());
    Ok(())
}
