//! Online moving-object segmentation from serialised messages: what the ROS node does with each
//! message, without ROS, so that it can be used and tested from the library.
//!
//! Inputs are CDR payloads (clouds, odometry, TF); outputs are messages to publish. The pipeline
//! counts everything users ask about in diagnostics: received, processed and dropped scans,
//! malformed messages, pose-lookup failures, time jumps, processing time against a threshold and
//! consecutive overruns, device and GPU memory.

use crate::cloud::{self, PointCloud};
use crate::config::{Config, PoseSource};
use crate::geometry::{PoseError, PoseInsert, PoseTracker};
use crate::messages::{self, DiagnosticArray, DiagnosticStatus, Header, KeyValue, Odometry, PointCloud2Ref, TfMessage, Time};
use crate::mos::outputs::{self, MosOutputs, Wanted};
use crate::mos::{EngineError, MosEngine, ScanInput, StageTimings};
use nalgebra::Matrix4;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum OnlineError {
    #[error("malformed {what}: {reason}")]
    Malformed { what: String, reason: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Counters reported in diagnostics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OnlineStats {
    pub received: u64,
    pub processed: u64,
    /// Scans replaced by a newer one before the worker could take them.
    pub dropped: u64,
    pub malformed: u64,
    pub pose_failures: u64,
    pub engine_errors: u64,
    pub time_jumps: u64,
    pub dropped_nonfinite_points: u64,
    pub last_processing_ms: f64,
    pub max_processing_ms: f64,
    pub consecutive_overruns: u32,
    pub last_latency_ms: f64,
    /// Node time around the engine for the last scan: taking the cloud to the last publish, less
    /// inference and less waiting for its pose.
    pub last_overhead_ms: f64,
    pub max_overhead_ms: f64,
    /// How long the last cloud waited for the busy worker, and for its pose.
    pub last_queue_wait_ms: f64,
    pub last_pose_wait_ms: f64,
}

/// A decoded scan waiting for its pose.
pub struct DecodedScan {
    pub header: Header,
    pub cloud: PointCloud,
}

/// One segmented scan, ready to publish.
pub struct Segmented {
    pub header: Header,
    pub outputs: MosOutputs,
    /// Engine time for this scan, milliseconds.
    pub processing_ms: f64,
    /// The engine's stage timings for this scan (per stage only when it synchronises between them).
    pub timings: StageTimings,
    pub complete: bool,
}

/// Outcome of a pose lookup for a scan.
pub enum PoseStatus {
    Ready(Matrix4<f64>),
    /// The pose may still arrive (newer messages needed).
    Wait(PoseError),
    Failed(PoseError),
}

/// Where pose messages go: shareable with the threads that receive them, so that odometry and TF
/// keep flowing while the engine is busy with a scan.
#[derive(Clone)]
pub struct PoseInbox {
    source: PoseSource,
    poses: Arc<Mutex<PoseTracker>>,
    /// Set when time went backwards; the pipeline resets its history before the next scan.
    jumped: Arc<AtomicBool>,
    jump: Arc<Mutex<Option<(i64, i64)>>>,
    malformed: Arc<AtomicU64>,
}

impl PoseInbox {
    fn new(config: &Config) -> Self {
        PoseInbox {
            source: config.pose.source,
            poses: Arc::new(Mutex::new(PoseTracker::new(config.pose.source, config.frames.clone(), config.pose.buffer()))),
            jumped: Arc::new(AtomicBool::new(false)),
            jump: Arc::new(Mutex::new(None)),
            malformed: Arc::new(AtomicU64::new(0)),
        }
    }

    fn tracker(&self) -> std::sync::MutexGuard<'_, PoseTracker> {
        // a panic while holding the lock cannot leave the tracker half-updated in a harmful way
        self.poses.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn note(&self, insert: PoseInsert) {
        if let PoseInsert::TimeJumpedBack { from_ns, to_ns } = insert {
            *self.jump.lock().unwrap_or_else(|e| e.into_inner()) = Some((from_ns, to_ns));
            self.jumped.store(true, Ordering::SeqCst);
        }
    }

    /// A `nav_msgs/Odometry` payload (ignored unless poses come from odometry).
    pub fn on_odometry(&self, cdr: &[u8]) -> Result<(), OnlineError> {
        if self.source != PoseSource::Odometry {
            return Ok(());
        }
        let odom: Odometry = messages::decode(cdr).map_err(|e| {
            self.malformed.fetch_add(1, Ordering::Relaxed);
            OnlineError::Malformed { what: "odometry".into(), reason: e.to_string() }
        })?;
        let insert = self.tracker().on_odometry(&odom);
        self.note(insert);
        Ok(())
    }

    /// A `tf2_msgs/TFMessage` payload from `/tf` or `/tf_static`.
    pub fn on_tf(&self, cdr: &[u8], is_static: bool) -> Result<(), OnlineError> {
        let tf: TfMessage = messages::decode(cdr).map_err(|e| {
            self.malformed.fetch_add(1, Ordering::Relaxed);
            OnlineError::Malformed { what: if is_static { "/tf_static" } else { "/tf" }.into(), reason: e.to_string() }
        })?;
        let insert = self.tracker().on_tf(&tf, is_static);
        self.note(insert);
        Ok(())
    }
}

pub struct OnlineMos {
    config: Config,
    engine: MosEngine,
    poses: PoseInbox,
    stats: OnlineStats,
    next_id: u64,
    last_stamp: Option<i64>,
    waiting_for_labels: HashMap<u64, DecodedScan>,
    time_jump_logged: bool,
    /// Allocations of earlier scans (decoded clouds, labelled points) for the next ones: a stream
    /// of fresh megabytes costs page faults that take longer than decoding and encoding.
    spare_clouds: Vec<PointCloud>,
    spare_buffers: Vec<Vec<u8>>,
}

/// Spare allocations kept (a few scans' worth).
const SPARES: usize = 2;

impl OnlineMos {
    pub fn new(config: Config) -> Result<Self, EngineError> {
        let engine = MosEngine::new(&config.mos)?;
        Ok(Self::with_engine(config, engine))
    }

    pub fn with_engine(config: Config, engine: MosEngine) -> Self {
        let poses = PoseInbox::new(&config);
        OnlineMos {
            config,
            engine,
            poses,
            stats: OnlineStats::default(),
            next_id: 0,
            last_stamp: None,
            waiting_for_labels: HashMap::new(),
            time_jump_logged: false,
            spare_clouds: Vec::new(),
            spare_buffers: Vec::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn engine(&self) -> &MosEngine {
        &self.engine
    }

    /// The engine, to reset its history or time its stages (benchmarks).
    pub fn engine_mut(&mut self) -> &mut MosEngine {
        &mut self.engine
    }

    /// Counters, including malformed pose messages seen by the inbox.
    pub fn stats(&self) -> OnlineStats {
        let mut s = self.stats.clone();
        s.malformed += self.poses.malformed.load(Ordering::Relaxed);
        s
    }

    /// A handle for the threads that receive pose messages.
    pub fn pose_inbox(&self) -> PoseInbox {
        self.poses.clone()
    }

    pub fn record_drop(&mut self) {
        self.stats.dropped += 1;
    }

    pub fn record_malformed(&mut self) {
        self.stats.malformed += 1;
    }

    pub fn record_pose_failure(&mut self) {
        self.stats.pose_failures += 1;
    }

    pub fn record_latency(&mut self, ms: f64) {
        self.stats.last_latency_ms = ms;
    }

    pub fn record_overhead(&mut self, overhead_ms: f64, queue_wait_ms: f64, pose_wait_ms: f64) {
        self.stats.last_overhead_ms = overhead_ms;
        self.stats.max_overhead_ms = self.stats.max_overhead_ms.max(overhead_ms);
        self.stats.last_queue_wait_ms = queue_wait_ms;
        self.stats.last_pose_wait_ms = pose_wait_ms;
    }

    fn time_jumped(&mut self, from_ns: i64, to_ns: i64) {
        self.stats.time_jumps += 1;
        if !self.time_jump_logged {
            log::warn!("time went backwards ({:.3} s → {:.3} s, a looped bag?): clearing the scan history", from_ns as f64 * 1e-9, to_ns as f64 * 1e-9);
            self.time_jump_logged = true;
        }
        self.reset();
    }

    /// Forgets the scan and pose history, as when a new drive starts.
    pub fn reset(&mut self) {
        self.engine.reset();
        self.poses.tracker().reset();
        self.poses.jumped.store(false, Ordering::SeqCst);
        self.waiting_for_labels.clear();
        self.last_stamp = None;
    }

    /// Handles a time jump reported by the pose inbox since the last scan.
    fn check_pose_jump(&mut self) {
        if self.poses.jumped.swap(false, Ordering::SeqCst) {
            let jump = self.poses.jump.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some((from, to)) = jump {
                self.time_jumped(from, to);
            }
        }
    }

    pub fn on_odometry(&mut self, cdr: &[u8]) -> Result<(), OnlineError> {
        self.poses.on_odometry(cdr)
    }

    pub fn on_tf(&mut self, cdr: &[u8], is_static: bool) -> Result<(), OnlineError> {
        self.poses.on_tf(cdr, is_static)
    }

    fn malformed(&mut self, what: &str, reason: String) -> OnlineError {
        self.stats.malformed += 1;
        OnlineError::Malformed { what: what.to_string(), reason }
    }

    /// Decodes a cloud (counted as received; a malformed one is counted and reported).
    pub fn decode_cloud(&mut self, cdr: &[u8]) -> Result<DecodedScan, OnlineError> {
        self.stats.received += 1;
        let msg: PointCloud2Ref = messages::decode(cdr).map_err(|e| self.malformed("PointCloud2", e.to_string()))?;
        let mut cloud = self.spare_clouds.pop().unwrap_or_default();
        let report = cloud::decode_into(&msg, &self.config.cloud, &mut cloud).map_err(|e| self.malformed("PointCloud2", e.to_string()))?;
        self.stats.dropped_nonfinite_points += report.dropped_nonfinite as u64;
        Ok(DecodedScan { header: msg.header.clone(), cloud })
    }

    /// The LiDAR pose of a scan, or whether it is worth waiting for.
    pub fn pose(&self, scan: &DecodedScan) -> PoseStatus {
        match self.poses.tracker().lidar_pose(&scan.header.frame_id, scan.header.stamp.to_nanos()) {
            Ok(p) => PoseStatus::Ready(p.to_homogeneous()),
            Err(e) if e.may_resolve_later() => PoseStatus::Wait(e),
            Err(e) => PoseStatus::Failed(e),
        }
    }

    /// Runs the engine on a scan with its pose; returns the scans whose labels became ready.
    pub fn segment(&mut self, scan: DecodedScan, pose: Matrix4<f64>, wanted: Wanted) -> Result<Vec<Segmented>, OnlineError> {
        self.check_pose_jump();
        let stamp = scan.header.stamp.to_nanos();
        if let Some(last) = self.last_stamp {
            if (last - stamp) as f64 * 1e-9 > self.config.pose.backward_jump_s {
                self.time_jumped(last, stamp);
            }
        }
        self.last_stamp = Some(stamp);
        let id = self.next_id;
        self.next_id += 1;
        let start = Instant::now();
        let results = match self.engine.process(ScanInput { id, stamp_ns: stamp, cloud: &scan.cloud, pose }) {
            Ok(r) => r,
            Err(e) => {
                self.stats.engine_errors += 1;
                return Err(e.into());
            }
        };
        self.waiting_for_labels.insert(id, scan);
        let ms = start.elapsed().as_secs_f64() * 1e3;
        self.stats.last_processing_ms = ms;
        self.stats.max_processing_ms = self.stats.max_processing_ms.max(ms);
        if ms > self.config.node.max_processing_ms {
            self.stats.consecutive_overruns += 1;
        } else {
            self.stats.consecutive_overruns = 0;
        }
        let variant = self.engine.network().config.variant;
        let mut done = Vec::with_capacity(results.len());
        for result in results {
            let Some(scan) = self.waiting_for_labels.remove(&result.id) else { continue };
            self.stats.processed += 1;
            let buffer = self.spare_buffers.pop().unwrap_or_default();
            let outputs = outputs::encode_reusing(&scan.header, &scan.cloud, &result, variant, wanted, buffer);
            if self.spare_clouds.len() < SPARES {
                self.spare_clouds.push(scan.cloud);
            }
            done.push(Segmented { header: scan.header, outputs, processing_ms: ms, timings: result.timings, complete: result.complete });
        }
        Ok(done)
    }

    /// Takes back the outputs of a published scan, to reuse their allocation.
    pub fn recycle(&mut self, outputs: MosOutputs) {
        if self.spare_buffers.len() < SPARES {
            self.spare_buffers.push(outputs.labelled.data);
        }
    }

    /// The diagnostics to publish on `/diagnostics`.
    pub fn diagnostics(&self, stamp: Time) -> DiagnosticArray {
        let stats = self.stats();
        let s = &stats;
        let node = &self.config.node;
        let kv = |k: &str, v: String| KeyValue { key: k.into(), value: v };
        let status = |level: u8, name: &str, message: String, values: Vec<KeyValue>| DiagnosticStatus { level, name: format!("kdseg: {name}"), message, hardware_id: node.hardware_id.clone(), values };
        let timing_level = if s.consecutive_overruns >= node.max_consecutive_overruns {
            DiagnosticStatus::ERROR
        } else if s.consecutive_overruns > 0 {
            DiagnosticStatus::WARN
        } else {
            DiagnosticStatus::OK
        };
        let device = self.engine.device();
        let mut device_values = vec![
            kv("device", format!("{device:?}")),
            kv("motion_features", self.engine.motion_mode().to_string()),
            kv("network", format!("{:?}", self.engine.network().config.variant)),
            kv("weights", self.config.mos.weights.display().to_string()),
            kv("precision", self.config.mos.precision.to_string()),
        ];
        if let Some(m) = crate::gpu::memory_stats(device) {
            device_values.push(kv("gpu_memory_allocated_mb", format!("{:.1}", m.allocated as f64 / 1048576.0)));
            device_values.push(kv("gpu_memory_peak_mb", format!("{:.1}", m.peak_allocated as f64 / 1048576.0)));
            device_values.push(kv("gpu_memory_reserved_mb", format!("{:.1}", m.reserved as f64 / 1048576.0)));
        }
        DiagnosticArray {
            header: Header { stamp, frame_id: String::new() },
            status: vec![
                status(
                    timing_level,
                    "processing time",
                    format!("{:.1} ms (threshold {:.1} ms)", s.last_processing_ms, node.max_processing_ms),
                    vec![
                        kv("last_ms", format!("{:.3}", s.last_processing_ms)),
                        kv("max_ms", format!("{:.3}", s.max_processing_ms)),
                        kv("threshold_ms", format!("{:.3}", node.max_processing_ms)),
                        kv("consecutive_overruns", s.consecutive_overruns.to_string()),
                        kv("pipeline_latency_ms", format!("{:.3}", s.last_latency_ms)),
                        kv("node_overhead_ms", format!("{:.3}", s.last_overhead_ms)),
                        kv("max_node_overhead_ms", format!("{:.3}", s.max_overhead_ms)),
                        kv("queue_wait_ms", format!("{:.3}", s.last_queue_wait_ms)),
                        kv("pose_wait_ms", format!("{:.3}", s.last_pose_wait_ms)),
                    ],
                ),
                status(
                    if s.dropped > 0 || s.malformed > 0 { DiagnosticStatus::WARN } else { DiagnosticStatus::OK },
                    "input",
                    format!("{} received, {} processed, {} dropped, {} malformed", s.received, s.processed, s.dropped, s.malformed),
                    vec![
                        kv("received", s.received.to_string()),
                        kv("processed", s.processed.to_string()),
                        kv("dropped_scans", s.dropped.to_string()),
                        kv("malformed_messages", s.malformed.to_string()),
                        kv("non_finite_points", s.dropped_nonfinite_points.to_string()),
                        kv("time_jumps", s.time_jumps.to_string()),
                        kv("engine_errors", s.engine_errors.to_string()),
                    ],
                ),
                status(
                    if s.pose_failures > 0 { DiagnosticStatus::WARN } else { DiagnosticStatus::OK },
                    "pose",
                    format!("{} pose-lookup failures ({:?})", s.pose_failures, self.config.pose.source),
                    vec![kv("pose_lookup_failures", s.pose_failures.to_string()), kv("source", format!("{:?}", self.config.pose.source)), kv("fixed_frame", self.config.frames.fixed.clone())],
                ),
                status(DiagnosticStatus::OK, "device", format!("{device:?}"), device_values),
            ],
        }
    }
}
