//! Poses and transforms: nalgebra isometries, conversions from ROS messages and KITTI text rows, a
//! time-indexed pose buffer with interpolation, and a small TF tree.

mod pose_buffer;
mod pose_tracker;
mod tf_tree;

pub use pose_buffer::{LookupError, PoseBuffer, PoseBufferConfig, PoseInsert};
pub use pose_tracker::{PoseError, PoseTracker};
pub use tf_tree::{TfError, TfTree};

use crate::messages;
use nalgebra::{Isometry3, Matrix4, Quaternion, Translation3, UnitQuaternion, Vector3};

/// A rigid pose (rotation + translation), double precision.
pub type Pose3 = Isometry3<f64>;

pub fn pose_from_msg(pose: &messages::Pose) -> Pose3 {
    let q = &pose.orientation;
    Isometry3::from_parts(
        Translation3::new(pose.position.x, pose.position.y, pose.position.z),
        UnitQuaternion::from_quaternion(Quaternion::new(q.w, q.x, q.y, q.z)),
    )
}

pub fn pose_to_msg(pose: &Pose3) -> messages::Pose {
    let t = pose.translation.vector;
    let q = pose.rotation.quaternion();
    messages::Pose {
        position: messages::Point { x: t.x, y: t.y, z: t.z },
        orientation: messages::Quaternion { x: q.i, y: q.j, z: q.k, w: q.w },
    }
}

pub fn transform_from_msg(transform: &messages::Transform) -> Pose3 {
    let (t, q) = (&transform.translation, &transform.rotation);
    Isometry3::from_parts(Translation3::new(t.x, t.y, t.z), UnitQuaternion::from_quaternion(Quaternion::new(q.w, q.x, q.y, q.z)))
}

pub fn transform_to_msg(pose: &Pose3) -> messages::Transform {
    let p = pose_to_msg(pose);
    messages::Transform { translation: messages::Vector3 { x: p.position.x, y: p.position.y, z: p.position.z }, rotation: p.orientation }
}

/// A 3×4 row-major KITTI pose row as a homogeneous 4×4 matrix (kept general: KITTI's `Tr` is only
/// approximately orthonormal, and the reference code inverts it as a general matrix).
pub fn matrix_from_kitti_row(row: &[f64; 12]) -> Matrix4<f64> {
    Matrix4::new(
        row[0], row[1], row[2], row[3], //
        row[4], row[5], row[6], row[7], //
        row[8], row[9], row[10], row[11], //
        0.0, 0.0, 0.0, 1.0,
    )
}

pub fn kitti_row_from_matrix(m: &Matrix4<f64>) -> [f64; 12] {
    [m[(0, 0)], m[(0, 1)], m[(0, 2)], m[(0, 3)], m[(1, 0)], m[(1, 1)], m[(1, 2)], m[(1, 3)], m[(2, 0)], m[(2, 1)], m[(2, 2)], m[(2, 3)]]
}

/// The closest rigid pose to a homogeneous matrix (rotation re-orthonormalised).
pub fn pose_from_matrix(m: &Matrix4<f64>) -> Pose3 {
    let rotation = nalgebra::Rotation3::from_matrix(&m.fixed_view::<3, 3>(0, 0).into_owned());
    Isometry3::from_parts(Translation3::from(Vector3::new(m[(0, 3)], m[(1, 3)], m[(2, 3)])), UnitQuaternion::from_rotation_matrix(&rotation))
}

/// Interpolates between two poses: linear in translation, spherical in rotation.
pub fn interpolate(a: &Pose3, b: &Pose3, fraction: f64) -> Pose3 {
    let translation = a.translation.vector.lerp(&b.translation.vector, fraction);
    let rotation = a.rotation.try_slerp(&b.rotation, fraction, 1e-9).unwrap_or(a.rotation);
    Isometry3::from_parts(Translation3::from(translation), rotation)
}

/// Yaw (rotation about z) of a pose, radians.
pub fn yaw(pose: &Pose3) -> f64 {
    pose.rotation.euler_angles().2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trip_and_interpolation() {
        let a = Isometry3::new(Vector3::new(1.0, 2.0, 3.0), Vector3::new(0.0, 0.0, 0.2));
        let back = pose_from_msg(&pose_to_msg(&a));
        assert!((back.translation.vector - a.translation.vector).norm() < 1e-12);
        assert!(back.rotation.angle_to(&a.rotation) < 1e-12);
        let b = Isometry3::new(Vector3::new(3.0, 2.0, 3.0), Vector3::new(0.0, 0.0, 0.6));
        let mid = interpolate(&a, &b, 0.5);
        assert!((mid.translation.vector.x - 2.0).abs() < 1e-12);
        assert!((yaw(&mid) - 0.4).abs() < 1e-12);
    }

    #[test]
    fn kitti_rows_round_trip() {
        let row = [1.0, 0.0, 0.0, 5.0, 0.0, 1.0, 0.0, -2.0, 0.0, 0.0, 1.0, 0.5];
        assert_eq!(kitti_row_from_matrix(&matrix_from_kitti_row(&row)), row);
        let pose = pose_from_matrix(&matrix_from_kitti_row(&row));
        assert_eq!(pose.translation.vector, Vector3::new(5.0, -2.0, 0.5));
    }
}
