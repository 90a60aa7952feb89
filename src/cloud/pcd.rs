//! PCD files (PCL's format, `DATA ascii` or `DATA binary`) read as PointCloud2 messages, so that
//! real driver captures such as TIER IV Nebula's test scans go through the same decoder as live data.

use crate::messages::{Header, PointCloud2, PointField};
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum PcdError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: header line {line}: {reason}")]
    Header { path: String, line: usize, reason: String },
    #[error("{path}: DATA {kind} is not supported (ascii and binary are)")]
    Unsupported { path: String, kind: String },
    #[error("{path}: binary data holds {len} bytes, {points} points of {point_step} bytes need {needed}")]
    Truncated { path: String, len: usize, points: usize, point_step: usize, needed: usize },
    #[error("{path}: ascii data line {line}: {reason}")]
    Ascii { path: String, line: usize, reason: String },
}

/// Reads a PCD file as a PointCloud2 with the file's own field layout (x, y, z, intensity, ...).
pub fn read(path: &Path, max_points: usize) -> Result<PointCloud2, PcdError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| PcdError::Io { path: name.clone(), source })?;
    parse(&bytes, &name, max_points)
}

pub fn parse(bytes: &[u8], name: &str, max_points: usize) -> Result<PointCloud2, PcdError> {
    let header_err = |line: usize, reason: String| PcdError::Header { path: name.to_string(), line, reason };
    let mut fields: Vec<String> = Vec::new();
    let (mut sizes, mut types, mut counts): (Vec<usize>, Vec<char>, Vec<usize>) = (vec![], vec![], vec![]);
    let (mut width, mut height, mut points) = (0usize, 1usize, None::<usize>);
    let mut pos = 0usize;
    let mut line_no = 0usize;
    let data_kind = loop {
        let end = bytes[pos..].iter().position(|&b| b == b'\n').ok_or_else(|| header_err(line_no + 1, "no DATA line".into()))?;
        let line = String::from_utf8_lossy(&bytes[pos..pos + end]).trim().to_string();
        pos += end + 1;
        line_no += 1;
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let key = parts.next().unwrap_or_default().to_ascii_uppercase();
        let rest: Vec<&str> = parts.collect();
        let numbers = |what: &str| -> Result<Vec<usize>, PcdError> {
            rest.iter().map(|v| v.parse::<usize>().map_err(|_| header_err(line_no, format!("{what} value '{v}' is not a number")))).collect()
        };
        match key.as_str() {
            "VERSION" | "VIEWPOINT" => {}
            "FIELDS" => fields = rest.iter().map(|s| s.to_string()).collect(),
            "SIZE" => sizes = numbers("SIZE")?,
            "TYPE" => types = rest.iter().map(|s| s.chars().next().unwrap_or('?')).collect(),
            "COUNT" => counts = numbers("COUNT")?,
            "WIDTH" => width = numbers("WIDTH")?.first().copied().unwrap_or(0),
            "HEIGHT" => height = numbers("HEIGHT")?.first().copied().unwrap_or(1),
            "POINTS" => points = numbers("POINTS")?.first().copied(),
            "DATA" => break rest.first().map(|s| s.to_ascii_lowercase()).unwrap_or_default(),
            other => return Err(header_err(line_no, format!("unknown key {other}"))),
        }
    };
    if counts.is_empty() {
        counts = vec![1; fields.len()];
    }
    if sizes.len() != fields.len() || types.len() != fields.len() || counts.len() != fields.len() {
        return Err(header_err(line_no, format!(
            "FIELDS ({}), SIZE ({}), TYPE ({}) and COUNT ({}) differ in length",
            fields.len(), sizes.len(), types.len(), counts.len()
        )));
    }
    let n = points.unwrap_or(width * height);
    if n > max_points {
        return Err(header_err(line_no, format!("{n} points exceed the limit of {max_points}")));
    }
    if width * height != n {
        (width, height) = (n, 1);
    }
    let mut point_fields = Vec::with_capacity(fields.len());
    let mut offset = 0usize;
    for i in 0..fields.len() {
        let datatype = match (types[i], sizes[i]) {
            ('I', 1) => 1,
            ('U', 1) => 2,
            ('I', 2) => 3,
            ('U', 2) => 4,
            ('I', 4) => 5,
            ('U', 4) => 6,
            ('F', 4) => 7,
            ('F', 8) => 8,
            (t, s) => return Err(header_err(line_no, format!("field '{}' has TYPE {t} SIZE {s}, which PointCloud2 cannot hold", fields[i]))),
        };
        point_fields.push(PointField { name: fields[i].clone(), offset: offset as u32, datatype, count: counts[i] as u32 });
        offset += sizes[i] * counts[i];
    }
    let point_step = offset;
    let needed = n * point_step;
    let data = match data_kind.as_str() {
        "binary" => {
            let body = &bytes[pos..];
            if body.len() < needed {
                return Err(PcdError::Truncated { path: name.to_string(), len: body.len(), points: n, point_step, needed });
            }
            body[..needed].to_vec()
        }
        "ascii" => parse_ascii(&bytes[pos..], name, n, &point_fields, point_step)?,
        other => return Err(PcdError::Unsupported { path: name.to_string(), kind: other.to_string() }),
    };
    Ok(PointCloud2 {
        header: Header::default(),
        height: height as u32,
        width: width as u32,
        fields: point_fields,
        is_bigendian: false,
        point_step: point_step as u32,
        row_step: (width * point_step) as u32,
        data,
        is_dense: false,
    })
}

fn parse_ascii(body: &[u8], name: &str, n: usize, fields: &[PointField], point_step: usize) -> Result<Vec<u8>, PcdError> {
    let text = String::from_utf8_lossy(body);
    let mut data = vec![0u8; n * point_step];
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    for p in 0..n {
        let err = |reason: String| PcdError::Ascii { path: name.to_string(), line: p + 1, reason };
        let line = lines.next().ok_or_else(|| err(format!("expected {n} points, found {p}")))?;
        let mut values = line.split_whitespace();
        let point = &mut data[p * point_step..(p + 1) * point_step];
        for f in fields {
            for k in 0..f.count as usize {
                let v = values.next().ok_or_else(|| err(format!("too few values for field '{}'", f.name)))?;
                let bad = || err(format!("field '{}': '{v}' is not a number", f.name));
                let off = f.offset as usize;
                match f.datatype {
                    1 => point[off + k] = v.parse::<i8>().map_err(|_| bad())? as u8,
                    2 => point[off + k] = v.parse::<u8>().map_err(|_| bad())?,
                    3 => point[off + 2 * k..off + 2 * k + 2].copy_from_slice(&v.parse::<i16>().map_err(|_| bad())?.to_le_bytes()),
                    4 => point[off + 2 * k..off + 2 * k + 2].copy_from_slice(&v.parse::<u16>().map_err(|_| bad())?.to_le_bytes()),
                    5 => point[off + 4 * k..off + 4 * k + 4].copy_from_slice(&v.parse::<i32>().map_err(|_| bad())?.to_le_bytes()),
                    6 => point[off + 4 * k..off + 4 * k + 4].copy_from_slice(&v.parse::<u32>().map_err(|_| bad())?.to_le_bytes()),
                    7 => point[off + 4 * k..off + 4 * k + 4].copy_from_slice(&v.parse::<f32>().map_err(|_| bad())?.to_le_bytes()),
                    _ => point[off + 8 * k..off + 8 * k + 8].copy_from_slice(&v.parse::<f64>().map_err(|_| bad())?.to_le_bytes()),
                }
            }
        }
    }
    Ok(data)
}
