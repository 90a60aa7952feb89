//! Bag replay: every LiDAR scan of a bag, in order, through the MOS engine, deterministically, with
//! the labelled results written to a new bag next to the inputs they came from.
//!
//! Unlike `ros2 bag play` into a node, nothing is dropped: each cloud waits (in bag order) for the pose
//! messages that bracket its stamp, then goes through the engine. Outputs are stamped with the scan
//! they belong to (reference mode emits them 7 scans later) and logged at the bag time they became
//! available. Clouds that carry a `label` field are scored with the official moving-IoU rules.

use crate::bag::{Bag, BagError, BagMessage, BagWriter, Qos, TopicHandle, WriterOptions};
use crate::cloud::{self, FieldMapping, PointCloud};
use crate::config::{Config, OutputConfig, PoseSource};
use crate::evaluation::{MosConfusion, MosScores};
use crate::geometry::{PoseInsert, PoseTracker};
use crate::messages::{self, Header, Odometry, PointCloud2, PointCloud2Ref, PointLabels, TfMessage};
use crate::mos::outputs::Wanted;
use crate::mos::{EngineError, MosEngine, ScanInput, ScanResult};
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ReplayError {
    #[error(transparent)]
    Bag(#[from] BagError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{0}")]
    Input(String),
    #[error("interrupted after {0} scans (the output bag was finalised)")]
    Interrupted(usize),
}

/// Counts and scores of a replay.
#[derive(Debug, Clone, Default)]
pub struct ReplaySummary {
    pub clouds: usize,
    pub segmented: usize,
    pub skipped_no_pose: usize,
    pub malformed: usize,
    pub dropped_nonfinite_points: usize,
    pub time_jumps: usize,
    /// Moving IoU over all segmented scans, when the clouds carry ground truth.
    pub scores: Option<MosScores>,
    pub confusion: Option<MosConfusion>,
    /// Mean engine time per scan, milliseconds.
    pub mean_scan_ms: f64,
}

/// A cloud waiting for its pose, then for its labels.
struct PendingCloud {
    id: u64,
    header: Header,
    cloud: PointCloud,
    log_time: i64,
}

struct Outputs {
    labelled: TopicHandle,
    moving: TopicHandle,
    statik: TopicHandle,
    labels: TopicHandle,
}

/// Replays `bag` through `engine` into `out`.
pub fn replay(bag: &Bag, out: &Path, config: &Config, engine: &mut MosEngine, writer_options: WriterOptions, interrupted: &dyn Fn() -> bool) -> Result<ReplaySummary, ReplayError> {
    let topics = &config.topics;
    if bag.topic(&topics.lidar).is_none() {
        return Err(ReplayError::Input(format!(
            "{}: no LiDAR topic {} (topics: {}); set topics.lidar or --lidar-topic",
            bag.path().display(),
            topics.lidar,
            bag.topics().iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    let mut writer = BagWriter::create(out, writer_options)?;
    // copy the inputs, so a viewer shows them next to the results
    let mut copies: HashMap<String, TopicHandle> = HashMap::new();
    for t in bag.topics() {
        match messages::schema::definition_by_name(&t.type_name) {
            Some((definition, hash)) => {
                let handle = writer.add_topic_raw(&t.name, &t.type_name, &definition, hash, t.qos.unwrap_or(Qos::RELIABLE))?;
                copies.insert(t.name.clone(), handle);
            }
            None => log::warn!("not copying {} ({}): kdseg has no schema for that type", t.name, t.type_name),
        }
    }
    let topic = |name: &str| OutputConfig::resolve(name, "kdseg");
    let outputs = Outputs {
        labelled: writer.add_topic::<PointCloud2>(&topic(&config.outputs.labelled_points), Qos::RELIABLE)?,
        moving: writer.add_topic::<PointCloud2>(&topic(&config.outputs.moving_points), Qos::RELIABLE)?,
        statik: writer.add_topic::<PointCloud2>(&topic(&config.outputs.static_points), Qos::RELIABLE)?,
        labels: writer.add_topic::<PointLabels>(&topic(&config.outputs.point_labels), Qos::RELIABLE)?,
    };
    let mut tracker = PoseTracker::new(config.pose.source, config.frames.clone(), config.pose.buffer());
    let mut summary = ReplaySummary::default();
    let mut waiting_for_pose: VecDeque<PendingCloud> = VecDeque::new();
    let mut waiting_for_labels: HashMap<u64, PendingCloud> = HashMap::new();
    let mut confusion = MosConfusion::default();
    let mut has_ground_truth = false;
    let mut scan_ms = 0.0;
    let mut next_id = 0u64;
    let mut decoded = PointCloud::default();
    let variant = engine.network().config.variant;

    let mut handle_results = |results: Vec<ScanResult>,
                              log_time: i64,
                              waiting_for_labels: &mut HashMap<u64, PendingCloud>,
                              writer: &mut BagWriter,
                              confusion: &mut MosConfusion,
                              summary: &mut ReplaySummary|
     -> Result<(), ReplayError> {
        for result in results {
            let Some(pending) = waiting_for_labels.remove(&result.id) else { continue };
            summary.segmented += 1;
            scan_ms += result.timings.total_ms;
            if let Some(gt) = &pending.cloud.label {
                confusion.add(&result.labels, gt);
            }
            write_result(writer, &outputs, &pending, &result, variant, log_time.max(pending.log_time))?;
        }
        Ok(())
    };

    for message in bag.messages()? {
        if interrupted() {
            writer.finish()?;
            return Err(ReplayError::Interrupted(summary.segmented));
        }
        let message = message?;
        if let Some(&handle) = copies.get(&*message.topic) {
            writer.write_raw(handle, message.log_time, &message.data)?;
        }
        let jumped = if *message.topic == *topics.lidar {
            summary.clouds += 1;
            match decode_cloud(&message, &config.cloud, &mut decoded) {
                Ok((header, dropped)) => {
                    summary.dropped_nonfinite_points += dropped;
                    has_ground_truth |= decoded.label.is_some();
                    waiting_for_pose.push_back(PendingCloud { id: next_id, header, cloud: std::mem::take(&mut decoded), log_time: message.log_time });
                    next_id += 1;
                }
                Err(e) => {
                    summary.malformed += 1;
                    log::warn!("skipping cloud: {e}");
                }
            }
            false
        } else {
            update_poses(&mut tracker, config, &message)?
        };
        if jumped {
            log::warn!("time went backwards at bag time {} ns (a looped recording?): clearing the scan history", message.log_time);
            summary.time_jumps += 1;
            let results = engine.flush()?;
            handle_results(results, message.log_time, &mut waiting_for_labels, &mut writer, &mut confusion, &mut summary)?;
            engine.reset();
        }
        // segment every cloud whose pose is known (or will never be)
        while let Some(front) = waiting_for_pose.front() {
            let t = front.header.stamp.to_nanos();
            match tracker.lidar_pose(&front.header.frame_id, t) {
                Ok(pose) => {
                    let Some(pending) = waiting_for_pose.pop_front() else { break };
                    let results = engine.process(ScanInput { id: pending.id, stamp_ns: t, cloud: &pending.cloud, pose: pose.to_homogeneous() })?;
                    waiting_for_labels.insert(pending.id, pending);
                    handle_results(results, message.log_time, &mut waiting_for_labels, &mut writer, &mut confusion, &mut summary)?;
                }
                Err(e) if e.may_resolve_later() && waiting_for_pose.len() < 50 => break,
                Err(e) => {
                    summary.skipped_no_pose += 1;
                    log::warn!("skipping cloud stamped {t} ns: no pose ({e})");
                    waiting_for_pose.pop_front();
                }
            }
        }
    }
    // the end of the bag: no more poses will come
    let end_time = bag.summary().end_ns.unwrap_or(0);
    while let Some(pending) = waiting_for_pose.pop_front() {
        let t = pending.header.stamp.to_nanos();
        match tracker.lidar_pose(&pending.header.frame_id, t) {
            Ok(pose) => {
                let results = engine.process(ScanInput { id: pending.id, stamp_ns: t, cloud: &pending.cloud, pose: pose.to_homogeneous() })?;
                waiting_for_labels.insert(pending.id, pending);
                handle_results(results, end_time, &mut waiting_for_labels, &mut writer, &mut confusion, &mut summary)?;
            }
            Err(e) => {
                summary.skipped_no_pose += 1;
                log::warn!("skipping cloud stamped {t} ns at the end of the bag: no pose ({e})");
            }
        }
    }
    let results = engine.flush()?;
    handle_results(results, end_time, &mut waiting_for_labels, &mut writer, &mut confusion, &mut summary)?;
    writer.finish()?;
    if has_ground_truth {
        summary.scores = Some(confusion.scores());
        summary.confusion = Some(confusion);
    }
    if summary.segmented > 0 {
        summary.mean_scan_ms = scan_ms / summary.segmented as f64;
    }
    Ok(summary)
}

/// Decodes a cloud message into `into`; returns its header and the number of non-finite points.
fn decode_cloud(message: &BagMessage, fields: &FieldMapping, into: &mut PointCloud) -> Result<(Header, usize), BagError> {
    let msg: PointCloud2Ref = message.decode()?;
    let report = cloud::decode_into(&msg, fields, into).map_err(|source| BagError::Cloud { topic: message.topic.to_string(), index: message.index, source })?;
    Ok((msg.header.clone(), report.dropped_nonfinite))
}

/// Feeds a pose message to the tracker; returns whether time jumped back.
fn update_poses(tracker: &mut PoseTracker, config: &Config, message: &BagMessage) -> Result<bool, ReplayError> {
    let topics = &config.topics;
    let insert = if *message.topic == *topics.odometry && config.pose.source == PoseSource::Odometry {
        let odom: Odometry = message.decode()?;
        Some(tracker.on_odometry(&odom))
    } else if *message.topic == *topics.tf || *message.topic == *topics.tf_static {
        let tf: TfMessage = message.decode()?;
        Some(tracker.on_tf(&tf, *message.topic == *topics.tf_static))
    } else {
        None
    };
    Ok(matches!(insert, Some(PoseInsert::TimeJumpedBack { .. })))
}

fn write_result(writer: &mut BagWriter, outputs: &Outputs, pending: &PendingCloud, result: &ScanResult, variant: crate::model::Variant, log_time: i64) -> Result<(), ReplayError> {
    let encoded = crate::mos::outputs::encode(&pending.header, &pending.cloud, result, variant, Wanted::ALL);
    writer.write(outputs.labelled, log_time, &encoded.labelled)?;
    writer.write(outputs.moving, log_time, &encoded.moving)?;
    writer.write(outputs.statik, log_time, &encoded.statik)?;
    writer.write(outputs.labels, log_time, &encoded.point_labels)?;
    Ok(())
}
