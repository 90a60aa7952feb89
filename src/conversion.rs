//! Conversions between SemanticKITTI sequences and rosbag2 bags.
//!
//! A sequence becomes: `sensor_msgs/PointCloud2` in the Velodyne driver layout (ground-truth labels
//! in a `label` field when the sequence has labels), `nav_msgs/Odometry` and `/tf` with the LiDAR pose
//! in the first scan's LiDAR frame, all stamped at a fixed scan period. A bag becomes a sequence by
//! decoding each cloud and looking up its pose at the cloud's stamp.

use crate::bag::{Bag, BagError, BagWriter, Qos, WriterOptions};
use crate::cloud::{self, CloudError, FieldMapping};
use crate::config::{FrameConfig, PoseSource, TopicConfig};
use crate::dataset::semantic_kitti::{self, DatasetError, KittiSequence};
use crate::geometry::{pose_from_matrix, pose_to_msg, transform_to_msg, PoseBufferConfig, PoseTracker};
use crate::messages::{Header, Odometry, PointCloud2, PointCloud2Ref, PoseWithCovariance, TfMessage, Time, TransformStamped};
use nalgebra::Matrix4;
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConversionError {
    #[error(transparent)]
    Bag(#[from] BagError),
    #[error(transparent)]
    Dataset(#[from] DatasetError),
    #[error("{0}")]
    Input(String),
    #[error("interrupted")]
    Interrupted,
}

/// Options of `kdseg bag from-kitti`.
#[derive(Debug, Clone)]
pub struct FromKittiOptions {
    pub topics: TopicConfig,
    pub frames: FrameConfig,
    /// Stamp of the first scan, nanoseconds.
    pub start_ns: i64,
    /// Scan period, nanoseconds (10 Hz for KITTI).
    pub period_ns: i64,
    pub writer: WriterOptions,
}

/// Writes a SemanticKITTI sequence as a bag; returns the number of scans written.
pub fn kitti_to_bag(sequence: &KittiSequence, out: &Path, options: &FromKittiOptions, interrupted: &dyn Fn() -> bool) -> Result<usize, ConversionError> {
    let poses: Vec<Matrix4<f64>> = (0..sequence.len())
        .map(|i| sequence.lidar_pose(i))
        .collect::<Option<_>>()
        .ok_or_else(|| ConversionError::Input(format!("{}: sequence has no poses.txt", sequence.dir.display())))?;
    let mut writer = BagWriter::create(out, options.writer.clone())?;
    let cloud_topic = writer.add_topic::<PointCloud2>(&options.topics.lidar, Qos::SENSOR_DATA)?;
    let odom_topic = writer.add_topic::<Odometry>(&options.topics.odometry, Qos::RELIABLE)?;
    let tf_topic = writer.add_topic::<TfMessage>(&options.topics.tf, Qos::RELIABLE)?;
    let lidar_frame = if options.frames.lidar.is_empty() { "velodyne" } else { options.frames.lidar.as_str() };
    for (i, pose) in poses.iter().enumerate() {
        if interrupted() {
            writer.finish()?;
            return Err(ConversionError::Interrupted);
        }
        let stamp = Time::from_nanos(options.start_ns + i as i64 * options.period_ns);
        let pose = pose_from_matrix(pose);
        let odom = Odometry {
            header: Header { stamp, frame_id: options.frames.fixed.clone() },
            child_frame_id: lidar_frame.to_string(),
            pose: PoseWithCovariance { pose: pose_to_msg(&pose), covariance: [0.0; 36] },
            ..Default::default()
        };
        let tf = TfMessage {
            transforms: vec![TransformStamped {
                header: odom.header.clone(),
                child_frame_id: lidar_frame.to_string(),
                transform: transform_to_msg(&pose),
            }],
        };
        let mut scan = sequence.read_scan(i)?;
        scan.label = sequence.read_labels(i, scan.len())?;
        let cloud = cloud::encode_velodyne(Header { stamp, frame_id: lidar_frame.to_string() }, &scan);
        let t = stamp.to_nanos();
        writer.write(odom_topic, t, &odom)?;
        writer.write(tf_topic, t, &tf)?;
        writer.write(cloud_topic, t, &cloud)?;
    }
    writer.finish()?;
    Ok(poses.len())
}

/// Options of `kdseg bag to-kitti`.
#[derive(Debug, Clone)]
pub struct ToKittiOptions {
    pub topics: TopicConfig,
    pub frames: FrameConfig,
    pub pose_source: PoseSource,
    pub fields: FieldMapping,
}

/// Writes the clouds of a bag as `out/sequences/<sequence>/` (velodyne, labels if the clouds carry a
/// label field, poses.txt with an identity calib.txt). Returns the number of scans written.
pub fn bag_to_kitti(bag: &Bag, out: &Path, sequence: &str, options: &ToKittiOptions, interrupted: &dyn Fn() -> bool) -> Result<usize, ConversionError> {
    if bag.topic(&options.topics.lidar).is_none() {
        return Err(ConversionError::Input(format!(
            "{}: no topic {} (topics: {})",
            bag.path().display(),
            options.topics.lidar,
            bag.topics().iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    // Offline, every pose of the bag is known before the first cloud is converted.
    let offline = PoseBufferConfig { history_s: f64::INFINITY, ..Default::default() };
    let mut poses = PoseTracker::new(options.pose_source, options.frames.clone(), offline);
    let topics = [options.topics.odometry.as_str(), options.topics.tf.as_str(), options.topics.tf_static.as_str()];
    for message in bag.messages_on(&topics)? {
        let message = message?;
        if *message.topic == *options.topics.odometry {
            poses.on_odometry(&message.decode()?);
        } else {
            let tf: TfMessage = message.decode()?;
            poses.on_tf(&tf, *message.topic == *options.topics.tf_static);
        }
    }
    let dir = out.join("sequences").join(sequence);
    let mut lidar_poses = Vec::new();
    let mut has_labels = None;
    for message in bag.messages_on(&[options.topics.lidar.as_str()])? {
        if interrupted() {
            return Err(ConversionError::Interrupted);
        }
        let message = message?;
        let msg: PointCloud2Ref = message.decode()?;
        let (scan, report) = cloud::decode_with(&msg, &options.fields).map_err(|source: CloudError| BagError::Cloud { topic: message.topic.to_string(), index: message.index, source })?;
        if report.dropped_nonfinite > 0 {
            log::debug!("{} #{}: dropped {} non-finite points", message.topic, message.index, report.dropped_nonfinite);
        }
        let t = msg.header.stamp.to_nanos();
        let pose = poses
            .lidar_pose(&msg.header.frame_id, t)
            .map_err(|e| ConversionError::Input(format!("topic {} message #{}: no pose: {e}", message.topic, message.index)))?;
        let name = format!("{:06}", lidar_poses.len());
        semantic_kitti::write_bin(&dir.join("velodyne").join(format!("{name}.bin")), &scan)?;
        let labelled = scan.label.is_some();
        if *has_labels.get_or_insert(labelled) != labelled {
            return Err(ConversionError::Input(format!("topic {} message #{}: some clouds carry labels and some do not", message.topic, message.index)));
        }
        if let Some(labels) = &scan.label {
            semantic_kitti::write_label_file(&dir.join("labels").join(format!("{name}.label")), labels)?;
        }
        lidar_poses.push(pose.to_homogeneous());
    }
    // Express poses relative to the first scan, as the KITTI convention (and our reader) expects.
    if let Some(first_inv) = lidar_poses.first().and_then(|p| p.try_inverse()) {
        for p in lidar_poses.iter_mut() {
            *p = first_inv * *p;
        }
    }
    let tr = Matrix4::identity();
    semantic_kitti::write_calib(&dir.join("calib.txt"), &tr)?;
    semantic_kitti::write_poses(&dir.join("poses.txt"), &semantic_kitti::camera_frame_poses(&lidar_poses, &tr))?;
    Ok(lidar_poses.len())
}
