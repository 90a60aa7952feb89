//! Shape models of movable objects, in their own frame: x forward, y left, z up, origin on the ground
//! below the centre of the footprint.
//!
//! Cars are low-poly triangle meshes (a body extruded from a side profile, a glass cabin with
//! tumblehome) on box wheels with retro-reflective number plates; trucks are boxes; people are
//! cylinders (legs, arms), a box torso and an ellipsoid head, with legs and arms that swing with the
//! gait; cyclists and motorcyclists are a rider on a vehicle. Models with cylinders or ellipsoids
//! are posed upright (yaw only), since those shapes stay axis-aligned; the others follow the ground's
//! pitch and roll.

use super::rng::Rng;
use super::semantics::{Class, Material};
use super::shapes::{Ellipsoid, OrientedBox, Shape, Triangle, VerticalCylinder, V3};
use nalgebra::{Matrix3, Rotation3};

/// One shape of a model.
#[derive(Debug, Clone, Copy)]
pub struct Part {
    pub shape: Shape,
    pub material: Material,
    /// Gait swing: the part moves along x by `stride × amplitude × sin(phase)` (legs and arms of
    /// walkers swing in antiphase; 0 for rigid parts).
    pub stride: f32,
}

/// A movable object's shape.
#[derive(Debug, Clone)]
pub struct Model {
    pub class: Class,
    pub parts: Vec<Part>,
    /// Footprint and height, metres.
    pub length: f64,
    pub width: f64,
    pub height: f64,
    /// Posed with yaw only (see the module documentation).
    pub upright: bool,
    /// Gait swing amplitude, metres, and stride length (metres of travel per gait cycle).
    pub swing: f32,
    pub stride_length: f32,
}

fn obb(center: [f32; 3], half: [f32; 3]) -> Shape {
    Shape::Box(OrientedBox { center: V3::new(center[0], center[1], center[2]), axes: [V3::x(), V3::y(), V3::z()], half: V3::new(half[0], half[1], half[2]) })
}

fn pitched_obb(center: [f32; 3], half: [f32; 3], pitch: f32) -> Shape {
    let r = Rotation3::from_axis_angle(&V3::y_axis(), pitch);
    Shape::Box(OrientedBox { center: V3::new(center[0], center[1], center[2]), axes: [r * V3::x(), r * V3::y(), r * V3::z()], half: V3::new(half[0], half[1], half[2]) })
}

fn rigid(shape: Shape, material: Material) -> Part {
    Part { shape, material, stride: 0.0 }
}

/// Triangles of a convex side profile (x, z), counter-clockwise seen from +y, extruded across the
/// width `half_width(z)`: both side faces in `sides`, and a face for each profile edge (i → i+1) in
/// `edges[i]`, or none where the edge is a hidden joint.
fn extrude(profile: &[[f32; 2]], half_width: impl Fn(f32) -> f32, sides: Material, edges: &[Option<Material>], out: &mut Vec<Part>) {
    let vertex = |p: [f32; 2], side: f32| V3::new(p[0], side * half_width(p[1]), p[1]);
    for side in [1.0f32, -1.0] {
        for k in 1..profile.len() - 1 {
            out.push(rigid(Shape::Triangle(Triangle { a: vertex(profile[0], side), b: vertex(profile[k], side), c: vertex(profile[k + 1], side) }), sides));
        }
    }
    for (i, material) in edges.iter().enumerate() {
        let Some(material) = *material else { continue };
        let (p, q) = (profile[i], profile[(i + 1) % profile.len()]);
        let (a, b, c, d) = (vertex(p, 1.0), vertex(q, 1.0), vertex(q, -1.0), vertex(p, -1.0));
        out.push(rigid(Shape::Triangle(Triangle { a, b, c }), material));
        out.push(rigid(Shape::Triangle(Triangle { a, b: c, c: d }), material));
    }
}

/// Paint colours seen at 905 nm: black, dark grey, blue/red, silver, white.
fn paint(rng: &mut Rng) -> Material {
    let reflectivity = *rng.pick(&[0.04f32, 0.09, 0.16, 0.22, 0.38, 0.55, 0.7]);
    Material::solid(reflectivity * rng.range(0.85, 1.15) as f32)
}

const GLASS: Material = Material::translucent(0.08, 0.35);
const TIRE: Material = Material::solid(0.04);
const PLATE: Material = Material::retroreflective(0.85);

/// A passenger car: sedan, hatchback, SUV or van.
pub fn car(rng: &mut Rng) -> Model {
    // (length, width, belt line, roof, hood, trunk, windshield run, rear-window run)
    let kind = rng.weighted(&[0.45, 0.3, 0.18, 0.07]);
    let (length, width, belt, roof, hood, trunk, windshield, rear) = match kind {
        0 => (rng.range(4.3, 4.95), rng.range(1.75, 1.88), 0.95, rng.range(1.4, 1.5), 1.05, 0.9, 0.75, 0.6),
        1 => (rng.range(3.7, 4.3), rng.range(1.68, 1.8), 0.95, rng.range(1.42, 1.52), 0.85, 0.2, 0.7, 0.3),
        2 => (rng.range(4.4, 4.9), rng.range(1.82, 1.95), 1.1, rng.range(1.65, 1.78), 0.95, 0.2, 0.6, 0.2),
        _ => (rng.range(4.8, 5.3), rng.range(1.9, 2.0), 1.1, rng.range(1.9, 2.05), 0.6, 0.05, 0.45, 0.05),
    };
    let (l, w) = (length as f32 / 2.0, width as f32 / 2.0);
    let (belt, roof, hood, trunk, windshield, rear) = (belt as f32, roof as f32, hood as f32, trunk as f32, windshield as f32, rear as f32);
    let clearance = 0.28f32;
    let body = paint(rng);
    let mut parts = Vec::with_capacity(40);
    let lower = [[-l, clearance], [l, clearance], [l, belt - 0.22], [l - hood, belt], [-l + trunk, belt], [-l, belt - 0.12]];
    // the belt-line edge is hidden under the cabin
    extrude(&lower, |_| w, body, &[Some(body), Some(body), Some(body), None, Some(body), Some(body)], &mut parts);
    let cabin = [[l - hood, belt], [l - hood - windshield, roof], [-l + trunk + rear, roof], [-l + trunk, belt]];
    let tumblehome = move |z: f32| w - 0.14 * (z - belt) / (roof - belt);
    // windscreen, side and rear windows are glass, the roof painted metal
    extrude(&cabin, tumblehome, GLASS, &[Some(GLASS), Some(body), Some(GLASS), None], &mut parts);
    let wheelbase = l - 0.85;
    for x in [-wheelbase, wheelbase] {
        for y in [-(w - 0.13), w - 0.13] {
            parts.push(rigid(obb([x, y, 0.33], [0.33, 0.11, 0.33]), TIRE));
        }
    }
    parts.push(rigid(obb([l + 0.01, 0.0, clearance + 0.2], [0.01, 0.26, 0.06]), PLATE));
    parts.push(rigid(obb([-l - 0.01, 0.0, clearance + 0.3], [0.01, 0.26, 0.06]), PLATE));
    Model { class: Class::Car, parts, length, width, height: f64::from(roof), upright: false, swing: 0.0, stride_length: 1.0 }
}

/// A truck: a cab and a box body, a semi-trailer with probability `semi`, else a delivery truck.
pub fn truck(rng: &mut Rng, semi: f64) -> Model {
    let length = if rng.chance(semi) { rng.range(11.0, 16.0) } else { rng.range(6.5, 8.5) };
    let width = rng.range(2.35, 2.55);
    let height = rng.range(3.2, 3.9);
    let (l, w, h) = (length as f32 / 2.0, width as f32 / 2.0, height as f32);
    let cab_length = 2.2f32;
    let cab = paint(rng);
    let cargo = Material::solid(rng.range(0.3, 0.75) as f32);
    let mut parts = vec![
        rigid(obb([l - cab_length / 2.0, 0.0, 1.75], [cab_length / 2.0, w - 0.05, 1.2]), cab),
        rigid(obb([l - 0.02, 0.0, 2.35], [0.03, w - 0.2, 0.45]), GLASS),
        rigid(obb([-cab_length / 2.0 - 0.15, 0.0, 0.75 + (h - 0.75) / 2.0], [l - cab_length / 2.0 - 0.15, w, (h - 0.75) / 2.0]), cargo),
    ];
    let axles: Vec<f32> = if length < 10.0 { vec![l - 1.3, -l + 1.6] } else { vec![l - 1.3, l - 3.9, -l + 1.5, -l + 2.8] };
    for x in axles {
        for y in [-(w - 0.2), w - 0.2] {
            parts.push(rigid(obb([x, y, 0.5], [0.5, 0.2, 0.5]), TIRE));
        }
    }
    parts.push(rigid(obb([l + 0.01, 0.0, 0.55], [0.01, 0.26, 0.06]), PLATE));
    parts.push(rigid(obb([-l - 0.17, 0.0, 0.6], [0.01, 0.26, 0.06]), PLATE));
    Model { class: Class::Truck, parts, length, width, height, upright: false, swing: 0.0, stride_length: 1.0 }
}

/// Body parts of a standing or walking person of the given height; `dx` shifts the body along x.
fn person_parts(height: f32, dx: f32, clothing: Material, legs_swing: bool, out: &mut Vec<Part>) {
    let s = height / 1.75;
    let skin = Material::solid(0.3);
    let leg_stride = if legs_swing { 1.0 } else { 0.0 };
    for (side, stride) in [(1.0f32, leg_stride), (-1.0, -leg_stride)] {
        out.push(Part { shape: Shape::Cylinder(VerticalCylinder { x: dx, y: side * 0.1 * s, radius: 0.075 * s, z_min: 0.0, z_max: 0.84 * s }), material: clothing, stride });
        out.push(Part { shape: Shape::Cylinder(VerticalCylinder { x: dx, y: side * 0.27 * s, radius: 0.045 * s, z_min: 0.8 * s, z_max: 1.4 * s }), material: clothing, stride: -stride * 0.6 });
    }
    out.push(rigid(obb([dx, 0.0, 1.13 * s], [0.12 * s, 0.21 * s, 0.3 * s]), clothing));
    out.push(rigid(Shape::Ellipsoid(Ellipsoid { center: V3::new(dx, 0.0, 1.635 * s), radii: V3::new(0.095 * s, 0.085 * s, 0.115 * s) }), skin));
}

fn clothing(rng: &mut Rng) -> Material {
    Material::solid(rng.range(0.06, 0.5) as f32)
}

/// A pedestrian (standing or walking).
pub fn person(rng: &mut Rng) -> Model {
    let height = rng.range(1.55, 1.95) as f32;
    let mut parts = Vec::with_capacity(6);
    person_parts(height, 0.0, clothing(rng), true, &mut parts);
    Model { class: Class::Person, parts, length: 0.45, width: 0.6, height: f64::from(height), upright: true, swing: 0.22 * height / 1.75, stride_length: 1.45 * height / 1.75 }
}

fn bicycle_parts(frame: Material, out: &mut Vec<Part>) {
    for x in [-0.53f32, 0.53] {
        out.push(rigid(obb([x, 0.0, 0.34], [0.34, 0.015, 0.34]), TIRE));
    }
    out.push(rigid(pitched_obb([0.0, 0.0, 0.6], [0.45, 0.02, 0.04], 0.25), frame));
    out.push(rigid(obb([-0.1, 0.0, 0.62], [0.03, 0.02, 0.22]), frame));
    out.push(rigid(obb([0.45, 0.0, 1.0], [0.03, 0.3, 0.02]), frame));
}

/// A parked bicycle without rider.
pub fn bicycle(rng: &mut Rng) -> Model {
    let mut parts = Vec::new();
    bicycle_parts(Material::solid(rng.range(0.1, 0.5) as f32), &mut parts);
    Model { class: Class::Bicycle, parts, length: 1.75, width: 0.6, height: 1.05, upright: true, swing: 0.0, stride_length: 1.0 }
}

/// A cyclist: rider and bicycle are one bicyclist, as SemanticKITTI labels them.
pub fn cyclist(rng: &mut Rng) -> Model {
    let mut parts = Vec::new();
    bicycle_parts(Material::solid(rng.range(0.1, 0.5) as f32), &mut parts);
    let rider = clothing(rng);
    let s = rng.range(0.92, 1.08) as f32;
    for side in [1.0f32, -1.0] {
        parts.push(rigid(Shape::Cylinder(VerticalCylinder { x: -0.12, y: side * 0.12, radius: 0.07 * s, z_min: 0.35, z_max: 0.95 }), rider));
    }
    parts.push(rigid(pitched_obb([0.0, 0.0, 1.22 * s], [0.12, 0.19, 0.3 * s], 0.6), rider));
    parts.push(rigid(Shape::Ellipsoid(Ellipsoid { center: V3::new(0.22, 0.0, 1.6 * s), radii: V3::new(0.1, 0.09, 0.12) }), Material::solid(0.3)));
    Model { class: Class::Bicyclist, parts, length: 1.75, width: 0.65, height: f64::from(1.72 * s), upright: true, swing: 0.0, stride_length: 1.0 }
}

fn motorcycle_parts(body: Material, out: &mut Vec<Part>) {
    for x in [-0.72f32, 0.72] {
        out.push(rigid(obb([x, 0.0, 0.32], [0.32, 0.07, 0.32]), TIRE));
    }
    out.push(rigid(obb([0.0, 0.0, 0.62], [0.6, 0.22, 0.22]), body));
    out.push(rigid(obb([0.6, 0.0, 1.02], [0.05, 0.38, 0.04]), body));
}

/// A parked motorcycle.
pub fn motorcycle(rng: &mut Rng) -> Model {
    let mut parts = Vec::new();
    motorcycle_parts(paint(rng), &mut parts);
    Model { class: Class::Motorcycle, parts, length: 2.1, width: 0.8, height: 1.1, upright: true, swing: 0.0, stride_length: 1.0 }
}

/// A motorcyclist (rider and machine labelled together).
pub fn motorcyclist(rng: &mut Rng) -> Model {
    let mut parts = Vec::new();
    motorcycle_parts(paint(rng), &mut parts);
    let rider = clothing(rng);
    for side in [1.0f32, -1.0] {
        parts.push(rigid(Shape::Cylinder(VerticalCylinder { x: -0.05, y: side * 0.2, radius: 0.08, z_min: 0.45, z_max: 0.9 }), rider));
    }
    parts.push(rigid(pitched_obb([-0.05, 0.0, 1.2], [0.14, 0.21, 0.3], 0.35), rider));
    parts.push(rigid(Shape::Ellipsoid(Ellipsoid { center: V3::new(0.12, 0.0, 1.6), radii: V3::new(0.15, 0.14, 0.15) }), Material::solid(0.5)));
    Model { class: Class::Motorcyclist, parts, length: 2.1, width: 0.8, height: 1.75, upright: true, swing: 0.0, stride_length: 1.0 }
}

/// A part placed in the world: `rotation` and `translation` take model coordinates to the scene,
/// `swing` is the gait offset along the model's x axis for parts that swing.
pub fn place(part: &Part, rotation: &Matrix3<f32>, translation: &V3, swing: f32) -> Shape {
    let shift = V3::new(part.stride * swing, 0.0, 0.0);
    match &part.shape {
        Shape::Box(b) => Shape::Box(OrientedBox {
            center: rotation * (b.center + shift) + translation,
            axes: [rotation * b.axes[0], rotation * b.axes[1], rotation * b.axes[2]],
            half: b.half,
        }),
        Shape::Cylinder(c) => {
            let p = rotation * V3::new(c.x + shift.x, c.y, 0.0) + translation;
            Shape::Cylinder(VerticalCylinder { x: p.x, y: p.y, radius: c.radius, z_min: c.z_min + translation.z, z_max: c.z_max + translation.z })
        }
        Shape::Ellipsoid(e) => Shape::Ellipsoid(Ellipsoid { center: rotation * (e.center + shift) + translation, radii: e.radii }),
        Shape::Triangle(t) => Shape::Triangle(Triangle { a: rotation * t.a + translation, b: rotation * t.b + translation, c: rotation * t.c + translation }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::shapes::Ray;

    #[test]
    fn car_mesh_is_closed_from_the_sides_and_sized_like_a_car() {
        let mut rng = Rng::new(11);
        for _ in 0..20 {
            let model = car(&mut rng);
            assert!((3.6..5.4).contains(&model.length) && (1.6..2.1).contains(&model.width));
            // horizontal rays at belt height from all around hit the body at its outline
            for k in 0..16 {
                let a = k as f32 * std::f32::consts::TAU / 16.0;
                let dir = V3::new(a.cos(), a.sin(), 0.0);
                let ray = Ray::new(-dir * 10.0 + V3::new(0.0, 0.0, 0.7), dir);
                let hit = model.parts.iter().filter_map(|p| p.shape.intersect(&ray, 20.0)).map(|c| c.t_in).fold(f32::INFINITY, f32::min);
                let extent = (model.length as f32 / 2.0 / a.cos().abs()).min(model.width as f32 / 2.0 / a.sin().abs());
                assert!((10.0 - hit - extent).abs() < 0.35, "angle {a}: hit at {hit}, outline at {}", 10.0 - extent);
            }
        }
    }
}
