//! A built-in LiDAR world simulator with exact labels: the data behind `make demo`, the tests, the
//! training experiments and the benchmarks, since SemanticKITTI cannot be downloaded here.
//!
//! A [`Simulator`] generates a procedural world from a preset and a seed (`scene`: roads with
//! lanes and markings on gently rolling terrain, curbs and sidewalks, buildings, walls, fences,
//! trees, bushes, poles, signs and signals, parked cars and bicycles, standing people), simulates its
//! traffic (`traffic`: the ego, cars, trucks, cyclists, motorcyclists and pedestrians following
//! lanes and sidewalks, turning, crossing, queueing at signals and stop signs, stopping, parking and
//! pulling out, overtaking on motorways), and scans it with a spinning LiDAR ([`lidar`]: HDL-64E by
//! default, OS1-128 and VLP-16 presets, every parameter configurable) at every scan time.
//!
//! ```no_run
//! use kdseg::sim::{Preset, SimConfig, Simulator};
//! let sim = Simulator::new(SimConfig { preset: Preset::Urban, seed: 7, scans: 100, ..Default::default() })?;
//! for scan in sim.scans() {
//!     let scan = scan?;
//!     // scan.cloud: x, y, z, intensity (remission 0..1), time, ring, label; scan.lidar_pose
//!     let _ = (scan.cloud.len(), scan.lidar_pose);
//! }
//! # Ok::<(), kdseg::sim::SimError>(())
//! ```
//!
//! `kdseg simulate --preset urban --seed 7 --scans 200 --out DIR [--bag run.mcap]` writes the same
//! run as a SemanticKITTI sequence and/or a rosbag2 bag ([`output`]); `--split` writes train/valid
//! /test sequences from distinct seeds; `kdseg render` draws a scan from above
//! ([`crate::render`]).
//!
//! Labels follow SemanticKITTI: semantic id in the lower 16 bits, instance id (≥ 1 for every
//! movable object, 0 for stuff) in the upper 16. Movable objects get their moving-* id at a scan
//! when they travelled faster than `moving_speed_threshold` (0.2 m/s) on average since the previous
//! scan ([`World::is_moving`]); parked cars and standing people never move, and moving agents stop
//! at signals, in queues and to pause, so "movable" and "moving" are not separable by class.
//!
//! The world is frozen at the scan's stamp for the whole sweep: scans are what a perfectly
//! motion-compensated sensor gives (like SemanticKITTI's de-skewed scans); per-point `time` still
//! says when within the sweep each point was measured. No rolling-shutter distortion is simulated.
//!
//! Output depends only on the configuration: the same seed gives byte-identical files on any machine
//! and with any number of threads (random decisions are keyed by seed, scan and ray; beams are
//! assembled in a fixed order; nothing iterates a hash map). [`bench()`] measures the throughput.
//!
//! Frames: the *world* frame is the ego's `base_link` at the first scan, which is also the true
//! `odom` frame; [`SimScan::lidar_pose`] is the true LiDAR pose in it and [`SimScan::odom_pose`] the
//! LiDAR pose as odometry reports it (equal unless odometry noise is on). Points are in the LiDAR
//! frame, as the sensor measures them. The world's objects can be queried at any time
//! ([`World::object_state`]: pose, velocity, moving flag) and a [`Snapshot`] of it can be ray-cast
//! by any [`Sensor`], which is where a radar (velocities per hit object) or a camera (projections of
//! the same geometry) plug in.

mod bvh;
pub mod config;
pub mod lidar;
mod models;
pub mod odometry;
pub mod output;
mod path;
use crate::random as rng;
mod scene;
pub mod semantics;
pub mod shapes;
mod terrain;
mod traffic;
pub mod world;

pub use config::{LidarConfig, LidarModel, LidarPreset, MountConfig, OdometryConfig, Preset, SimConfig};
pub use lidar::{Lidar, Occluder, Sensor};
pub use odometry::OdometrySample;
pub use output::{export, write_bag, write_kitti_sequence, write_split, BagTarget, KittiPoses, KittiTarget, SplitEntry, SplitManifest, SplitPlan};
pub use semantics::{is_moving_label, Class};
pub use world::{ObjectInfo, ObjectState, Snapshot, World};

use crate::bag::BagError;
use crate::cloud::PointCloud;
use crate::dataset::DatasetError;
use crate::geometry::Pose3;
use nalgebra::Vector3;
use std::collections::BTreeSet;
use std::time::Instant;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum SimError {
    #[error("parameter {parameter}: {reason}")]
    Config { parameter: String, reason: String },
    #[error("{file}: {reason}")]
    Parse { file: String, reason: String },
    #[error("scene generation: {0}")]
    Scene(String),
    #[error("scan {index} does not exist (the sequence has {len} scans)")]
    NoSuchScan { index: usize, len: usize },
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error(transparent)]
    Bag(#[from] BagError),
    #[error("{path}: {reason}")]
    Output { path: String, reason: String },
    #[error("interrupted")]
    Interrupted,
}

/// Time step of the traffic simulation, seconds.
const TRAFFIC_STEP: f64 = 0.05;

/// The ego vehicle's body in `base_link` (origin on the ground below its centre): lower body and
/// cabin. Beams that would hit it return nothing, leaving the blind ring around the car that real
/// roof-mounted sensors have.
const EGO_BODY: [([f64; 3], [f64; 3]); 2] = [([0.0, 0.0, 0.6], [2.3, 0.9, 0.3]), ([-0.35, 0.0, 1.12], [0.9, 0.6, 0.2])];

/// One simulated scan.
#[derive(Debug, Clone)]
pub struct SimScan {
    pub index: usize,
    /// Header stamp: the start of the sweep, nanoseconds since the epoch.
    pub stamp_ns: i64,
    /// Seconds since the first scan.
    pub time_s: f64,
    /// Points in the LiDAR frame with intensity (remission), time (s, relative to the stamp), ring
    /// and label.
    pub cloud: PointCloud,
    /// True LiDAR pose in the world (true odom) frame.
    pub lidar_pose: Pose3,
    /// LiDAR pose as reported by odometry (`odom → base_link` ∘ `base_link → LiDAR`).
    pub odom_pose: Pose3,
}

/// A configured simulation: the world, its traffic, the LiDAR and the odometry, ready to produce
/// any scan.
pub struct Simulator {
    config: SimConfig,
    world: World,
    lidar: Lidar,
    mount: Pose3,
    odometry: Vec<OdometrySample>,
    odometry_per_scan: usize,
}

impl Simulator {
    pub fn new(config: SimConfig) -> Result<Simulator, SimError> {
        config.validate()?;
        let period = config.scan_period();
        let duration = config.scans as f64 * period;
        let request = scene::SceneRequest { preset: config.preset, seed: config.seed, duration_s: duration, traffic_density: config.traffic_density };
        let generated = scene::generate(&request)?;
        log::debug!("scene: {} static primitives, {} objects, {} agents", generated.shapes.len(), generated.objects.len(), generated.plan.agents.len());
        let mut rng = rng::Rng::stream(config.seed, "traffic-simulation");
        let trajectories = traffic::simulate(&generated.plan, -generated.warmup_s, duration + period, TRAFFIC_STEP, &mut rng);
        let world = World::new(generated, trajectories, period, config.moving_speed_threshold);
        let mount = config.mount.pose();
        let sensor_from_base = mount.inverse();
        let occluders: Vec<Occluder> = EGO_BODY.iter().map(|(center, half)| Occluder { pose: sensor_from_base * Pose3::translation(center[0], center[1], center[2]), half: *half }).collect();
        let lidar = Lidar::new(config.lidar.model(), period, &occluders);
        let odometry = odometry::odometry(&world, &config.odometry, duration, config.seed);
        let odometry_per_scan = (config.odometry.rate_hz / config.scan_rate_hz).round() as usize;
        Ok(Simulator { config, world, lidar, mount, odometry, odometry_per_scan })
    }

    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    pub fn world(&self) -> &World {
        &self.world
    }

    pub fn lidar(&self) -> &Lidar {
        &self.lidar
    }

    /// `base_link → LiDAR`.
    pub fn mount(&self) -> &Pose3 {
        &self.mount
    }

    /// Number of scans.
    pub fn len(&self) -> usize {
        self.config.scans
    }

    pub fn is_empty(&self) -> bool {
        self.config.scans == 0
    }

    /// Odometry samples from the first scan to the end of the last sweep.
    pub fn odometry(&self) -> &[OdometrySample] {
        &self.odometry
    }

    /// First scan's stamp and the scan period, nanoseconds.
    pub fn start_ns(&self) -> i64 {
        (self.config.start_time_s * 1e9).round() as i64
    }

    pub fn period_ns(&self) -> i64 {
        (1e9 / self.config.scan_rate_hz).round() as i64
    }

    /// Stamp of a time since the first scan, nanoseconds since the epoch.
    pub fn stamp_of(&self, time_s: f64) -> i64 {
        self.start_ns() + (time_s * 1e9).round() as i64
    }

    /// Scan `index` (any order; each scan depends only on the configuration and its index).
    pub fn scan(&self, index: usize) -> Result<SimScan, SimError> {
        if index >= self.config.scans {
            return Err(SimError::NoSuchScan { index, len: self.config.scans });
        }
        let time_s = index as f64 * self.config.scan_period();
        let lidar_pose = self.world.ego_pose(time_s) * self.mount;
        let odom_pose = self.odometry[index * self.odometry_per_scan].pose * self.mount;
        let model = self.lidar.model();
        let snapshot = self.world.snapshot(time_s, lidar_pose.translation.vector, model.max_range_m + 5.0);
        let scene_from_lidar = self.world.scene_from_world() * lidar_pose;
        let cloud = self.lidar.measure(&snapshot, &scene_from_lidar, rng::hash2(self.config.seed, index as u64));
        Ok(SimScan { index, stamp_ns: self.start_ns() + index as i64 * self.period_ns(), time_s, cloud, lidar_pose, odom_pose })
    }

    /// All scans in order.
    pub fn scans(&self) -> impl Iterator<Item = Result<SimScan, SimError>> + '_ {
        (0..self.config.scans).map(|i| self.scan(i))
    }
}

/// Realism figures of one scan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScanStats {
    pub points: usize,
    pub moving_points: usize,
    /// Distinct moving objects with points within 30 m of the sensor.
    pub moving_objects_near: usize,
}

impl ScanStats {
    pub fn of(cloud: &PointCloud) -> ScanStats {
        let Some(labels) = &cloud.label else { return ScanStats { points: cloud.len(), moving_points: 0, moving_objects_near: 0 } };
        let mut near = BTreeSet::new();
        let mut moving_points = 0;
        for (i, &label) in labels.iter().enumerate() {
            if is_moving_label(label) {
                moving_points += 1;
                if cloud.x[i].hypot(cloud.y[i]) < 30.0 {
                    near.insert(label >> 16);
                }
            }
        }
        ScanStats { points: cloud.len(), moving_points, moving_objects_near: near.len() }
    }

    pub fn moving_fraction(&self) -> f64 {
        self.moving_points as f64 / self.points.max(1) as f64
    }
}

/// Realism figures of a sequence.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SequenceStats {
    pub scans: usize,
    pub points_min: usize,
    pub points_max: usize,
    pub points_total: usize,
    pub moving_fraction_min: f64,
    pub moving_fraction_max: f64,
    pub moving_points_total: usize,
    pub scans_without_moving: usize,
    pub scans_with_moving_near: usize,
}

impl SequenceStats {
    pub fn add(&mut self, s: &ScanStats) {
        let f = s.moving_fraction();
        if self.scans == 0 {
            self.points_min = s.points;
            self.moving_fraction_min = f;
        }
        self.scans += 1;
        self.points_min = self.points_min.min(s.points);
        self.points_max = self.points_max.max(s.points);
        self.points_total += s.points;
        self.moving_fraction_min = self.moving_fraction_min.min(f);
        self.moving_fraction_max = self.moving_fraction_max.max(f);
        self.moving_points_total += s.moving_points;
        self.scans_without_moving += usize::from(s.moving_points == 0);
        self.scans_with_moving_near += usize::from(s.moving_objects_near > 0);
    }

    pub fn merge(&mut self, other: &SequenceStats) {
        if other.scans == 0 {
            return;
        }
        if self.scans == 0 {
            *self = other.clone();
            return;
        }
        self.scans += other.scans;
        self.points_min = self.points_min.min(other.points_min);
        self.points_max = self.points_max.max(other.points_max);
        self.points_total += other.points_total;
        self.moving_fraction_min = self.moving_fraction_min.min(other.moving_fraction_min);
        self.moving_fraction_max = self.moving_fraction_max.max(other.moving_fraction_max);
        self.moving_points_total += other.moving_points_total;
        self.scans_without_moving += other.scans_without_moving;
        self.scans_with_moving_near += other.scans_with_moving_near;
    }

    pub fn mean_points(&self) -> f64 {
        self.points_total as f64 / self.scans.max(1) as f64
    }

    pub fn moving_fraction_mean(&self) -> f64 {
        self.moving_points_total as f64 / self.points_total.max(1) as f64
    }

    /// A few lines for people.
    pub fn describe(&self) -> String {
        let pct = |n: usize| 100.0 * n as f64 / self.scans.max(1) as f64;
        format!(
            "scans:               {}\npoints per scan:     {:.0} mean, {} min, {} max\nmoving points:       {:.2} % mean, {:.2} % min, {:.2} % max per scan\nscans with none:     {} ({:.0} %)\nmoving within 30 m:  {} scans ({:.0} %)\n",
            self.scans,
            self.mean_points(),
            self.points_min,
            self.points_max,
            100.0 * self.moving_fraction_mean(),
            100.0 * self.moving_fraction_min,
            100.0 * self.moving_fraction_max,
            self.scans_without_moving,
            pct(self.scans_without_moving),
            self.scans_with_moving_near,
            pct(self.scans_with_moving_near),
        )
    }
}

/// Throughput of the simulator.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchReport {
    pub preset: Preset,
    /// World generation and traffic simulation, seconds.
    pub setup_s: f64,
    pub scans: usize,
    /// Generating the scans (ray casting, labels), seconds.
    pub scan_s: f64,
    pub scans_per_s: f64,
    pub points_per_s: f64,
    pub mean_points: f64,
    pub threads: usize,
}

/// Generates `config.scans` scans in memory and measures how fast: the figure a training run that
/// simulates its data in-process sees.
pub fn bench(config: &SimConfig) -> Result<BenchReport, SimError> {
    let start = Instant::now();
    let sim = Simulator::new(config.clone())?;
    let setup_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut points = 0usize;
    for scan in sim.scans() {
        points += scan?.cloud.len();
    }
    let scan_s = start.elapsed().as_secs_f64().max(1e-9);
    Ok(BenchReport {
        preset: config.preset,
        setup_s,
        scans: config.scans,
        scan_s,
        scans_per_s: config.scans as f64 / scan_s,
        points_per_s: points as f64 / scan_s,
        mean_points: points as f64 / config.scans.max(1) as f64,
        threads: rayon::current_num_threads(),
    })
}

/// How far the ego drives during the sequence (true trajectory, sampled at the scans), metres.
pub fn path_length(sim: &Simulator) -> f64 {
    let mut length = 0.0;
    let mut last: Option<Vector3<f64>> = None;
    for i in 0..sim.len() {
        let p = sim.world().ego_pose(i as f64 * sim.config().scan_period()).translation.vector;
        if let Some(q) = last {
            length += (p - q).norm();
        }
        last = Some(p);
    }
    length
}
