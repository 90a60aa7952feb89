//! `kdseg simulate` (SemanticKITTI sequences, bags and splits from the built-in simulator) and
//! `kdseg render` (a bird's-eye view of a scan).

use super::interrupt::interrupted;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use kdseg::bag::WriterOptions;
use kdseg::config::TopicConfig;
use kdseg::dataset::semantic_kitti::{prediction_path, read_label_file};
use kdseg::dataset::KittiSequence;
use kdseg::render::{label_colors, outcome_colors, render_bev, BevOptions};
use kdseg::sim::output::{self, BagTarget, KittiPoses, KittiTarget, SplitPlan};
use kdseg::sim::{self, LidarConfig, LidarPreset, Preset, SequenceStats, SimConfig, Simulator};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LidarArg {
    /// Velodyne HDL-64E (KITTI)
    Hdl64e,
    /// Ouster OS1-128
    Os1_128,
    /// Velodyne VLP-16
    Vlp16,
}

#[derive(Debug, Args)]
pub struct Simulate {
    /// Configuration file (YAML, the simulator's SimConfig); the options below override it
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Scene preset: urban, highway or parking; with --split a comma-separated list the sequences
    /// cycle through
    #[arg(long)]
    pub preset: Option<String>,
    /// Random seed (with --split, the first sequence's; the others count up)
    #[arg(long)]
    pub seed: Option<u64>,
    /// Scans per sequence (10 per second)
    #[arg(long)]
    pub scans: Option<usize>,
    /// LiDAR model
    #[arg(long, value_enum)]
    pub lidar: Option<LidarArg>,
    /// Traffic density factor (1 = the preset's typical traffic)
    #[arg(long)]
    pub traffic: Option<f64>,
    /// Add odometry noise and drift: /odom and /tf in the bag drift, and poses.txt holds the
    /// odometry's poses instead of the true ones
    #[arg(long)]
    pub odometry_noise: bool,
    /// Dataset root to write a SemanticKITTI sequence into (sequences/<NN>/...)
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Sequence id
    #[arg(long, default_value = "00")]
    pub sequence: String,
    /// Also (or instead) write a rosbag2 bag: a directory, or a path ending in .mcap
    #[arg(long)]
    pub bag: Option<PathBuf>,
    /// metadata.yaml version of the bag: 9 (Jazzy) or 8 (Humble)
    #[arg(long, default_value_t = 9)]
    pub metadata_version: u32,
    /// Replace an existing sequence or bag
    #[arg(long)]
    pub overwrite: bool,
    /// Write train/valid/test sequences 00, 01, ... into --out, with split.yaml
    #[arg(long)]
    pub split: bool,
    /// Training sequences of the split
    #[arg(long, default_value_t = 4, requires = "split")]
    pub train: usize,
    /// Validation sequences of the split
    #[arg(long, default_value_t = 1, requires = "split")]
    pub valid: usize,
    /// Test sequences of the split (labelled too, unlike SemanticKITTI's)
    #[arg(long, default_value_t = 1, requires = "split")]
    pub test: usize,
}

#[derive(Debug, Args)]
pub struct Render {
    /// Dataset root (holding sequences/), or a sequence folder holding velodyne/
    #[arg(long)]
    pub dataset: PathBuf,
    #[arg(long, default_value = "00")]
    pub sequence: String,
    /// Scan index within the sequence
    #[arg(long, default_value_t = 0)]
    pub scan: usize,
    /// Output PNG
    #[arg(long)]
    pub out: PathBuf,
    /// Side of the square area shown, metres
    #[arg(long, default_value_t = 100.0)]
    pub extent: f64,
    /// Metres per pixel
    #[arg(long, default_value_t = 0.1)]
    pub resolution: f64,
    /// Prediction root (OUT of `kdseg infer`): colour the scan by prediction against ground truth
    /// (moving red, false alarms amber, missed moving blue, static grey) instead of by label
    #[arg(long)]
    pub predictions: Option<PathBuf>,
}

fn parse_presets(text: &str) -> Result<Vec<Preset>> {
    text.split(',')
        .map(|name| {
            let name = name.trim();
            Preset::parse(name).with_context(|| format!("--preset: unknown preset '{name}' (urban, highway, parking)"))
        })
        .collect()
}

fn configure(args: &Simulate) -> Result<(SimConfig, Vec<Preset>)> {
    let mut config = match &args.config {
        Some(path) => SimConfig::load(path)?,
        None => SimConfig::default(),
    };
    let presets = match &args.preset {
        Some(text) => parse_presets(text)?,
        None if args.split && args.config.is_none() => Preset::ALL.to_vec(),
        None => vec![config.preset],
    };
    if presets.len() > 1 && !args.split {
        bail!("--preset: a list of presets needs --split");
    }
    config.preset = presets[0];
    if let Some(seed) = args.seed {
        config.seed = seed;
    }
    if let Some(scans) = args.scans {
        config.scans = scans;
    }
    if let Some(lidar) = args.lidar {
        config.lidar = LidarConfig::of(match lidar {
            LidarArg::Hdl64e => LidarPreset::Hdl64e,
            LidarArg::Os1_128 => LidarPreset::Os1_128,
            LidarArg::Vlp16 => LidarPreset::Vlp16,
        });
    }
    if let Some(traffic) = args.traffic {
        config.traffic_density = traffic;
    }
    if args.odometry_noise {
        config.odometry.noise = true;
    }
    config.validate()?;
    Ok((config, presets))
}

fn sequence_id(id: &str) -> Result<String> {
    match id.parse::<u32>() {
        Ok(n) if n < 100 => Ok(format!("{n:02}")),
        _ => bail!("--sequence: '{id}' is not a sequence number 0..99"),
    }
}

/// Makes room for a sequence directory, or refuses to overwrite one.
fn prepare_sequence(root: &Path, id: &str, overwrite: bool) -> Result<()> {
    let dir = root.join("sequences").join(id);
    if dir.exists() {
        if !overwrite {
            bail!("{} already exists (pass --overwrite to replace it)", dir.display());
        }
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    Ok(())
}

fn progress_bar(len: u64, message: String) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} scans ({per_sec}, {eta})").unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar.set_message(message);
    bar
}

pub fn simulate(args: Simulate) -> Result<()> {
    let (config, presets) = configure(&args)?;
    let poses = if config.odometry.noise { KittiPoses::Odometry } else { KittiPoses::True };
    if args.split {
        let Some(root) = &args.out else { bail!("--split needs --out") };
        if args.bag.is_some() {
            bail!("--split writes SemanticKITTI sequences only; drop --bag");
        }
        let plan = SplitPlan { train: args.train, valid: args.valid, test: args.test, presets, base_seed: config.seed };
        let manifest = plan.manifest(config.scans)?;
        for entry in &manifest.sequences {
            prepare_sequence(root, &entry.sequence, args.overwrite)?;
        }
        let mut total = SequenceStats::default();
        let bar = progress_bar(manifest.sequences.len() as u64, "sequences".into());
        let manifest = output::write_split(
            root,
            &config,
            &plan,
            poses,
            &mut |entry, stats| {
                bar.inc(1);
                log::info!("sequence {} ({}, {}, seed {}): {:.0} points per scan", entry.sequence, entry.split, entry.preset.name(), entry.seed, stats.mean_points());
                total.merge(stats);
            },
            &interrupted,
        )?;
        bar.finish_and_clear();
        println!("wrote {} sequences to {} (train {:?}, valid {:?}, test {:?}), split.yaml", manifest.sequences.len(), root.join("sequences").display(), manifest.train, manifest.valid, manifest.test);
        print!("{}", total.describe());
        return Ok(());
    }
    if args.out.is_none() && args.bag.is_none() {
        bail!("nothing to write: give --out DIR (SemanticKITTI) and/or --bag PATH");
    }
    let sequence = sequence_id(&args.sequence)?;
    if let Some(root) = &args.out {
        prepare_sequence(root, &sequence, args.overwrite)?;
    }
    let started = std::time::Instant::now();
    let sim = Simulator::new(config.clone()).context("building the simulation")?;
    log::info!("world of preset {} (seed {}) ready in {:.1} s: {} static primitives, {} objects", config.preset.name(), config.seed, started.elapsed().as_secs_f64(), sim.world().static_primitives(), sim.world().objects().count());
    let kitti = args.out.as_ref().map(|root| KittiTarget { root: root.clone(), sequence: sequence.clone(), poses });
    let bag = args.bag.as_ref().map(|path| BagTarget { path: path.clone(), writer: WriterOptions { metadata_version: args.metadata_version, overwrite: args.overwrite, ..Default::default() }, topics: TopicConfig::default() });
    let bar = progress_bar(sim.len() as u64, format!("{} seed {}", config.preset.name(), config.seed));
    let stats = output::export(&sim, kitti.as_ref(), bag.as_ref(), &mut |_| bar.inc(1), &interrupted)?;
    bar.finish_and_clear();
    if let Some(target) = &kitti {
        println!("wrote {} scans to {} (poses.txt: {} poses)", sim.len(), target.dir().display(), if poses == KittiPoses::True { "true" } else { "odometry" });
    }
    if let Some(target) = &bag {
        println!("wrote {} scans to bag {}", sim.len(), target.path.display());
    }
    print!("{}", stats.describe());
    println!("ego drove:           {:.0} m", sim::path_length(&sim));
    Ok(())
}

pub fn render(args: Render) -> Result<()> {
    let sequence = if args.dataset.join("velodyne").is_dir() { KittiSequence::open_dir(&args.dataset, &args.sequence)? } else { KittiSequence::open(&args.dataset, &args.sequence)? };
    if args.scan >= sequence.len() {
        bail!("--scan {}: sequence {} has {} scans", args.scan, sequence.id, sequence.len());
    }
    let cloud = sequence.read_scan(args.scan)?;
    let labels = sequence.read_labels(args.scan, cloud.len())?;
    let (colors, coloured_by) = match &args.predictions {
        Some(root) => {
            let path = prediction_path(root, &sequence.id, &sequence.scan_name(args.scan));
            let predicted = read_label_file(&path)?;
            if predicted.len() != cloud.len() {
                bail!("{}: {} predictions for a scan of {} points", path.display(), predicted.len(), cloud.len());
            }
            let how = if labels.is_some() {
                "prediction against ground truth: moving red, false alarms amber, missed moving blue, static grey"
            } else {
                "prediction (no ground truth): moving red, static grey"
            };
            (outcome_colors(&predicted, labels.as_deref())?, how)
        }
        // without labels everything is drawn as static
        None => match &labels {
            Some(labels) => (label_colors(labels), "label"),
            None => (vec![0xB4B4B4; cloud.len()], "nothing (no labels)"),
        },
    };
    let options = BevOptions { extent_m: args.extent, resolution_m: args.resolution, ..Default::default() };
    let image = render_bev(&cloud, &colors, &options)?;
    image.write_png(&args.out)?;
    println!("wrote {} ({}×{} px, {} points, coloured by {coloured_by})", args.out.display(), image.width, image.height, cloud.len());
    Ok(())
}
