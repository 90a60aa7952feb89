//! PointCloud2 → [`PointCloud`] by field name, offset, datatype, count and endianness.

use super::{CloudError, Datatype, PointCloud};
use crate::messages::{PointCloud2Msg, PointField};
use serde::{Deserialize, Serialize};

/// Which message fields play which role. Each role lists candidate names; the first one present in a
/// cloud is used, so one mapping serves several drivers (Velodyne `time` f32 s, Ouster `t` u32 ns,
/// Nebula `time_stamp` u32 ns; radar velocity as `v_r`, `v` or `velocity`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FieldMapping {
    pub x: String,
    pub y: String,
    pub z: String,
    pub intensity: Vec<String>,
    pub time: Vec<String>,
    pub ring: Vec<String>,
    pub label: Vec<String>,
    pub rcs: Vec<String>,
    pub radial_velocity: Vec<String>,
    pub radial_velocity_compensated: Vec<String>,
    /// Largest height × width accepted; larger declared sizes are rejected before any allocation.
    pub max_points: u64,
}

impl Default for FieldMapping {
    fn default() -> Self {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect();
        FieldMapping {
            x: "x".into(),
            y: "y".into(),
            z: "z".into(),
            intensity: names(&["intensity", "reflectivity", "remission", "i"]),
            time: names(&["time", "t", "time_stamp", "timestamp", "time_offset"]),
            ring: names(&["ring", "channel", "laser_id"]),
            label: names(&["label"]),
            rcs: names(&["RCS", "rcs"]),
            radial_velocity: names(&["v_r", "v", "velocity", "doppler_velocity", "radar_relative_radial_velocity"]),
            radial_velocity_compensated: names(&["v_r_compensated", "ground_relative_radial_velocity"]),
            max_points: 8_000_000,
        }
    }
}

/// Counts from one decode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeReport {
    /// Points declared by the message (height × width).
    pub total: usize,
    /// Points dropped because x, y or z was NaN or infinite.
    pub dropped_nonfinite: usize,
}

/// Decodes with the default [`FieldMapping`].
pub fn decode<D: AsRef<[u8]>>(msg: &PointCloud2Msg<D>) -> Result<(PointCloud, DecodeReport), CloudError> {
    decode_with(msg, &FieldMapping::default())
}

/// A field located in the point layout.
#[derive(Clone, Copy)]
struct Located {
    offset: usize,
    datatype: Datatype,
}

/// Geometry of the buffer, validated once.
struct Layout<'a> {
    data: &'a [u8],
    height: usize,
    width: usize,
    row_step: usize,
    point_step: usize,
    big_endian: bool,
}

pub fn decode_with<D: AsRef<[u8]>>(
    msg: &PointCloud2Msg<D>,
    mapping: &FieldMapping,
) -> Result<(PointCloud, DecodeReport), CloudError> {
    let data = msg.data.as_ref();
    let points = u64::from(msg.height) * u64::from(msg.width);
    if points > mapping.max_points {
        return Err(CloudError::TooManyPoints { points, height: msg.height, width: msg.width, max: mapping.max_points });
    }
    for field in &msg.fields {
        check_field(field, msg.point_step)?;
    }
    if points > 0 {
        if msg.point_step == 0 {
            return Err(CloudError::ZeroPointStep);
        }
        if u64::from(msg.row_step) < u64::from(msg.width) * u64::from(msg.point_step) {
            return Err(CloudError::RowStepTooSmall { row_step: msg.row_step, width: msg.width, point_step: msg.point_step });
        }
        // The last row only needs width × point_step bytes, but rosidl and every driver fill whole
        // rows; demand height × row_step as `sensor_msgs` documents.
        let needed = u64::from(msg.height) * u64::from(msg.row_step);
        if (data.len() as u64) < needed {
            return Err(CloudError::DataTooShort { len: data.len(), height: msg.height, row_step: msg.row_step, needed });
        }
    }
    let layout = Layout {
        data,
        height: msg.height as usize,
        width: msg.width as usize,
        row_step: msg.row_step as usize,
        point_step: msg.point_step as usize,
        big_endian: msg.is_bigendian,
    };
    let n = points as usize;

    let required = |name: &str| {
        find(&msg.fields, std::slice::from_ref(&name.to_string())).ok_or_else(|| CloudError::MissingField {
            field: name.to_string(),
            available: msg.fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", "),
        })
    };
    let (fx, fy, fz) = (required(&mapping.x)?, required(&mapping.y)?, required(&mapping.z)?);

    let mut cloud = PointCloud { source_len: n, ..Default::default() };
    cloud.x = read_f32(&layout, fx);
    cloud.y = read_f32(&layout, fy);
    cloud.z = read_f32(&layout, fz);
    cloud.intensity = match find(&msg.fields, &mapping.intensity) {
        Some(f) => read_f32(&layout, f),
        None => vec![0.0; n],
    };
    cloud.time = find(&msg.fields, &mapping.time).map(|f| {
        let mut t = read_f32_f64(&layout, f);
        if !f.datatype.is_float() {
            // integer time fields are nanoseconds (Ouster `t`, Nebula `time_stamp`)
            t.iter_mut().for_each(|v| *v *= 1e-9);
        } else if t.iter().any(|v| v.abs() > 1e6) {
            // absolute stamps in seconds (Hesai/Livox `timestamp`): make them relative
            let stamp = msg.header.stamp.to_seconds();
            t.iter_mut().for_each(|v| *v -= stamp);
        }
        t.into_iter().map(|v| v as f32).collect()
    });
    cloud.ring = find(&msg.fields, &mapping.ring).map(|f| read_f32_f64(&layout, f).into_iter().map(|v| v as u16).collect());
    cloud.label = find(&msg.fields, &mapping.label).map(|f| read_u32(&layout, f));
    cloud.rcs = find(&msg.fields, &mapping.rcs).map(|f| read_f32(&layout, f));
    cloud.radial_velocity = find(&msg.fields, &mapping.radial_velocity).map(|f| read_f32(&layout, f));
    cloud.radial_velocity_compensated =
        find(&msg.fields, &mapping.radial_velocity_compensated).map(|f| read_f32(&layout, f));

    let dropped = drop_nonfinite(&mut cloud);
    Ok((cloud, DecodeReport { total: n, dropped_nonfinite: dropped }))
}

fn check_field(field: &PointField, point_step: u32) -> Result<(), CloudError> {
    let datatype = Datatype::from_code(field.datatype)
        .ok_or_else(|| CloudError::UnknownDatatype { field: field.name.clone(), datatype: field.datatype })?;
    if field.count == 0 {
        return Err(CloudError::ZeroCount { field: field.name.clone() });
    }
    let end = u64::from(field.offset) + datatype.size() as u64 * u64::from(field.count);
    if end > u64::from(point_step) {
        return Err(CloudError::FieldOutsidePoint { field: field.name.clone(), end, point_step });
    }
    Ok(())
}

fn find(fields: &[PointField], names: &[String]) -> Option<Located> {
    names.iter().find_map(|name| {
        fields.iter().find(|f| &f.name == name).map(|f| Located {
            offset: f.offset as usize,
            // checked in check_field
            datatype: Datatype::from_code(f.datatype).unwrap_or(Datatype::U8),
        })
    })
}

/// Applies `convert` to the bytes of one field of every point, row by row.
#[inline(always)]
fn for_each_point<const SIZE: usize, T>(layout: &Layout, offset: usize, mut convert: impl FnMut([u8; SIZE]) -> T) -> Vec<T> {
    let mut out = Vec::with_capacity(layout.height * layout.width);
    if layout.height == 0 || layout.width == 0 {
        return out;
    }
    let row_len = layout.width * layout.point_step;
    for r in 0..layout.height {
        let row = &layout.data[r * layout.row_step..r * layout.row_step + row_len];
        for point in row.chunks_exact(layout.point_step) {
            let mut bytes = [0u8; SIZE];
            bytes.copy_from_slice(&point[offset..offset + SIZE]);
            out.push(convert(bytes));
        }
    }
    out
}

macro_rules! read_as {
    ($layout:expr, $field:expr, $out:ty) => {{
        let (l, f) = ($layout, $field);
        let be = l.big_endian;
        match f.datatype {
            Datatype::I8 => for_each_point::<1, $out>(l, f.offset, |b| b[0] as i8 as $out),
            Datatype::U8 => for_each_point::<1, $out>(l, f.offset, |b| b[0] as $out),
            Datatype::I16 => for_each_point::<2, $out>(l, f.offset, |b| (if be { i16::from_be_bytes(b) } else { i16::from_le_bytes(b) }) as $out),
            Datatype::U16 => for_each_point::<2, $out>(l, f.offset, |b| (if be { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) }) as $out),
            Datatype::I32 => for_each_point::<4, $out>(l, f.offset, |b| (if be { i32::from_be_bytes(b) } else { i32::from_le_bytes(b) }) as $out),
            Datatype::U32 => for_each_point::<4, $out>(l, f.offset, |b| (if be { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) }) as $out),
            Datatype::F32 => for_each_point::<4, $out>(l, f.offset, |b| (if be { f32::from_be_bytes(b) } else { f32::from_le_bytes(b) }) as $out),
            Datatype::F64 => for_each_point::<8, $out>(l, f.offset, |b| (if be { f64::from_be_bytes(b) } else { f64::from_le_bytes(b) }) as $out),
        }
    }};
}

fn read_f32(layout: &Layout, field: Located) -> Vec<f32> {
    read_as!(layout, field, f32)
}

/// Read at double precision (times, integer ids) before any scaling.
fn read_f32_f64(layout: &Layout, field: Located) -> Vec<f64> {
    read_as!(layout, field, f64)
}

fn read_u32(layout: &Layout, field: Located) -> Vec<u32> {
    read_as!(layout, field, u32)
}

/// Removes points with a non-finite coordinate from every column; returns how many were removed.
fn drop_nonfinite(cloud: &mut PointCloud) -> usize {
    let n = cloud.x.len();
    let finite = |i: usize| cloud.x[i].is_finite() && cloud.y[i].is_finite() && cloud.z[i].is_finite();
    if (0..n).all(finite) {
        return 0;
    }
    let keep: Vec<u32> = (0..n).filter(|&i| finite(i)).map(|i| i as u32).collect();
    fn compact<T: Copy>(column: &mut Vec<T>, keep: &[u32]) {
        *column = keep.iter().map(|&i| column[i as usize]).collect();
    }
    compact(&mut cloud.x, &keep);
    compact(&mut cloud.y, &keep);
    compact(&mut cloud.z, &keep);
    compact(&mut cloud.intensity, &keep);
    if let Some(c) = cloud.time.as_mut() {
        compact(c, &keep);
    }
    if let Some(c) = cloud.ring.as_mut() {
        compact(c, &keep);
    }
    if let Some(c) = cloud.label.as_mut() {
        compact(c, &keep);
    }
    for c in [&mut cloud.rcs, &mut cloud.radial_velocity, &mut cloud.radial_velocity_compensated].into_iter().flatten() {
        compact(c, &keep);
    }
    let dropped = n - keep.len();
    cloud.source_index = Some(keep);
    dropped
}
