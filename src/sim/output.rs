//! Writing simulated runs: SemanticKITTI sequences, rosbag2 bags and train/valid/test splits.
//!
//! A sequence is `ROOT/sequences/NN/` with `velodyne/NNNNNN.bin` (x, y, z, remission as float32),
//! `labels/NNNNNN.label` (uint32), `times.txt`, `calib.txt` (KITTI odometry sequences 00–02's `Tr`,
//! Velodyne → camera 0) and `poses.txt` in the camera-0 convention, relative to the first scan, so
//! that [`crate::dataset::KittiSequence::lidar_pose`] returns the LiDAR pose relative to the first
//! scan. poses.txt holds the true poses, or the odometry's when asked ([`KittiPoses::Odometry`]).
//!
//! A bag has the clouds in the Velodyne driver layout (`x y z intensity ring time` plus the ground
//! truth in a `label` field) stamped at the sweep's start and recorded when the sweep ends,
//! `nav_msgs/Odometry` and `/tf` (`odom → base_link`) at the odometry rate, and `/tf_static`
//! (`base_link → velodyne`, latched), so that the LiDAR pose is `odom → base_link ∘ base_link →
//! velodyne` at each cloud's stamp.

use super::config::{Preset, SimConfig};
use super::{ScanStats, SequenceStats, SimError, SimScan, Simulator};
use crate::bag::{BagWriter, Qos, WriterOptions};
use crate::cloud;
use crate::config::TopicConfig;
use crate::dataset::semantic_kitti::{self, write_atomic};
use crate::geometry::{matrix_from_kitti_row, pose_to_msg, transform_to_msg};
use crate::messages::{Header, Odometry, PointCloud2, PoseWithCovariance, TfMessage, Time, TransformStamped, Twist, TwistWithCovariance, Vector3};
use nalgebra::Matrix4;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// `Tr` (Velodyne → camera 0) of KITTI odometry sequences 00–02.
pub const KITTI_TR: [f64; 12] = [
    4.276802385584e-04, -9.999672484946e-01, -8.084491683471e-03, -1.198459927713e-02, //
    -7.210626507497e-03, 8.081198471645e-03, -9.999413164504e-01, -5.403984729748e-02, //
    9.999738645903e-01, 4.859485810390e-04, -7.206933692422e-03, -2.921968648686e-01,
];

pub const ODOM_FRAME: &str = "odom";
pub const BASE_FRAME: &str = "base_link";
pub const LIDAR_FRAME: &str = "velodyne";

/// Which poses go into poses.txt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KittiPoses {
    True,
    Odometry,
}

/// Where and how to write a SemanticKITTI sequence.
#[derive(Debug, Clone)]
pub struct KittiTarget {
    pub root: PathBuf,
    /// Two-digit id, e.g. `00`.
    pub sequence: String,
    pub poses: KittiPoses,
}

impl KittiTarget {
    pub fn dir(&self) -> PathBuf {
        self.root.join("sequences").join(&self.sequence)
    }
}

/// Where and how to write a bag.
#[derive(Debug, Clone)]
pub struct BagTarget {
    pub path: PathBuf,
    pub writer: WriterOptions,
    pub topics: TopicConfig,
}

/// Writes the simulation to a SemanticKITTI sequence, a bag, or both in one pass (each scan is
/// generated once). `progress` sees every scan; `interrupted` is polled between scans (the bag is
/// finalised either way).
pub fn export(sim: &Simulator, kitti: Option<&KittiTarget>, bag: Option<&BagTarget>, progress: &mut dyn FnMut(&SimScan), interrupted: &dyn Fn() -> bool) -> Result<SequenceStats, SimError> {
    let tr = matrix_from_kitti_row(&KITTI_TR);
    let mut bag_state = match bag {
        Some(target) => Some(BagState::open(sim, target)?),
        None => None,
    };
    let mut stats = SequenceStats::default();
    let mut poses: Vec<Matrix4<f64>> = Vec::with_capacity(sim.len());
    let mut times = String::new();
    for index in 0..sim.len() {
        if interrupted() {
            if let Some(state) = &mut bag_state {
                state.writer.finish()?;
            }
            return Err(SimError::Interrupted);
        }
        let scan = sim.scan(index)?;
        stats.add(&ScanStats::of(&scan.cloud));
        if let Some(target) = kitti {
            let dir = target.dir();
            let name = format!("{index:06}");
            semantic_kitti::write_bin(&dir.join("velodyne").join(format!("{name}.bin")), &scan.cloud)?;
            if let Some(labels) = &scan.cloud.label {
                semantic_kitti::write_label_file(&dir.join("labels").join(format!("{name}.label")), labels)?;
            }
            poses.push(match target.poses {
                KittiPoses::True => scan.lidar_pose.to_homogeneous(),
                KittiPoses::Odometry => scan.odom_pose.to_homogeneous(),
            });
            times.push_str(&format!("{:.6e}\n", scan.time_s));
        }
        if let Some(state) = &mut bag_state {
            state.write_scan(sim, &scan)?;
        }
        progress(&scan);
    }
    if let Some(target) = kitti {
        let dir = target.dir();
        let first_inverse = poses.first().and_then(|p| p.try_inverse()).unwrap_or_else(Matrix4::identity);
        let relative: Vec<Matrix4<f64>> = poses.iter().map(|p| first_inverse * p).collect();
        semantic_kitti::write_poses(&dir.join("poses.txt"), &semantic_kitti::camera_frame_poses(&relative, &tr))?;
        semantic_kitti::write_calib(&dir.join("calib.txt"), &tr)?;
        write_atomic(&dir.join("times.txt"), times.as_bytes())?;
    }
    if let Some(mut state) = bag_state {
        state.finish(sim)?;
    }
    Ok(stats)
}

/// Writes the simulation as `root/sequences/<sequence>/`.
pub fn write_kitti_sequence(sim: &Simulator, root: &Path, sequence: &str, poses: KittiPoses) -> Result<SequenceStats, SimError> {
    let target = KittiTarget { root: root.to_path_buf(), sequence: sequence.to_string(), poses };
    export(sim, Some(&target), None, &mut |_| {}, &|| false)
}

/// Writes the simulation as a bag.
pub fn write_bag(sim: &Simulator, path: &Path, writer: WriterOptions) -> Result<SequenceStats, SimError> {
    let target = BagTarget { path: path.to_path_buf(), writer, topics: TopicConfig::default() };
    export(sim, None, Some(&target), &mut |_| {}, &|| false)
}

/// A bag being written, with the odometry messages not yet written.
struct BagState {
    writer: BagWriter,
    cloud: crate::bag::TopicHandle,
    odom: crate::bag::TopicHandle,
    tf: crate::bag::TopicHandle,
    next_odometry: usize,
}

/// Delay from a cloud's stamp (sweep start) to its arrival: the sweep plus the driver's latency.
const CLOUD_LATENCY_NS: i64 = 4_000_000;
/// Delay from an odometry stamp to its arrival.
const ODOMETRY_LATENCY_NS: i64 = 1_000_000;

impl BagState {
    fn open(sim: &Simulator, target: &BagTarget) -> Result<BagState, SimError> {
        let mut writer = BagWriter::create(&target.path, target.writer.clone())?;
        let cloud = writer.add_topic::<PointCloud2>(&target.topics.lidar, Qos::SENSOR_DATA)?;
        let odom = writer.add_topic::<Odometry>(&target.topics.odometry, Qos::RELIABLE)?;
        let tf = writer.add_topic::<TfMessage>(&target.topics.tf, Qos::RELIABLE)?;
        let tf_static = writer.add_topic::<TfMessage>(&target.topics.tf_static, Qos::LATCHED)?;
        let stamp = Time::from_nanos(sim.start_ns());
        let mount = TfMessage {
            transforms: vec![TransformStamped { header: Header { stamp, frame_id: BASE_FRAME.into() }, child_frame_id: LIDAR_FRAME.into(), transform: transform_to_msg(sim.mount()) }],
        };
        writer.write(tf_static, sim.start_ns(), &mount)?;
        Ok(BagState { writer, cloud, odom, tf, next_odometry: 0 })
    }

    /// Writes odometry up to `until_ns` (arrival time), in order.
    fn write_odometry(&mut self, sim: &Simulator, until_ns: i64) -> Result<(), SimError> {
        let noisy = sim.config().odometry.noise;
        // variances: what the noise model accumulates per second, or a token value without noise
        let (position_var, yaw_var) = if noisy { (0.05, 0.002) } else { (1e-6, 1e-8) };
        while let Some(sample) = sim.odometry().get(self.next_odometry) {
            let stamp_ns = sim.stamp_of(sample.time);
            if stamp_ns + ODOMETRY_LATENCY_NS > until_ns {
                break;
            }
            let header = Header { stamp: Time::from_nanos(stamp_ns), frame_id: ODOM_FRAME.into() };
            let mut pose_cov = [0.0; 36];
            let mut twist_cov = [0.0; 36];
            for (i, v) in [position_var, position_var, position_var, yaw_var, yaw_var, yaw_var].into_iter().enumerate() {
                pose_cov[i * 7] = v;
                twist_cov[i * 7] = v * 0.1;
            }
            let odometry = Odometry {
                header: header.clone(),
                child_frame_id: BASE_FRAME.into(),
                pose: PoseWithCovariance { pose: pose_to_msg(&sample.pose), covariance: pose_cov },
                twist: TwistWithCovariance {
                    twist: Twist { linear: Vector3 { x: sample.linear.x, y: sample.linear.y, z: sample.linear.z }, angular: Vector3 { x: 0.0, y: 0.0, z: sample.yaw_rate } },
                    covariance: twist_cov,
                },
            };
            let tf = TfMessage { transforms: vec![TransformStamped { header, child_frame_id: BASE_FRAME.into(), transform: transform_to_msg(&sample.pose) }] };
            let arrival = stamp_ns + ODOMETRY_LATENCY_NS;
            self.writer.write(self.odom, arrival, &odometry)?;
            self.writer.write(self.tf, arrival, &tf)?;
            self.next_odometry += 1;
        }
        Ok(())
    }

    fn write_scan(&mut self, sim: &Simulator, scan: &SimScan) -> Result<(), SimError> {
        let arrival = scan.stamp_ns + sim.period_ns() + CLOUD_LATENCY_NS;
        self.write_odometry(sim, arrival)?;
        let message = cloud::encode_velodyne(Header { stamp: Time::from_nanos(scan.stamp_ns), frame_id: LIDAR_FRAME.into() }, &scan.cloud);
        self.writer.write(self.cloud, arrival, &message)?;
        Ok(())
    }

    fn finish(&mut self, sim: &Simulator) -> Result<(), SimError> {
        self.write_odometry(sim, i64::MAX)?;
        self.writer.finish()?;
        Ok(())
    }
}

/// How many sequences of each split, and which presets they cycle through.
#[derive(Debug, Clone)]
pub struct SplitPlan {
    pub train: usize,
    pub valid: usize,
    pub test: usize,
    pub presets: Vec<Preset>,
    /// Sequence i gets seed `base_seed + i`.
    pub base_seed: u64,
}

/// One sequence of a split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitEntry {
    pub sequence: String,
    pub split: String,
    pub preset: Preset,
    pub seed: u64,
    pub scans: usize,
}

/// `split.yaml`: sequence ids per split (as KDMOS/MotionBEV configs list them) and how each
/// sequence was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitManifest {
    pub train: Vec<u32>,
    pub valid: Vec<u32>,
    pub test: Vec<u32>,
    pub sequences: Vec<SplitEntry>,
}

impl SplitPlan {
    /// The sequences of the split, numbered from 00: train first, then valid, then test.
    pub fn manifest(&self, scans: usize) -> Result<SplitManifest, SimError> {
        if self.presets.is_empty() {
            return Err(SimError::Config { parameter: "presets".into(), reason: "at least one preset is needed".into() });
        }
        let total = self.train + self.valid + self.test;
        if total == 0 || total > 100 {
            return Err(SimError::Config { parameter: "split".into(), reason: format!("{total} sequences (1 to 100 are possible)") });
        }
        let mut manifest = SplitManifest { train: Vec::new(), valid: Vec::new(), test: Vec::new(), sequences: Vec::new() };
        for i in 0..total {
            let split = if i < self.train {
                "train"
            } else if i < self.train + self.valid {
                "valid"
            } else {
                "test"
            };
            match split {
                "train" => manifest.train.push(i as u32),
                "valid" => manifest.valid.push(i as u32),
                _ => manifest.test.push(i as u32),
            }
            manifest.sequences.push(SplitEntry {
                sequence: format!("{i:02}"),
                split: split.into(),
                preset: self.presets[i % self.presets.len()],
                seed: self.base_seed.wrapping_add(i as u64),
                scans,
            });
        }
        Ok(manifest)
    }
}

/// Writes every sequence of a split under `root` (with `base` as the configuration apart from
/// preset and seed) and `root/split.yaml`. `progress(entry, stats)` is told when a sequence is done.
pub fn write_split(root: &Path, base: &SimConfig, plan: &SplitPlan, poses: KittiPoses, progress: &mut dyn FnMut(&SplitEntry, &SequenceStats), interrupted: &dyn Fn() -> bool) -> Result<SplitManifest, SimError> {
    let manifest = plan.manifest(base.scans)?;
    for entry in &manifest.sequences {
        let config = SimConfig { preset: entry.preset, seed: entry.seed, ..base.clone() };
        let sim = Simulator::new(config)?;
        let target = KittiTarget { root: root.to_path_buf(), sequence: entry.sequence.clone(), poses };
        let stats = export(&sim, Some(&target), None, &mut |_| {}, interrupted)?;
        progress(entry, &stats);
    }
    let yaml = serde_yaml::to_string(&manifest).map_err(|e| SimError::Output { path: root.join("split.yaml").display().to_string(), reason: e.to_string() })?;
    let text = format!("# kdseg simulated dataset: sequence ids per split, and the preset and seed of each sequence\n{yaml}");
    write_atomic(&root.join("split.yaml"), text.as_bytes())?;
    Ok(manifest)
}
