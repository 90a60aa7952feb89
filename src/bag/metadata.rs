//! rosbag2 `metadata.yaml`, versions 5 to 9.
//!
//! The differences that matter here: v5 added per-file info, v6 `custom_data`, v7
//! `type_description_hash`, v8 `ros_distro`, and v9 turned `offered_qos_profiles` from a YAML string
//! with integer enums into a YAML list with names.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const OLDEST_SUPPORTED: u32 = 5;
pub const NEWEST_SUPPORTED: u32 = 9;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetadataFile {
    pub rosbag2_bagfile_information: BagMetadata,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BagMetadata {
    pub version: u32,
    pub storage_identifier: String,
    pub duration: Duration,
    pub starting_time: StartingTime,
    pub message_count: u64,
    #[serde(default)]
    pub topics_with_message_count: Vec<TopicWithCount>,
    #[serde(default)]
    pub compression_format: String,
    #[serde(default)]
    pub compression_mode: String,
    #[serde(default)]
    pub relative_file_paths: Vec<String>,
    #[serde(default)]
    pub files: Vec<FileInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_data: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ros_distro: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Duration {
    pub nanoseconds: i64,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct StartingTime {
    pub nanoseconds_since_epoch: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicWithCount {
    pub topic_metadata: TopicMetadata,
    pub message_count: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TopicMetadata {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
    pub serialization_format: String,
    /// A YAML string (v4–8) or a YAML list (v9); kept as parsed.
    #[serde(default)]
    pub offered_qos_profiles: serde_yaml::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub type_description_hash: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileInfo {
    pub path: String,
    pub starting_time: StartingTime,
    pub duration: Duration,
    pub message_count: u64,
}

/// The QoS a topic was offered with, as rosbag2 records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qos {
    pub reliable: bool,
    pub transient_local: bool,
    pub depth: u32,
}

impl Qos {
    pub const SENSOR_DATA: Qos = Qos { reliable: false, transient_local: false, depth: 5 };
    pub const RELIABLE: Qos = Qos { reliable: true, transient_local: false, depth: 10 };
    pub const LATCHED: Qos = Qos { reliable: true, transient_local: true, depth: 1 };

    /// The `offered_qos_profiles` value for a metadata (and MCAP channel metadata) version.
    pub fn to_yaml(self, version: u32) -> serde_yaml::Value {
        let infinite = "{sec: 9223372036, nsec: 854775807}";
        if version >= 9 {
            let text = format!(
                "- history: keep_last\n  depth: {}\n  reliability: {}\n  durability: {}\n  deadline: {infinite}\n  lifespan: {infinite}\n  liveliness: automatic\n  liveliness_lease_duration: {infinite}\n  avoid_ros_namespace_conventions: false\n",
                self.depth,
                if self.reliable { "reliable" } else { "best_effort" },
                if self.transient_local { "transient_local" } else { "volatile" },
            );
            serde_yaml::from_str(&text).unwrap_or(serde_yaml::Value::Null)
        } else {
            serde_yaml::Value::String(self.to_legacy_string())
        }
    }

    /// The v4–8 string form (history 1 = keep_last, reliability 1/2, durability 1/2).
    pub fn to_legacy_string(self) -> String {
        let infinite = "\n    sec: 9223372036\n    nsec: 854775807";
        format!(
            "- history: 1\n  depth: {}\n  reliability: {}\n  durability: {}\n  deadline:{infinite}\n  lifespan:{infinite}\n  liveliness: 1\n  liveliness_lease_duration:{infinite}\n  avoid_ros_namespace_conventions: false",
            self.depth,
            if self.reliable { 1 } else { 2 },
            if self.transient_local { 1 } else { 2 },
        )
    }

    /// Reads the first profile of either form; `None` when absent or unreadable.
    pub fn from_yaml(value: &serde_yaml::Value) -> Option<Qos> {
        let list = match value {
            serde_yaml::Value::String(s) if !s.trim().is_empty() => serde_yaml::from_str(s).ok()?,
            serde_yaml::Value::Sequence(_) => value.clone(),
            _ => return None,
        };
        let first = list.as_sequence()?.first()?.as_mapping()?;
        let get = |k: &str| first.get(serde_yaml::Value::String(k.into()));
        let reliable = match get("reliability")? {
            serde_yaml::Value::Number(n) => n.as_u64() == Some(1),
            serde_yaml::Value::String(s) => s == "reliable",
            _ => false,
        };
        let transient_local = match get("durability") {
            Some(serde_yaml::Value::Number(n)) => n.as_u64() == Some(1),
            Some(serde_yaml::Value::String(s)) => s == "transient_local",
            _ => false,
        };
        let depth = get("depth").and_then(|d| d.as_u64()).unwrap_or(0) as u32;
        Some(Qos { reliable, transient_local, depth })
    }

    pub fn describe(self) -> String {
        format!(
            "{}, {}, depth {}",
            if self.reliable { "reliable" } else { "best effort" },
            if self.transient_local { "transient local" } else { "volatile" },
            self.depth
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qos_round_trips_in_both_forms() {
        for qos in [Qos::SENSOR_DATA, Qos::RELIABLE, Qos::LATCHED] {
            for version in [8, 9] {
                assert_eq!(Qos::from_yaml(&qos.to_yaml(version)), Some(qos), "v{version}");
            }
        }
        assert_eq!(Qos::from_yaml(&serde_yaml::Value::String(String::new())), None);
    }
}
