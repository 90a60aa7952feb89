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
    let mut cloud = PointCloud::default();
    let report = decode_into(msg, mapping, &mut cloud)?;
    Ok((cloud, report))
}

/// Decodes into `out`, reusing its buffers: a stream of clouds (a node, a bag replay) then decodes
/// without allocating, which on its own costs more than the decoding of a 120k-point cloud.
pub fn decode_into<D: AsRef<[u8]>>(
    msg: &PointCloud2Msg<D>,
    mapping: &FieldMapping,
    out: &mut PointCloud,
) -> Result<DecodeReport, CloudError> {
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

    // Reuse the caller's buffers; a column the cloud lacks is dropped (and its buffer with it).
    // Every element is overwritten by the extraction, so only a grown tail needs initialising.
    fn reuse<T: Copy + Default>(slot: Option<Vec<T>>, present: bool, n: usize) -> Option<Vec<T>> {
        present.then(|| {
            let mut v = slot.unwrap_or_default();
            v.truncate(n);
            v.resize(n, T::default());
            v
        })
    }
    let f_intensity = find(&msg.fields, &mapping.intensity);
    let f_rcs = find(&msg.fields, &mapping.rcs);
    let f_velocity = find(&msg.fields, &mapping.radial_velocity);
    let f_velocity_comp = find(&msg.fields, &mapping.radial_velocity_compensated);
    let f_ring = find(&msg.fields, &mapping.ring);
    let f_label = find(&msg.fields, &mapping.label);
    let f_time = find(&msg.fields, &mapping.time);
    let mut x = reuse(Some(std::mem::take(&mut out.x)), true, n).unwrap_or_default();
    let mut y = reuse(Some(std::mem::take(&mut out.y)), true, n).unwrap_or_default();
    let mut z = reuse(Some(std::mem::take(&mut out.z)), true, n).unwrap_or_default();
    let mut intensity = reuse(Some(std::mem::take(&mut out.intensity)), true, n).unwrap_or_default();
    let mut rcs = reuse(out.rcs.take(), f_rcs.is_some(), n);
    let mut velocity = reuse(out.radial_velocity.take(), f_velocity.is_some(), n);
    let mut velocity_comp = reuse(out.radial_velocity_compensated.take(), f_velocity_comp.is_some(), n);
    let mut ring = reuse(out.ring.take(), f_ring.is_some(), n);
    let mut label = reuse(out.label.take(), f_label.is_some(), n);
    // Time: float fields are seconds (relative; double-precision ones may be absolute stamps, as
    // Hesai/Livox `timestamp`), integer fields nanoseconds (Ouster `t`, Nebula `time_stamp`).
    let f64_time = f_time.filter(|f| f.datatype == Datatype::F64);
    let mut time = reuse(out.time.take(), f_time.is_some() && f64_time.is_none(), n);
    let mut time64 = f64_time.map(|_| vec![0f64; n]);
    {
        let mut tasks: Vec<(Located, Dest)> = vec![(fx, Dest::F32(&mut x)), (fy, Dest::F32(&mut y)), (fz, Dest::F32(&mut z))];
        let pairs = [(f_intensity, Some(&mut intensity)), (f_rcs, rcs.as_mut()), (f_velocity, velocity.as_mut()), (f_velocity_comp, velocity_comp.as_mut()), (f_time, time.as_mut())];
        for (field, column) in pairs {
            if let (Some(f), Some(v)) = (field, column) {
                tasks.push((f, Dest::F32(v)));
            }
        }
        if let (Some(f), Some(v)) = (f_ring, ring.as_mut()) {
            tasks.push((f, Dest::U16(v)));
        }
        if let (Some(f), Some(v)) = (f_label, label.as_mut()) {
            tasks.push((f, Dest::U32(v)));
        }
        if let (Some(f), Some(v)) = (f64_time, time64.as_mut()) {
            tasks.push((f, Dest::F64(v)));
        }
        extract(&layout, &mut tasks);
    }
    if let (Some(f), Some(t)) = (f_time, time.as_mut()) {
        if !f.datatype.is_float() {
            // nanoseconds → seconds, rounded once
            t.iter_mut().for_each(|v| *v = (f64::from(*v) * 1e-9) as f32);
        }
    }
    if let Some(t64) = time64 {
        let offset = if t64.iter().any(|v| v.abs() > 1e6) { msg.header.stamp.to_seconds() } else { 0.0 };
        time = Some(t64.into_iter().map(|v| (v - offset) as f32).collect());
    }
    let cloud = out;
    *cloud = PointCloud {
        x,
        y,
        z,
        intensity,
        time,
        ring,
        label,
        rcs,
        radial_velocity: velocity,
        radial_velocity_compensated: velocity_comp,
        source_index: cloud.source_index.take().map(|mut v| {
            v.clear();
            v
        }),
        source_len: n,
        source_shape: [msg.height, msg.width],
    };

    let dropped = drop_nonfinite(cloud);
    Ok(DecodeReport { total: n, dropped_nonfinite: dropped })
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

/// Where one field's values go.
enum Dest<'a> {
    F32(&'a mut [f32]),
    F64(&'a mut [f64]),
    U16(&'a mut [u16]),
    U32(&'a mut [u32]),
}

/// Points per block: each field is extracted over a block that stays in L1 cache, instead of
/// streaming the whole buffer once per field (a 120k-point cloud is several MB).
const BLOCK: usize = 512;

fn extract(layout: &Layout, tasks: &mut [(Located, Dest)]) {
    let step = layout.point_step;
    for r in 0..layout.height {
        let row = &layout.data[r * layout.row_step..r * layout.row_step + layout.width * step];
        for c0 in (0..layout.width).step_by(BLOCK) {
            let c1 = (c0 + BLOCK).min(layout.width);
            let points = &row[c0 * step..c1 * step];
            let (start, end) = (r * layout.width + c0, r * layout.width + c1);
            for (field, dest) in tasks.iter_mut() {
                match dest {
                    Dest::F32(out) => convert_f32(points, step, *field, layout.big_endian, &mut out[start..end]),
                    Dest::F64(out) => convert_f64(points, step, *field, layout.big_endian, &mut out[start..end]),
                    Dest::U16(out) => convert_u16(points, step, *field, layout.big_endian, &mut out[start..end]),
                    Dest::U32(out) => convert_u32(points, step, *field, layout.big_endian, &mut out[start..end]),
                }
            }
        }
    }
}

/// Writes field `offset` of every point in `points` (stride `step`) converted by `convert`.
#[inline(always)]
fn column<const SIZE: usize, T>(points: &[u8], step: usize, offset: usize, out: &mut [T], convert: impl Fn([u8; SIZE]) -> T) {
    for (dst, point) in out.iter_mut().zip(points.chunks_exact(step)) {
        let mut bytes = [0u8; SIZE];
        bytes.copy_from_slice(&point[offset..offset + SIZE]);
        *dst = convert(bytes);
    }
}

macro_rules! converter {
    ($name:ident, $out:ty) => {
        fn $name(points: &[u8], step: usize, f: Located, be: bool, out: &mut [$out]) {
            let o = f.offset;
            match (f.datatype, be) {
                (Datatype::I8, _) => column::<1, $out>(points, step, o, out, |b| b[0] as i8 as $out),
                (Datatype::U8, _) => column::<1, $out>(points, step, o, out, |b| b[0] as $out),
                (Datatype::I16, false) => column::<2, $out>(points, step, o, out, |b| i16::from_le_bytes(b) as $out),
                (Datatype::I16, true) => column::<2, $out>(points, step, o, out, |b| i16::from_be_bytes(b) as $out),
                (Datatype::U16, false) => column::<2, $out>(points, step, o, out, |b| u16::from_le_bytes(b) as $out),
                (Datatype::U16, true) => column::<2, $out>(points, step, o, out, |b| u16::from_be_bytes(b) as $out),
                (Datatype::I32, false) => column::<4, $out>(points, step, o, out, |b| i32::from_le_bytes(b) as $out),
                (Datatype::I32, true) => column::<4, $out>(points, step, o, out, |b| i32::from_be_bytes(b) as $out),
                (Datatype::U32, false) => column::<4, $out>(points, step, o, out, |b| u32::from_le_bytes(b) as $out),
                (Datatype::U32, true) => column::<4, $out>(points, step, o, out, |b| u32::from_be_bytes(b) as $out),
                (Datatype::F32, false) => column::<4, $out>(points, step, o, out, |b| f32::from_le_bytes(b) as $out),
                (Datatype::F32, true) => column::<4, $out>(points, step, o, out, |b| f32::from_be_bytes(b) as $out),
                (Datatype::F64, false) => column::<8, $out>(points, step, o, out, |b| f64::from_le_bytes(b) as $out),
                (Datatype::F64, true) => column::<8, $out>(points, step, o, out, |b| f64::from_be_bytes(b) as $out),
            }
        }
    };
}

converter!(convert_f32, f32);
converter!(convert_f64, f64);
converter!(convert_u16, u16);
converter!(convert_u32, u32);

/// Removes points with a non-finite coordinate from every column; returns how many were removed.
fn drop_nonfinite(cloud: &mut PointCloud) -> usize {
    let n = cloud.x.len();
    let finite = |i: usize| cloud.x[i].is_finite() && cloud.y[i].is_finite() && cloud.z[i].is_finite();
    // v * 0 is 0 for finite v and NaN otherwise: a branch-free test the compiler vectorises
    let all_finite = cloud.x.iter().zip(&cloud.y).zip(&cloud.z).fold(0.0f32, |acc, ((x, y), z)| acc + (x * 0.0 + y * 0.0 + z * 0.0)) == 0.0;
    if all_finite {
        cloud.source_index = None;
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
