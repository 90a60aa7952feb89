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
    /// Simulate exactly labelled LiDAR sequences (SemanticKITTI layout and/or a bag), or a
    /// train/valid/test split of them
    Simulate(cli::sim::Simulate),
    /// Draw a scan of a SemanticKITTI-layout sequence from above, coloured by label, as a PNG
    Render(cli::sim::Render),
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).format_timestamp_millis().init();
    cli::interrupt::install();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("kdseg: error: {e:#}");
        std::process::exit(if cli::interrupt::interrupted() { 130 } else { 1 });
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Bag(command) => cli::bag::run(command),
        Command::Simulate(args) => cli::sim::simulate(args),
        Command::Render(args) => cli::sim::render(args),
    }
}
