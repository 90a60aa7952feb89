//! Odometry as the vehicle reports it: the true `base_link` trajectory sampled at the odometry rate,
//! optionally integrated from noisy increments so that the reported pose drifts like wheel odometry
//! does (a constant speed-scale error, a constant yaw-rate bias and random walks in position and
//! yaw). Height, roll and pitch increments are kept true, as from an inertial unit.

use super::config::OdometryConfig;
use super::rng::Rng;
use super::world::World;
use crate::geometry::Pose3;
use nalgebra::{Translation3, UnitQuaternion, Vector3};

/// One odometry message's content.
#[derive(Debug, Clone, PartialEq)]
pub struct OdometrySample {
    /// Seconds since the first scan.
    pub time: f64,
    /// `odom → base_link` as reported.
    pub pose: Pose3,
    /// The true `odom → base_link`.
    pub true_pose: Pose3,
    /// Velocity in `base_link`, m/s, and yaw rate, rad/s (true values).
    pub linear: Vector3<f64>,
    pub yaw_rate: f64,
}

/// Odometry from t = 0 to `t_end` (inclusive) at the configured rate.
pub fn odometry(world: &World, config: &OdometryConfig, t_end: f64, seed: u64) -> Vec<OdometrySample> {
    let dt = 1.0 / config.rate_hz;
    let count = (t_end / dt - 1e-9).ceil().max(0.0) as usize + 1;
    let mut rng = Rng::stream(seed, "odometry");
    let scale = 1.0 + config.scale_error * rng.normal();
    let yaw_bias = config.yaw_bias_deg_s.to_radians() * rng.normal();
    let mut samples: Vec<OdometrySample> = Vec::with_capacity(count);
    let mut previous_true = world.ego_pose(0.0);
    let mut reported = previous_true;
    for n in 0..count {
        let time = n as f64 * dt;
        let true_pose = world.ego_pose(time);
        if config.noise && n > 0 {
            let step = previous_true.inverse() * true_pose;
            let t = step.translation.vector;
            let walk = config.translation_walk * dt.sqrt();
            let noisy = Translation3::new(t.x * scale + walk * rng.normal(), t.y * scale + walk * rng.normal(), t.z);
            let yaw_error = yaw_bias * dt + config.yaw_walk_deg.to_radians() * dt.sqrt() * rng.normal();
            reported *= Pose3::from_parts(noisy, UnitQuaternion::from_euler_angles(0.0, 0.0, yaw_error) * step.rotation);
        } else if !config.noise {
            reported = true_pose;
        }
        previous_true = true_pose;
        let (linear, yaw_rate) = world.ego_twist(time);
        samples.push(OdometrySample { time, pose: reported, true_pose, linear, yaw_rate });
    }
    samples
}
