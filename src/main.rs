//! `kdseg`: one binary for LiDAR moving-object segmentation with knowledge distillation — datasets,
//! bags, simulation, inference, evaluation, training and the ROS 2 node.

mod cli;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "kdseg", version, about = "Knowledge-distilled point-cloud segmentation for ROS 2", propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// rosbag2 bags: info, and conversion from/to SemanticKITTI sequences
    #[command(subcommand)]
    Bag(cli::bag::BagCommand),
    /// Benchmarks: run a suite (results to benchmarks/), or render BENCHMARKS.md
    #[command(subcommand)]
    Bench(cli::bench::BenchCommand),
    /// Segment SemanticKITTI sequences: predictions/*.label (0, 9, 250, 251 per point)
    Infer(cli::mos::InferArgs),
    /// Segment every scan of a bag, in order; write inputs and labelled clouds to a new bag
    Replay(cli::mos::ReplayArgs),
    /// Moving IoU of predictions, exactly as semantic-kitti-api's evaluate_mos.py
    Eval(cli::mos::EvalArgs),
    /// Power-user MOS commands: one network forward, motion features of a sequence
    #[command(subcommand)]
    Mos(cli::mos::MosCommand),
    /// Train the student (KDMOS), with distillation from teacher logits or without (--kd-weight 0)
    Train(cli::train::TrainArgs),
    /// The teacher: train it, write its logits for distillation
    #[command(subcommand)]
    Teacher(cli::train::TeacherCommand),
    /// Render RESULTS.md from the records of a distillation experiment
    Results(cli::train::ResultsArgs),
    /// The ROS 2 node (parameters: --ros-args --params-file config/kdseg.yaml)
    Node {
        /// ROS arguments, e.g. --ros-args --params-file config/kdseg.yaml -p use_sim_time:=true
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ros_args: Vec<String>,
    },
    /// Simulate exactly labelled LiDAR sequences (SemanticKITTI layout and/or a bag), or a
    /// train/valid/test split of them
    Simulate(cli::sim::Simulate),
    /// Draw a scan of a SemanticKITTI-layout sequence from above, coloured by label, as a PNG
    Render(cli::sim::Render),
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).format_timestamp_millis().init();
    let cli = Cli::parse();
    // the node handles SIGINT/SIGTERM itself (and shuts rcl down in order)
    if !matches!(cli.command, Command::Node { .. }) {
        cli::interrupt::install();
    }
    if let Err(e) = run(cli) {
        eprintln!("kdseg: error: {}", describe(&e));
        std::process::exit(if cli::interrupt::interrupted() { 130 } else { 1 });
    }
}

/// The error with its causes, each cause once (library errors already include their source's text).
fn describe(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let part = cause.to_string();
        if !text.contains(&part) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&part);
        }
    }
    text
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Bag(command) => cli::bag::run(command),
        Command::Bench(command) => cli::bench::run(command),
        Command::Infer(args) => cli::mos::infer(args),
        Command::Replay(args) => cli::mos::run_replay(args),
        Command::Eval(args) => cli::mos::eval(args),
        Command::Mos(command) => cli::mos::run_mos(command),
        Command::Train(args) => cli::train::student(args),
        Command::Teacher(command) => cli::train::teacher(command),
        Command::Results(args) => cli::train::results(args),
        Command::Node { ros_args: _ } => run_node(),
        Command::Simulate(args) => cli::sim::simulate(args),
        Command::Render(args) => cli::sim::render(args),
    }
}

#[cfg(feature = "ros")]
fn run_node() -> Result<()> {
    // rcl reads the --ros-args from the process arguments itself
    Ok(kdseg::node::run()?)
}

#[cfg(not(feature = "ros"))]
fn run_node() -> Result<()> {
    anyhow::bail!("this kdseg was built without the ROS 2 node; build it with `make build` (cargo feature `ros`)")
}
