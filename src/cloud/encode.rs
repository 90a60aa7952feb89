//! Packed PointCloud2 layouts written by kdseg.

use super::{Datatype, PointCloud};
use crate::messages::{Header, PointCloud2, PointField};
use rayon::prelude::*;

/// Points written by one parallel task (about 230 kB of a 28-byte layout).
const POINTS_PER_TASK: usize = 8192;

/// One column of a cloud to be written, borrowed from its owner.
#[derive(Debug, Clone, Copy)]
pub enum ColumnData<'a> {
    I8(&'a [i8]),
    U8(&'a [u8]),
    U16(&'a [u16]),
    U32(&'a [u32]),
    F32(&'a [f32]),
    F64(&'a [f64]),
}

impl ColumnData<'_> {
    fn datatype(&self) -> Datatype {
        match self {
            ColumnData::I8(_) => Datatype::I8,
            ColumnData::U8(_) => Datatype::U8,
            ColumnData::U16(_) => Datatype::U16,
            ColumnData::U32(_) => Datatype::U32,
            ColumnData::F32(_) => Datatype::F32,
            ColumnData::F64(_) => Datatype::F64,
        }
    }

    fn len(&self) -> usize {
        match self {
            ColumnData::I8(v) => v.len(),
            ColumnData::U8(v) => v.len(),
            ColumnData::U16(v) => v.len(),
            ColumnData::U32(v) => v.len(),
            ColumnData::F32(v) => v.len(),
            ColumnData::F64(v) => v.len(),
        }
    }
}

/// A named column.
#[derive(Debug, Clone, Copy)]
pub struct Column<'a> {
    pub name: &'a str,
    pub data: ColumnData<'a>,
}

impl<'a> Column<'a> {
    pub fn new(name: &'a str, data: ColumnData<'a>) -> Self {
        Column { name, data }
    }
}

/// Writes columns as one packed little-endian row (height 1), each field directly after the previous
/// one with no padding, as `sensor_msgs`' `addPointField` does. All columns must have equal length.
pub fn encode_columns(header: Header, columns: &[Column]) -> PointCloud2 {
    encode_columns_into(header, columns, Vec::new())
}

/// [`encode_columns`] into the allocation of `data` (a stream of clouds reuses one buffer: fresh
/// megabytes cost page faults that take longer than the encoding).
pub fn encode_columns_into(header: Header, columns: &[Column], mut data: Vec<u8>) -> PointCloud2 {
    let n = columns.first().map(|c| c.data.len()).unwrap_or(0);
    assert!(columns.iter().all(|c| c.data.len() == n), "encode_columns: columns differ in length");
    let mut fields = Vec::with_capacity(columns.len());
    let mut offset = 0usize;
    for c in columns {
        fields.push(PointField { name: c.name.to_string(), offset: offset as u32, datatype: c.data.datatype() as u8, count: 1 });
        offset += c.data.datatype().size();
    }
    let point_step = offset;
    // every byte of a packed point belongs to a field and is written below: a reused buffer of the
    // right size needs no clearing (3 MB of memset a scan), a new tail is zeroed by `resize`
    data.resize(n * point_step, 0);
    // blocks of points in parallel, every column of a block while its rows are in cache
    data.par_chunks_mut(POINTS_PER_TASK * point_step.max(1)).enumerate().for_each(|(task, block)| {
        let first = task * POINTS_PER_TASK;
        for (c, f) in columns.iter().zip(&fields) {
            let off = f.offset as usize;
            macro_rules! write {
                ($values:expr) => {
                    for (point, v) in block.chunks_exact_mut(point_step).zip($values[first..].iter()) {
                        let bytes = v.to_le_bytes();
                        point[off..off + bytes.len()].copy_from_slice(&bytes);
                    }
                };
            }
            match c.data {
                ColumnData::I8(v) => write!(v),
                ColumnData::U8(v) => write!(v),
                ColumnData::U16(v) => write!(v),
                ColumnData::U32(v) => write!(v),
                ColumnData::F32(v) => write!(v),
                ColumnData::F64(v) => write!(v),
            }
        }
    });
    PointCloud2 {
        header,
        height: 1,
        width: n as u32,
        fields,
        is_bigendian: false,
        point_step: point_step as u32,
        row_step: (n * point_step) as u32,
        data,
        is_dense: true,
    }
}

/// The labelled output layout: `x, y, z, intensity (f32), label (u32), score (f32), rgb (u32)`, 28 bytes
/// a point. `rgb` is packed `0x00RRGGBB` so RViz colours the cloud by label with its default settings.
pub fn encode_labelled(header: Header, cloud: &PointCloud, labels: &[u32], scores: &[f32]) -> PointCloud2 {
    encode_labelled_into(header, cloud, labels, scores, Vec::new())
}

/// [`encode_labelled`] into the allocation of `data`.
pub fn encode_labelled_into(header: Header, cloud: &PointCloud, labels: &[u32], scores: &[f32], data: Vec<u8>) -> PointCloud2 {
    let rgb: Vec<u32> = labels.iter().map(|&l| label_color(l)).collect();
    encode_columns_into(
        header,
        &[
            Column::new("x", ColumnData::F32(&cloud.x)),
            Column::new("y", ColumnData::F32(&cloud.y)),
            Column::new("z", ColumnData::F32(&cloud.z)),
            Column::new("intensity", ColumnData::F32(&cloud.intensity)),
            Column::new("label", ColumnData::U32(labels)),
            Column::new("score", ColumnData::F32(scores)),
            Column::new("rgb", ColumnData::U32(&rgb)),
        ],
        data,
    )
}

/// The Velodyne ROS 2 driver layout `x, y, z, intensity (f32), ring (u16), time (f32)` (22 bytes, `time`
/// unaligned at 18), plus `label (u32)` when the cloud carries labels (ground truth in datasets).
pub fn encode_velodyne(header: Header, cloud: &PointCloud) -> PointCloud2 {
    let n = cloud.len();
    let zeros_u16;
    let ring = match &cloud.ring {
        Some(r) => r.as_slice(),
        None => {
            zeros_u16 = vec![0u16; n];
            &zeros_u16
        }
    };
    let zeros_f32;
    let time = match &cloud.time {
        Some(t) => t.as_slice(),
        None => {
            zeros_f32 = vec![0f32; n];
            &zeros_f32
        }
    };
    let mut columns = vec![
        Column::new("x", ColumnData::F32(&cloud.x)),
        Column::new("y", ColumnData::F32(&cloud.y)),
        Column::new("z", ColumnData::F32(&cloud.z)),
        Column::new("intensity", ColumnData::F32(&cloud.intensity)),
        Column::new("ring", ColumnData::U16(ring)),
        Column::new("time", ColumnData::F32(time)),
    ];
    if let Some(label) = &cloud.label {
        columns.push(Column::new("label", ColumnData::U32(label)));
    }
    encode_columns(header, &columns)
}

/// Display colour (`0x00RRGGBB`) of a SemanticKITTI label id (lower 16 bits): moving classes red,
/// movable-but-parked orange, vehicles' and people's static classes by kind, the static world grey,
/// unknown blue.
pub fn label_color(label: u32) -> u32 {
    match label & 0xFFFF {
        0 | 1 => 0x3C64DC,           // unlabelled / outlier / unknown: blue
        9 => 0xB4B4B4,               // static (MOS)
        250 => 0xFFA000,             // movable (KDMOS class 2)
        251..=259 => 0xFF1E1E,       // moving-*
        10..=20 => 0xF5A030,         // parked vehicles
        30..=32 => 0xE6C850,         // standing people / parked cyclists
        40 | 44 | 48 | 49 => 0x8C8C8C, // road, parking, sidewalk, other-ground
        50..=52 => 0x6E6E78,         // building, fence, other-structure
        70 | 72 => 0x50A050,         // vegetation, terrain
        71 => 0x78503C,              // trunk
        80 | 81 => 0xC8C8DC,         // pole, traffic sign
        _ => 0xB4B4B4,
    }
}
