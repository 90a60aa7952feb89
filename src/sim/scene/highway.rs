//! The `highway` preset: a divided motorway with two or three lanes each way on gentle curves, a
//! concrete median barrier, guard rails, verges with trees, bushes and noise walls, sign gantries,
//! overpasses and light poles; cars and trucks at motorway speeds that overtake and keep right.

use super::{Scene, SceneBuilder, SceneRequest};
use crate::sim::models;
use crate::sim::path::Path;
use crate::sim::rng::Rng;
use crate::sim::semantics::{Class, GroundKind, Material};
use crate::sim::terrain::Terrain;
use crate::sim::traffic::{AgentSpec, Idm, LaneChanging, Mover, Route, RouteEnd};
use crate::sim::SimError;
use std::f64::consts::{FRAC_PI_2, TAU};

const LANE_WIDTH: f64 = 3.75;
const MEDIAN_HALF: f64 = 1.5;
const INNER_SHOULDER: f64 = 0.8;
const OUTER_SHOULDER: f64 = 2.5;
/// Where the ego starts along the road: traffic behind it is part of the scene too.
const EGO_START: f64 = 600.0;

pub fn generate(request: &SceneRequest) -> Result<Scene, SimError> {
    let mut rng = Rng::stream(request.seed, "highway");
    let warmup = 20.0;
    let travel = request.duration_s + warmup;
    let length = travel * 36.0 + EGO_START + 700.0;
    // heading as a sum of slow sinusoids: curve radii stay above ~700 m
    let terms: Vec<(f64, f64, f64)> = (0..2)
        .map(|_| {
            let wavelength = rng.range(1500.0, 4000.0);
            let curvature = rng.range(0.25, 0.7) / 700.0;
            (TAU / wavelength, curvature * wavelength / TAU, rng.range(0.0, TAU))
        })
        .collect();
    let heading = |s: f64| terms.iter().map(|(k, a, phase)| a * (k * s + phase).sin()).sum::<f64>();
    let step = 5.0;
    let mut points = vec![[0.0, 0.0]];
    let mut s = 0.0;
    while s < length {
        let h = heading(s + step / 2.0);
        let last = points[points.len() - 1];
        points.push([last[0] + step * h.cos(), last[1] + step * h.sin()]);
        s += step;
    }
    let centre = Path::new(&points);
    let lanes = if rng.chance(0.6) { 3 } else { 2 };
    let edge = MEDIAN_HALF + INNER_SHOULDER + lanes as f64 * LANE_WIDTH + OUTER_SHOULDER;
    let (mut min, mut max) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
    for p in centre.points() {
        for i in 0..2 {
            min[i] = min[i].min(p[i]);
            max[i] = max[i].max(p[i]);
        }
    }
    let margin = 220.0;
    let terrain = Terrain::new([min[0] - margin, min[1] - margin], [max[0] + margin, max[1] + margin], rng.range(0.01, 0.035), &mut Rng::stream(request.seed, "terrain"));
    let mut b = SceneBuilder::new(Rng::stream(request.seed, "furniture"), terrain);
    build_road(&mut b, &centre, lanes, edge);
    build_roadside(&mut b, &centre, edge)?;
    let ego = build_traffic(&mut b, &centre, lanes, request, warmup)?;
    Ok(b.finish(ego, warmup))
}

fn lane_offsets(lanes: usize) -> Vec<f64> {
    // fastest lane (next to the median) first; right-hand traffic drives right of the centre line
    (0..lanes).map(|k| -(MEDIAN_HALF + INNER_SHOULDER + (k as f64 + 0.5) * LANE_WIDTH)).collect()
}

fn build_road(b: &mut SceneBuilder, centre: &Path, lanes: usize, edge: f64) {
    // lane lines: 6 m dashes every 18 m
    let mut s = 0.0;
    while s + 6.0 < centre.length() {
        let (p0, p1) = (centre.pose(s), centre.pose(s + 6.0));
        for side in [-1.0, 1.0] {
            for k in 1..lanes {
                let lateral = side * (MEDIAN_HALF + INNER_SHOULDER + k as f64 * LANE_WIDTH);
                b.terrain.paint_segment(p0.offset(lateral), p1.offset(lateral), 0.08, GroundKind::RoadMarking);
            }
        }
        s += 18.0;
    }
    let vs = centre.vertex_s().to_vec();
    for w in vs.windows(2) {
        let (s0, s1) = (w[0], w[1]);
        let (p0, p1) = (centre.pose(s0), centre.pose(s1));
        b.terrain.paint_segment(p0.offset(0.0), p1.offset(0.0), edge, GroundKind::Road);
        b.terrain.paint_segment(p0.offset(0.0), p1.offset(0.0), MEDIAN_HALF, GroundKind::OtherGround);
        for side in [-1.0, 1.0] {
            for lateral in [MEDIAN_HALF + INNER_SHOULDER, edge - OUTER_SHOULDER] {
                b.terrain.paint_segment(p0.offset(side * lateral), p1.offset(side * lateral), 0.08, GroundKind::RoadMarking);
            }
        }
        // median barrier and guard rails with posts
        b.ground_strip(p0.offset(0.0), p1.offset(0.0), 0.25, -0.2, 0.85, 5.5, Class::OtherStructure, Material::solid(0.38));
        for side in [-1.0, 1.0] {
            b.ground_strip(p0.offset(side * (edge + 0.4)), p1.offset(side * (edge + 0.4)), 0.03, 0.45, 0.78, 5.5, Class::Fence, Material::solid(0.5));
            let q = p0.offset(side * (edge + 0.45));
            b.cylinder(q[0], q[1], 0.06, 0.75, Class::Fence, Material::solid(0.4));
        }
    }
}

fn build_roadside(b: &mut SceneBuilder, centre: &Path, edge: f64) -> Result<(), SimError> {
    let length = centre.length();
    let lights = b.rng.chance(0.5);
    let mut s = 20.0;
    // trees and bushes along the verges, with stretches of noise wall instead
    let mut wall: [Option<f64>; 2] = [None, None];
    while s < length - 20.0 {
        let p = centre.pose(s);
        for (k, side) in [-1.0f64, 1.0].into_iter().enumerate() {
            match wall[k] {
                Some(end) if s < end => {
                    let q0 = p.offset(side * (edge + 3.0));
                    let q1 = centre.pose(s + 4.0).offset(side * (edge + 3.0));
                    b.ground_strip(q0, q1, 0.12, -0.3, 4.0, 5.0, Class::OtherStructure, Material::solid(0.35));
                }
                _ => {
                    wall[k] = None;
                    if b.rng.chance(0.004) {
                        wall[k] = Some(s + b.rng.range(150.0, 500.0));
                    }
                    for _ in 0..2 {
                        if b.rng.chance(0.35) {
                            let q = p.offset(side * (edge + b.rng.range(5.0, 45.0)));
                            if b.rng.chance(0.6) {
                                let r0 = b.rng.range(0.8, 1.4);
                                b.tree(q[0], q[1], r0);
                            } else {
                                let (radius, height) = (b.rng.range(0.6, 1.8), b.rng.range(0.6, 2.0));
                                b.bush(q[0], q[1], radius, height);
                            }
                        }
                    }
                }
            }
        }
        if lights && (s % 48.0) < 4.0 {
            let q = p.offset(0.0);
            let metal = Material::solid(0.35);
            b.cylinder(q[0] + 0.0, q[1], 0.12, 11.0, Class::Pole, metal);
            for side in [-1.0, 1.0] {
                let arm = p.offset(side * 1.5);
                b.raised_box(arm[0], arm[1], p.heading + FRAC_PI_2, [1.5, 0.06, 0.06], 10.9, Class::Pole, metal);
            }
        }
        s += 4.0;
    }
    // gantries and overpasses
    let mut s = b.rng.range(200.0, 700.0);
    while s < length - 100.0 {
        let p = centre.pose(s);
        let across = p.heading + FRAC_PI_2;
        if b.rng.chance(0.5) {
            let metal = Material::solid(0.4);
            for side in [-1.0, 1.0] {
                let q = p.offset(side * (edge + 1.2));
                b.cylinder(q[0], q[1], 0.25, 7.5, Class::Pole, metal);
            }
            b.raised_box(p.x, p.y, across, [edge + 1.2, 0.4, 0.4], 7.2, Class::Pole, metal);
            for side in [-1.0, 1.0] {
                let q = p.offset(side * (edge - 4.0));
                b.raised_box(q[0], q[1], across, [3.0, 0.05, 1.2], 6.5, Class::TrafficSign, Material::retroreflective(0.85));
            }
        } else {
            // a bridge deck across the motorway on abutments and a median pier
            let concrete = Material::solid(0.33);
            let span = edge + 18.0;
            let clearance = b.rng.range(5.6, 6.6);
            b.raised_box(p.x, p.y, across, [span, 5.5, 0.6], clearance + 0.6, Class::OtherStructure, concrete);
            for side in [-1.0, 1.0] {
                let q = p.offset(side * (edge + 4.0));
                b.upright_box(q[0], q[1], p.heading, 5.5, 0.8, clearance, Class::OtherStructure, concrete);
            }
            b.upright_box(p.x, p.y, p.heading, 4.0, 0.5, clearance, Class::OtherStructure, concrete);
        }
        s += b.rng.range(700.0, 1600.0);
    }
    // halls far off the road
    let mut s = b.rng.range(50.0, 300.0);
    while s < length - 50.0 {
        let side = if b.rng.chance(0.5) { -1.0 } else { 1.0 };
        let p = centre.pose(s);
        let q = p.offset(side * (edge + b.rng.range(45.0, 90.0)));
        let (half_l, half_w) = (b.rng.range(15.0, 45.0), b.rng.range(10.0, 25.0));
        let height = b.rng.range(6.0, 14.0);
        let r0 = b.rng.range(0.25, 0.5);
        b.upright_box(q[0], q[1], p.heading, half_l, half_w, height, Class::Building, Material::solid(r0 as f32));
        s += b.rng.range(150.0, 500.0);
    }
    Ok(())
}

fn build_traffic(b: &mut SceneBuilder, centre: &Path, lanes: usize, request: &SceneRequest, warmup: f64) -> Result<usize, SimError> {
    let t_start = -warmup;
    let t_end = request.duration_s;
    let offsets = lane_offsets(lanes);
    let reversed: Vec<[f64; 2]> = centre.points().iter().rev().copied().collect();
    b.plan.routes.push(Route::new(centre.clone(), Vec::new(), RouteEnd::Leave, 2.0));
    b.plan.routes.push(Route::new(Path::new(&reversed), Vec::new(), RouteEnd::Leave, 2.0));
    let mut rng = Rng::stream(request.seed, "ego");
    let ego_lane = 1 + rng.below(lanes - 1);
    let mut schedule = Vec::new();
    let mut t = t_start;
    while t < t_end {
        schedule.push((t, rng.range(0.7, 1.05)));
        t += rng.range(12.0, 35.0);
    }
    let ego = b.add_agent(
        AgentSpec {
            mover: Mover::Vehicle,
            route: 0,
            length: 4.6,
            width: 1.85,
            idm: Idm::CAR,
            desired_speed: rng.range(25.0, 31.0),
            speed_schedule: schedule,
            spawn_time: t_start,
            start_s: EGO_START,
            start_lateral: offsets[ego_lane],
            depart_time: None,
            lane_changing: Some(LaneChanging { lanes: offsets.clone() }),
        },
        None,
    )?;
    let mut rng = Rng::stream(request.seed, "traffic");
    // how busy the motorway is today
    let activity = request.traffic_density * if rng.chance(0.15) { rng.range(0.05, 0.15) } else { rng.range(0.4, 1.3) };
    let length = centre.length();
    for route in 0..2 {
        for (lane, &lateral) in offsets.iter().enumerate() {
            let per_metre = activity * rng.range(2.0, 10.0) / 1000.0;
            let speed_range = match (lanes - 1 - lane, lanes) {
                (0, _) => (22.0, 28.0),
                (1, 3) => (26.0, 32.0),
                _ => (30.0, 37.0),
            };
            let place = |b: &mut SceneBuilder, rng: &mut Rng, s: f64, t: f64| -> Result<(), SimError> {
                let truck = lane + 1 == lanes && rng.chance(0.25);
                let (model, idm, speed) = if truck {
                    (models::truck(rng, 0.7), Idm::TRUCK, rng.range(21.0, 25.0))
                } else if rng.chance(0.02) {
                    (models::motorcyclist(rng), Idm::CAR, rng.range(speed_range.0, speed_range.1 + 3.0))
                } else {
                    (models::car(rng), Idm::CAR, rng.range(speed_range.0, speed_range.1))
                };
                let usable = if truck { offsets[lanes.saturating_sub(2)..].to_vec() } else { offsets.clone() };
                b.add_agent(
                    AgentSpec {
                        mover: Mover::Vehicle,
                        route,
                        length: model.length,
                        width: model.width,
                        idm,
                        desired_speed: speed,
                        speed_schedule: Vec::new(),
                        spawn_time: t,
                        start_s: s,
                        start_lateral: lateral,
                        depart_time: None,
                        lane_changing: Some(LaneChanging { lanes: usable }),
                    },
                    Some(model),
                )?;
                Ok(())
            };
            let mut s = rng.range(0.0, 1.0 / per_metre);
            while s < length - 50.0 {
                // keep the ego's start clear (forward route, ego's lane)
                let near_ego = route == 0 && lane == ego_lane && (s - EGO_START).abs() < 25.0;
                if !near_ego {
                    place(b, &mut rng, s, t_start)?;
                }
                s += (-(rng.uniform().max(1e-9)).ln() / per_metre).max(18.0);
            }
            let rate = per_metre * speed_range.0;
            let mut t = t_start + (-(rng.uniform().max(1e-9)).ln() / rate);
            while t < t_end {
                place(b, &mut rng, 1.0, t)?;
                t += (-(rng.uniform().max(1e-9)).ln() / rate).max(1.5);
            }
        }
    }
    Ok(ego)
}
