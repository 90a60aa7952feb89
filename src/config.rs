//! The one typed configuration of kdseg, shared by the CLI, the ROS node (as ROS parameters) and
//! training. Every section rejects unknown keys and [`Config::validate`] names the offending
//! parameter by its dotted path (`pose.lookup_timeout_s`), which is also its ROS parameter name.

use crate::cloud::FieldMapping;
use crate::geometry::PoseBufferConfig;
use crate::mos::EngineConfig;
use std::path::PathBuf;
use serde::{Deserialize, Serialize};
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("{file}: {reason}")]
    Parse { file: String, reason: String },
    #[error("parameter {parameter}: {reason}")]
    Invalid { parameter: String, reason: String },
}

fn invalid(parameter: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { parameter: parameter.to_string(), reason: reason.into() }
}

/// Topic names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicConfig {
    /// LiDAR `sensor_msgs/PointCloud2`.
    pub lidar: String,
    /// `nav_msgs/Odometry` with the LiDAR (or base) pose, when `pose.source` is `odometry`.
    pub odometry: String,
    pub tf: String,
    pub tf_static: String,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig { lidar: "/velodyne_points".into(), odometry: "/odom".into(), tf: "/tf".into(), tf_static: "/tf_static".into() }
    }
}

/// Frame names (REP-105).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrameConfig {
    /// World-fixed frame the scan history is kept in (`odom`, or `map`).
    pub fixed: String,
    /// LiDAR frame; empty means the cloud's `header.frame_id`.
    pub lidar: String,
}

impl Default for FrameConfig {
    fn default() -> Self {
        FrameConfig { fixed: "odom".into(), lidar: String::new() }
    }
}

/// Where scan poses come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PoseSource {
    Odometry,
    Tf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PoseConfig {
    pub source: PoseSource,
    /// How long a scan waits for its pose before it is skipped (and counted), seconds.
    pub lookup_timeout_s: f64,
    /// A lookup this far beyond the newest (or before the oldest) pose uses that pose, seconds.
    pub tolerance_s: f64,
    /// Poses further apart than this are not interpolated between, seconds.
    pub max_gap_s: f64,
    /// How much pose history is kept, seconds.
    pub history_s: f64,
    /// A pose this much older than the newest means time went backwards (a looped bag), seconds.
    pub backward_jump_s: f64,
}

impl Default for PoseConfig {
    fn default() -> Self {
        let b = PoseBufferConfig::default();
        PoseConfig {
            source: PoseSource::Odometry,
            lookup_timeout_s: 0.5,
            tolerance_s: b.tolerance_s,
            max_gap_s: b.max_gap_s,
            history_s: b.history_s,
            backward_jump_s: b.backward_jump_s,
        }
    }
}

impl PoseConfig {
    pub fn buffer(&self) -> PoseBufferConfig {
        PoseBufferConfig { tolerance_s: self.tolerance_s, max_gap_s: self.max_gap_s, history_s: self.history_s, backward_jump_s: self.backward_jump_s }
    }
}

/// Size limits on untrusted input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest serialised message accepted from a bag or topic, bytes.
    pub max_message_bytes: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig { max_message_bytes: 256 << 20 }
    }
}

/// Topics the segmentation results are published on (the node resolves `~/` to its own name) or
/// written to (bag replay writes `~/x` as `/kdseg/x`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    pub labelled_points: String,
    pub moving_points: String,
    pub static_points: String,
    pub point_labels: String,
}

impl OutputConfig {
    /// A topic name with the node-private `~/` replaced by `/<node>/`.
    pub fn resolve(topic: &str, node: &str) -> String {
        match topic.strip_prefix("~/") {
            Some(rest) => format!("/{node}/{rest}"),
            None => topic.to_string(),
        }
    }
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            labelled_points: "~/labelled_points".into(),
            moving_points: "~/moving_points".into(),
            static_points: "~/static_points".into(),
            point_labels: "~/point_labels".into(),
        }
    }
}

/// QoS of the node's input subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputQos {
    /// Best effort, volatile (REP-2003 for consumers of sensor data).
    SensorData,
    Reliable,
}

/// The ROS 2 node (`kdseg node`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    pub input_qos: InputQos,
    /// Queue depth of the cloud subscription (1: only the newest matters).
    pub input_depth: usize,
    /// Queue depth of the (reliable) outputs.
    pub output_depth: usize,
    /// Processing time above which a scan counts as an overrun, milliseconds.
    pub max_processing_ms: f64,
    /// Consecutive overruns that turn the diagnostic from WARN to ERROR.
    pub max_consecutive_overruns: u32,
    pub diagnostics_period_s: f64,
    /// Shortest interval between two repeated warnings of one kind, seconds.
    pub log_period_s: f64,
    pub hardware_id: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            input_qos: InputQos::SensorData,
            input_depth: 1,
            output_depth: 5,
            max_processing_ms: 100.0,
            max_consecutive_overruns: 10,
            diagnostics_period_s: 1.0,
            log_period_s: 5.0,
            hardware_id: "kdseg".into(),
        }
    }
}

/// Train/valid/test sequences of a SemanticKITTI-layout dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitConfig {
    pub train: Vec<String>,
    pub valid: Vec<String>,
    pub test: Vec<String>,
}

impl Default for SplitConfig {
    /// SemanticKITTI-MOS: train 00–07, 09, 10; valid 08; test 11–21.
    fn default() -> Self {
        let ids = |r: &[u32]| r.iter().map(|i| format!("{i:02}")).collect();
        SplitConfig { train: ids(&[0, 1, 2, 3, 4, 5, 6, 7, 9, 10]), valid: ids(&[8]), test: ids(&(11..=21).collect::<Vec<_>>()) }
    }
}

impl SplitConfig {
    pub fn get(&self, name: &str) -> Option<&[String]> {
        match name {
            "train" => Some(&self.train),
            "valid" => Some(&self.valid),
            "test" => Some(&self.test),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatasetConfig {
    /// Dataset root (the folder with `sequences/`).
    pub root: Option<PathBuf>,
    /// Sequences per split. Absent: the dataset's `split.yaml` (written by `kdseg simulate --split`)
    /// when it has one, else SemanticKITTI-MOS's split.
    pub splits: Option<SplitConfig>,
}

impl DatasetConfig {
    /// The splits that apply to the dataset at `root`.
    pub fn splits_for(&self, root: &Path) -> Result<SplitConfig, ConfigError> {
        if let Some(s) = &self.splits {
            return Ok(s.clone());
        }
        let manifest = root.join("split.yaml");
        if !manifest.exists() {
            return Ok(SplitConfig::default());
        }
        let text = std::fs::read_to_string(&manifest).map_err(|e| ConfigError::Parse { file: manifest.display().to_string(), reason: e.to_string() })?;
        let value: serde_yaml::Value = serde_yaml::from_str(&text).map_err(|e| ConfigError::Parse { file: manifest.display().to_string(), reason: e.to_string() })?;
        let ids = |name: &str| -> Vec<String> {
            value
                .get(name)
                .and_then(|v| v.as_sequence())
                .map(|seq| {
                    seq.iter()
                        .filter_map(|v| v.as_u64().map(|n| format!("{n:02}")).or_else(|| v.as_str().map(|s| s.to_string())))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(SplitConfig { train: ids("train"), valid: ids("valid"), test: ids("test") })
    }
}

/// The whole configuration. Every section has defaults, so a file only lists what it changes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Which PointCloud2 fields play which role.
    pub cloud: FieldMapping,
    pub topics: TopicConfig,
    pub frames: FrameConfig,
    pub pose: PoseConfig,
    pub limits: LimitsConfig,
    /// The moving-object segmentation engine (weights, device, precision, motion features).
    pub mos: EngineConfig,
    pub outputs: OutputConfig,
    pub node: NodeConfig,
    pub dataset: DatasetConfig,
    /// Training (student or teacher).
    pub train: crate::train::TrainConfig,
}

impl Config {
    /// Reads a YAML file: either the plain mapping or a ROS 2 parameters file
    /// (`/**: {ros__parameters: {...}}`, or a node name instead of `/**`).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Parse { file: path.display().to_string(), reason: e.to_string() })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    pub fn from_yaml(text: &str, name: &str) -> Result<Config, ConfigError> {
        let parse_err = |e: serde_yaml::Error| ConfigError::Parse { file: name.to_string(), reason: e.to_string() };
        let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(parse_err)?;
        if value.is_null() {
            let config = Config::default();
            config.validate()?;
            return Ok(config);
        }
        // Deserialising from text (not from a Value) makes serde_yaml name the key that is wrong
        // ("mos.precision: unknown variant ..."); a ROS parameters file is re-rendered without its
        // `/**: ros__parameters:` wrapper first, so its line numbers are those of the parameters.
        let config: Config = match unwrap_ros_parameters(value) {
            Some(params) => {
                let text = serde_yaml::to_string(&params).map_err(parse_err)?;
                serde_yaml::from_str(&text).map_err(parse_err)?
            }
            None => serde_yaml::from_str(text).map_err(parse_err)?,
        };
        config.validate()?;
        Ok(config)
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, topic) in [
            ("topics.lidar", &self.topics.lidar),
            ("topics.odometry", &self.topics.odometry),
            ("topics.tf", &self.topics.tf),
            ("topics.tf_static", &self.topics.tf_static),
        ] {
            if topic.is_empty() || topic.contains(char::is_whitespace) {
                return Err(invalid(name, format!("'{topic}' is not a topic name")));
            }
        }
        if self.frames.fixed.is_empty() {
            return Err(invalid("frames.fixed", "must name a frame"));
        }
        for (name, value) in [
            ("pose.lookup_timeout_s", self.pose.lookup_timeout_s),
            ("pose.tolerance_s", self.pose.tolerance_s),
            ("pose.max_gap_s", self.pose.max_gap_s),
            ("pose.history_s", self.pose.history_s),
            ("pose.backward_jump_s", self.pose.backward_jump_s),
        ] {
            if !(value >= 0.0) {
                return Err(invalid(name, format!("{value} must be a non-negative number of seconds")));
            }
        }
        if self.cloud.max_points == 0 {
            return Err(invalid("cloud.max_points", "must be positive"));
        }
        if !(self.mos.intensity_scale.is_finite() && self.mos.intensity_scale > 0.0) {
            return Err(invalid("mos.intensity_scale", format!("{} must be a positive number", self.mos.intensity_scale)));
        }
        for (name, topic) in [
            ("outputs.labelled_points", &self.outputs.labelled_points),
            ("outputs.moving_points", &self.outputs.moving_points),
            ("outputs.static_points", &self.outputs.static_points),
            ("outputs.point_labels", &self.outputs.point_labels),
        ] {
            if topic.is_empty() || topic.contains(char::is_whitespace) {
                return Err(invalid(name, format!("'{topic}' is not a topic name")));
            }
        }
        self.train.validate()?;
        for (name, value) in [("node.max_processing_ms", self.node.max_processing_ms), ("node.diagnostics_period_s", self.node.diagnostics_period_s), ("node.log_period_s", self.node.log_period_s)] {
            if !(value > 0.0) {
                return Err(invalid(name, format!("{value} must be positive")));
            }
        }
        if self.node.input_depth == 0 || self.node.output_depth == 0 {
            return Err(invalid(if self.node.input_depth == 0 { "node.input_depth" } else { "node.output_depth" }, "must be at least 1"));
        }
        if self.limits.max_message_bytes < 1024 {
            return Err(invalid("limits.max_message_bytes", format!("{} is too small to hold any cloud", self.limits.max_message_bytes)));
        }
        Ok(())
    }
}

/// `{"/**": {"ros__parameters": X}}` (or any single node key) → `X`.
fn unwrap_ros_parameters(value: serde_yaml::Value) -> Option<serde_yaml::Value> {
    let serde_yaml::Value::Mapping(map) = &value else { return None };
    if map.len() != 1 {
        return None;
    }
    map.iter().next().and_then(|(_, inner)| inner.as_mapping()).and_then(|m| m.get("ros__parameters")).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_round_trip() {
        let config = Config::default();
        config.validate().unwrap();
        let back = Config::from_yaml(&config.to_yaml(), "test").unwrap();
        assert_eq!(back, config);
    }

    #[test]
    fn ros_parameter_files_are_unwrapped() {
        let text = "/**:\n  ros__parameters:\n    topics:\n      lidar: /points\n    pose:\n      source: tf\n";
        let config = Config::from_yaml(text, "params.yaml").unwrap();
        assert_eq!(config.topics.lidar, "/points");
        assert_eq!(config.pose.source, PoseSource::Tf);
        assert_eq!(config.topics.odometry, "/odom");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_parameter() {
        let err = Config::from_yaml("pose:\n  lookup_timeout: 1.0\n", "x.yaml").unwrap_err().to_string();
        assert!(err.contains("lookup_timeout"), "{err}");
        let err = Config::from_yaml("pose:\n  lookup_timeout_s: -1\n", "x.yaml").unwrap_err().to_string();
        assert!(err.contains("pose.lookup_timeout_s"), "{err}");
        let err = Config::from_yaml("topics:\n  lidar: ''\n", "x.yaml").unwrap_err().to_string();
        assert!(err.contains("topics.lidar"), "{err}");
        // wrong variants name their key, in plain files and in ROS parameters files
        let err = Config::from_yaml("mos:\n  precision: fp12\n", "x.yaml").unwrap_err().to_string();
        assert!(err.contains("mos.precision") && err.contains("fp12") && err.contains("line 2"), "{err}");
        let err = Config::from_yaml("/**:\n  ros__parameters:\n    mos:\n      device: tpu\n", "p.yaml").unwrap_err().to_string();
        assert!(err.contains("mos.device") && err.contains("tpu"), "{err}");
    }
}
