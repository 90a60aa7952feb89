//! The world: everything generated for a sequence, queryable at any time and ray-castable at a
//! scan's time.
//!
//! Geometry lives in the *scene* frame in which it was generated (z up along gravity, the terrain's
//! hills in it). Everything the library hands out is in the *world* frame instead, which is the
//! ego's `base_link` at t = 0: it is also the true `odom` frame, so true and reported poses compare
//! directly. Object queries give poses, velocities and the moving flag per instance (a radar model
//! needs velocities; a camera model needs poses and shapes); [`World::snapshot`] freezes the world at
//! a time into a [`Snapshot`] that sensors ray-cast.

use super::bvh::Bvh;
use super::models;
use super::path::PathPose;
use super::rng::{hash2, unit_from_key};
use super::scene::{ObjectSpec, Placement, Scene};
use super::semantics::{label_word, Class, GroundKind, Surface};
use super::shapes::{Aabb, Ray, Shape, V3};
use super::terrain::Terrain;
use super::traffic::{Trajectory, TrafficPlan};
use crate::geometry::Pose3;
use nalgebra::{Matrix3, Translation3, UnitQuaternion, Vector3};

/// Suspension: body pitch per m/s² of longitudinal and roll per m/s² of lateral acceleration.
const PITCH_PER_ACCEL: f64 = 0.006;
const ROLL_PER_ACCEL: f64 = 0.006;

/// A movable object (parked or moving) of the world.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectInfo {
    /// Instance id (≥ 1), as in the upper 16 bits of its points' labels.
    pub instance: u16,
    pub class: Class,
    pub length: f64,
    pub width: f64,
    pub height: f64,
    /// True for traffic agents (which may move), false for objects that never move.
    pub agent: bool,
}

/// An object at one time, in the world frame.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectState {
    pub instance: u16,
    /// Pose of the object frame: x forward, z up, origin on the ground below the footprint centre.
    pub pose: Pose3,
    /// Velocity of the object's origin, m/s.
    pub velocity: Vector3<f64>,
    /// Moving by the labelling rule (see [`World::is_moving`]).
    pub moving: bool,
}

pub struct World {
    terrain: Terrain,
    static_shapes: Vec<Shape>,
    static_surfaces: Vec<u32>,
    static_bvh: Bvh,
    surfaces: Vec<Surface>,
    objects: Vec<ObjectSpec>,
    plan: TrafficPlan,
    trajectories: Vec<Trajectory>,
    ego_agent: usize,
    scene_from_world: Pose3,
    world_from_scene: Pose3,
    motion_window: f64,
    moving_speed_threshold: f64,
}

impl World {
    /// Assembles a generated scene and its simulated traffic. `motion_window` (the scan period) and
    /// `moving_speed_threshold` define the moving label.
    pub(crate) fn new(scene: Scene, trajectories: Vec<Trajectory>, motion_window: f64, moving_speed_threshold: f64) -> World {
        let bounds: Vec<Aabb> = scene.shapes.iter().map(Shape::bounds).collect();
        let static_bvh = Bvh::build(&bounds);
        let mut world = World {
            terrain: scene.terrain,
            static_shapes: scene.shapes,
            static_surfaces: scene.shape_surfaces,
            static_bvh,
            surfaces: scene.surfaces,
            objects: scene.objects,
            plan: scene.plan,
            trajectories,
            ego_agent: scene.ego_agent,
            scene_from_world: Pose3::identity(),
            world_from_scene: Pose3::identity(),
            motion_window,
            moving_speed_threshold,
        };
        world.scene_from_world = world.ego_scene_pose(0.0);
        world.world_from_scene = world.scene_from_world.inverse();
        world
    }

    pub fn scene_from_world(&self) -> &Pose3 {
        &self.scene_from_world
    }

    /// Number of static primitives (ray-cast geometry built once).
    pub fn static_primitives(&self) -> usize {
        self.static_shapes.len()
    }

    /// The movable objects, in instance order.
    pub fn objects(&self) -> impl Iterator<Item = ObjectInfo> + '_ {
        self.objects.iter().map(info)
    }

    pub fn object(&self, instance: u16) -> Option<ObjectInfo> {
        self.spec(instance).map(info)
    }

    fn spec(&self, instance: u16) -> Option<&ObjectSpec> {
        self.objects.get(usize::from(instance).checked_sub(1)?)
    }

    /// The planar pose of traffic agent `agent` at time t, if it exists then.
    fn agent_planar(&self, agent: usize, t: f64) -> Option<PathPose> {
        let trajectory = &self.trajectories[agent];
        trajectory.is_alive(t).then(|| trajectory.pose(&self.plan.routes[self.plan.agents[agent].route], t))
    }

    /// Pose in the scene frame: on the ground, tilted with it unless upright.
    fn ground_pose(&self, p: &PathPose, upright: bool, extra_pitch: f64, extra_roll: f64) -> Pose3 {
        let z = self.terrain.height_at(p.x, p.y);
        let (mut pitch, mut roll) = (extra_pitch, extra_roll);
        if !upright {
            let (gx, gy) = self.terrain.gradient(p.x, p.y);
            let (c, s) = (p.heading.cos(), p.heading.sin());
            pitch -= (gx * c + gy * s).atan();
            roll += (-gx * s + gy * c).atan();
        }
        Pose3::from_parts(Translation3::new(p.x, p.y, z), UnitQuaternion::from_euler_angles(roll, pitch, p.heading))
    }

    /// The object's pose in the scene frame at time t, if it exists then.
    fn scene_pose(&self, spec: &ObjectSpec, t: f64) -> Option<Pose3> {
        match &spec.placement {
            Placement::Fixed(pose) => Some(*pose),
            Placement::Agent(agent) => {
                let planar = self.agent_planar(*agent, t)?;
                Some(self.ground_pose(&planar, spec.model.as_ref().is_some_and(|m| m.upright), 0.0, 0.0))
            }
        }
    }

    /// Whether the object moved faster than the threshold on average over the scan period ending
    /// at t: the rule behind moving-* labels. An object that stopped is static at the first scan
    /// after it stopped; one that starts is moving at the first scan after it started; one that
    /// did not exist a scan period earlier is static.
    pub fn is_moving(&self, instance: u16, t: f64) -> bool {
        let Some(spec) = self.spec(instance) else { return false };
        let Placement::Agent(agent) = spec.placement else { return false };
        let trajectory = &self.trajectories[agent];
        // an agent that was not there at the previous scan has no motion to compare with
        if !trajectory.is_alive(t) || !trajectory.is_alive(t - self.motion_window) {
            return false;
        }
        let route = &self.plan.routes[self.plan.agents[agent].route];
        let (a, b) = (trajectory.pose(route, t - self.motion_window), trajectory.pose(route, t));
        (b.x - a.x).hypot(b.y - a.y) > self.moving_speed_threshold * self.motion_window
    }

    /// Pose, velocity and moving flag of an object at time t (world frame); `None` when it does not
    /// exist then (an agent before it arrives or after it left).
    pub fn object_state(&self, instance: u16, t: f64) -> Option<ObjectState> {
        let spec = self.spec(instance)?;
        let pose = self.scene_pose(spec, t)?;
        let velocity = match spec.placement {
            Placement::Fixed(_) => Vector3::zeros(),
            Placement::Agent(agent) => {
                let trajectory = &self.trajectories[agent];
                let h = 0.05;
                let (t0, t1) = ((t - h).max(trajectory.start()), (t + h).min(trajectory.end()));
                match (self.scene_pose(spec, t0), self.scene_pose(spec, t1)) {
                    (Some(a), Some(b)) if t1 > t0 => (b.translation.vector - a.translation.vector) / (t1 - t0),
                    _ => Vector3::zeros(),
                }
            }
        };
        Some(ObjectState {
            instance,
            pose: self.world_from_scene * pose,
            velocity: self.world_from_scene.rotation * velocity,
            moving: self.is_moving(instance, t),
        })
    }

    /// The ego's true `base_link` pose in the scene frame: on its route, tilted with the ground and
    /// by its suspension (nose down when braking, leaning out of curves).
    fn ego_scene_pose(&self, t: f64) -> Pose3 {
        let trajectory = &self.trajectories[self.ego_agent];
        let route = &self.plan.routes[self.plan.agents[self.ego_agent].route];
        let h = 0.2;
        let s = |t: f64| trajectory.state(t).0;
        let accel = (s(t + h) - 2.0 * s(t) + s(t - h)) / (h * h);
        let speed = (s(t + h) - s(t - h)) / (2.0 * h);
        let yaw_rate = (trajectory.pose(route, t + h).heading - trajectory.pose(route, t - h).heading) / (2.0 * h);
        let planar = trajectory.pose(route, t);
        self.ground_pose(&planar, false, -PITCH_PER_ACCEL * accel, ROLL_PER_ACCEL * speed * yaw_rate)
    }

    /// The ego's true `base_link` pose in the world (= true odom) frame.
    pub fn ego_pose(&self, t: f64) -> Pose3 {
        self.world_from_scene * self.ego_scene_pose(t)
    }

    /// The ego's linear velocity in its own frame and its yaw rate, from its true trajectory.
    pub fn ego_twist(&self, t: f64) -> (Vector3<f64>, f64) {
        let h = 0.01;
        let (a, b) = (self.ego_pose(t - h), self.ego_pose(t + h));
        let delta = a.inverse() * b;
        (delta.translation.vector / (2.0 * h), delta.rotation.euler_angles().2 / (2.0 * h))
    }

    /// Ground height in the world frame below a world point (for checks and future sensors).
    pub fn ground_height(&self, x: f64, y: f64) -> f64 {
        let p = self.scene_from_world * nalgebra::Point3::new(x, y, 0.0);
        let ground = nalgebra::Point3::new(p.x, p.y, self.terrain.height_at(p.x, p.y));
        (self.world_from_scene * ground).z
    }

    /// The world frozen at time t, with moving objects within `radius` of the world point `focus`
    /// (everything a sensor there can see).
    pub fn snapshot(&self, t: f64, focus: Vector3<f64>, radius: f64) -> Snapshot<'_> {
        let focus_scene = self.scene_from_world * nalgebra::Point3::from(focus);
        let mut shapes = Vec::new();
        let mut surfaces = Vec::new();
        let mut moving = vec![false; self.objects.len() + 1];
        for spec in &self.objects {
            let (Placement::Agent(agent), Some(model)) = (&spec.placement, &spec.model) else { continue };
            let Some(planar) = self.agent_planar(*agent, t) else { continue };
            if (planar.x - focus_scene.x).hypot(planar.y - focus_scene.y) > radius + model.length {
                continue;
            }
            moving[usize::from(spec.instance)] = self.is_moving(spec.instance, t);
            let pose = self.ground_pose(&planar, model.upright, 0.0, 0.0);
            let rotation = pose.rotation.to_rotation_matrix();
            let rotation: Matrix3<f32> = rotation.matrix().map(|v| v as f32);
            let translation = pose.translation.vector.map(|v| v as f32);
            // gait: legs and arms swing with the distance walked
            let s = self.trajectories[*agent].state(t).0;
            let swing = model.swing * (std::f64::consts::TAU * s / f64::from(model.stride_length)).sin() as f32;
            for (k, part) in model.parts.iter().enumerate() {
                shapes.push(models::place(part, &rotation, &translation, swing));
                surfaces.push(spec.first_surface + k as u32);
            }
        }
        let bounds: Vec<Aabb> = shapes.iter().map(Shape::bounds).collect();
        Snapshot { world: self, t, dynamic_bvh: Bvh::build(&bounds), dynamic_shapes: shapes, dynamic_surfaces: surfaces, moving }
    }
}

/// Where a ray returns from a primitive, given its material: a solid surface at entry, a translucent
/// one only with its opacity's probability, a porous volume at an exponentially distributed depth
/// (if that is before the ray leaves it). `key` decides for this ray and primitive.
fn material_hit(world: &World, shape: &Shape, surface: u32, ray: &Ray, t_max: f32, key: u64) -> Option<f32> {
    let crossing = shape.intersect(ray, t_max)?;
    let material = world.surfaces[surface as usize].material;
    if material.extinction > 0.0 {
        let t = crossing.t_in - unit_from_key(key).ln() / material.extinction;
        (t <= crossing.t_out).then_some(t)
    } else if material.opacity < 1.0 && unit_from_key(key) > material.opacity {
        None
    } else {
        Some(crossing.t_in)
    }
}

fn info(spec: &ObjectSpec) -> ObjectInfo {
    ObjectInfo { instance: spec.instance, class: spec.class, length: spec.length, width: spec.width, height: spec.height, agent: matches!(spec.placement, Placement::Agent(_)) }
}

/// What a ray hit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HitSurface {
    Ground(GroundKind),
    /// Index into the world's surfaces.
    Surface(u32),
}

#[derive(Debug, Clone, Copy)]
pub struct Hit {
    pub distance: f32,
    /// Unit normal at the hit, scene frame.
    pub normal: V3,
    pub surface: HitSurface,
}

/// The world at one time: static geometry plus the moving objects placed for that time.
pub struct Snapshot<'w> {
    world: &'w World,
    t: f64,
    dynamic_shapes: Vec<Shape>,
    dynamic_surfaces: Vec<u32>,
    dynamic_bvh: Bvh,
    /// Moving flag per instance.
    moving: Vec<bool>,
}

impl Snapshot<'_> {
    /// The snapshot's time, seconds since the first scan; with [`Snapshot::world`], what a sensor
    /// needs to look up the state of a hit object (e.g. a radar its velocity).
    pub fn time(&self) -> f64 {
        self.t
    }

    pub fn world(&self) -> &World {
        self.world
    }

    /// The first surface along a scene-frame ray within `t_max`. `key` makes the random decisions
    /// of translucent and porous surfaces (does this beam pass the glass, how deep into the
    /// foliage does it get) reproducible per ray.
    pub fn cast(&self, ray: &Ray, t_max: f32, key: u64) -> Option<Hit> {
        let world = self.world;
        let ground = world.terrain.intersect(ray, t_max);
        let mut limit = ground.map_or(t_max, |g| g.0);
        const DYNAMIC_SALT: u64 = 1 << 40;
        let mut best: Option<(bool, u32, f32)> = None;
        let (shapes, surfaces) = (&world.static_shapes, &world.static_surfaces);
        let static_hit = world.static_bvh.closest(ray, limit, |prim, t_max| material_hit(world, &shapes[prim as usize], surfaces[prim as usize], ray, t_max, hash2(key, u64::from(prim))));
        if let Some((prim, t)) = static_hit {
            best = Some((false, prim, t));
            limit = t;
        }
        let (shapes, surfaces) = (&self.dynamic_shapes, &self.dynamic_surfaces);
        let dynamic_hit = self.dynamic_bvh.closest(ray, limit, |prim, t_max| material_hit(world, &shapes[prim as usize], surfaces[prim as usize], ray, t_max, hash2(key, DYNAMIC_SALT + u64::from(prim))));
        if let Some((prim, t)) = dynamic_hit {
            best = Some((true, prim, t));
        }
        match best {
            Some((dynamic, prim, distance)) => {
                let (shapes, surfaces) = if dynamic { (&self.dynamic_shapes, &self.dynamic_surfaces) } else { (&world.static_shapes, &world.static_surfaces) };
                let normal = shapes[prim as usize].intersect(ray, distance + 1e-3).map_or(-ray.dir, |c| c.normal);
                Some(Hit { distance, normal, surface: HitSurface::Surface(surfaces[prim as usize]) })
            }
            None => ground.map(|(distance, normal)| {
                let p = ray.at(distance);
                Hit { distance, normal, surface: HitSurface::Ground(world.terrain.kind(p.x, p.y)) }
            }),
        }
    }

    /// The surface's material properties: (reflectivity, retro-reflective, ground roughness).
    pub fn material(&self, surface: HitSurface) -> (f32, bool, f32) {
        match surface {
            HitSurface::Ground(kind) => (kind.material().reflectivity, false, kind.roughness()),
            HitSurface::Surface(s) => {
                let m = self.world.surfaces[s as usize].material;
                (m.reflectivity, m.retroreflective, 0.0)
            }
        }
    }

    /// The SemanticKITTI label word of a surface at this time.
    pub fn label(&self, surface: HitSurface) -> u32 {
        match surface {
            HitSurface::Ground(kind) => label_word(kind.class().label(false), 0),
            HitSurface::Surface(s) => {
                let surface = &self.world.surfaces[s as usize];
                let moving = self.moving.get(usize::from(surface.instance)).copied().unwrap_or(false);
                label_word(surface.class.label(moving), surface.instance)
            }
        }
    }
}
