//! rosbag2 bags without ROS: a streaming reader for MCAP and sqlite3 storage and an MCAP writer.
//!
//! A bag is a directory with `metadata.yaml` and one or more storage files, or a single `.mcap` or
//! `.db3` file. [`Bag::messages`] yields every message of every file in log-time order (a k-way merge
//! over files; within an MCAP file the chunk index gives the order, within sqlite3 the timestamp
//! index), holding at most a chunk or a small batch per file in memory whatever the bag's size.

pub mod metadata;
mod mcap_file;
mod sqlite_file;
mod writer;

pub use metadata::Qos;
pub use writer::{BagWriter, TopicHandle, WriterOptions};

use crate::cloud::CloudError;
use crate::messages::CdrError;
use metadata::{BagMetadata, MetadataFile};
use serde::Deserialize;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum BagError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a rosbag2 bag ({reason})")]
    NotABag { path: String, reason: String },
    #[error("{path}: {reason}")]
    Metadata { path: String, reason: String },
    #[error("{path}: metadata version {version} is not supported (versions {}..={} are)", metadata::OLDEST_SUPPORTED, metadata::NEWEST_SUPPORTED)]
    UnsupportedVersion { path: String, version: u32 },
    #[error("{path}: {what} is not supported")]
    Unsupported { path: String, what: String },
    #[error("{metadata}: storage file {file} listed in relative_file_paths is missing")]
    MissingFile { metadata: String, file: String },
    #[error("{file}: MCAP error: {source}")]
    Mcap { file: String, source: mcap::McapError },
    #[error("{file}: sqlite3 error: {source}")]
    Sqlite { file: String, source: rusqlite::Error },
    #[error("{file}: message of {size} bytes on {topic} exceeds the limit of {max} bytes")]
    TooLarge { file: String, topic: String, size: usize, max: usize },
    #[error("topic {topic}, message #{index}: {source}")]
    Decode { topic: String, index: u64, source: CdrError },
    #[error("topic {topic}, message #{index}: {source}")]
    Cloud { topic: String, index: u64, source: CloudError },
    #[error("{path}: cannot write bag: {reason}")]
    Write { path: String, reason: String },
}

impl BagError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        BagError::Io { path: path.display().to_string(), source }
    }
}

/// Storage plugin of a bag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    Mcap,
    Sqlite3,
}

impl Storage {
    pub fn identifier(self) -> &'static str {
        match self {
            Storage::Mcap => "mcap",
            Storage::Sqlite3 => "sqlite3",
        }
    }
}

/// A topic of a bag.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicInfo {
    pub name: String,
    pub type_name: String,
    pub serialization_format: String,
    pub message_count: u64,
    pub qos: Option<Qos>,
    pub type_hash: Option<String>,
}

/// One serialised message.
#[derive(Debug, Clone)]
pub struct BagMessage {
    pub topic: Arc<str>,
    pub type_name: Arc<str>,
    /// Receive time (rosbag2 `timestamp`, MCAP `log_time`), nanoseconds.
    pub log_time: i64,
    /// Position of the message within its topic, counting from 0 (for error messages).
    pub index: u64,
    /// CDR bytes, encapsulation header included.
    pub data: Vec<u8>,
}

impl BagMessage {
    /// Decodes the CDR payload, naming the topic and index on failure.
    pub fn decode<'a, T: Deserialize<'a>>(&'a self) -> Result<T, BagError> {
        crate::messages::decode(&self.data).map_err(|source| BagError::Decode { topic: self.topic.to_string(), index: self.index, source })
    }
}

/// Message as a storage file yields it, before the merge.
pub(crate) struct RawMessage {
    pub topic: Arc<str>,
    pub type_name: Arc<str>,
    pub log_time: i64,
    pub data: Vec<u8>,
}

/// Size limits applied while reading (a corrupt or hostile file cannot make us allocate more).
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    pub max_message_bytes: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits { max_message_bytes: 1 << 30 }
    }
}

/// An opened bag.
#[derive(Debug)]
pub struct Bag {
    path: PathBuf,
    storage: Storage,
    files: Vec<PathBuf>,
    topics: Vec<TopicInfo>,
    metadata: Option<BagMetadata>,
    limits: ReadLimits,
    start_ns: Option<i64>,
    end_ns: Option<i64>,
    message_count: u64,
}

/// Overall facts about a bag, as `kdseg bag info` prints them.
#[derive(Debug, Clone)]
pub struct BagSummary {
    pub path: String,
    pub storage: Storage,
    pub metadata_version: Option<u32>,
    pub files: Vec<String>,
    pub message_count: u64,
    pub start_ns: Option<i64>,
    pub end_ns: Option<i64>,
    pub topics: Vec<TopicInfo>,
    pub bytes: u64,
}

impl Bag {
    pub fn open(path: impl AsRef<Path>) -> Result<Bag, BagError> {
        Self::open_with(path, ReadLimits::default())
    }

    pub fn open_with(path: impl AsRef<Path>, limits: ReadLimits) -> Result<Bag, BagError> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| BagError::io(path, e))?;
        if meta.is_dir() {
            let metadata_path = path.join("metadata.yaml");
            if metadata_path.exists() {
                return Self::open_directory(path, &metadata_path, limits);
            }
            // a directory without metadata.yaml: take its storage files in name order
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|e| BagError::io(path, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| storage_of(p).is_some())
                .collect();
            files.sort();
            if files.is_empty() {
                return Err(BagError::NotABag { path: path.display().to_string(), reason: "no metadata.yaml and no .mcap or .db3 files".into() });
            }
            return Self::open_files(path, files, None, limits);
        }
        if storage_of(path).is_none() {
            return Err(BagError::NotABag { path: path.display().to_string(), reason: "expected a bag directory, a .mcap or a .db3 file".into() });
        }
        Self::open_files(path, vec![path.to_path_buf()], None, limits)
    }

    fn open_directory(dir: &Path, metadata_path: &Path, limits: ReadLimits) -> Result<Bag, BagError> {
        let name = metadata_path.display().to_string();
        let text = std::fs::read_to_string(metadata_path).map_err(|e| BagError::io(metadata_path, e))?;
        let file: MetadataFile = serde_yaml::from_str(&text).map_err(|e| BagError::Metadata { path: name.clone(), reason: e.to_string() })?;
        let md = file.rosbag2_bagfile_information;
        if !(metadata::OLDEST_SUPPORTED..=metadata::NEWEST_SUPPORTED).contains(&md.version) {
            return Err(BagError::UnsupportedVersion { path: name, version: md.version });
        }
        if !md.compression_mode.is_empty() && !md.compression_mode.eq_ignore_ascii_case("none") {
            return Err(BagError::Unsupported {
                path: name,
                what: format!("rosbag2 compression (mode {}, format {}); re-record with MCAP chunk compression", md.compression_mode, md.compression_format),
            });
        }
        let mut files = Vec::new();
        for rel in &md.relative_file_paths {
            let file = dir.join(rel);
            if !file.exists() {
                return Err(BagError::MissingFile { metadata: name, file: file.display().to_string() });
            }
            files.push(file);
        }
        if files.is_empty() {
            return Err(BagError::Metadata { path: name, reason: "relative_file_paths is empty".into() });
        }
        Self::open_files(dir, files, Some(md), limits)
    }

    fn open_files(path: &Path, files: Vec<PathBuf>, metadata: Option<BagMetadata>, limits: ReadLimits) -> Result<Bag, BagError> {
        let storage = storage_of(&files[0]).ok_or_else(|| BagError::NotABag {
            path: files[0].display().to_string(),
            reason: "unknown storage file extension".into(),
        })?;
        if let Some(md) = &metadata {
            let expected = match md.storage_identifier.as_str() {
                "mcap" => Some(Storage::Mcap),
                "sqlite3" => Some(Storage::Sqlite3),
                _ => None,
            };
            if expected != Some(storage) {
                return Err(BagError::Metadata {
                    path: path.join("metadata.yaml").display().to_string(),
                    reason: format!("storage_identifier '{}' does not match file {}", md.storage_identifier, files[0].display()),
                });
            }
        }
        // Topics and counts from the files themselves (they are the truth; metadata.yaml may be stale
        // after a crash), then filled in from metadata where the files say nothing.
        let mut topics: BTreeMap<String, TopicInfo> = BTreeMap::new();
        let (mut start, mut end, mut count) = (None::<i64>, None::<i64>, 0u64);
        for file in &files {
            let facts = match storage {
                Storage::Mcap => mcap_file::describe(file, limits)?,
                Storage::Sqlite3 => sqlite_file::describe(file)?,
            };
            for t in facts.topics {
                topics
                    .entry(t.name.clone())
                    .and_modify(|e| e.message_count += t.message_count)
                    .or_insert(t);
            }
            count += facts.message_count;
            start = min_opt(start, facts.start_ns);
            end = max_opt(end, facts.end_ns);
        }
        if let Some(md) = &metadata {
            for t in &md.topics_with_message_count {
                let tm = &t.topic_metadata;
                let entry = topics.entry(tm.name.clone()).or_insert_with(|| TopicInfo {
                    name: tm.name.clone(),
                    type_name: tm.type_name.clone(),
                    serialization_format: tm.serialization_format.clone(),
                    message_count: 0,
                    qos: None,
                    type_hash: None,
                });
                if entry.qos.is_none() {
                    entry.qos = Qos::from_yaml(&tm.offered_qos_profiles);
                }
                if entry.type_hash.is_none() {
                    entry.type_hash = tm.type_description_hash.clone().filter(|h| !h.is_empty());
                }
            }
        }
        Ok(Bag {
            path: path.to_path_buf(),
            storage,
            files,
            topics: topics.into_values().collect(),
            metadata,
            limits,
            start_ns: start,
            end_ns: end,
            message_count: count,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn storage(&self) -> Storage {
        self.storage
    }

    pub fn topics(&self) -> &[TopicInfo] {
        &self.topics
    }

    pub fn topic(&self, name: &str) -> Option<&TopicInfo> {
        self.topics.iter().find(|t| t.name == name)
    }

    pub fn summary(&self) -> BagSummary {
        BagSummary {
            path: self.path.display().to_string(),
            storage: self.storage,
            metadata_version: self.metadata.as_ref().map(|m| m.version),
            files: self.files.iter().map(|f| f.display().to_string()).collect(),
            message_count: self.message_count,
            start_ns: self.start_ns,
            end_ns: self.end_ns,
            topics: self.topics.clone(),
            bytes: self.files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum(),
        }
    }

    /// Every message, in log-time order across topics and files.
    pub fn messages(&self) -> Result<Messages, BagError> {
        self.messages_on(&[])
    }

    /// Messages of the given topics only (all topics when `topics` is empty), in log-time order.
    pub fn messages_on(&self, topics: &[&str]) -> Result<Messages, BagError> {
        let filter: Vec<String> = topics.iter().map(|s| s.to_string()).collect();
        let mut sources: Vec<Box<dyn Iterator<Item = Result<RawMessage, BagError>>>> = Vec::new();
        for file in &self.files {
            sources.push(match self.storage {
                Storage::Mcap => Box::new(mcap_file::McapMessages::open(file, &filter, self.limits)?),
                Storage::Sqlite3 => Box::new(sqlite_file::SqliteMessages::open(file, &filter, self.limits)?),
            });
        }
        let mut merged = Messages { sources, heads: BinaryHeap::new(), pending: Vec::new(), per_topic: BTreeMap::new(), failed: false };
        for i in 0..merged.sources.len() {
            merged.advance(i);
        }
        Ok(merged)
    }
}

fn min_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn max_opt(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn storage_of(path: &Path) -> Option<Storage> {
    match path.extension()?.to_str()? {
        "mcap" => Some(Storage::Mcap),
        "db3" => Some(Storage::Sqlite3),
        _ => None,
    }
}

/// What a storage file says about itself.
pub(crate) struct FileFacts {
    pub topics: Vec<TopicInfo>,
    pub message_count: u64,
    pub start_ns: Option<i64>,
    pub end_ns: Option<i64>,
}

/// Iterator over a bag's messages in log-time order (ties: file order, then storage order).
pub struct Messages {
    sources: Vec<Box<dyn Iterator<Item = Result<RawMessage, BagError>>>>,
    heads: BinaryHeap<Reverse<(i64, usize)>>,
    pending: Vec<Option<Result<RawMessage, BagError>>>,
    per_topic: BTreeMap<Arc<str>, u64>,
    failed: bool,
}

impl Messages {
    fn advance(&mut self, source: usize) {
        if self.pending.len() <= source {
            self.pending.resize_with(source + 1, || None);
        }
        let next = self.sources[source].next();
        let key = match &next {
            Some(Ok(m)) => m.log_time,
            // errors surface at once
            Some(Err(_)) => i64::MIN,
            None => return,
        };
        self.pending[source] = next;
        self.heads.push(Reverse((key, source)));
    }
}

impl Iterator for Messages {
    type Item = Result<BagMessage, BagError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let Reverse((_, source)) = self.heads.pop()?;
        let item = self.pending[source].take()?;
        self.advance(source);
        match item {
            Ok(raw) => {
                let counter = self.per_topic.entry(raw.topic.clone()).or_insert(0);
                let index = *counter;
                *counter += 1;
                Some(Ok(BagMessage { topic: raw.topic, type_name: raw.type_name, log_time: raw.log_time, index, data: raw.data }))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}
