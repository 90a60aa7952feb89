//! LiDAR moving-object segmentation: label spaces, device and precision choices, and the online
//! [`engine`] that turns scans with poses into per-point moving/static labels.

pub mod engine;
pub mod outputs;

pub use engine::{EngineConfig, EngineError, MosEngine, ScanInput, ScanResult, StageTimings};

use crate::model::Variant;
use serde::{Deserialize, Serialize};
use tch::Device;

/// SemanticKITTI ids written for KDMOS classes 0 unlabelled, 1 static, 2 movable, 3 moving.
pub const KDMOS_INVERSE: [u32; 4] = [0, 9, 250, 251];
/// SemanticKITTI ids written for MotionBEV classes 0 static, 1 moving.
pub const MOTIONBEV_INVERSE: [u32; 2] = [9, 251];

/// The moving/static label of the node's outputs.
pub const LABEL_UNKNOWN: u32 = 0;
pub const LABEL_STATIC: u32 = 9;
pub const LABEL_MOVING: u32 = 251;

/// KDMOS 4-class learning map of a raw SemanticKITTI id: 0 unlabelled (ignored), 1 static,
/// 2 movable (a movable class that does not move), 3 moving.
pub fn kdmos_class(raw: u32) -> u8 {
    match raw & 0xFFFF {
        9 | 40..=99 => 1,
        10 | 11 | 13 | 15 | 16 | 18 | 20 | 30 | 31 | 32 | 250 => 2,
        251..=259 => 3,
        _ => 0,
    }
}

/// The raw id written for a predicted class.
pub fn inverse_label(variant: Variant, class: u8) -> u32 {
    match variant {
        Variant::Kdmos => KDMOS_INVERSE.get(class as usize).copied().unwrap_or(0),
        Variant::MotionBev => MOTIONBEV_INVERSE.get(class as usize).copied().unwrap_or(0),
    }
}

/// The class that means "moving" in a variant's output.
pub fn moving_class(variant: Variant) -> i64 {
    match variant {
        Variant::Kdmos => 3,
        Variant::MotionBev => 1,
    }
}

/// `auto`, `cpu`, `cuda` or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(into = "String")]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda(usize),
}

impl DeviceChoice {
    pub fn resolve(self) -> Result<Device, String> {
        match self {
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda(i) => {
                let count = tch::Cuda::device_count() as usize;
                if i < count {
                    Ok(Device::Cuda(i))
                } else if count == 0 {
                    Err(format!("device cuda:{i} requested but libtorch sees no CUDA device"))
                } else {
                    Err(format!("device cuda:{i} requested but only {count} CUDA device(s) exist"))
                }
            }
        }
    }
}

// A visitor rather than `try_from`: serde_yaml then reports a bad value with its key ("mos.device").
impl<'de> Deserialize<'de> for DeviceChoice {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Choice;
        impl serde::de::Visitor<'_> for Choice {
            type Value = DeviceChoice;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("auto, cpu, cuda or cuda:N")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DeviceChoice, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Choice)
    }
}

impl From<DeviceChoice> for String {
    fn from(d: DeviceChoice) -> String {
        d.to_string()
    }
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| format!("unknown device '{other}' (auto, cpu, cuda or cuda:N)")),
        }
    }
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

/// Numeric precision of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    Fp32,
    Bf16,
    Fp16,
}

impl Precision {
    pub fn kind(self) -> tch::Kind {
        match self {
            Precision::Fp32 => tch::Kind::Float,
            Precision::Bf16 => tch::Kind::BFloat16,
            Precision::Fp16 => tch::Kind::Half,
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fp32" => Ok(Precision::Fp32),
            "bf16" => Ok(Precision::Bf16),
            "fp16" => Ok(Precision::Fp16),
            other => Err(format!("unknown precision '{other}' (fp32, bf16 or fp16)")),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_maps() {
        assert_eq!(kdmos_class(0), 0);
        assert_eq!(kdmos_class(40), 1);
        assert_eq!(kdmos_class(10 | (5 << 16)), 2);
        assert_eq!(kdmos_class(252), 3);
        assert_eq!(inverse_label(Variant::Kdmos, 2), 250);
        assert_eq!(inverse_label(Variant::MotionBev, 1), 251);
        assert_eq!("cuda:1".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda(1)));
        assert!("gpu".parse::<DeviceChoice>().is_err());
    }
}
