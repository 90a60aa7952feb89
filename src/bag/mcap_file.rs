//! One MCAP storage file: facts from its summary, and messages in log-time order through the chunk
//! index (or in file order, streamed, when the file has no index, e.g. after a crash).

use super::{BagError, FileFacts, Qos, RawMessage, ReadLimits, TopicInfo};
use mcap::sans_io::indexed_reader::{IndexedReadEvent, IndexedReader, IndexedReaderOptions, ReadOrder};
use mcap::sans_io::summary_reader::{SummaryReadEvent, SummaryReader, SummaryReaderOptions};
use mcap::{Channel, Summary};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

fn mcap_err(path: &Path) -> impl Fn(mcap::McapError) -> BagError + '_ {
    move |source| BagError::Mcap { file: path.display().to_string(), source }
}

/// The summary section, if the file has one.
fn read_summary(file: &mut File, path: &Path, limits: ReadLimits) -> Result<Option<Summary>, BagError> {
    let size = file.metadata().map_err(|e| BagError::io(path, e))?.len();
    let options = SummaryReaderOptions::default().with_file_size(size).with_record_length_limit(limits.max_message_bytes);
    let mut reader = SummaryReader::new_with_options(options);
    while let Some(event) = reader.next_event() {
        match event.map_err(mcap_err(path))? {
            SummaryReadEvent::ReadRequest(n) => {
                let read = file.read(reader.insert(n)).map_err(|e| BagError::io(path, e))?;
                reader.notify_read(read);
            }
            SummaryReadEvent::SeekRequest(to) => {
                let pos = file.seek(to).map_err(|e| BagError::io(path, e))?;
                reader.notify_seeked(pos);
            }
        }
    }
    Ok(reader.finish())
}

fn topic_of(channel: &Channel) -> TopicInfo {
    TopicInfo {
        name: channel.topic.clone(),
        type_name: channel.schema.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
        serialization_format: channel.message_encoding.clone(),
        message_count: 0,
        qos: channel.metadata.get("offered_qos_profiles").and_then(|q| Qos::from_yaml(&serde_yaml::Value::String(q.clone()))),
        type_hash: channel.metadata.get("topic_type_hash").cloned().filter(|h| !h.is_empty()),
    }
}

pub(crate) fn describe(path: &Path, limits: ReadLimits) -> Result<FileFacts, BagError> {
    let mut file = File::open(path).map_err(|e| BagError::io(path, e))?;
    let summary = read_summary(&mut file, path, limits)?;
    if let Some(summary) = summary.as_ref().filter(|s| s.stats.is_some()) {
        let stats = summary.stats.as_ref().expect("filtered on stats");
        let mut topics: BTreeMap<String, TopicInfo> = BTreeMap::new();
        for (id, channel) in &summary.channels {
            let entry = topics.entry(channel.topic.clone()).or_insert_with(|| topic_of(channel));
            entry.message_count += stats.channel_message_counts.get(id).copied().unwrap_or(0);
        }
        let any = stats.message_count > 0;
        return Ok(FileFacts {
            topics: topics.into_values().collect(),
            message_count: stats.message_count,
            start_ns: any.then_some(stats.message_start_time as i64),
            end_ns: any.then_some(stats.message_end_time as i64),
        });
    }
    // No statistics: count by streaming through the file once.
    let mut topics: BTreeMap<String, TopicInfo> = BTreeMap::new();
    let (mut count, mut start, mut end) = (0u64, None::<i64>, None::<i64>);
    for message in mcap::io::MessageReader::new(BufReader::new(File::open(path).map_err(|e| BagError::io(path, e))?)) {
        let message = message.map_err(mcap_err(path))?;
        topics.entry(message.channel.topic.clone()).or_insert_with(|| topic_of(&message.channel)).message_count += 1;
        count += 1;
        let t = message.log_time as i64;
        start = Some(start.map_or(t, |s| s.min(t)));
        end = Some(end.map_or(t, |e| e.max(t)));
    }
    Ok(FileFacts { topics: topics.into_values().collect(), message_count: count, start_ns: start, end_ns: end })
}

enum Mode {
    Indexed { reader: IndexedReader, file: File, buffer: Vec<u8>, channels: HashMap<u16, (Arc<str>, Arc<str>)> },
    Linear { reader: mcap::io::MessageReader<BufReader<File>>, names: HashMap<u16, (Arc<str>, Arc<str>)> },
}

pub(crate) struct McapMessages {
    path: std::path::PathBuf,
    mode: Mode,
    filter: Vec<String>,
    limits: ReadLimits,
    done: bool,
}

fn names_of(channel: &Channel) -> (Arc<str>, Arc<str>) {
    (Arc::from(channel.topic.as_str()), Arc::from(channel.schema.as_ref().map(|s| s.name.as_str()).unwrap_or("")))
}

impl McapMessages {
    pub fn open(path: &Path, filter: &[String], limits: ReadLimits) -> Result<Self, BagError> {
        let mut file = File::open(path).map_err(|e| BagError::io(path, e))?;
        let summary = read_summary(&mut file, path, limits)?;
        let mode = match summary {
            Some(summary) if !summary.chunk_indexes.is_empty() => {
                let mut options = IndexedReaderOptions::new().with_order(ReadOrder::LogTime).with_record_length_limit(limits.max_message_bytes);
                if !filter.is_empty() {
                    options = options.include_topics(filter.iter().cloned());
                }
                let reader = IndexedReader::new_with_options(&summary, options).map_err(mcap_err(path))?;
                let channels = summary.channels.iter().map(|(id, c)| (*id, names_of(c))).collect();
                Mode::Indexed { reader, file, buffer: Vec::new(), channels }
            }
            _ => {
                log::warn!("{}: no chunk index, reading messages in file order", path.display());
                let file = File::open(path).map_err(|e| BagError::io(path, e))?;
                Mode::Linear { reader: mcap::io::MessageReader::new(BufReader::new(file)), names: HashMap::new() }
            }
        };
        Ok(McapMessages { path: path.to_path_buf(), mode, filter: filter.to_vec(), limits, done: false })
    }

    fn next_message(&mut self) -> Option<Result<RawMessage, BagError>> {
        let path = self.path.clone();
        match &mut self.mode {
            Mode::Indexed { reader, file, buffer, channels } => loop {
                let (offset, length) = match reader.next_event()? {
                    Err(e) => return Some(Err(mcap_err(&path)(e))),
                    Ok(IndexedReadEvent::Message { header, data }) => {
                        let Some((topic, type_name)) = channels.get(&header.channel_id) else {
                            return Some(Err(BagError::Mcap { file: path.display().to_string(), source: mcap::McapError::UnknownChannel(header.sequence, header.channel_id) }));
                        };
                        return Some(Ok(RawMessage { topic: topic.clone(), type_name: type_name.clone(), log_time: header.log_time as i64, data: data.to_vec() }));
                    }
                    Ok(IndexedReadEvent::ReadChunkRequest { offset, length }) => (offset, length),
                };
                buffer.resize(length, 0);
                if let Err(e) = file.read_exact_at(buffer, offset) {
                    return Some(Err(BagError::Io { path: format!("{} (chunk at byte {offset}, {length} bytes)", path.display()), source: e }));
                }
                if let Err(e) = reader.insert_chunk_record_data(offset, buffer) {
                    return Some(Err(mcap_err(&path)(e)));
                }
            },
            Mode::Linear { reader, names } => loop {
                let message = match reader.next()? {
                    Ok(m) => m,
                    Err(e) => return Some(Err(mcap_err(&path)(e))),
                };
                if !self.filter.is_empty() && !self.filter.iter().any(|t| *t == message.channel.topic) {
                    continue;
                }
                if message.data.len() > self.limits.max_message_bytes {
                    return Some(Err(BagError::TooLarge { file: path.display().to_string(), topic: message.channel.topic.clone(), size: message.data.len(), max: self.limits.max_message_bytes }));
                }
                let (topic, type_name) = names.entry(message.channel.id).or_insert_with(|| names_of(&message.channel)).clone();
                return Some(Ok(RawMessage { topic, type_name, log_time: message.log_time as i64, data: message.data.into_owned() }));
            },
        }
    }
}

impl Iterator for McapMessages {
    type Item = Result<RawMessage, BagError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.next_message();
        if !matches!(item, Some(Ok(_))) {
            self.done = true;
        }
        item
    }
}
