//! A small TF buffer: dynamic transforms (`/tf`) as per-edge [`PoseBuffer`]s, static transforms
//! (`/tf_static`) as fixed poses, and lookups along the tree between any two connected frames.

use super::{transform_from_msg, LookupError, Pose3, PoseBuffer, PoseBufferConfig, PoseInsert};
use crate::messages::{TfMessage, TransformStamped};
use std::collections::HashMap;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum TfError {
    #[error("frame '{0}' is unknown")]
    UnknownFrame(String),
    #[error("frames '{0}' and '{1}' are not connected")]
    NotConnected(String, String),
    #[error("transform {parent} -> {child}: {source}")]
    Lookup { parent: String, child: String, source: LookupError },
}

enum Edge {
    Static(Pose3),
    Dynamic(PoseBuffer),
}

/// Child frame → (parent frame, transform parent←child).
pub struct TfTree {
    config: PoseBufferConfig,
    edges: HashMap<String, (String, Edge)>,
}

impl TfTree {
    pub fn new(config: PoseBufferConfig) -> Self {
        TfTree { config, edges: HashMap::new() }
    }

    fn strip(frame: &str) -> &str {
        frame.strip_prefix('/').unwrap_or(frame)
    }

    /// Adds a transform; returns a jump if time went backwards on a dynamic edge.
    pub fn insert(&mut self, transform: &TransformStamped, is_static: bool) -> PoseInsert {
        let parent = Self::strip(&transform.header.frame_id).to_string();
        let child = Self::strip(&transform.child_frame_id).to_string();
        let pose = transform_from_msg(&transform.transform);
        if is_static {
            self.edges.insert(child, (parent, Edge::Static(pose)));
            return PoseInsert::Added;
        }
        let t = transform.header.stamp.to_nanos();
        let config = self.config;
        let entry = self.edges.entry(child).or_insert_with(|| (parent.clone(), Edge::Dynamic(PoseBuffer::new(config))));
        entry.0 = parent;
        match &mut entry.1 {
            Edge::Dynamic(buffer) => buffer.insert(t, pose),
            static_edge => {
                // a frame that was static is now published dynamically: follow the publisher
                let mut buffer = PoseBuffer::new(config);
                buffer.insert(t, pose);
                *static_edge = Edge::Dynamic(buffer);
                PoseInsert::Added
            }
        }
    }

    /// Adds every transform of a TF message; returns the first backward jump seen, if any.
    pub fn insert_message(&mut self, message: &TfMessage, is_static: bool) -> PoseInsert {
        let mut outcome = PoseInsert::Added;
        for t in &message.transforms {
            if let jump @ PoseInsert::TimeJumpedBack { .. } = self.insert(t, is_static) {
                outcome = jump;
            }
        }
        outcome
    }

    pub fn clear_dynamic(&mut self) {
        self.edges.retain(|_, (_, e)| matches!(e, Edge::Static(_)));
    }

    /// Path from `frame` to the root: the frames in order, starting with `frame`.
    fn chain(&self, frame: &str) -> Vec<String> {
        let mut chain = vec![frame.to_string()];
        let mut current = frame;
        while let Some((parent, _)) = self.edges.get(current) {
            if chain.iter().any(|f| f == parent) {
                break; // a cycle: stop rather than loop forever
            }
            chain.push(parent.clone());
            current = parent;
        }
        chain
    }

    /// Pose of `frame` in its root, composed along the chain up to (not including) `stop`.
    fn to_ancestor(&self, chain: &[String], stop: usize, t_ns: i64) -> Result<Pose3, TfError> {
        let mut pose = Pose3::identity();
        for child in &chain[..stop] {
            let (parent, edge) = &self.edges[child];
            let step = match edge {
                Edge::Static(p) => *p,
                Edge::Dynamic(buffer) => buffer
                    .lookup(t_ns)
                    .map_err(|source| TfError::Lookup { parent: parent.clone(), child: child.clone(), source })?,
            };
            pose = step * pose;
        }
        Ok(pose)
    }

    /// The transform `target ← source` at time `t_ns` (maps points in `source` into `target`).
    pub fn lookup(&self, target: &str, source: &str, t_ns: i64) -> Result<Pose3, TfError> {
        let (target, source) = (Self::strip(target), Self::strip(source));
        if target == source {
            return Ok(Pose3::identity());
        }
        let known = |f: &str| self.edges.contains_key(f) || self.edges.values().any(|(p, _)| p == f);
        for frame in [target, source] {
            if !known(frame) {
                return Err(TfError::UnknownFrame(frame.to_string()));
            }
        }
        let up_source = self.chain(source);
        let up_target = self.chain(target);
        let Some((i_s, i_t)) = up_source.iter().enumerate().find_map(|(i, f)| up_target.iter().position(|g| g == f).map(|j| (i, j))) else {
            return Err(TfError::NotConnected(target.to_string(), source.to_string()));
        };
        let ancestor_from_source = self.to_ancestor(&up_source, i_s, t_ns)?;
        let ancestor_from_target = self.to_ancestor(&up_target, i_t, t_ns)?;
        Ok(ancestor_from_target.inverse() * ancestor_from_source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::transform_to_msg;
    use crate::messages::{Header, Time};
    use nalgebra::{Isometry3, Vector3};

    fn tf(parent: &str, child: &str, t: i64, pose: Pose3) -> TransformStamped {
        TransformStamped {
            header: Header { stamp: Time::from_nanos(t), frame_id: parent.into() },
            child_frame_id: child.into(),
            transform: transform_to_msg(&pose),
        }
    }

    #[test]
    fn composes_dynamic_and_static_edges() {
        let mut tree = TfTree::new(PoseBufferConfig::default());
        tree.insert(&tf("base_link", "velodyne", 0, Isometry3::translation(0.0, 0.0, 1.7)), true);
        tree.insert(&tf("odom", "base_link", 0, Isometry3::translation(0.0, 0.0, 0.0)), false);
        tree.insert(&tf("odom", "base_link", 100_000_000, Isometry3::new(Vector3::new(1.0, 0.0, 0.0), Vector3::new(0.0, 0.0, 0.0))), false);
        let pose = tree.lookup("odom", "velodyne", 50_000_000).unwrap();
        assert!((pose.translation.vector - Vector3::new(0.5, 0.0, 1.7)).norm() < 1e-9);
        let inverse = tree.lookup("velodyne", "odom", 50_000_000).unwrap();
        assert!((inverse * pose).translation.vector.norm() < 1e-9);
        assert!(matches!(tree.lookup("map", "velodyne", 0), Err(TfError::UnknownFrame(_))));
        assert!(matches!(tree.lookup("odom", "velodyne", 900_000_000), Err(TfError::Lookup { .. })));
    }
}
