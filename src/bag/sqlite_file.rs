//! One sqlite3 storage file (`.db3`), schema versions of Foxy to Jazzy (with or without the
//! `message_definitions` table, with or without `type_description_hash`).
//!
//! Messages are streamed by a reader thread that steps one `ORDER BY timestamp, id` query (served by
//! rosbag2's `timestamp_idx`) and hands rows over a channel of a few slots, so memory stays bounded.

use super::{BagError, FileFacts, Qos, RawMessage, ReadLimits, TopicInfo};
use rusqlite::{Connection, OpenFlags};
use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

fn sql_err(path: &Path) -> impl Fn(rusqlite::Error) -> BagError + '_ {
    move |source| BagError::Sqlite { file: path.display().to_string(), source }
}

fn open(path: &Path) -> Result<Connection, BagError> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(sql_err(path))?;
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(sql_err(path))?;
    for required in ["topics", "messages"] {
        if !tables.iter().any(|t| t == required) {
            return Err(BagError::NotABag { path: path.display().to_string(), reason: format!("sqlite3 file has no '{required}' table") });
        }
    }
    Ok(conn)
}

struct TopicRow {
    id: i64,
    info: TopicInfo,
}

fn topics(conn: &Connection, path: &Path) -> Result<Vec<TopicRow>, BagError> {
    let columns: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('topics')")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(sql_err(path))?;
    let has = |c: &str| columns.iter().any(|x| x == c);
    let qos = if has("offered_qos_profiles") { "offered_qos_profiles" } else { "''" };
    let hash = if has("type_description_hash") { "type_description_hash" } else { "''" };
    let sql = format!("SELECT id, name, type, serialization_format, {qos}, {hash} FROM topics ORDER BY id");
    let mut stmt = conn.prepare(&sql).map_err(sql_err(path))?;
    let rows = stmt
        .query_map([], |r| {
            let qos: String = r.get(4)?;
            let hash: String = r.get(5)?;
            Ok(TopicRow {
                id: r.get(0)?,
                info: TopicInfo {
                    name: r.get(1)?,
                    type_name: r.get(2)?,
                    serialization_format: r.get(3)?,
                    message_count: 0,
                    qos: Qos::from_yaml(&serde_yaml::Value::String(qos)),
                    type_hash: Some(hash).filter(|h| !h.is_empty()),
                },
            })
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(sql_err(path))?;
    Ok(rows)
}

pub(crate) fn describe(path: &Path) -> Result<FileFacts, BagError> {
    let conn = open(path)?;
    let mut rows = topics(&conn, path)?;
    let mut stmt = conn
        .prepare("SELECT topic_id, COUNT(*), MIN(timestamp), MAX(timestamp) FROM messages GROUP BY topic_id")
        .map_err(sql_err(path))?;
    let counts: Vec<(i64, i64, i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .and_then(|rows| rows.collect())
        .map_err(sql_err(path))?;
    let (mut total, mut start, mut end) = (0u64, None::<i64>, None::<i64>);
    for (topic_id, count, min_t, max_t) in counts {
        if let Some(row) = rows.iter_mut().find(|t| t.id == topic_id) {
            row.info.message_count = count as u64;
        }
        total += count as u64;
        start = Some(start.map_or(min_t, |s| s.min(min_t)));
        end = Some(end.map_or(max_t, |e| e.max(max_t)));
    }
    Ok(FileFacts { topics: rows.into_iter().map(|r| r.info).collect(), message_count: total, start_ns: start, end_ns: end })
}

pub(crate) struct SqliteMessages {
    rows: Receiver<Result<RawMessage, BagError>>,
}

impl SqliteMessages {
    pub fn open(path: &Path, filter: &[String], limits: ReadLimits) -> Result<Self, BagError> {
        let conn = open(path)?;
        let names: HashMap<i64, (Arc<str>, Arc<str>)> = topics(&conn, path)?
            .into_iter()
            .filter(|t| filter.is_empty() || filter.contains(&t.info.name))
            .map(|t| (t.id, (Arc::from(t.info.name.as_str()), Arc::from(t.info.type_name.as_str()))))
            .collect();
        let (tx, rx) = sync_channel(4);
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("kdseg-db3-reader".into())
            .spawn(move || {
                let err = sql_err(&path);
                let result = (|| -> Result<(), BagError> {
                    let mut stmt = conn
                        .prepare("SELECT topic_id, timestamp, length(data), data FROM messages ORDER BY timestamp, id")
                        .map_err(&err)?;
                    let mut rows = stmt.query([]).map_err(&err)?;
                    while let Some(row) = rows.next().map_err(&err)? {
                        let topic_id: i64 = row.get(0).map_err(&err)?;
                        let Some((topic, type_name)) = names.get(&topic_id) else { continue };
                        let size: i64 = row.get(2).map_err(&err)?;
                        if size as usize > limits.max_message_bytes {
                            return Err(BagError::TooLarge { file: path.display().to_string(), topic: topic.to_string(), size: size as usize, max: limits.max_message_bytes });
                        }
                        let data: Vec<u8> = row.get(3).map_err(&err)?;
                        let message = RawMessage { topic: topic.clone(), type_name: type_name.clone(), log_time: row.get(1).map_err(&err)?, data };
                        if tx.send(Ok(message)).is_err() {
                            return Ok(()); // the consumer is gone
                        }
                    }
                    Ok(())
                })();
                if let Err(e) = result {
                    let _ = tx.send(Err(e));
                }
            })
            .map_err(|e| BagError::Io { path: "db3 reader thread".into(), source: e })?;
        Ok(SqliteMessages { rows: rx })
    }
}

impl Iterator for SqliteMessages {
    type Item = Result<RawMessage, BagError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.rows.recv().ok()
    }
}
