//! Point clouds: `sensor_msgs/PointCloud2` decoding into structure-of-arrays, encoding of packed
//! layouts (the labelled output, the Velodyne layout), colours, and PCD files.
//!
//! Decoding goes by each field's name, offset, datatype and count and by the message's endianness,
//! steps and size, never by casting the buffer: real drivers publish unaligned and mixed-type layouts
//! (Velodyne's 22-byte points with a float at offset 18, ARS548's `int8` RCS, Nebula's `uint8`
//! intensity and `uint32` nanosecond times).

mod decode;
mod encode;
pub mod pcd;

pub use decode::{decode, decode_into, decode_with, DecodeReport, FieldMapping};
pub use encode::{encode_columns, encode_columns_into, encode_labelled, encode_labelled_into, encode_velodyne, label_color, Column, ColumnData};

use thiserror::Error;

/// `sensor_msgs/PointField` datatypes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datatype {
    I8 = 1,
    U8 = 2,
    I16 = 3,
    U16 = 4,
    I32 = 5,
    U32 = 6,
    F32 = 7,
    F64 = 8,
}

impl Datatype {
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Datatype::I8,
            2 => Datatype::U8,
            3 => Datatype::I16,
            4 => Datatype::U16,
            5 => Datatype::I32,
            6 => Datatype::U32,
            7 => Datatype::F32,
            8 => Datatype::F64,
            _ => return None,
        })
    }

    pub fn size(self) -> usize {
        match self {
            Datatype::I8 | Datatype::U8 => 1,
            Datatype::I16 | Datatype::U16 => 2,
            Datatype::I32 | Datatype::U32 | Datatype::F32 => 4,
            Datatype::F64 => 8,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, Datatype::F32 | Datatype::F64)
    }
}

/// A decoded cloud as structure-of-arrays. Only finite points are kept; `source_index` maps each kept
/// point back to its index in the message (row-major) when some were dropped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PointCloud {
    pub x: Vec<f32>,
    pub y: Vec<f32>,
    pub z: Vec<f32>,
    /// Intensity/remission as the driver sent it (0 where the cloud has no such field).
    pub intensity: Vec<f32>,
    /// Per-point time in seconds relative to the header stamp, if the cloud has a time field.
    pub time: Option<Vec<f32>>,
    pub ring: Option<Vec<u16>>,
    /// Ground-truth or predicted labels carried in the cloud (SemanticKITTI raw ids).
    pub label: Option<Vec<u32>>,
    /// Radar cross-section (dBsm).
    pub rcs: Option<Vec<f32>>,
    /// Radial (Doppler) velocity relative to the sensor, m/s.
    pub radial_velocity: Option<Vec<f32>>,
    /// Radial velocity compensated for ego motion, m/s.
    pub radial_velocity_compensated: Option<Vec<f32>>,
    /// Index of each point in the original message; `None` when no point was dropped.
    pub source_index: Option<Vec<u32>>,
    /// Points in the original message (height × width).
    pub source_len: usize,
    /// Height and width of the original message.
    pub source_shape: [u32; 2],
}

impl PointCloud {
    pub fn len(&self) -> usize {
        self.x.len()
    }

    pub fn is_empty(&self) -> bool {
        self.x.is_empty()
    }

    /// A cloud of plain points with intensities (the SemanticKITTI `.bin` content).
    pub fn from_xyzi(x: Vec<f32>, y: Vec<f32>, z: Vec<f32>, intensity: Vec<f32>) -> Self {
        let n = x.len();
        debug_assert!(y.len() == n && z.len() == n && intensity.len() == n);
        PointCloud { x, y, z, intensity, source_len: n, source_shape: [1, n as u32], ..Default::default() }
    }

    /// Scatters per-kept-point values back to the message's point order, filling dropped points.
    pub fn scatter_to_source<T: Copy>(&self, values: &[T], fill: T) -> Vec<T> {
        match &self.source_index {
            None => values.to_vec(),
            Some(index) => {
                let mut out = vec![fill; self.source_len];
                for (&i, &v) in index.iter().zip(values) {
                    out[i as usize] = v;
                }
                out
            }
        }
    }
}

/// What is wrong with a PointCloud2, naming the field and the numbers involved. Callers add where the
/// message came from (file, topic, index).
#[derive(Debug, Error, PartialEq)]
pub enum CloudError {
    #[error("field '{field}' is missing (the cloud has fields: {available})")]
    MissingField { field: String, available: String },
    #[error("field '{field}' has unknown datatype {datatype} (valid: 1..=8)")]
    UnknownDatatype { field: String, datatype: u8 },
    #[error("field '{field}' has count 0")]
    ZeroCount { field: String },
    #[error("field '{field}' ends at byte {end} of a point, but point_step is {point_step}")]
    FieldOutsidePoint { field: String, end: u64, point_step: u32 },
    #[error("row_step {row_step} is smaller than width {width} × point_step {point_step}")]
    RowStepTooSmall { row_step: u32, width: u32, point_step: u32 },
    #[error("data holds {len} bytes but height {height} × row_step {row_step} needs {needed}")]
    DataTooShort { len: usize, height: u32, row_step: u32, needed: u64 },
    #[error("cloud declares {points} points (height {height} × width {width}), above the limit of {max}")]
    TooManyPoints { points: u64, height: u32, width: u32, max: u64 },
    #[error("point_step is 0 for a non-empty cloud")]
    ZeroPointStep,
}
