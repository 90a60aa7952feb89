//! CDR (XCDR1) serialisation of ROS 2 messages with the 4-byte encapsulation header that DDS and
//! rosbag2 put in front of every payload.
//!
//! Decoding works on a borrowed slice and checks every declared length against the bytes that are
//! actually there before touching them, so a hostile length prefix can neither read out of bounds nor
//! make us allocate more than the message holds.

use byteorder::{BigEndian, LittleEndian};
use cdr_encoding::{CdrDeserializer, CdrSerializer};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Encapsulation identifiers (first two bytes of a serialised payload, big-endian).
const CDR_BE: [u8; 2] = [0x00, 0x00];
const CDR_LE: [u8; 2] = [0x00, 0x01];
/// Length of the encapsulation header: 2 bytes kind, 2 bytes options.
pub const HEADER_LEN: usize = 4;

#[derive(Debug, Error)]
pub enum CdrError {
    #[error("CDR payload of {len} bytes is shorter than the 4-byte encapsulation header")]
    NoHeader { len: usize },
    #[error("unsupported CDR encapsulation {kind:02x?} (only plain CDR, big or little endian, is supported)")]
    Encapsulation { kind: [u8; 2] },
    #[error("malformed {type_name} at byte offset {offset}: {reason}")]
    Malformed { type_name: &'static str, offset: usize, reason: String },
    #[error("cannot serialise {type_name}: {reason}")]
    Serialise { type_name: &'static str, reason: String },
}

/// Decodes one message (header included). Fields such as `PointCloud2Ref::data` borrow from `bytes`.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, CdrError> {
    if bytes.len() < HEADER_LEN {
        return Err(CdrError::NoHeader { len: bytes.len() });
    }
    let kind = [bytes[0], bytes[1]];
    let body = &bytes[HEADER_LEN..];
    let type_name = short_type_name::<T>();
    // Alignment in CDR is relative to the first byte after the encapsulation header.
    let (result, consumed) = match kind {
        CDR_LE => {
            let mut de = CdrDeserializer::<LittleEndian>::new(body);
            let r = T::deserialize(&mut de);
            (r, de.bytes_consumed())
        }
        CDR_BE => {
            let mut de = CdrDeserializer::<BigEndian>::new(body);
            let r = T::deserialize(&mut de);
            (r, de.bytes_consumed())
        }
        kind => return Err(CdrError::Encapsulation { kind }),
    };
    result.map_err(|e| CdrError::Malformed {
        type_name,
        offset: HEADER_LEN + consumed,
        reason: match e {
            cdr_encoding::Error::Eof => format!("truncated: the payload ends after {} bytes", bytes.len()),
            other => other.to_string(),
        },
    })
}

/// Encodes one message as little-endian CDR with its encapsulation header.
pub fn encode<T: Serialize>(message: &T) -> Result<Vec<u8>, CdrError> {
    let mut out = Vec::with_capacity(256);
    encode_into(message, &mut out)?;
    Ok(out)
}

/// Like [`encode`], appending to `out` (which is cleared first) so a caller can reuse its buffer.
pub fn encode_into<T: Serialize>(message: &T, out: &mut Vec<u8>) -> Result<(), CdrError> {
    out.clear();
    out.extend_from_slice(&[CDR_LE[0], CDR_LE[1], 0, 0]);
    // The serializer counts alignment from its own start, i.e. from after the header.
    let mut ser = CdrSerializer::<_, LittleEndian>::new(&mut *out);
    message.serialize(&mut ser).map_err(|e| CdrError::Serialise { type_name: short_type_name::<T>(), reason: e.to_string() })
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::*;

    #[test]
    fn header_round_trip_and_layout() {
        let header = Header { stamp: Time { sec: 5, nanosec: 7 }, frame_id: "velodyne".into() };
        let bytes = encode(&header).unwrap();
        // encapsulation, sec, nanosec, string length 9 (with NUL), "velodyne\0"
        assert_eq!(&bytes[..4], &[0, 1, 0, 0]);
        assert_eq!(&bytes[4..8], &5i32.to_le_bytes());
        assert_eq!(&bytes[12..16], &9u32.to_le_bytes());
        assert_eq!(&bytes[16..25], b"velodyne\0");
        let back: Header = decode(&bytes).unwrap();
        assert_eq!(back, header);
    }

    #[test]
    fn odometry_covariance_round_trip() {
        let mut odom = Odometry::default();
        odom.pose.covariance[35] = 0.25;
        odom.child_frame_id = "base_link".into();
        odom.pose.pose.position.x = 1.5;
        let back: Odometry = decode(&encode(&odom).unwrap()).unwrap();
        assert_eq!(back, odom);
    }

    #[test]
    fn big_endian_payload_decodes() {
        // Header { stamp: {1, 2}, frame_id: "a" } in big-endian CDR
        let mut bytes = vec![0, 0, 0, 0];
        bytes.extend_from_slice(&1i32.to_be_bytes());
        bytes.extend_from_slice(&2u32.to_be_bytes());
        bytes.extend_from_slice(&2u32.to_be_bytes());
        bytes.extend_from_slice(b"a\0");
        let header: Header = decode(&bytes).unwrap();
        assert_eq!(header.stamp, Time { sec: 1, nanosec: 2 });
        assert_eq!(header.frame_id, "a");
    }

    #[test]
    fn truncated_payload_names_type_and_offset() {
        let cloud = PointCloud2 {
            header: Header::default(),
            height: 1,
            width: 2,
            fields: vec![],
            is_bigendian: false,
            point_step: 4,
            row_step: 8,
            data: vec![1; 8],
            is_dense: true,
        };
        let bytes = encode(&cloud).unwrap();
        let err = decode::<PointCloud2Ref>(&bytes[..bytes.len() - 6]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("PointCloud2Msg") && text.contains("offset"), "{text}");
    }

    #[test]
    fn huge_declared_length_fails_without_allocating() {
        // A Header whose frame_id claims 4 GiB.
        let mut bytes = vec![0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        bytes.extend_from_slice(b"abc");
        assert!(matches!(decode::<Header>(&bytes), Err(CdrError::Malformed { .. })));
        assert!(matches!(decode::<Header>(&bytes[..2]), Err(CdrError::NoHeader { .. })));
        let mut xcdr2 = bytes.clone();
        xcdr2[1] = 7;
        assert!(matches!(decode::<Header>(&xcdr2), Err(CdrError::Encapsulation { .. })));
    }

    #[test]
    fn time_nanos_conversions() {
        assert_eq!(Time::from_nanos(1_500_000_000), Time { sec: 1, nanosec: 500_000_000 });
        assert_eq!(Time::from_nanos(-1).to_nanos(), -1);
        assert_eq!(Time { sec: 3, nanosec: 1 }.to_nanos(), 3_000_000_001);
    }
}
