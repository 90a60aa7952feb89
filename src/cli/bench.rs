//! `kdseg bench ...`: run benchmark suites and render BENCHMARKS.md.

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use kdseg::bench::{self, pipeline, BenchRecord};
use kdseg::mos::EngineConfig;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Run a suite and store its record as JSON
    Run(RunArgs),
    /// Render every stored record into BENCHMARKS.md
    Report {
        /// Folder with the records (searched recursively for *.json)
        #[arg(long, default_value = "benchmarks")]
        results: PathBuf,
        #[arg(long, default_value = "BENCHMARKS.md")]
        out: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    /// PointCloud2 decoding into structure-of-arrays
    Decode,
    /// rosbag2 MCAP reading
    Bag,
    /// simulator throughput
    Sim,
    /// the MOS pipeline per stage and end to end (needs --weights)
    Mos,
    /// reduced-precision labels against float32 (needs --weights; GPU)
    Precision,
    /// one training step at batch 8
    Train,
    /// the ROS 2 node under a sustained 10 Hz LiDAR stream: overhead over the engine, memory (ros feature)
    Node,
    /// decode, bag, sim, mos and train
    All,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    pub suite: Suite,
    /// Folder the JSON records go to
    #[arg(long, default_value_os_t = default_out())]
    pub out: PathBuf,
    /// Scratch folder for temporary files (bags)
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    pub scratch: PathBuf,
    /// Weights for the MOS suites
    #[arg(long, default_value = "weights/kdmos_sim.safetensors")]
    pub weights: PathBuf,
    /// auto, cpu, cuda or cuda:N
    #[arg(long, default_value = "auto")]
    pub device: kdseg::mos::DeviceChoice,
    /// Precision of the MOS pipeline suite
    #[arg(long, default_value = "fp32")]
    pub precision: kdseg::mos::Precision,
    /// Motion features of the MOS pipeline suite
    #[arg(long, default_value = "causal")]
    pub motion: kdseg::features::MotionMode,
    /// Timed scans (MOS) or steps (training)
    #[arg(long)]
    pub runs: Option<usize>,
    /// Run the U-Net eagerly instead of replaying it as a CUDA graph (MOS pipeline suite)
    #[arg(long)]
    pub no_cuda_graph: bool,
    /// Training suite in float32 instead of bf16 mixed precision
    #[arg(long)]
    pub fp32: bool,
    /// Length of the node suite's stream, in seconds
    #[arg(long, default_value_t = 600.0)]
    pub seconds: f64,
    /// Parameters file of the node suite
    #[arg(long, default_value = "config/kdseg.yaml")]
    pub params_file: PathBuf,
    /// DDS domain of the node suite
    #[arg(long, default_value_t = 87)]
    pub domain_id: u32,
    /// Also run the MOS or training suite under libtorch's profiler and write where the host's and
    /// the GPU's time goes to this folder (SUITE-profile.txt, raw SUITE-events.tsv)
    #[arg(long)]
    pub profile: Option<PathBuf>,
    /// MOS pipeline suite: keep cuDNN's heuristic convolution algorithms instead of timing them on
    /// the first scans (`mos.cudnn_benchmark: false`)
    #[arg(long)]
    pub no_cudnn_benchmark: bool,
    /// Name the record file (default: the suite), e.g. mos-bf16
    #[arg(long)]
    pub name: Option<String>,
}

fn default_out() -> PathBuf {
    Path::new("benchmarks").join(bench::machine_slug())
}

fn save(record: &BenchRecord, out: &Path, name: Option<&str>) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join(format!("{}.json", name.unwrap_or(&record.suite)));
    std::fs::write(&path, serde_json::to_string_pretty(record)?).with_context(|| format!("writing {}", path.display()))?;
    for m in &record.metrics {
        let verdict = match m.meets_target {
            Some(true) => format!("(target {}: met)", m.target.as_deref().unwrap_or("")),
            Some(false) => format!("(target {}: NOT met)", m.target.as_deref().unwrap_or("")),
            None => String::new(),
        };
        println!("{:<12} {:<48} {:>12.3} {:<6} {}", record.suite, m.name, m.value, m.unit, verdict);
    }
    println!("saved {}", path.display());
    Ok(())
}

pub fn run(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Run(args) => {
            let all = args.suite == Suite::All;
            let name = args.name.as_deref();
            let cpu = args.device.resolve().map(|d| d == tch::Device::Cpu).unwrap_or(true);
            if all || args.suite == Suite::Decode {
                save(&bench::decode_cloud(120_000, 500), &args.out, name)?;
            }
            if all || args.suite == Suite::Bag {
                save(&bench::bag_read(&args.scratch, 150, 120_000)?, &args.out, name)?;
            }
            if all || args.suite == Suite::Sim {
                save(&pipeline::simulator(1000)?, &args.out, name)?;
            }
            if all || args.suite == Suite::Mos {
                let runs = args.runs.unwrap_or(if cpu { 12 } else { 200 });
                let engine = EngineConfig {
                    weights: args.weights.clone(),
                    device: args.device,
                    precision: args.precision,
                    motion: args.motion,
                    cuda_graph: !args.no_cuda_graph,
                    cudnn_benchmark: !args.no_cudnn_benchmark,
                    ..EngineConfig::default()
                };
                let record = pipeline::mos_pipeline(&engine, runs, args.profile.as_deref()).map_err(anyhow::Error::msg)?;
                save(&record, &args.out, name)?;
            }
            if args.suite == Suite::Precision {
                save(&pipeline::precision_agreement(&args.weights, args.device, args.runs.unwrap_or(40)).map_err(anyhow::Error::msg)?, &args.out, name)?;
            }
            if args.suite == Suite::Node {
                #[cfg(feature = "ros")]
                {
                    let options = kdseg::node::bench::NodeBenchOptions {
                        params_file: args.params_file.clone(),
                        weights: args.weights.clone(),
                        device: args.device.to_string(),
                        seconds: args.seconds,
                        rate_hz: 10.0,
                        warm_up_s: (args.seconds / 4.0).min(60.0),
                        domain_id: args.domain_id,
                    };
                    save(&kdseg::node::bench::node_overhead(&options).map_err(anyhow::Error::msg)?, &args.out, name)?;
                }
                #[cfg(not(feature = "ros"))]
                anyhow::bail!("the node suite needs the ROS 2 node: build with --features ros (make build)");
            }
            if all || args.suite == Suite::Train {
                let steps = args.runs.unwrap_or(if cpu { 3 } else { 30 });
                save(&pipeline::train_step(args.device, 8, steps, !args.fp32 && !cpu, args.profile.as_deref()).map_err(anyhow::Error::msg)?, &args.out, name)?;
            }
            Ok(())
        }
        BenchCommand::Report { results, out } => {
            let mut records = Vec::new();
            collect(&results, &mut records)?;
            anyhow::ensure!(!records.is_empty(), "no benchmark records under {}", results.display());
            let text = bench::render_report(&records, "kdseg bench report");
            std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
            println!("wrote {} ({} records)", out.display(), records.len());
            Ok(())
        }
    }
}

fn collect(dir: &Path, records: &mut Vec<BenchRecord>) -> Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect(&path, records)?;
        } else if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path)?;
            records.push(serde_json::from_str(&text).with_context(|| format!("{} is not a benchmark record", path.display()))?);
        }
    }
    Ok(())
}
