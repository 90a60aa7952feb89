//! Procedural scenes: from a preset and a seed to terrain, static geometry, parked objects, routes
//! and agents.
//!
//! A generator first lays out the roads along the ego's route (so the sensor always looks at a
//! plausible street), then creates the terrain under that layout, paints the ground (road,
//! markings, parking, sidewalks), builds curbs, buildings, walls, fences, vegetation and street
//! furniture, parks cars and places standing people, and finally defines the traffic: routes,
//! intersections and agents for [`super::traffic`]. [`SceneBuilder`] holds what is shared: placing
//! shapes on the ground, and registering objects with instance ids.

// Placement helpers take plain coordinates, sizes, class and material: bundling them into
// structs at every call would hide the geometry the call describes.
#![allow(clippy::too_many_arguments)]

mod grid;
mod highway;

use super::config::Preset;
use super::models::{self, Model};
use super::rng::Rng;
use super::semantics::{Class, Material, Surface};
use super::shapes::{Ellipsoid, OrientedBox, Shape, VerticalCylinder, V3};
use super::terrain::Terrain;
use super::traffic::{AgentSpec, TrafficPlan};
use super::SimError;
use crate::geometry::Pose3;
use nalgebra::{Matrix3, Translation3, UnitQuaternion};

/// Where an object is.
#[derive(Debug, Clone)]
pub enum Placement {
    /// Never moves (parked, standing): its pose in the scene frame.
    Fixed(Pose3),
    /// Follows traffic agent `n`'s trajectory.
    Agent(usize),
}

/// An object with an instance id.
#[derive(Debug, Clone)]
pub struct ObjectSpec {
    pub class: Class,
    pub instance: u16,
    pub length: f64,
    pub width: f64,
    pub height: f64,
    pub placement: Placement,
    /// The shape of an agent (static objects' shapes are in the static geometry).
    pub model: Option<Model>,
    /// First of the agent's surfaces (one per model part).
    pub first_surface: u32,
}

/// What a generator produces.
pub struct Scene {
    pub terrain: Terrain,
    pub shapes: Vec<Shape>,
    pub shape_surfaces: Vec<u32>,
    pub surfaces: Vec<Surface>,
    pub objects: Vec<ObjectSpec>,
    pub plan: TrafficPlan,
    /// The traffic agent that is the ego vehicle.
    pub ego_agent: usize,
    /// How long before the first scan the traffic simulation starts (so that queues have formed
    /// and agents are spread out), seconds.
    pub warmup_s: f64,
}

/// Scene dimensions needed up front: how long the sequence runs.
#[derive(Debug, Clone, Copy)]
pub struct SceneRequest {
    pub preset: Preset,
    pub seed: u64,
    pub duration_s: f64,
    /// Scales the number of moving agents.
    pub traffic_density: f64,
}

pub fn generate(request: &SceneRequest) -> Result<Scene, SimError> {
    match request.preset {
        Preset::Urban => grid::generate(request, grid::Style::Urban),
        Preset::Parking => grid::generate(request, grid::Style::Parking),
        Preset::Highway => highway::generate(request),
    }
}

/// Shared state of scene generation.
pub struct SceneBuilder {
    pub rng: Rng,
    pub terrain: Terrain,
    shapes: Vec<Shape>,
    shape_surfaces: Vec<u32>,
    surfaces: Vec<Surface>,
    objects: Vec<ObjectSpec>,
    pub plan: TrafficPlan,
    /// Stuff surfaces by (class, material) are shared: index of the last one created.
    last_stuff: Option<(Surface, u32)>,
}

/// A yaw rotation and a translation in f32, for placing model parts.
fn rotation_f32(pose: &Pose3) -> (Matrix3<f32>, V3) {
    let r = pose.rotation.to_rotation_matrix();
    let m = r.matrix();
    let t = pose.translation.vector;
    (Matrix3::from_fn(|i, j| m[(i, j)] as f32), V3::new(t.x as f32, t.y as f32, t.z as f32))
}

impl SceneBuilder {
    pub fn new(rng: Rng, terrain: Terrain) -> SceneBuilder {
        SceneBuilder { rng, terrain, shapes: Vec::new(), shape_surfaces: Vec::new(), surfaces: Vec::new(), objects: Vec::new(), plan: TrafficPlan::default(), last_stuff: None }
    }

    pub fn finish(self, ego_agent: usize, warmup_s: f64) -> Scene {
        Scene {
            terrain: self.terrain,
            shapes: self.shapes,
            shape_surfaces: self.shape_surfaces,
            surfaces: self.surfaces,
            objects: self.objects,
            plan: self.plan,
            ego_agent,
            warmup_s,
        }
    }

    fn stuff_surface(&mut self, class: Class, material: Material) -> u32 {
        let surface = Surface { class, instance: 0, material };
        if let Some((last, index)) = self.last_stuff {
            if last == surface {
                return index;
            }
        }
        self.surfaces.push(surface);
        let index = self.surfaces.len() as u32 - 1;
        self.last_stuff = Some((surface, index));
        index
    }

    fn add(&mut self, shape: Shape, surface: u32) {
        self.shapes.push(shape);
        self.shape_surfaces.push(surface);
    }

    /// A static shape of stuff (no instance).
    pub fn add_stuff(&mut self, shape: Shape, class: Class, material: Material) {
        let surface = self.stuff_surface(class, material);
        self.add(shape, surface);
    }

    pub fn ground(&self, x: f64, y: f64) -> f64 {
        self.terrain.height_at(x, y)
    }

    /// A pose standing on the ground at (x, y) facing `yaw`; tilted with the ground unless upright.
    pub fn ground_pose(&self, x: f64, y: f64, yaw: f64, upright: bool) -> Pose3 {
        let z = self.ground(x, y);
        let rotation = if upright {
            UnitQuaternion::from_euler_angles(0.0, 0.0, yaw)
        } else {
            let (gx, gy) = self.terrain.gradient(x, y);
            let (c, s) = (yaw.cos(), yaw.sin());
            let pitch = -(gx * c + gy * s).atan();
            let roll = (-gx * s + gy * c).atan();
            UnitQuaternion::from_euler_angles(roll, pitch, yaw)
        };
        Pose3::from_parts(Translation3::new(x, y, z), rotation)
    }

    /// A box that follows the ground (curbs, rails, barriers): centred at (x, y), `half_length` along
    /// `yaw`, between heights `z_low` and `z_high` above the ground.
    pub fn ground_box(&mut self, x: f64, y: f64, yaw: f64, half_length: f64, half_width: f64, z_low: f64, z_high: f64, class: Class, material: Material) {
        let pose = self.ground_pose(x, y, yaw, false);
        let (r, t) = rotation_f32(&pose);
        let center = r * V3::new(0.0, 0.0, ((z_low + z_high) / 2.0) as f32) + t;
        let shape = Shape::Box(OrientedBox { center, axes: [r.column(0).into(), r.column(1).into(), r.column(2).into()], half: V3::new(half_length as f32, half_width as f32, ((z_high - z_low) / 2.0) as f32) });
        self.add_stuff(shape, class, material);
    }

    /// A run of ground-following boxes from `a` to `b` in pieces of at most `piece` metres (so they
    /// follow the terrain's curvature), e.g. a curb or a guard rail.
    pub fn ground_strip(&mut self, a: [f64; 2], b: [f64; 2], half_width: f64, z_low: f64, z_high: f64, piece: f64, class: Class, material: Material) {
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        let length = dx.hypot(dy);
        if length < 0.05 {
            return;
        }
        let yaw = dy.atan2(dx);
        let n = (length / piece).ceil().max(1.0) as usize;
        for k in 0..n {
            let f = (k as f64 + 0.5) / n as f64;
            // pieces overlap a little so that no ray slips between them
            self.ground_box(a[0] + dx * f, a[1] + dy * f, yaw, length / n as f64 / 2.0 + 0.02, half_width, z_low, z_high, class, material);
        }
    }

    /// An upright box (building, wall) on footprint centre (x, y): from below the lowest ground under
    /// it up to `height` above the ground at its centre.
    pub fn upright_box(&mut self, x: f64, y: f64, yaw: f64, half_length: f64, half_width: f64, height: f64, class: Class, material: Material) {
        let (c, s) = (yaw.cos(), yaw.sin());
        let lowest = [(1.0, 1.0), (1.0, -1.0), (-1.0, 1.0), (-1.0, -1.0)]
            .iter()
            .map(|(a, b)| self.ground(x + a * half_length * c - b * half_width * s, y + a * half_length * s + b * half_width * c))
            .fold(f64::INFINITY, f64::min);
        let top = self.ground(x, y) + height;
        let bottom = lowest - 0.4;
        let shape = Shape::Box(OrientedBox {
            center: V3::new(x as f32, y as f32, ((top + bottom) / 2.0) as f32),
            axes: [V3::new(c as f32, s as f32, 0.0), V3::new(-s as f32, c as f32, 0.0), V3::z()],
            half: V3::new(half_length as f32, half_width as f32, ((top - bottom) / 2.0) as f32),
        });
        self.add_stuff(shape, class, material);
    }

    /// A box floating at heights `z_low..z_high` above the ground at (x, y) (signs, lamp heads,
    /// bridge decks).
    pub fn raised_box(&mut self, x: f64, y: f64, yaw: f64, half: [f64; 3], z_center: f64, class: Class, material: Material) {
        let (c, s) = (yaw.cos(), yaw.sin());
        let z = self.ground(x, y) + z_center;
        let shape = Shape::Box(OrientedBox {
            center: V3::new(x as f32, y as f32, z as f32),
            axes: [V3::new(c as f32, s as f32, 0.0), V3::new(-s as f32, c as f32, 0.0), V3::z()],
            half: V3::new(half[0] as f32, half[1] as f32, half[2] as f32),
        });
        self.add_stuff(shape, class, material);
    }

    pub fn cylinder(&mut self, x: f64, y: f64, radius: f64, height: f64, class: Class, material: Material) {
        let g = self.ground(x, y);
        let shape = Shape::Cylinder(VerticalCylinder { x: x as f32, y: y as f32, radius: radius as f32, z_min: (g - 0.3) as f32, z_max: (g + height) as f32 });
        self.add_stuff(shape, class, material);
    }

    pub fn ellipsoid(&mut self, x: f64, y: f64, z_above_ground: f64, radii: [f64; 3], class: Class, material: Material) {
        let z = self.ground(x, y) + z_above_ground;
        let shape = Shape::Ellipsoid(Ellipsoid { center: V3::new(x as f32, y as f32, z as f32), radii: V3::new(radii[0] as f32, radii[1] as f32, radii[2] as f32) });
        self.add_stuff(shape, class, material);
    }

    fn next_instance(&self) -> Result<u16, SimError> {
        u16::try_from(self.objects.len() + 1).map_err(|_| SimError::Scene(format!("more than {} objects: shorten the sequence or lower the traffic density", u16::MAX)))
    }

    /// Places a movable object that never moves (parked car, standing person) with its own instance.
    pub fn place_static(&mut self, model: &Model, x: f64, y: f64, yaw: f64) -> Result<(), SimError> {
        let instance = self.next_instance()?;
        let pose = self.ground_pose(x, y, yaw, model.upright);
        let (r, t) = rotation_f32(&pose);
        let first_surface = self.surfaces.len() as u32;
        for part in &model.parts {
            self.surfaces.push(Surface { class: model.class, instance, material: part.material });
            let surface = self.surfaces.len() as u32 - 1;
            self.add(models::place(part, &r, &t, 0.0), surface);
        }
        self.last_stuff = None;
        self.objects.push(ObjectSpec {
            class: model.class,
            instance,
            length: model.length,
            width: model.width,
            height: model.height,
            placement: Placement::Fixed(pose),
            model: None,
            first_surface,
        });
        Ok(())
    }

    /// Adds a traffic agent; with a model it is also a visible object (the ego has none). Returns
    /// the agent's index.
    pub fn add_agent(&mut self, spec: AgentSpec, model: Option<Model>) -> Result<usize, SimError> {
        self.plan.agents.push(spec);
        let agent = self.plan.agents.len() - 1;
        if let Some(model) = model {
            let instance = self.next_instance()?;
            let first_surface = self.surfaces.len() as u32;
            for part in &model.parts {
                self.surfaces.push(Surface { class: model.class, instance, material: part.material });
            }
            self.last_stuff = None;
            self.objects.push(ObjectSpec {
                class: model.class,
                instance,
                length: model.length,
                width: model.width,
                height: model.height,
                placement: Placement::Agent(agent),
                model: Some(model),
                first_surface,
            });
        }
        Ok(agent)
    }

    // ---- street furniture -------------------------------------------------------------------

    /// A tree: trunk and one to three porous crowns.
    pub fn tree(&mut self, x: f64, y: f64, scale: f64) {
        let rng = &mut self.rng;
        let height = rng.range(4.0, 9.0) * scale;
        let trunk_radius = rng.range(0.1, 0.22) * scale.sqrt();
        let crown_base = height * rng.range(0.35, 0.5);
        let crown_radius = rng.range(1.4, 3.0) * scale;
        let crowns = 1 + rng.below(3);
        let foliage = Material::porous(rng.range(0.45, 0.7) as f32, rng.range(1.2, 2.5) as f32);
        let bark = Material::solid(rng.range(0.22, 0.35) as f32);
        let offsets: Vec<(f64, f64, f64)> = (0..crowns).map(|_| (rng.range(-0.5, 0.5) * crown_radius, rng.range(-0.5, 0.5) * crown_radius, rng.range(0.7, 1.0))).collect();
        self.cylinder(x, y, trunk_radius, crown_base + crown_radius * 0.6, Class::Trunk, bark);
        for (dx, dy, f) in offsets {
            let r = crown_radius * f;
            let vertical = ((height - crown_base) / 2.0).max(r * 0.8);
            self.ellipsoid(x + dx, y + dy, crown_base + vertical, [r, r, vertical], Class::Vegetation, foliage);
        }
    }

    /// A bush or a piece of hedge.
    pub fn bush(&mut self, x: f64, y: f64, radius: f64, height: f64) {
        let material = Material::porous(self.rng.range(0.35, 0.55) as f32, self.rng.range(2.0, 4.0) as f32);
        self.ellipsoid(x, y, height / 2.0, [radius, radius, height / 2.0], Class::Vegetation, material);
    }

    /// A street light at (x, y) whose arm reaches towards `yaw`.
    pub fn street_light(&mut self, x: f64, y: f64, yaw: f64) {
        let height = self.rng.range(6.5, 9.0);
        let metal = Material::solid(self.rng.range(0.3, 0.45) as f32);
        self.cylinder(x, y, 0.1, height, Class::Pole, metal);
        let reach = self.rng.range(1.2, 2.2);
        let (c, s) = (yaw.cos(), yaw.sin());
        self.raised_box(x + c * reach / 2.0, y + s * reach / 2.0, yaw, [reach / 2.0, 0.05, 0.05], height - 0.1, Class::Pole, metal);
        self.raised_box(x + c * reach, y + s * reach, yaw, [0.3, 0.15, 0.08], height - 0.2, Class::Pole, metal);
    }

    /// A sign post with a retro-reflective plate facing `yaw`.
    pub fn sign(&mut self, x: f64, y: f64, yaw: f64) {
        let height = self.rng.range(2.2, 2.8);
        self.cylinder(x, y, 0.035, height, Class::Pole, Material::solid(0.4));
        let size = self.rng.range(0.3, 0.4);
        let r0 = self.rng.range(0.7, 0.95);
        self.raised_box(x, y, yaw + std::f64::consts::FRAC_PI_2, [size, 0.02, size], height - size, Class::TrafficSign, Material::retroreflective(r0 as f32));
    }

    /// A traffic-light pole at (x, y) with its signal head facing `yaw`, optionally on a mast arm
    /// reaching `arm` metres over the road towards `arm_yaw`.
    pub fn traffic_light(&mut self, x: f64, y: f64, yaw: f64, arm: Option<(f64, f64)>) {
        let metal = Material::solid(0.3);
        let housing = Material::solid(0.1);
        self.cylinder(x, y, 0.12, 4.2, Class::Pole, metal);
        self.raised_box(x, y, yaw, [0.15, 0.2, 0.5], 3.2, Class::TrafficSign, housing);
        if let Some((reach, arm_yaw)) = arm {
            let (c, s) = (arm_yaw.cos(), arm_yaw.sin());
            self.raised_box(x + c * reach / 2.0, y + s * reach / 2.0, arm_yaw, [reach / 2.0, 0.08, 0.08], 5.6, Class::Pole, metal);
            self.raised_box(x + c * reach * 0.8, y + s * reach * 0.8, yaw, [0.15, 0.2, 0.5], 5.0, Class::TrafficSign, housing);
        }
    }

    /// A fence (porous wire mesh or solid boards), a wall or a hedge along a line.
    pub fn boundary(&mut self, a: [f64; 2], b: [f64; 2], kind: Boundary) {
        match kind {
            Boundary::WireFence { height } => {
                self.ground_strip(a, b, 0.02, 0.0, height, 4.0, Class::Fence, Material::translucent(0.35, 0.45));
                let length = (b[0] - a[0]).hypot(b[1] - a[1]);
                let posts = (length / 2.5).ceil() as usize;
                for k in 0..=posts {
                    let f = k as f64 / posts.max(1) as f64;
                    self.cylinder(a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, 0.03, height, Class::Fence, Material::solid(0.35));
                }
            }
            Boundary::BoardFence { height } => {
                let material = Material::solid(self.rng.range(0.2, 0.45) as f32);
                self.ground_strip(a, b, 0.03, 0.0, height, 4.0, Class::Fence, material);
            }
            Boundary::Wall { height } => {
                let material = Material::solid(self.rng.range(0.25, 0.45) as f32);
                self.ground_strip(a, b, 0.15, -0.3, height, 4.0, Class::OtherStructure, material);
            }
            Boundary::Hedge { height } => {
                let length = (b[0] - a[0]).hypot(b[1] - a[1]);
                let n = (length / 1.2).ceil().max(1.0) as usize;
                for k in 0..n {
                    let f = (k as f64 + 0.5) / n as f64;
                    let r = self.rng.range(0.55, 0.8);
                    self.bush(a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f, r, height);
                }
            }
        }
    }
}

/// Kinds of property boundaries.
#[derive(Debug, Clone, Copy)]
pub enum Boundary {
    WireFence { height: f64 },
    BoardFence { height: f64 },
    Wall { height: f64 },
    Hedge { height: f64 },
}

impl Boundary {
    pub fn random(rng: &mut Rng) -> Boundary {
        match rng.weighted(&[0.3, 0.2, 0.2, 0.3]) {
            0 => Boundary::WireFence { height: rng.range(1.0, 2.0) },
            1 => Boundary::BoardFence { height: rng.range(1.0, 1.9) },
            2 => Boundary::Wall { height: rng.range(0.5, 1.6) },
            _ => Boundary::Hedge { height: rng.range(0.9, 1.8) },
        }
    }
}
