//! rosbag2 MCAP writer (`ros2` profile, `ros2msg` schemas, CDR messages, metadata v9 or v8).
//!
//! A bag is always finalised: [`BagWriter::finish`] writes the MCAP summary and `metadata.yaml`, and
//! dropping an unfinished writer (early return, error, Ctrl-C handled by the caller, panic unwinding)
//! does the same, so what was written stays readable.

use super::metadata::{self, BagMetadata, FileInfo, MetadataFile, Qos, TopicMetadata, TopicWithCount};
use super::BagError;
use crate::messages::{self, RosMessage};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

/// How to write a bag.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// `metadata.yaml` version: 9 (Jazzy) or 8 (readable by Humble).
    pub metadata_version: u32,
    /// zstd chunk compression (off by default, as rosbag2's own default).
    pub compress: bool,
    /// Replace an existing bag at the path.
    pub overwrite: bool,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions { metadata_version: 9, compress: false, overwrite: false }
    }
}

/// A topic added to a writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicHandle(usize);

struct TopicState {
    name: String,
    type_name: String,
    type_hash: String,
    qos: Qos,
    channel_id: u16,
    count: u64,
}

/// Writes one rosbag2 bag: a directory `NAME/` with `NAME_0.mcap` and `metadata.yaml`, or, when the
/// path ends in `.mcap`, that single file (its rosbag2 metadata embedded as an MCAP metadata record).
pub struct BagWriter {
    dir: Option<PathBuf>,
    file_path: PathBuf,
    writer: Option<mcap::Writer<BufWriter<File>>>,
    options: WriterOptions,
    topics: Vec<TopicState>,
    schemas: BTreeMap<String, u16>,
    start_ns: Option<i64>,
    end_ns: Option<i64>,
    scratch: Vec<u8>,
}

impl BagWriter {
    pub fn create(path: impl AsRef<Path>, options: WriterOptions) -> Result<BagWriter, BagError> {
        let path = path.as_ref();
        if !(8..=metadata::NEWEST_SUPPORTED).contains(&options.metadata_version) {
            return Err(BagError::Write { path: path.display().to_string(), reason: format!("metadata version {} cannot be written (8 or 9)", options.metadata_version) });
        }
        let single = path.extension().is_some_and(|e| e == "mcap");
        if path.exists() {
            if !options.overwrite {
                return Err(BagError::Write { path: path.display().to_string(), reason: "already exists (pass --overwrite to replace it)".into() });
            }
            let removed = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
            removed.map_err(|e| BagError::io(path, e))?;
        }
        let (dir, file_path) = if single {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| BagError::io(parent, e))?;
            }
            (None, path.to_path_buf())
        } else {
            std::fs::create_dir_all(path).map_err(|e| BagError::io(path, e))?;
            let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "bag".into());
            (Some(path.to_path_buf()), path.join(format!("{name}_0.mcap")))
        };
        let file = File::create(&file_path).map_err(|e| BagError::io(&file_path, e))?;
        let writer = mcap::WriteOptions::new()
            .profile("ros2")
            .library(concat!("kdseg ", env!("CARGO_PKG_VERSION")))
            .compression(options.compress.then_some(mcap::Compression::Zstd))
            .create(BufWriter::with_capacity(1 << 20, file))
            .map_err(|e| BagError::Write { path: file_path.display().to_string(), reason: e.to_string() })?;
        Ok(BagWriter {
            dir,
            file_path,
            writer: Some(writer),
            options,
            topics: Vec::new(),
            schemas: BTreeMap::new(),
            start_ns: None,
            end_ns: None,
            scratch: Vec::new(),
        })
    }

    fn write_err(&self, e: impl std::fmt::Display) -> BagError {
        BagError::Write { path: self.file_path.display().to_string(), reason: e.to_string() }
    }

    fn writer(&mut self) -> Result<&mut mcap::Writer<BufWriter<File>>, BagError> {
        let path = self.file_path.display().to_string();
        self.writer.as_mut().ok_or(BagError::Write { path, reason: "the bag was already finished".into() })
    }

    /// Adds a topic of a type kdseg knows.
    pub fn add_topic<T: RosMessage>(&mut self, name: &str, qos: Qos) -> Result<TopicHandle, BagError> {
        self.add_topic_raw(name, T::TYPE_NAME, &T::definition(), T::TYPE_HASH, qos)
    }

    /// Adds a topic given its type's schema text and hash (for copying topics of other bags).
    pub fn add_topic_raw(&mut self, name: &str, type_name: &str, definition: &str, type_hash: &str, qos: Qos) -> Result<TopicHandle, BagError> {
        if let Some(i) = self.topics.iter().position(|t| t.name == name) {
            if self.topics[i].type_name != type_name {
                return Err(self.write_err(format!("topic {name} already has type {}, not {type_name}", self.topics[i].type_name)));
            }
            return Ok(TopicHandle(i));
        }
        let schema_id = match self.schemas.get(type_name) {
            Some(&id) => id,
            None => {
                let id = self.writer()?.add_schema(type_name, "ros2msg", definition.as_bytes()).map_err(|e| self.write_err(e))?;
                self.schemas.insert(type_name.to_string(), id);
                id
            }
        };
        let qos_text = match qos.to_yaml(self.options.metadata_version) {
            serde_yaml::Value::String(s) => s,
            other => serde_yaml::to_string(&other).unwrap_or_default(),
        };
        let mut channel_metadata = BTreeMap::new();
        channel_metadata.insert("offered_qos_profiles".to_string(), qos_text);
        channel_metadata.insert("topic_type_hash".to_string(), type_hash.to_string());
        let channel_id = self.writer()?.add_channel(schema_id, name, "cdr", &channel_metadata).map_err(|e| self.write_err(e))?;
        self.topics.push(TopicState { name: name.into(), type_name: type_name.into(), type_hash: type_hash.into(), qos, channel_id, count: 0 });
        Ok(TopicHandle(self.topics.len() - 1))
    }

    /// Serialises and writes one message; `log_time_ns` is the bag timestamp (receive time).
    pub fn write<T: Serialize>(&mut self, topic: TopicHandle, log_time_ns: i64, message: &T) -> Result<(), BagError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let encoded = messages::cdr::encode_into(message, &mut scratch);
        let result = encoded.map_err(|e| self.write_err(e)).and_then(|_| self.write_raw(topic, log_time_ns, &scratch));
        self.scratch = scratch;
        result
    }

    /// Writes one already serialised CDR message.
    pub fn write_raw(&mut self, topic: TopicHandle, log_time_ns: i64, cdr: &[u8]) -> Result<(), BagError> {
        let state = self.topics.get(topic.0).ok_or_else(|| self.write_err("unknown topic handle"))?;
        let header = mcap::records::MessageHeader {
            channel_id: state.channel_id,
            sequence: state.count as u32,
            log_time: log_time_ns.max(0) as u64,
            publish_time: log_time_ns.max(0) as u64,
        };
        self.writer()?.write_to_known_channel(&header, cdr).map_err(|e| self.write_err(e))?;
        self.topics[topic.0].count += 1;
        self.start_ns = Some(self.start_ns.map_or(log_time_ns, |s| s.min(log_time_ns)));
        self.end_ns = Some(self.end_ns.map_or(log_time_ns, |e| e.max(log_time_ns)));
        Ok(())
    }

    pub fn message_count(&self) -> u64 {
        self.topics.iter().map(|t| t.count).sum()
    }

    fn metadata(&self) -> BagMetadata {
        let version = self.options.metadata_version;
        let start = self.start_ns.unwrap_or(0);
        let duration = self.end_ns.unwrap_or(start) - start;
        let file_name = self.file_path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        BagMetadata {
            version,
            storage_identifier: "mcap".into(),
            duration: metadata::Duration { nanoseconds: duration },
            starting_time: metadata::StartingTime { nanoseconds_since_epoch: start },
            message_count: self.message_count(),
            topics_with_message_count: self
                .topics
                .iter()
                .map(|t| TopicWithCount {
                    topic_metadata: TopicMetadata {
                        name: t.name.clone(),
                        type_name: t.type_name.clone(),
                        serialization_format: "cdr".into(),
                        offered_qos_profiles: t.qos.to_yaml(version),
                        type_description_hash: Some(t.type_hash.clone()),
                    },
                    message_count: t.count,
                })
                .collect(),
            compression_format: String::new(),
            compression_mode: String::new(),
            relative_file_paths: vec![file_name.clone()],
            files: vec![FileInfo {
                path: file_name,
                starting_time: metadata::StartingTime { nanoseconds_since_epoch: start },
                duration: metadata::Duration { nanoseconds: duration },
                message_count: self.message_count(),
            }],
            custom_data: None,
            ros_distro: Some("jazzy".into()),
        }
    }

    /// Writes the MCAP summary and `metadata.yaml`. Idempotent.
    pub fn finish(&mut self) -> Result<(), BagError> {
        let Some(mut writer) = self.writer.take() else { return Ok(()) };
        let yaml = serde_yaml::to_string(&MetadataFile { rosbag2_bagfile_information: self.metadata() }).map_err(|e| self.write_err(e))?;
        let mut record = BTreeMap::new();
        record.insert("serialized_metadata".to_string(), yaml.clone());
        writer
            .write_metadata(&mcap::records::Metadata { name: "rosbag2".into(), metadata: record })
            .map_err(|e| self.write_err(e))?;
        writer.finish().map_err(|e| self.write_err(e))?;
        let file = writer.into_inner();
        file.into_inner().map_err(|e| self.write_err(e.error()))?.sync_all().map_err(|e| self.write_err(e))?;
        if let Some(dir) = &self.dir {
            let tmp = dir.join("metadata.yaml.tmp");
            std::fs::write(&tmp, yaml).map_err(|e| BagError::io(&tmp, e))?;
            std::fs::rename(&tmp, dir.join("metadata.yaml")).map_err(|e| BagError::io(dir, e))?;
        }
        Ok(())
    }

    /// The bag's path (directory, or the single `.mcap` file).
    pub fn path(&self) -> &Path {
        self.dir.as_deref().unwrap_or(&self.file_path)
    }
}

impl Drop for BagWriter {
    fn drop(&mut self) {
        if self.writer.is_some() {
            if let Err(e) = self.finish() {
                log::error!("finalising bag {}: {e}", self.file_path.display());
            }
        }
    }
}
