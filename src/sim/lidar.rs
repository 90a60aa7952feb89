//! The spinning LiDAR: one ray per beam and azimuth step, cast into a [`Snapshot`], with range noise,
//! dropout and remission from material and incidence.
//!
//! The sweep starts facing backwards (azimuth 180°) and turns clockwise seen from above, as
//! Velodyne sensors do; each point's `time` is its firing time within the sweep, relative to the
//! scan stamp (the sweep's start). The world is frozen at the stamp for the whole sweep, i.e. the
//! scan is what a perfectly motion-compensated sensor would give (SemanticKITTI's scans are
//! de-skewed too); no rolling-shutter distortion is simulated.
//!
//! Points are stored beam by beam from the top beam down (KITTI's scan-line order), each beam in
//! firing order; `ring` numbers beams from the bottom (0) up, as the Velodyne ROS driver does.
//! Beams are cast in parallel and assembled in that fixed order, and every random decision is keyed
//! by (seed, scan, beam, step), so a scan is identical whatever the number of threads.
//!
//! Physics, simplified: a return is detected with a probability that falls off smoothly with the
//! received power `reflectivity × cos(incidence) / range²` (dark, distant and grazing surfaces fade
//! out), minus a constant dropout. Range noise grows with distance, and on rough ground (grass,
//! gravel) with grazing incidence. Remission is the surface reflectivity, attenuated by up to half at grazing incidence
//! (retro-reflectors excepted), with a little noise, quantised to 0.01 like KITTI's.

use super::config::LidarModel;
use super::rng::{hash2, RayRng};
use super::shapes::{OrientedBox, Ray, Shape, V3};
use super::world::Snapshot;
use crate::cloud::PointCloud;
use crate::geometry::Pose3;
use rayon::prelude::*;

/// A sensor that measures a snapshot of the world from a pose (scene frame). Future sensors (radar,
/// camera) implement this against the same [`Snapshot`].
pub trait Sensor {
    type Measurement;

    /// Measures from `scene_from_sensor`; `noise_key` seeds every random decision.
    fn measure(&self, snapshot: &Snapshot, scene_from_sensor: &Pose3, noise_key: u64) -> Self::Measurement;
}

/// A box that blocks beams (the ego vehicle's own body): its pose in the sensor frame and half
/// extents.
#[derive(Debug, Clone, Copy)]
pub struct Occluder {
    pub pose: Pose3,
    pub half: [f64; 3],
}

#[derive(Debug, Clone)]
pub struct Lidar {
    model: LidarModel,
    /// Beam indices from the top beam down (output order).
    beam_order: Vec<usize>,
    /// Ring number of each beam (0 = lowest).
    ring: Vec<u16>,
    /// Unit direction per (beam, step), beam-major, in the sensor frame.
    directions: Vec<V3>,
    /// Rays blocked by the ego's body, same layout.
    blocked: Vec<bool>,
    sweep_period: f64,
}

/// One beam's points.
#[derive(Default)]
struct BeamPoints {
    x: Vec<f32>,
    y: Vec<f32>,
    z: Vec<f32>,
    intensity: Vec<f32>,
    time: Vec<f32>,
    label: Vec<u32>,
}

impl Lidar {
    /// A LiDAR with the given model, sweeping once per `sweep_period` seconds, with beams blocked by
    /// `occluders` (boxes in the sensor frame).
    pub fn new(model: LidarModel, sweep_period: f64, occluders: &[Occluder]) -> Lidar {
        let beams = model.elevations_deg.len();
        let mut by_elevation: Vec<usize> = (0..beams).collect();
        by_elevation.sort_by(|&a, &b| model.elevations_deg[a].total_cmp(&model.elevations_deg[b]));
        let mut ring = vec![0u16; beams];
        for (r, &beam) in by_elevation.iter().enumerate() {
            ring[beam] = r as u16;
        }
        let beam_order: Vec<usize> = by_elevation.iter().rev().copied().collect();
        let steps = model.azimuth_steps;
        let mut directions = Vec::with_capacity(beams * steps);
        for beam in 0..beams {
            let elevation = model.elevations_deg[beam].to_radians();
            for step in 0..steps {
                let azimuth = std::f64::consts::PI - std::f64::consts::TAU * step as f64 / steps as f64;
                directions.push(V3::new((elevation.cos() * azimuth.cos()) as f32, (elevation.cos() * azimuth.sin()) as f32, elevation.sin() as f32));
            }
        }
        let boxes: Vec<Shape> = occluders
            .iter()
            .map(|o| {
                let r = o.pose.rotation.to_rotation_matrix();
                let axis = |i: usize| V3::new(r[(0, i)] as f32, r[(1, i)] as f32, r[(2, i)] as f32);
                let c = o.pose.translation.vector;
                Shape::Box(OrientedBox { center: V3::new(c.x as f32, c.y as f32, c.z as f32), axes: [axis(0), axis(1), axis(2)], half: V3::new(o.half[0] as f32, o.half[1] as f32, o.half[2] as f32) })
            })
            .collect();
        let blocked = directions
            .iter()
            .map(|d| {
                let ray = Ray::new(V3::zeros(), *d);
                boxes.iter().any(|b| b.intersect(&ray, model.max_range_m as f32).is_some())
            })
            .collect();
        Lidar { model, beam_order, ring, directions, blocked, sweep_period }
    }

    pub fn model(&self) -> &LidarModel {
        &self.model
    }

    fn cast_beam(&self, snapshot: &Snapshot, beam: usize, rotation: &nalgebra::Matrix3<f32>, origin: V3, noise_key: u64) -> BeamPoints {
        let model = &self.model;
        let steps = model.azimuth_steps;
        let mut out = BeamPoints::default();
        for column in [&mut out.x, &mut out.y, &mut out.z, &mut out.intensity, &mut out.time] {
            column.reserve(steps);
        }
        out.label.reserve(steps);
        let (max_range, min_range) = (model.max_range_m as f32, model.min_range_m as f32);
        let (noise0, noise_per_m) = (model.range_noise_m as f32, model.range_noise_per_m as f32);
        let dropout = model.dropout as f32;
        let threshold = model.detection_threshold as f32;
        let time_step = (self.sweep_period / steps as f64) as f32;
        for step in 0..steps {
            let index = beam * steps + step;
            if self.blocked[index] {
                continue;
            }
            let direction = self.directions[index];
            let key = hash2(noise_key, index as u64);
            let ray = Ray::new(origin, rotation * direction);
            let Some(hit) = snapshot.cast(&ray, max_range, key) else { continue };
            let range = hit.distance;
            if range < min_range {
                continue;
            }
            let mut rng = RayRng::new(key);
            let (reflectivity, retro, roughness) = snapshot.material(hit.surface);
            let roughness = if model.roughness { roughness } else { 0.0 };
            let cos_incidence = ray.dir.dot(&hit.normal).abs().max(1e-3);
            let power = if retro { reflectivity } else { reflectivity * cos_incidence } / (range * range);
            // detection probability 1 / (1 + (threshold / power)²), then the constant dropout
            let ratio = threshold / power.max(1e-12);
            let detect = (1.0 - dropout) / (1.0 + ratio * ratio);
            if rng.uniform() >= detect {
                continue;
            }
            let sigma = noise0 + noise_per_m * range + roughness / cos_incidence.max(0.05);
            let measured = (range + sigma.min(1.0) * rng.normal()).max(min_range);
            let brightness = if retro { reflectivity } else { reflectivity * (0.5 + 0.5 * cos_incidence) };
            let remission = (brightness * (1.0 + 0.2 * rng.normal()) + 0.02 * rng.normal()).clamp(0.0, 1.0);
            let p = direction * measured;
            out.x.push(p.x);
            out.y.push(p.y);
            out.z.push(p.z);
            out.intensity.push((remission * 100.0).round() / 100.0);
            out.time.push(step as f32 * time_step);
            out.label.push(snapshot.label(hit.surface));
        }
        out
    }
}

impl Sensor for Lidar {
    type Measurement = PointCloud;

    fn measure(&self, snapshot: &Snapshot, scene_from_sensor: &Pose3, noise_key: u64) -> PointCloud {
        let rotation = scene_from_sensor.rotation.to_rotation_matrix();
        let rotation: nalgebra::Matrix3<f32> = rotation.matrix().map(|v| v as f32);
        let origin = scene_from_sensor.translation.vector.map(|v| v as f32);
        let beams: Vec<BeamPoints> = self.beam_order.par_iter().map(|&beam| self.cast_beam(snapshot, beam, &rotation, origin, noise_key)).collect();
        let n: usize = beams.iter().map(|b| b.x.len()).sum();
        let mut cloud = PointCloud { x: Vec::with_capacity(n), y: Vec::with_capacity(n), z: Vec::with_capacity(n), intensity: Vec::with_capacity(n), ..Default::default() };
        let (mut time, mut ring, mut label) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
        for (points, &beam) in beams.iter().zip(&self.beam_order) {
            cloud.x.extend_from_slice(&points.x);
            cloud.y.extend_from_slice(&points.y);
            cloud.z.extend_from_slice(&points.z);
            cloud.intensity.extend_from_slice(&points.intensity);
            time.extend_from_slice(&points.time);
            label.extend_from_slice(&points.label);
            ring.extend(std::iter::repeat_n(self.ring[beam], points.x.len()));
        }
        cloud.time = Some(time);
        cloud.ring = Some(ring);
        cloud.label = Some(label);
        cloud.source_len = n;
        cloud
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::config::LidarConfig;
    use crate::sim::path::Path;
    use crate::sim::rng::Rng;
    use crate::sim::scene::SceneBuilder;
    use crate::sim::semantics::{Class, GroundKind, Material};
    use crate::sim::terrain::Terrain;
    use crate::sim::traffic::{self, AgentSpec, Idm, Mover, Route, RouteEnd};
    use crate::sim::world::World;
    use nalgebra::Vector3;

    /// Flat road with one building, a box from x 10 to 14, y -2 to 2, up to 3 m high; an ego that
    /// stands still at the origin.
    fn box_world() -> World {
        let mut rng = Rng::new(1);
        let mut terrain = Terrain::new([-200.0, -200.0], [200.0, 200.0], 0.0, &mut rng);
        terrain.paint_rect([0.0, 0.0], [1.0, 0.0], 150.0, 150.0, GroundKind::Road);
        let mut b = SceneBuilder::new(Rng::new(2), terrain);
        b.upright_box(12.0, 0.0, 0.0, 2.0, 2.0, 3.0, Class::Building, Material::solid(0.4));
        b.plan.routes.push(Route::new(Path::new(&[[0.0, 0.0], [100.0, 0.0]]), Vec::new(), RouteEnd::Park { lateral: 0.0 }, 2.5));
        let ego = b
            .add_agent(
                AgentSpec {
                    mover: Mover::Vehicle,
                    route: 0,
                    length: 4.6,
                    width: 1.8,
                    idm: Idm::CAR,
                    desired_speed: 0.0,
                    speed_schedule: Vec::new(),
                    spawn_time: -1.0,
                    start_s: 0.0,
                    start_lateral: 0.0,
                    depart_time: None,
                    lane_changing: None,
                },
                None,
            )
            .unwrap();
        let scene = b.finish(ego, 1.0);
        let trajectories = traffic::simulate(&scene.plan, -1.0, 1.0, 0.05, &mut Rng::new(3));
        World::new(scene, trajectories, 0.1, 0.2)
    }

    /// Distance along `dir` from `origin` into the axis-aligned box [min, max], by the slab method.
    fn slab(origin: Vector3<f64>, dir: Vector3<f64>, min: [f64; 3], max: [f64; 3]) -> Option<f64> {
        let (mut near, mut far) = (0.0f64, f64::INFINITY);
        for i in 0..3 {
            let (a, b) = ((min[i] - origin[i]) / dir[i], (max[i] - origin[i]) / dir[i]);
            near = near.max(a.min(b));
            far = far.min(a.max(b));
        }
        (near <= far).then_some(near)
    }

    #[test]
    fn noise_free_ranges_equal_analytic_distances_to_plane_and_box() {
        let world = box_world();
        let config = LidarConfig {
            range_noise_m: Some(0.0),
            range_noise_per_m: Some(0.0),
            dropout: Some(0.0),
            detection_threshold: Some(0.0),
            roughness: Some(false),
            azimuth_steps: Some(720),
            ..LidarConfig::default()
        };
        let lidar = Lidar::new(config.model(), 0.1, &[]);
        let height = 1.73;
        let pose = Pose3::translation(0.0, 0.0, height);
        let snapshot = world.snapshot(0.0, Vector3::zeros(), 130.0);
        let cloud = lidar.measure(&snapshot, &pose, 9);
        let labels = cloud.label.as_ref().unwrap();
        let (mut on_box, mut on_ground) = (0, 0);
        for (i, label) in labels.iter().enumerate() {
            let p = Vector3::new(f64::from(cloud.x[i]), f64::from(cloud.y[i]), f64::from(cloud.z[i]));
            let range = p.norm();
            let dir = p / range;
            let origin = Vector3::new(0.0, 0.0, height);
            let ground = (dir.z < 0.0).then(|| height / -dir.z);
            let building = slab(origin, dir, [10.0, -2.0, -1.0], [14.0, 2.0, 3.0]);
            let expected = match (ground, building) {
                (Some(g), Some(b)) => g.min(b),
                (g, b) => g.or(b).unwrap(),
            };
            assert!((range - expected).abs() < 2e-3, "point {i}: range {range}, analytic {expected}");
            if building.is_some_and(|b| b <= expected + 1e-9) {
                on_box += 1;
                assert_eq!(label & 0xFFFF, 50);
            } else {
                on_ground += 1;
                assert_eq!(label & 0xFFFF, 40);
            }
        }
        assert!(on_box > 500 && on_ground > 20_000, "{on_box} box and {on_ground} ground points");
        // every downward ray within range returns: nothing is lost without dropout
        let downward = lidar.model().elevations_deg.iter().filter(|e| height / (-e.to_radians().sin()).max(1e-9) < lidar.model().max_range_m && **e < 0.0).count();
        assert!(cloud.len() >= downward * 720, "{} points for {} downward beams", cloud.len(), downward);
    }
}
