//! LiDAR poses from either `nav_msgs/Odometry` or `/tf` + `/tf_static`, as configured: the one
//! place that turns pose messages into "the LiDAR's pose in the fixed frame at time t".

use super::{pose_from_msg, LookupError, Pose3, PoseBuffer, PoseBufferConfig, PoseInsert, TfError, TfTree};
use crate::config::{FrameConfig, PoseSource};
use crate::messages::{Odometry, TfMessage};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum PoseError {
    #[error("odometry: {0}")]
    Odometry(#[from] LookupError),
    #[error("tf: {0}")]
    Tf(#[from] TfError),
    #[error("odometry gives the pose of '{odometry_child}' but the cloud is in '{lidar}', and no /tf_static transform connects them")]
    NoMount { odometry_child: String, lidar: String },
}

impl PoseError {
    /// Whether waiting for more pose messages can fix the lookup.
    pub fn may_resolve_later(&self) -> bool {
        matches!(
            self,
            PoseError::Odometry(LookupError::NotYet { .. } | LookupError::Empty)
                | PoseError::Tf(TfError::Lookup { source: LookupError::NotYet { .. } | LookupError::Empty, .. } | TfError::UnknownFrame(_) | TfError::NotConnected(..))
                | PoseError::NoMount { .. }
        )
    }
}

pub struct PoseTracker {
    source: PoseSource,
    frames: FrameConfig,
    odometry: PoseBuffer,
    odometry_child: Option<String>,
    tree: TfTree,
}

impl PoseTracker {
    pub fn new(source: PoseSource, frames: FrameConfig, buffer: PoseBufferConfig) -> Self {
        PoseTracker { source, frames, odometry: PoseBuffer::new(buffer), odometry_child: None, tree: TfTree::new(buffer) }
    }

    pub fn source(&self) -> PoseSource {
        self.source
    }

    pub fn on_odometry(&mut self, odom: &Odometry) -> PoseInsert {
        let child = odom.child_frame_id.trim_start_matches('/').to_string();
        if !child.is_empty() {
            self.odometry_child = Some(child);
        }
        self.odometry.insert(odom.header.stamp.to_nanos(), pose_from_msg(&odom.pose.pose))
    }

    pub fn on_tf(&mut self, message: &TfMessage, is_static: bool) -> PoseInsert {
        self.tree.insert_message(message, is_static)
    }

    /// Forgets the dynamic history (after time jumped back); static transforms stay.
    pub fn reset(&mut self) {
        self.odometry.clear();
        self.tree.clear_dynamic();
    }

    /// The frame a cloud's points are in: the configured LiDAR frame, or the cloud's own.
    pub fn lidar_frame<'a>(&'a self, cloud_frame: &'a str) -> &'a str {
        if self.frames.lidar.is_empty() {
            cloud_frame.trim_start_matches('/')
        } else {
            &self.frames.lidar
        }
    }

    /// Pose of the LiDAR in the fixed frame at `t_ns`.
    pub fn lidar_pose(&self, cloud_frame: &str, t_ns: i64) -> Result<Pose3, PoseError> {
        let lidar = self.lidar_frame(cloud_frame);
        match self.source {
            PoseSource::Tf => Ok(self.tree.lookup(&self.frames.fixed, lidar, t_ns)?),
            PoseSource::Odometry => {
                let body = self.odometry.lookup(t_ns)?;
                match self.odometry_child.as_deref() {
                    None => Ok(body),
                    Some(child) if child == lidar => Ok(body),
                    Some(child) => {
                        let mount = self.tree.lookup(child, lidar, t_ns).map_err(|_| PoseError::NoMount { odometry_child: child.to_string(), lidar: lidar.to_string() })?;
                        Ok(body * mount)
                    }
                }
            }
        }
    }
}
