//! # kdseg
//!
//! Knowledge-distilled point-cloud segmentation for ROS 2, as one Rust library and binary:
//! LiDAR moving-object segmentation (KDMOS, a polar-BEV student distilled from a stronger teacher)
//! and, later, 4D-radar + camera segmentation (MKFusion).
//!
//! The library core never depends on ROS: point clouds ([`cloud`]), ROS 2 messages in CDR
//! ([`messages`]), rosbag2 bags ([`bag`]), poses ([`geometry`]), datasets on disk ([`dataset`]) and
//! the configuration ([`config`]) are plain Rust and are what the CLI, the training code and the ROS
//! node (cargo feature `ros`) all use.

pub mod bag;
pub mod bench;
pub mod cloud;
pub mod config;
pub mod conversion;
pub mod dataset;
pub mod evaluation;
pub mod features;
pub mod geometry;
pub mod gpu;
pub mod messages;
pub mod model;
pub mod mos;
#[cfg(feature = "ros")]
pub mod node;
pub mod online;
pub mod random;
pub mod render;
pub mod replay;
pub mod results;
pub mod sim;
pub mod train;
