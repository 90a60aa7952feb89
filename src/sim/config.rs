//! Simulator configuration: scene preset and seed, sequence length, LiDAR model, mounting and
//! odometry. Every section rejects unknown keys, missing keys take their defaults, and
//! [`SimConfig::validate`] names an offending parameter by its dotted path.

use super::SimError;
use crate::geometry::Pose3;
use nalgebra::{Translation3, UnitQuaternion};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Scene presets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// City streets: residential and arterial roads, signals, stop signs, parked cars, pedestrians.
    #[default]
    Urban,
    /// A divided motorway with fast traffic and lane changes.
    Highway,
    /// A car park: aisles, stall rows, slow cars and many pedestrians.
    Parking,
}

impl Preset {
    pub const ALL: [Preset; 3] = [Preset::Urban, Preset::Highway, Preset::Parking];

    pub fn name(self) -> &'static str {
        match self {
            Preset::Urban => "urban",
            Preset::Highway => "highway",
            Preset::Parking => "parking",
        }
    }

    pub fn parse(name: &str) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// LiDAR presets; any of their parameters can be overridden in [`LidarConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LidarPreset {
    /// Velodyne HDL-64E as on the KITTI car: 64 beams from +2° to −24.9° in two blocks, 0.17°
    /// azimuth steps, 120 m.
    #[default]
    Hdl64e,
    /// Ouster OS1-128 in its common 1024 × 10 Hz mode: 128 beams evenly from +22.5° to −22.5°,
    /// 120 m.
    Os1_128,
    /// Velodyne VLP-16: 16 beams from +15° to −15°, 0.2° steps, 100 m.
    Vlp16,
}

/// The LiDAR: a preset and optional overrides.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LidarConfig {
    pub preset: LidarPreset,
    /// Beam elevations, degrees (any order).
    pub elevations_deg: Option<Vec<f64>>,
    /// Firings per revolution.
    pub azimuth_steps: Option<usize>,
    pub max_range_m: Option<f64>,
    pub min_range_m: Option<f64>,
    /// Range noise (1 σ) = `range_noise_m + range_noise_per_m × range`.
    pub range_noise_m: Option<f64>,
    pub range_noise_per_m: Option<f64>,
    /// Probability that a return is lost whatever the target (electronics, multipath).
    pub dropout: Option<f64>,
    /// Received-power proxy (reflectivity × cos(incidence) / range²) at which half of the returns
    /// are detected: dark surfaces far away and at grazing angles fade out.
    pub detection_threshold: Option<f64>,
    /// Rough ground (grass, gravel) scatters ranges, more so at grazing incidence.
    pub roughness: Option<bool>,
}

/// The LiDAR's parameters after applying the overrides to the preset.
#[derive(Debug, Clone, PartialEq)]
pub struct LidarModel {
    pub elevations_deg: Vec<f64>,
    pub azimuth_steps: usize,
    pub max_range_m: f64,
    pub min_range_m: f64,
    pub range_noise_m: f64,
    pub range_noise_per_m: f64,
    pub dropout: f64,
    pub detection_threshold: f64,
    pub roughness: bool,
}

impl LidarConfig {
    pub fn of(preset: LidarPreset) -> LidarConfig {
        LidarConfig { preset, ..Default::default() }
    }

    pub fn model(&self) -> LidarModel {
        let (elevations, steps, max_range, min_range) = match self.preset {
            LidarPreset::Hdl64e => {
                // upper block: 32 lasers +2.0° … −8.33° (1/3° apart); lower block: 32 lasers
                // −8.83° … −24.9° (about 1/2° apart)
                let upper = (0..32).map(|i| 2.0 - i as f64 * (10.33 / 31.0));
                let lower = (0..32).map(|i| -8.83 - i as f64 * (16.07 / 31.0));
                (upper.chain(lower).collect::<Vec<_>>(), 2083, 120.0, 0.9)
            }
            LidarPreset::Os1_128 => ((0..128).map(|i| 22.5 - i as f64 * 45.0 / 127.0).collect(), 1024, 120.0, 0.5),
            LidarPreset::Vlp16 => ((0..16).map(|i| -15.0 + i as f64 * 2.0).collect(), 1800, 100.0, 0.5),
        };
        LidarModel {
            elevations_deg: self.elevations_deg.clone().unwrap_or(elevations),
            azimuth_steps: self.azimuth_steps.unwrap_or(steps),
            max_range_m: self.max_range_m.unwrap_or(max_range),
            min_range_m: self.min_range_m.unwrap_or(min_range),
            range_noise_m: self.range_noise_m.unwrap_or(0.008),
            range_noise_per_m: self.range_noise_per_m.unwrap_or(0.0002),
            dropout: self.dropout.unwrap_or(0.015),
            detection_threshold: self.detection_threshold.unwrap_or(1.5e-6),
            roughness: self.roughness.unwrap_or(true),
        }
    }
}

/// Where the LiDAR sits on the vehicle: `base_link` → LiDAR frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MountConfig {
    /// Translation, metres (`base_link` is on the ground below the vehicle's centre).
    pub xyz: [f64; 3],
    /// Roll, pitch, yaw, degrees.
    pub rpy_deg: [f64; 3],
}

impl Default for MountConfig {
    fn default() -> Self {
        // KITTI: the Velodyne 1.73 m above the ground, on the roof a little ahead of the centre
        MountConfig { xyz: [0.27, 0.0, 1.73], rpy_deg: [0.0, 0.0, 0.0] }
    }
}

impl MountConfig {
    pub fn pose(&self) -> Pose3 {
        let [r, p, y] = self.rpy_deg.map(f64::to_radians);
        Pose3::from_parts(Translation3::new(self.xyz[0], self.xyz[1], self.xyz[2]), UnitQuaternion::from_euler_angles(r, p, y))
    }
}

/// Odometry as a vehicle would report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OdometryConfig {
    /// Message rate, Hz; a whole multiple of the scan rate.
    pub rate_hz: f64,
    /// Add noise and drift (otherwise the odometry is the true pose).
    pub noise: bool,
    /// Wheel-speed scale error (1 σ of a constant factor, e.g. 0.01 = 1 %).
    pub scale_error: f64,
    /// Constant yaw-rate bias (1 σ), degrees per second.
    pub yaw_bias_deg_s: f64,
    /// Random walk of position, metres per √second, and of yaw, degrees per √second.
    pub translation_walk: f64,
    pub yaw_walk_deg: f64,
}

impl Default for OdometryConfig {
    fn default() -> Self {
        OdometryConfig { rate_hz: 50.0, noise: false, scale_error: 0.01, yaw_bias_deg_s: 0.05, translation_walk: 0.01, yaw_walk_deg: 0.03 }
    }
}

/// The whole simulator configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimConfig {
    pub preset: Preset,
    pub seed: u64,
    /// Scans in the sequence.
    pub scans: usize,
    pub scan_rate_hz: f64,
    /// Stamp of the first scan (the start of its sweep), seconds since the epoch.
    pub start_time_s: f64,
    /// Scales how many vehicles and pedestrians there are (1 = the preset's typical traffic).
    pub traffic_density: f64,
    /// An object is moving at a scan when it travelled faster than this on average since the
    /// previous scan, m/s.
    pub moving_speed_threshold: f64,
    pub lidar: LidarConfig,
    pub mount: MountConfig,
    pub odometry: OdometryConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            preset: Preset::Urban,
            seed: 0,
            scans: 200,
            scan_rate_hz: 10.0,
            // 2023-11-14 22:13:20 UTC
            start_time_s: 1_700_000_000.0,
            traffic_density: 1.0,
            moving_speed_threshold: 0.2,
            lidar: LidarConfig::default(),
            mount: MountConfig::default(),
            odometry: OdometryConfig::default(),
        }
    }
}

/// Longest sequence, seconds.
pub const MAX_DURATION_S: f64 = 600.0;

fn invalid(parameter: &str, reason: impl Into<String>) -> SimError {
    SimError::Config { parameter: parameter.to_string(), reason: reason.into() }
}

impl SimConfig {
    pub fn load(path: &Path) -> Result<SimConfig, SimError> {
        let text = std::fs::read_to_string(path).map_err(|e| SimError::Parse { file: path.display().to_string(), reason: e.to_string() })?;
        Self::from_yaml(&text, &path.display().to_string())
    }

    pub fn from_yaml(text: &str, name: &str) -> Result<SimConfig, SimError> {
        let value: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| SimError::Parse { file: name.to_string(), reason: e.to_string() })?;
        let config: SimConfig = if value.is_null() { SimConfig::default() } else { serde_yaml::from_value(value).map_err(|e| SimError::Parse { file: name.to_string(), reason: e.to_string() })? };
        config.validate()?;
        Ok(config)
    }

    pub fn to_yaml(&self) -> String {
        serde_yaml::to_string(self).unwrap_or_default()
    }

    /// Seconds between scans.
    pub fn scan_period(&self) -> f64 {
        1.0 / self.scan_rate_hz
    }

    pub fn validate(&self) -> Result<(), SimError> {
        if self.scans == 0 {
            return Err(invalid("scans", "must be at least 1"));
        }
        if !(self.scan_rate_hz > 0.0 && self.scan_rate_hz <= 100.0) {
            return Err(invalid("scan_rate_hz", format!("{} is not in (0, 100]", self.scan_rate_hz)));
        }
        // the traffic simulation's cost grows with the square of the agents on a longer road; ten
        // minutes is more than SemanticKITTI's longest sequence (4661 scans)
        let duration = self.scans as f64 / self.scan_rate_hz;
        if duration > MAX_DURATION_S {
            return Err(invalid("scans", format!("{} scans at {} Hz last longer than {} minutes; split the run into several sequences", self.scans, self.scan_rate_hz, MAX_DURATION_S / 60.0)));
        }
        if !(self.start_time_s >= 0.0 && self.start_time_s < 2.0e9) {
            return Err(invalid("start_time_s", format!("{} is not a time between 1970 and 2033", self.start_time_s)));
        }
        if !(0.0..=10.0).contains(&self.traffic_density) {
            return Err(invalid("traffic_density", format!("{} is not in [0, 10]", self.traffic_density)));
        }
        if !(self.moving_speed_threshold > 0.0 && self.moving_speed_threshold < 5.0) {
            return Err(invalid("moving_speed_threshold", format!("{} m/s is not in (0, 5)", self.moving_speed_threshold)));
        }
        let lidar = self.lidar.model();
        if lidar.elevations_deg.is_empty() || lidar.elevations_deg.len() > 512 {
            return Err(invalid("lidar.elevations_deg", format!("{} beams (1 to 512 are possible)", lidar.elevations_deg.len())));
        }
        if let Some(e) = lidar.elevations_deg.iter().find(|e| e.is_nan() || e.abs() >= 89.0) {
            return Err(invalid("lidar.elevations_deg", format!("{e}° is not an elevation within ±89°")));
        }
        if !(16..=65_536).contains(&lidar.azimuth_steps) {
            return Err(invalid("lidar.azimuth_steps", format!("{} is not in 16..=65536", lidar.azimuth_steps)));
        }
        if !(lidar.max_range_m > 1.0 && lidar.max_range_m <= 500.0) {
            return Err(invalid("lidar.max_range_m", format!("{} is not in (1, 500]", lidar.max_range_m)));
        }
        if !(lidar.min_range_m >= 0.0 && lidar.min_range_m < lidar.max_range_m) {
            return Err(invalid("lidar.min_range_m", format!("{} must be at least 0 and below max_range_m", lidar.min_range_m)));
        }
        for (name, value) in [("lidar.range_noise_m", lidar.range_noise_m), ("lidar.range_noise_per_m", lidar.range_noise_per_m)] {
            if !(0.0..1.0).contains(&value) {
                return Err(invalid(name, format!("{value} is not in [0, 1)")));
            }
        }
        if !(0.0..1.0).contains(&lidar.dropout) {
            return Err(invalid("lidar.dropout", format!("{} is not in [0, 1)", lidar.dropout)));
        }
        if !(lidar.detection_threshold >= 0.0 && lidar.detection_threshold < 1.0) {
            return Err(invalid("lidar.detection_threshold", format!("{} is not in [0, 1)", lidar.detection_threshold)));
        }
        if self.mount.xyz.iter().chain(&self.mount.rpy_deg).any(|v| !v.is_finite()) || self.mount.xyz.iter().any(|v| v.abs() > 10.0) {
            return Err(invalid("mount", "translation must be within 10 m and all values finite"));
        }
        if self.mount.xyz[2] < 0.3 {
            return Err(invalid("mount.xyz", format!("the sensor at {} m would be in the ground", self.mount.xyz[2])));
        }
        let ratio = self.odometry.rate_hz / self.scan_rate_hz;
        if !(ratio >= 1.0 && (ratio - ratio.round()).abs() < 1e-9 && self.odometry.rate_hz <= 1000.0) {
            return Err(invalid("odometry.rate_hz", format!("{} Hz is not a whole multiple of the scan rate ({} Hz) up to 1000 Hz", self.odometry.rate_hz, self.scan_rate_hz)));
        }
        for (name, value) in [
            ("odometry.scale_error", self.odometry.scale_error),
            ("odometry.yaw_bias_deg_s", self.odometry.yaw_bias_deg_s),
            ("odometry.translation_walk", self.odometry.translation_walk),
            ("odometry.yaw_walk_deg", self.odometry.yaw_walk_deg),
        ] {
            if !(0.0..10.0).contains(&value) {
                return Err(invalid(name, format!("{value} is not in [0, 10)")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_round_trip_and_errors_name_the_parameter() {
        let config = SimConfig { preset: Preset::Highway, seed: 3, lidar: LidarConfig::of(LidarPreset::Os1_128), ..Default::default() };
        let back = SimConfig::from_yaml(&config.to_yaml(), "test").unwrap();
        assert_eq!(back, config);
        assert_eq!(back.lidar.model().elevations_deg.len(), 128);
        let partial = SimConfig::from_yaml("preset: parking\nlidar:\n  azimuth_steps: 1024\n", "x.yaml").unwrap();
        assert_eq!(partial.preset, Preset::Parking);
        assert_eq!(partial.lidar.model().azimuth_steps, 1024);
        assert_eq!(partial.lidar.model().elevations_deg.len(), 64);
        let err = SimConfig::from_yaml("lidar:\n  beams: 3\n", "x.yaml").unwrap_err().to_string();
        assert!(err.contains("beams"), "{err}");
        let err = SimConfig::from_yaml("odometry:\n  rate_hz: 15\n", "x.yaml").unwrap_err().to_string();
        assert!(err.contains("odometry.rate_hz"), "{err}");
        let err = SimConfig::from_yaml("lidar:\n  min_range_m: 200\n", "x.yaml").unwrap_err().to_string();
        assert!(err.contains("lidar.min_range_m"), "{err}");
    }

    #[test]
    fn hdl64e_table_matches_the_sensor() {
        let model = LidarConfig::default().model();
        let e = &model.elevations_deg;
        assert_eq!(e.len(), 64);
        assert!((e[0] - 2.0).abs() < 1e-9 && (e[31] + 8.33).abs() < 1e-9);
        assert!((e[32] + 8.83).abs() < 1e-9 && (e[63] + 24.9).abs() < 1e-9);
        assert_eq!(model.azimuth_steps, 2083);
    }
}
