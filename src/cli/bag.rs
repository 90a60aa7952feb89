//! `kdseg bag ...`: bag inspection and conversions.

use super::interrupt::interrupted;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use kdseg::bag::{Bag, BagSummary, WriterOptions};
use kdseg::config::{Config, PoseSource};
use kdseg::conversion::{self, FromKittiOptions, ToKittiOptions};
use kdseg::dataset::KittiSequence;
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum BagCommand {
    /// Print a bag's storage, duration, message count and topics (types, counts, QoS)
    Info {
        /// Bag directory, or a single .mcap / .db3 file
        bag: PathBuf,
    },
    /// Write a SemanticKITTI sequence as a bag: PointCloud2 (Velodyne layout, labels in a `label`
    /// field), nav_msgs/Odometry and /tf
    FromKitti(FromKitti),
    /// Write the clouds of a bag as a SemanticKITTI sequence (velodyne/, labels/ if present, poses.txt)
    ToKitti(ToKitti),
}

#[derive(Debug, Args)]
pub struct FromKitti {
    /// Dataset root (the folder that holds sequences/), or a sequence folder that holds velodyne/
    #[arg(long)]
    pub dataset: PathBuf,
    /// Sequence id, e.g. 08
    #[arg(long)]
    pub sequence: String,
    /// Output bag: a directory (with metadata.yaml), or a path ending in .mcap for one file
    #[arg(long)]
    pub out: PathBuf,
    /// metadata.yaml version: 9 (Jazzy) or 8 (for Humble)
    #[arg(long, default_value_t = 9)]
    pub metadata_version: u32,
    /// Stamp of the first scan, seconds
    #[arg(long, default_value_t = 1_700_000_000.0)]
    pub start: f64,
    /// Scan rate, Hz
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Replace an existing output
    #[arg(long)]
    pub overwrite: bool,
    /// Configuration file (topics, frames)
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ToKitti {
    /// Input bag
    pub bag: PathBuf,
    /// Output dataset root (sequences/<id>/ is created in it)
    #[arg(long)]
    pub out: PathBuf,
    /// Sequence id to write
    #[arg(long, default_value = "00")]
    pub sequence: String,
    /// Configuration file (topics, frames, pose source, cloud fields)
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// LiDAR topic (overrides the configuration)
    #[arg(long)]
    pub topic: Option<String>,
    /// Take poses from /tf instead of odometry
    #[arg(long)]
    pub tf: bool,
}

pub fn load_config(path: &Option<PathBuf>) -> Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    })
}

pub fn run(command: BagCommand) -> Result<()> {
    match command {
        BagCommand::Info { bag } => {
            let bag = Bag::open(&bag)?;
            print!("{}", format_summary(&bag.summary()));
            Ok(())
        }
        BagCommand::FromKitti(args) => {
            let config = load_config(&args.config)?;
            let sequence = if args.dataset.join("velodyne").is_dir() {
                KittiSequence::open_dir(&args.dataset, &args.sequence)?
            } else {
                KittiSequence::open(&args.dataset, &args.sequence)?
            };
            anyhow::ensure!(args.rate > 0.0, "--rate must be positive");
            let options = FromKittiOptions {
                topics: config.topics.clone(),
                frames: config.frames.clone(),
                start_ns: (args.start * 1e9) as i64,
                period_ns: (1e9 / args.rate) as i64,
                writer: WriterOptions { metadata_version: args.metadata_version, overwrite: args.overwrite, ..Default::default() },
            };
            let n = conversion::kitti_to_bag(&sequence, &args.out, &options, &interrupted)
                .with_context(|| format!("converting sequence {} of {}", args.sequence, args.dataset.display()))?;
            println!("wrote {n} scans of sequence {} to {}", sequence.id, args.out.display());
            Ok(())
        }
        BagCommand::ToKitti(args) => {
            let mut config = load_config(&args.config)?;
            if let Some(topic) = args.topic {
                config.topics.lidar = topic;
            }
            if args.tf {
                config.pose.source = PoseSource::Tf;
            }
            let bag = Bag::open(&args.bag)?;
            let options = ToKittiOptions { topics: config.topics, frames: config.frames, pose_source: config.pose.source, fields: config.cloud };
            let n = conversion::bag_to_kitti(&bag, &args.out, &args.sequence, &options, &interrupted)?;
            println!("wrote {n} scans to {}", args.out.join("sequences").join(&args.sequence).display());
            Ok(())
        }
    }
}

fn seconds(ns: i64) -> String {
    format!("{}.{:09}", ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000))
}

pub fn format_summary(s: &BagSummary) -> String {
    let mut out = String::new();
    let version = s.metadata_version.map(|v| format!(", metadata.yaml version {v}")).unwrap_or_else(|| ", no metadata.yaml".into());
    out.push_str(&format!("bag:       {}\n", s.path));
    out.push_str(&format!("storage:   {}{}\n", s.storage.identifier(), version));
    out.push_str(&format!("files:     {} ({:.1} MiB)\n", s.files.len(), s.bytes as f64 / (1 << 20) as f64));
    match (s.start_ns, s.end_ns) {
        (Some(start), Some(end)) => {
            out.push_str(&format!("duration:  {:.3} s\n", (end - start) as f64 * 1e-9));
            out.push_str(&format!("start:     {} s\n", seconds(start)));
            out.push_str(&format!("end:       {} s\n", seconds(end)));
        }
        _ => out.push_str("duration:  0 s (no messages)\n"),
    }
    out.push_str(&format!("messages:  {}\n", s.message_count));
    out.push_str(&format!("topics:    {}\n", s.topics.len()));
    let width = s.topics.iter().map(|t| t.name.len()).max().unwrap_or(0);
    let type_width = s.topics.iter().map(|t| t.type_name.len()).max().unwrap_or(0);
    for t in &s.topics {
        let qos = t.qos.map(|q| format!("  [{}]", q.describe())).unwrap_or_default();
        out.push_str(&format!(
            "  {:width$}  {:type_width$}  {:>7} msgs  {}{}\n",
            t.name, t.type_name, t.message_count, t.serialization_format, qos
        ));
    }
    out
}
