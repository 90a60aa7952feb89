//! Street-grid scenes: the `urban` preset (residential streets and arterials with signals and stop
//! signs, mixed blocks of houses, downtown rows, industry, parks and car parks) and the `parking`
//! preset (a car park of aisles and stall rows, with exits to the street and shops around it).
//!
//! The grid has irregular spacing. For `urban` only the streets around the ego's route exist (the
//! route's intersections and their neighbours, with street stubs leading out of sensor range); for
//! `parking` the whole car park exists and the ego cruises its aisles. Vehicles enter and leave at
//! the stubs' far ends, out of sight.

use super::{Boundary, Scene, SceneBuilder, SceneRequest};
use crate::sim::models::{self, Model};
use crate::sim::path::{bezier, Path};
use crate::sim::rng::Rng;
use crate::sim::semantics::{Class, GroundKind, Material};
use crate::sim::terrain::Terrain;
use crate::sim::traffic::{AgentSpec, Control, EventKind, Idm, Mover, Node, Route, RouteEnd, RouteEvent, Signal, Turn};
use crate::sim::SimError;
use std::collections::{BTreeMap, BTreeSet};
use std::f64::consts::{FRAC_PI_2, PI};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Urban,
    Parking,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Dir {
    E = 0,
    N = 1,
    W = 2,
    S = 3,
}

impl Dir {
    const ALL: [Dir; 4] = [Dir::E, Dir::N, Dir::W, Dir::S];

    fn from_index(i: usize) -> Dir {
        Dir::ALL[i % 4]
    }
    fn unit(self) -> [f64; 2] {
        match self {
            Dir::E => [1.0, 0.0],
            Dir::N => [0.0, 1.0],
            Dir::W => [-1.0, 0.0],
            Dir::S => [0.0, -1.0],
        }
    }
    /// Unit vector to the right of travel (right-hand traffic keeps to this side).
    fn right(self) -> [f64; 2] {
        let u = self.unit();
        [u[1], -u[0]]
    }
    fn heading(self) -> f64 {
        self as usize as f64 * FRAC_PI_2
    }
    fn opposite(self) -> Dir {
        Dir::from_index(self as usize + 2)
    }
    fn turned_left(self) -> Dir {
        Dir::from_index(self as usize + 1)
    }
    fn turned_right(self) -> Dir {
        Dir::from_index(self as usize + 3)
    }
    fn along_x(self) -> bool {
        matches!(self, Dir::E | Dir::W)
    }
    fn step(self) -> (i32, i32) {
        match self {
            Dir::E => (1, 0),
            Dir::N => (0, 1),
            Dir::W => (-1, 0),
            Dir::S => (0, -1),
        }
    }
}

type Key = (i32, i32);

/// A street of the network: the node it leaves, its direction, its two ends (centre line) and
/// whether it is a stub that ends out of sight.
type Segment = (Key, Dir, [f64; 2], [f64; 2], bool);

/// A corner of an intersection: the node and the quadrant signs (x, y).
type Corner = (Key, (f64, f64));

fn neighbour(k: Key, d: Dir) -> Key {
    let (dx, dy) = d.step();
    (k.0 + dx, k.1 + dy)
}

/// A street's cross-section and life.
#[derive(Debug, Clone, Copy)]
struct Street {
    lanes: usize,
    lane_width: f64,
    parking: f64,
    sidewalk: f64,
    curb: f64,
    speed: f64,
    ground: GroundKind,
    center_line: CenterLine,
    arterial: bool,
    /// Vehicles per km and lane, pedestrians per km of sidewalk side.
    vehicles_per_km: f64,
    walkers_per_km: f64,
    trees: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CenterLine {
    None,
    Dashed,
    DoubleSolid,
}

impl Street {
    fn pavement(&self) -> f64 {
        self.lanes as f64 * self.lane_width + self.parking
    }

    fn residential(rng: &mut Rng, density: f64) -> Street {
        Street {
            lanes: 1,
            lane_width: rng.range(3.0, 3.4),
            parking: if rng.chance(0.8) { rng.range(2.1, 2.4) } else { 0.0 },
            sidewalk: rng.range(2.2, 3.6),
            curb: rng.range(0.11, 0.16),
            speed: rng.range(8.0, 11.5),
            ground: GroundKind::Road,
            center_line: if rng.chance(0.6) { CenterLine::Dashed } else { CenterLine::None },
            arterial: false,
            vehicles_per_km: density * *rng.pick(&[0.5, 1.5, 3.0, 5.0, 9.0]),
            walkers_per_km: density * *rng.pick(&[0.0, 0.0, 0.0, 2.0, 4.0, 8.0, 16.0]),
            trees: rng.chance(0.55),
        }
    }

    fn arterial(rng: &mut Rng, density: f64) -> Street {
        Street {
            lanes: 2,
            lane_width: rng.range(3.2, 3.6),
            parking: if rng.chance(0.35) { rng.range(2.2, 2.5) } else { 0.0 },
            sidewalk: rng.range(3.0, 4.5),
            curb: rng.range(0.12, 0.16),
            speed: rng.range(12.5, 14.5),
            ground: GroundKind::Road,
            center_line: CenterLine::DoubleSolid,
            arterial: true,
            vehicles_per_km: density * rng.range(3.0, 12.0),
            walkers_per_km: density * rng.range(2.0, 18.0),
            trees: rng.chance(0.35),
        }
    }

    fn aisle(rng: &mut Rng, density: f64) -> Street {
        Street {
            lanes: 1,
            lane_width: 3.1,
            parking: 0.0,
            sidewalk: 0.0,
            curb: 0.0,
            speed: rng.range(3.5, 5.0),
            ground: GroundKind::Parking,
            center_line: CenterLine::None,
            arterial: false,
            vehicles_per_km: density * rng.range(1.0, 6.0),
            walkers_per_km: density * rng.range(1.0, 10.0),
            trees: false,
        }
    }
}

/// An intersection of the network.
#[derive(Debug, Clone)]
struct NodeData {
    id: usize,
    /// Length of the street leaving along each direction: `Some(None)` a street to the neighbour
    /// node, `Some(Some(len))` a stub of that length, `None` no street.
    arms: [Option<Option<f64>>; 4],
    control: Control,
    crosswalks: bool,
}

impl NodeData {
    fn has(&self, d: Dir) -> bool {
        self.arms[d as usize].is_some()
    }
    fn arm_count(&self) -> usize {
        self.arms.iter().filter(|a| a.is_some()).count()
    }
}

struct Grid {
    style: Style,
    offset: i32,
    xs: Vec<f64>,
    ys: Vec<f64>,
    /// Street along y at column i, along x at row j.
    cols: Vec<Street>,
    rows: Vec<Street>,
    nodes: BTreeMap<Key, NodeData>,
}

/// A place on a lane: travelling `dir` out of node `from` (or into the network from a stub's end).
#[derive(Debug, Clone, Copy)]
struct LaneRef {
    from: Key,
    dir: Dir,
    lane: usize,
    /// The lane starts at the far end of `from`'s stub in direction `dir.opposite()`.
    from_stub: bool,
}

impl Grid {
    fn pos(&self, k: Key) -> [f64; 2] {
        [self.xs[(k.0 + self.offset) as usize], self.ys[(k.1 + self.offset) as usize]]
    }

    fn in_range(&self, k: Key) -> bool {
        let n = self.xs.len() as i32;
        (0..n).contains(&(k.0 + self.offset)) && (0..n).contains(&(k.1 + self.offset))
    }

    /// The street through node `k` in direction `d`.
    fn street(&self, k: Key, d: Dir) -> &Street {
        if d.along_x() {
            &self.rows[(k.1 + self.offset) as usize]
        } else {
            &self.cols[(k.0 + self.offset) as usize]
        }
    }

    /// Half extents of node `k`'s intersection box.
    fn box_half(&self, k: Key) -> [f64; 2] {
        let node = &self.nodes[&k];
        let hx = if node.has(Dir::N) || node.has(Dir::S) { self.street(k, Dir::N).pavement() } else { 0.0 };
        let hy = if node.has(Dir::E) || node.has(Dir::W) { self.street(k, Dir::E).pavement() } else { 0.0 };
        [hx, hy]
    }

    /// Distance from a node's centre to where lanes in direction `d` leave its box.
    fn box_along(&self, k: Key, d: Dir) -> f64 {
        let h = self.box_half(k);
        if d.along_x() {
            h[0]
        } else {
            h[1]
        }
    }

    /// Stop-line set-back from the box edge (room for a crosswalk).
    fn stop_setback(&self, k: Key) -> f64 {
        if self.nodes[&k].crosswalks {
            4.0
        } else {
            1.2
        }
    }

    /// Start and end points of a lane (lateral offset included) and the node it leads to (None when
    /// it leaves through a stub).
    fn lane_ends(&self, lane: &LaneRef) -> ([f64; 2], [f64; 2], Option<Key>) {
        let street = self.street(lane.from, lane.dir);
        let offset = (lane.lane as f64 + 0.5) * street.lane_width;
        let r = lane.dir.right();
        let u = lane.dir.unit();
        let c = self.pos(lane.from);
        let node = &self.nodes[&lane.from];
        let (start_center, end_center, to) = if lane.from_stub {
            // entering through the stub that leaves `from` in the opposite direction
            let Some(Some(len)) = node.arms[lane.dir.opposite() as usize] else { return (c, c, Some(lane.from)) };
            let start = [c[0] - u[0] * len, c[1] - u[1] * len];
            let back = self.box_along(lane.from, lane.dir);
            (start, [c[0] - u[0] * back, c[1] - u[1] * back], Some(lane.from))
        } else {
            let along = self.box_along(lane.from, lane.dir);
            let start = [c[0] + u[0] * along, c[1] + u[1] * along];
            match node.arms[lane.dir as usize] {
                Some(Some(len)) => (start, [c[0] + u[0] * len, c[1] + u[1] * len], None),
                _ => {
                    let next = neighbour(lane.from, lane.dir);
                    let m = self.pos(next);
                    let back = self.box_along(next, lane.dir);
                    (start, [m[0] - u[0] * back, m[1] - u[1] * back], Some(next))
                }
            }
        };
        let shift = |p: [f64; 2]| [p[0] + r[0] * offset, p[1] + r[1] * offset];
        (shift(start_center), shift(end_center), to)
    }
}

/// Builds a path while tracking arc length exactly as [`Path::new`] computes it.
#[derive(Default)]
struct PathBuilder {
    points: Vec<[f64; 2]>,
    length: f64,
}

impl PathBuilder {
    fn push(&mut self, p: [f64; 2]) {
        if let Some(q) = self.points.last() {
            let d = (p[0] - q[0]).hypot(p[1] - q[1]);
            if d <= 1e-6 {
                return;
            }
            self.length += d;
        }
        self.points.push(p);
    }
}

/// How a vehicle route chooses its way.
enum Steering<'a> {
    Random(&'a mut Rng),
    /// The ego's planned exits, one per intersection.
    Planned(&'a [Dir]),
}

pub fn generate(request: &SceneRequest, style: Style) -> Result<Scene, SimError> {
    let mut rng = Rng::stream(request.seed, "grid");
    let warmup = 30.0;
    let travel = request.duration_s + warmup;
    // how busy this place is today: some days are nearly deserted
    let activity = request.traffic_density * if rng.chance(0.3) { rng.range(0.0, 0.12) } else { rng.range(0.3, 1.3) };
    let (grid, ego_exits) = layout(&mut rng, style, travel, activity)?;
    let (min, max) = grid_bounds(&grid);
    let max_slope = match style {
        Style::Urban => rng.range(0.01, 0.05),
        Style::Parking => rng.range(0.004, 0.015),
    };
    let terrain = Terrain::new(min, max, max_slope, &mut Rng::stream(request.seed, "terrain"));
    let mut b = SceneBuilder::new(Rng::stream(request.seed, "furniture"), terrain);
    let mut g = GridScene { grid, activity: activity.min(1.0), parked_spots: Vec::new(), street_lanes: Vec::new() };
    // streets before intersections: crosswalks and stop lines are painted over the pavement
    g.build_streets(&mut b)?;
    g.build_nodes(&mut b);
    g.build_blocks(&mut b)?;
    let ego = g.build_traffic(&mut b, &ego_exits, warmup, travel, request)?;
    Ok(b.finish(ego, warmup))
}

fn grid_bounds(grid: &Grid) -> ([f64; 2], [f64; 2]) {
    let (mut min, mut max) = ([f64::INFINITY; 2], [f64::NEG_INFINITY; 2]);
    for (&k, node) in &grid.nodes {
        let p = grid.pos(k);
        let reach = node.arms.iter().flatten().map(|a| a.unwrap_or(0.0)).fold(0.0, f64::max);
        for i in 0..2 {
            min[i] = min[i].min(p[i] - reach);
            max[i] = max[i].max(p[i] + reach);
        }
    }
    // blocks beyond the outer streets and the sensor's reach
    ([min[0] - 220.0, min[1] - 220.0], [max[0] + 220.0, max[1] + 220.0])
}

/// Grid lines, streets, the network and the ego's exits at each intersection of its route.
fn layout(rng: &mut Rng, style: Style, travel: f64, density: f64) -> Result<(Grid, Vec<Dir>), SimError> {
    let (spacing, row_spacing, max_speed) = match style {
        Style::Urban => ((70.0, 140.0), (70.0, 140.0), 14.5),
        Style::Parking => ((45.0, 65.0), (16.4, 16.4), 5.0),
    };
    let needed = travel * max_speed + 150.0;
    let m = match style {
        Style::Urban => (needed / spacing.0).ceil() as i32 + 3,
        Style::Parking => 12,
    };
    let count = (2 * m + 1) as usize;
    let lines = |rng: &mut Rng, range: (f64, f64)| {
        let gaps: Vec<f64> = (0..count).map(|_| rng.range(range.0, range.1 + 1e-9)).collect();
        let mut v = vec![0.0; count];
        for k in (m as usize + 1)..count {
            v[k] = v[k - 1] + gaps[k];
        }
        for k in (0..m as usize).rev() {
            v[k] = v[k + 1] - gaps[k];
        }
        v
    };
    let xs = lines(rng, spacing);
    let ys = lines(rng, row_spacing);
    let (cols, rows): (Vec<Street>, Vec<Street>) = match style {
        Style::Urban => (
            (0..count).map(|_| if rng.chance(0.25) { Street::arterial(rng, density) } else { Street::residential(rng, density) }).collect(),
            (0..count).map(|_| if rng.chance(0.25) { Street::arterial(rng, density) } else { Street::residential(rng, density) }).collect(),
        ),
        Style::Parking => ((0..count).map(|_| Street::aisle(rng, density)).collect(), (0..count).map(|_| Street::aisle(rng, density)).collect()),
    };
    let mut grid = Grid { style, offset: m, xs, ys, cols, rows, nodes: BTreeMap::new() };
    // the car park: nodes (0..nx, 0..ny); the ego starts on row 0 heading east
    let lot = (5 + rng.below(3) as i32, 5 + rng.below(4) as i32);
    let inside = |k: Key| match style {
        Style::Urban => true,
        Style::Parking => (0..lot.0).contains(&k.0) && (0..lot.1).contains(&k.1),
    };
    // the ego's route through the grid
    let mut route = vec![(-1, 0), (0, 0)];
    if style == Style::Parking {
        route = vec![(0, 0), (1, 0)];
    }
    let mut heading = Dir::E;
    let mut exits = Vec::new();
    let mut visited: BTreeSet<Key> = route.iter().copied().collect();
    let mut length = 0.0;
    while length < needed {
        let here = *route.last().unwrap_or(&(0, 0));
        let options: Vec<(Dir, f64)> = [(heading, 0.55), (heading.turned_left(), 0.22), (heading.turned_right(), 0.23)]
            .into_iter()
            .filter(|(d, _)| inside(neighbour(here, *d)) && grid.in_range(neighbour(here, *d)))
            .collect();
        if options.is_empty() {
            return Err(SimError::Scene("the ego's route ran out of grid".into()));
        }
        let fresh: Vec<(Dir, f64)> = options.iter().copied().filter(|(d, _)| !visited.contains(&neighbour(here, *d))).collect();
        let choice = if fresh.is_empty() { &options } else { &fresh };
        let weights: Vec<f64> = choice.iter().map(|c| c.1).collect();
        let d = choice[rng.weighted(&weights)].0;
        let next = neighbour(here, d);
        let (a, b) = (grid.pos(here), grid.pos(next));
        length += (b[0] - a[0]).abs() + (b[1] - a[1]).abs();
        exits.push(d);
        route.push(next);
        visited.insert(next);
        heading = d;
    }
    // the network: the route's nodes and their neighbours (the whole lot for a car park)
    let mut keys: BTreeSet<Key> = BTreeSet::new();
    match style {
        Style::Urban => {
            for &k in &route {
                keys.insert(k);
                for d in Dir::ALL {
                    keys.insert(neighbour(k, d));
                }
            }
        }
        Style::Parking => {
            for i in 0..lot.0 {
                for j in 0..lot.1 {
                    keys.insert((i, j));
                }
            }
        }
    }
    keys.retain(|k| grid.in_range(*k));
    let route_edges: BTreeSet<(Key, Key)> = route.windows(2).map(|w| (w[0].min(w[1]), w[0].max(w[1]))).collect();
    for &k in &keys {
        let mut arms = [None; 4];
        for d in Dir::ALL {
            let n = neighbour(k, d);
            arms[d as usize] = if keys.contains(&n) {
                Some(None)
            } else {
                let gap = if d.along_x() { (grid.pos(n)[0] - grid.pos(k)[0]).abs() } else { (grid.pos(n)[1] - grid.pos(k)[1]).abs() };
                match style {
                    Style::Urban => Some(Some((0.85 * gap).min(130.0))),
                    Style::Parking => None,
                }
            };
        }
        grid.nodes.insert(k, NodeData { id: 0, arms, control: Control::Uncontrolled, crosswalks: false });
    }
    if style == Style::Parking {
        // exits to the street on the west and east sides
        let west = (0, rng.below(lot.1 as usize) as i32);
        let east = (lot.0 - 1, rng.below(lot.1 as usize) as i32);
        for (k, d) in [(west, Dir::W), (east, Dir::E)] {
            if let Some(node) = grid.nodes.get_mut(&k) {
                node.arms[d as usize] = Some(Some(110.0));
            }
        }
    }
    // drop some streets off the route for T junctions (urban), keeping three arms at each node
    if style == Style::Urban {
        let keys: Vec<Key> = grid.nodes.keys().copied().collect();
        for k in keys {
            for d in [Dir::E, Dir::N, Dir::W, Dir::S] {
                let n = neighbour(k, d);
                let on_route = route_edges.contains(&(k.min(n), k.max(n)));
                let arm = grid.nodes[&k].arms[d as usize];
                if on_route || arm.is_none() || !rng.chance(0.12) {
                    continue;
                }
                let keeps = |grid: &Grid, key: Key| grid.nodes.get(&key).is_none_or(|node| node.arm_count() > 3);
                if !keeps(&grid, k) || (arm == Some(None) && !keeps(&grid, n)) {
                    continue;
                }
                if let Some(node) = grid.nodes.get_mut(&k) {
                    node.arms[d as usize] = None;
                }
                if arm == Some(None) {
                    if let Some(node) = grid.nodes.get_mut(&n) {
                        node.arms[d.opposite() as usize] = None;
                    }
                }
            }
        }
    }
    // controls
    for (id, (&k, node)) in grid.nodes.iter_mut().enumerate() {
        node.id = id;
        let arterial = grid.rows[(k.1 + grid.offset) as usize].arterial || grid.cols[(k.0 + grid.offset) as usize].arterial;
        let (control, crosswalks) = match style {
            Style::Parking => (Control::Uncontrolled, false),
            Style::Urban if node.arm_count() < 3 => (Control::Uncontrolled, false),
            Style::Urban if arterial || rng.chance(0.3) => (
                Control::Signal(Signal { offset: rng.range(0.0, 100.0), green_x: rng.range(15.0, 32.0), green_y: rng.range(12.0, 28.0), yellow: 3.0, all_red: 2.0 }),
                true,
            ),
            Style::Urban => (Control::StopSign, rng.chance(0.5)),
        };
        node.control = control;
        node.crosswalks = crosswalks;
    }
    Ok((grid, exits))
}

/// The scene being furnished, with what later steps need from earlier ones.
struct GridScene {
    grid: Grid,
    /// How busy the scene is (0..1), for parked cars that come and go.
    activity: f64,
    /// Free parking places for vehicles that come to park: (lane, arc length along it, lateral).
    parked_spots: Vec<(LaneRef, f64, f64)>,
    /// Parked vehicles that will pull out: (lane, arc length, lateral, model).
    street_lanes: Vec<(LaneRef, f64, f64, Model)>,
}

impl GridScene {
    fn keys(&self) -> Vec<Key> {
        self.grid.nodes.keys().copied().collect()
    }

    /// Streets of the network as (node, direction) with a street to a neighbour (E/N only, so each
    /// once) or a stub (any direction).
    fn segments(&self) -> Vec<Segment> {
        let mut out = Vec::new();
        for k in self.keys() {
            let node = &self.grid.nodes[&k];
            let c = self.grid.pos(k);
            for d in Dir::ALL {
                match node.arms[d as usize] {
                    Some(None) if matches!(d, Dir::E | Dir::N) => out.push((k, d, c, self.grid.pos(neighbour(k, d)), false)),
                    Some(Some(len)) => {
                        let u = d.unit();
                        out.push((k, d, c, [c[0] + u[0] * len, c[1] + u[1] * len], true));
                    }
                    _ => {}
                }
            }
        }
        out
    }

    fn build_nodes(&mut self, b: &mut SceneBuilder) {
        for k in self.keys() {
            let node = self.grid.nodes[&k].clone();
            let half = self.grid.box_half(k);
            let c = self.grid.pos(k);
            b.plan.nodes.push(Node { center: c, half, control: node.control });
            let ground = self.grid.street(k, Dir::E).ground;
            b.terrain.paint_rect(c, [1.0, 0.0], half[0].max(0.5), half[1].max(0.5), ground);
            // stop lines and crosswalks on each arm
            for d in Dir::ALL {
                if !node.has(d) {
                    continue;
                }
                let street = *self.grid.street(k, d);
                let u = d.unit();
                let along = self.grid.box_along(k, d);
                let across = [-u[1], u[0]];
                if node.crosswalks {
                    // zebra stripes parallel to the traffic, across the whole pavement
                    let mid = along + 1.8;
                    let width = street.pavement();
                    let mut offset = -width + 0.5;
                    while offset < width - 0.3 {
                        let p = [c[0] + u[0] * mid + across[0] * offset, c[1] + u[1] * mid + across[1] * offset];
                        b.terrain.paint_rect(p, u, 1.5, 0.25, GroundKind::RoadMarking);
                        offset += 1.0;
                    }
                }
                if !matches!(node.control, Control::Uncontrolled) && street.ground == GroundKind::Road {
                    // the stop line across the lanes arriving along -d (they are on d's left side)
                    let at = along + self.grid.stop_setback(k) - 0.2;
                    let lanes = street.lanes as f64 * street.lane_width;
                    let p = [c[0] + u[0] * at + across[0] * lanes / 2.0, c[1] + u[1] * at + across[1] * lanes / 2.0];
                    b.terrain.paint_rect(p, u, 0.2, lanes / 2.0, GroundKind::RoadMarking);
                }
            }
            // traffic lights on the corners, facing the arriving traffic
            if let Control::Signal(_) = node.control {
                for d in Dir::ALL {
                    if !node.has(d) {
                        continue;
                    }
                    let street = *self.grid.street(k, d);
                    let u = d.unit();
                    let across = [-u[1], u[0]];
                    let along = self.grid.box_along(k, d) + 0.8;
                    let side = street.pavement() + 0.6;
                    let p = [c[0] + u[0] * along + across[0] * side, c[1] + u[1] * along + across[1] * side];
                    let arm = street.arterial.then_some((street.pavement() * 0.7, d.heading() - FRAC_PI_2));
                    b.traffic_light(p[0], p[1], d.heading(), arm);
                }
            }
            if let Control::StopSign = node.control {
                for d in Dir::ALL {
                    if !node.has(d) {
                        continue;
                    }
                    let street = *self.grid.street(k, d);
                    let u = d.unit();
                    let across = [-u[1], u[0]];
                    let along = self.grid.box_along(k, d) + self.grid.stop_setback(k);
                    let side = street.pavement() + 0.5;
                    b.sign(c[0] + u[0] * along + across[0] * side, c[1] + u[1] * along + across[1] * side, d.heading());
                }
            }
        }
    }

    fn build_streets(&mut self, b: &mut SceneBuilder) -> Result<(), SimError> {
        for (k, d, a, end, stub) in self.segments() {
            let street = *self.grid.street(k, d);
            let u = d.unit();
            let across = [-u[1], u[0]];
            let length = (end[0] - a[0]).abs() + (end[1] - a[1]).abs();
            let start_clear = self.grid.box_along(k, d);
            let end_clear = if stub { 0.0 } else { self.grid.box_along(neighbour(k, d), d.opposite()) };
            let at = |s: f64, lateral: f64| [a[0] + u[0] * s + across[0] * lateral, a[1] + u[1] * s + across[1] * lateral];
            let pavement = street.pavement();
            b.terrain.paint_segment(at(start_clear, 0.0), at(length - end_clear, 0.0), pavement, street.ground);
            // parking lanes, except near intersections
            if street.parking > 0.0 {
                for side in [-1.0, 1.0] {
                    let lateral = side * (pavement - street.parking / 2.0);
                    // no parking within 12 m of an intersection (crosswalk, stop line, visibility)
                    let (s0, s1) = (start_clear + 12.0, length - end_clear - 12.0);
                    if s1 > s0 {
                        b.terrain.paint_segment(at(s0, lateral), at(s1, lateral), street.parking / 2.0, GroundKind::Parking);
                        if street.center_line != CenterLine::None {
                            let edge = side * (pavement - street.parking);
                            b.terrain.paint_segment(at(s0, edge), at(s1, edge), 0.07, GroundKind::RoadMarking);
                        }
                        self.park_along(b, k, d, stub, side, s0, s1)?;
                    }
                }
            }
            // lane markings
            let (m0, m1) = (start_clear + 4.5, length - end_clear - 4.5);
            if m1 > m0 {
                match street.center_line {
                    CenterLine::None => {}
                    CenterLine::Dashed => dashes(b, at(m0, 0.0), at(m1, 0.0), 3.0, 6.0, 0.07),
                    CenterLine::DoubleSolid => {
                        for off in [-0.12, 0.12] {
                            b.terrain.paint_segment(at(m0, off), at(m1, off), 0.06, GroundKind::RoadMarking);
                        }
                    }
                }
                for lane in 1..street.lanes {
                    for side in [-1.0, 1.0] {
                        let off = side * lane as f64 * street.lane_width;
                        dashes(b, at(m0, off), at(m1, off), 3.0, 9.0, 0.07);
                    }
                }
            }
            if street.sidewalk <= 0.0 {
                continue;
            }
            // sidewalks: from the crossing street's curb (or across a missing arm) to the other end
            let far = if stub { None } else { Some(neighbour(k, d)) };
            for side in [-1.0f64, 1.0] {
                let side_dir = if side > 0.0 { d.turned_left() } else { d.turned_right() };
                let start_extent = self.sidewalk_extent(k, side_dir);
                let end_extent = match far {
                    Some(n) => self.sidewalk_extent(n, side_dir),
                    None => 0.0,
                };
                let (s0, s1) = (start_extent, length - end_extent);
                let lateral = side * (pavement + street.sidewalk / 2.0);
                b.terrain.paint_segment(at(s0, lateral), at(s1, lateral), street.sidewalk / 2.0, GroundKind::Sidewalk);
                b.ground_strip(at(s0, lateral), at(s1, lateral), street.sidewalk / 2.0, -0.3, street.curb, 4.0, Class::Sidewalk, Material::solid(0.3));
                self.furnish_sidewalk(b, &street, at(s0.max(start_clear + 3.0), side * (pavement + 0.5)), at(s1.min(length - end_clear - 3.0), side * (pavement + 0.5)), u, side);
            }
        }
        Ok(())
    }

    /// Cars (now and then a motorcycle) parked along one side of the street (k, d) between `s0`
    /// and `s1` metres from k. Some will pull out during the sequence, and some spaces stay free
    /// for cars that arrive to park.
    fn park_along(&mut self, b: &mut SceneBuilder, k: Key, d: Dir, stub: bool, side: f64, s0: f64, s1: f64) -> Result<(), SimError> {
        let street = *self.grid.street(k, d);
        // traffic next to this side travels along d on the right (side -1), against d on the left
        let (lane, flip) = if side < 0.0 {
            (LaneRef { from: k, dir: d, lane: street.lanes - 1, from_stub: false }, false)
        } else if stub {
            (LaneRef { from: k, dir: d.opposite(), lane: street.lanes - 1, from_stub: true }, true)
        } else {
            (LaneRef { from: neighbour(k, d), dir: d.opposite(), lane: street.lanes - 1, from_stub: false }, true)
        };
        let (lane_start, _, _) = self.grid.lane_ends(&lane);
        let u = d.unit();
        let across = [-u[1], u[0]];
        let lateral = side * (street.pavement() - street.parking / 2.0);
        let c = self.grid.pos(k);
        let yaw = if flip { d.heading() + PI } else { d.heading() };
        let offset = -(street.lane_width / 2.0 + street.parking / 2.0);
        let occupancy = b.rng.range(0.45, 0.9);
        let mut s = s0 + b.rng.range(0.5, 3.0);
        while s < s1 - 2.5 {
            let model = if b.rng.chance(0.04) { models::motorcycle(&mut b.rng) } else { models::car(&mut b.rng) };
            let centre = s + model.length / 2.0;
            if centre + model.length / 2.0 > s1 {
                break;
            }
            let p = [c[0] + u[0] * centre + across[0] * lateral, c[1] + u[1] * centre + across[1] * lateral];
            let along_lane = (p[0] - lane_start[0]).hypot(p[1] - lane_start[1]);
            let roll = b.rng.uniform();
            if roll < occupancy {
                if model.class == Class::Car && roll < occupancy * 0.05 * self.activity && along_lane > 5.0 {
                    self.street_lanes.push((lane, along_lane, offset, model.clone()));
                } else {
                    let jitter = b.rng.range(-0.15, 0.15);
                    let q = [p[0] + across[0] * jitter * side, p[1] + across[1] * jitter * side];
                    let r0 = b.rng.range(-0.03, 0.03);
                    b.place_static(&model, q[0], q[1], yaw + r0)?;
                }
            } else if roll > 1.0 - (1.0 - occupancy) * 0.3 * self.activity && along_lane > 60.0 && self.grid.style == Style::Urban {
                self.parked_spots.push((lane, along_lane, offset));
            }
            s += model.length + b.rng.range(0.6, 5.0);
        }
        Ok(())
    }

    /// Where a sidewalk along a street ends at node `k` on the side towards `side_dir`: at the curb
    /// of the crossing street if that arm exists, else it runs on across the node.
    fn sidewalk_extent(&self, k: Key, side_dir: Dir) -> f64 {
        let node = &self.grid.nodes[&k];
        let crossing = self.grid.street(k, side_dir);
        let half = self.grid.box_along(k, side_dir.turned_left());
        if node.has(side_dir) {
            half
        } else {
            -(half.max(if node.has(side_dir.opposite()) { crossing.pavement() } else { 0.0 }) + crossing.sidewalk.max(2.5))
        }
    }

    /// Street lights, trees and signs along a sidewalk's curb side from `a` to `b`.
    fn furnish_sidewalk(&self, b: &mut SceneBuilder, street: &Street, from: [f64; 2], to: [f64; 2], u: [f64; 2], side: f64) {
        let length = (to[0] - from[0]).hypot(to[1] - from[1]);
        if length < 4.0 {
            return;
        }
        let across = [-u[1] * side, u[0] * side];
        let light_spacing = b.rng.range(25.0, 40.0);
        let light_phase = b.rng.range(0.0, light_spacing);
        let arm_yaw = (-across[1]).atan2(-across[0]);
        let mut s = light_phase;
        while s < length {
            let p = [from[0] + u[0] * s, from[1] + u[1] * s];
            b.street_light(p[0], p[1], arm_yaw);
            s += light_spacing;
        }
        if street.trees {
            let spacing = b.rng.range(7.0, 14.0);
            let mut s = b.rng.range(2.0, spacing);
            while s < length {
                if (s - light_phase).rem_euclid(light_spacing) > 2.0 && b.rng.chance(0.85) {
                    let p = [from[0] + u[0] * s + across[0] * 0.6, from[1] + u[1] * s + across[1] * 0.6];
                    b.tree(p[0], p[1], 0.9);
                }
                s += spacing;
            }
        }
        if b.rng.chance(0.3) {
            let s = b.rng.range(0.0, length);
            let p = [from[0] + u[0] * s + across[0] * 0.2, from[1] + u[1] * s + across[1] * 0.2];
            b.sign(p[0], p[1], if side > 0.0 { u[1].atan2(u[0]) + PI } else { u[1].atan2(u[0]) });
        }
    }

    fn build_blocks(&mut self, b: &mut SceneBuilder) -> Result<(), SimError> {
        // every grid cell touching a street of the network
        let mut cells: BTreeSet<Key> = BTreeSet::new();
        for (k, d, _, _, _) in self.segments() {
            let (i, j) = k;
            let touched = match d {
                Dir::E => [(i, j), (i, j - 1)],
                Dir::W => [(i - 1, j), (i - 1, j - 1)],
                Dir::N => [(i, j), (i - 1, j)],
                Dir::S => [(i, j - 1), (i - 1, j - 1)],
            };
            cells.extend(touched.iter().filter(|c| self.grid.in_range(**c) && self.grid.in_range((c.0 + 1, c.1 + 1))));
        }
        for cell in cells {
            self.fill_block(b, cell)?;
        }
        Ok(())
    }

    /// The street along one side of a block, if the network has one there: (pavement + sidewalk).
    fn block_side(&self, a: Key, d: Dir) -> Option<Street> {
        let from = self.grid.nodes.get(&a).and_then(|n| n.arms[d as usize]).is_some();
        let to = self.grid.nodes.get(&neighbour(a, d)).and_then(|n| n.arms[d.opposite() as usize]).is_some();
        (from || to).then(|| *self.grid.street(a, d))
    }

    fn fill_block(&mut self, b: &mut SceneBuilder, cell: Key) -> Result<(), SimError> {
        let (i, j) = cell;
        let p0 = self.grid.pos((i, j));
        let p1 = self.grid.pos((i + 1, j + 1));
        // sides: south (row j), east (column i+1), north (row j+1), west (column i)
        let sides = [
            self.block_side((i, j), Dir::E),
            self.block_side((i + 1, j), Dir::N),
            self.block_side((i, j + 1), Dir::E),
            self.block_side((i, j), Dir::N),
        ];
        let inset = |s: &Option<Street>| s.map(|s| s.pavement() + s.sidewalk + 0.3).unwrap_or(2.0);
        let rect = [p0[0] + inset(&sides[3]), p0[1] + inset(&sides[0]), p1[0] - inset(&sides[1]), p1[1] - inset(&sides[2])];
        if rect[2] - rect[0] < 4.0 || rect[3] - rect[1] < 4.0 {
            return Ok(());
        }
        let mut block = Block { rect, sides, footprints: Vec::new() };
        match self.grid.style {
            Style::Parking => {
                let inside_lot = self.grid.nodes.contains_key(&(i, j)) && self.grid.nodes.contains_key(&(i + 1, j + 1));
                if inside_lot {
                    self.stall_block(b, &block, true, true)?;
                } else {
                    self.lot_edge(b, &block)?;
                }
            }
            Style::Urban => match b.rng.weighted(&[0.3, 0.36, 0.1, 0.12, 0.12]) {
                0 => self.frontage(b, &mut block, Frontage::Downtown)?,
                1 => self.frontage(b, &mut block, Frontage::Residential)?,
                2 => self.frontage(b, &mut block, Frontage::Industrial)?,
                3 => self.park(b, &block)?,
                _ => self.surface_car_park(b, &block)?,
            },
        }
        Ok(())
    }

    /// Rows of buildings along each street side of a block.
    fn frontage(&mut self, b: &mut SceneBuilder, block: &mut Block, kind: Frontage) -> Result<(), SimError> {
        let ground_kind = match kind {
            Frontage::Residential => GroundKind::Terrain,
            _ => GroundKind::OtherGround,
        };
        let r = block.rect;
        let center = [(r[0] + r[2]) / 2.0, (r[1] + r[3]) / 2.0];
        b.terrain.paint_rect(center, [1.0, 0.0], (r[2] - r[0]) / 2.0, (r[3] - r[1]) / 2.0, ground_kind);
        for side in 0..4 {
            if block.sides[side].is_none() {
                continue;
            }
            let (origin, along, inward, length) = block.side_frame(side);
            let boundary = (kind == Frontage::Residential || (kind == Frontage::Industrial && b.rng.chance(0.7))).then(|| Boundary::random(&mut b.rng));
            let mut s = b.rng.range(0.0, 4.0);
            while s < length - 6.0 {
                let (width, depth, height, setback, gap) = match kind {
                    Frontage::Downtown => (b.rng.range(10.0, 30.0), b.rng.range(12.0, 24.0), b.rng.range(8.0, 26.0), b.rng.range(0.0, 1.5), b.rng.range(0.0, 3.0)),
                    Frontage::Residential => (b.rng.range(8.0, 14.0), b.rng.range(8.0, 13.0), b.rng.range(5.0, 9.5), b.rng.range(4.0, 9.0), b.rng.range(4.0, 12.0)),
                    Frontage::Industrial => (b.rng.range(25.0, 70.0), b.rng.range(18.0, 40.0), b.rng.range(6.0, 12.0), b.rng.range(8.0, 16.0), b.rng.range(6.0, 20.0)),
                };
                let width = width.min(length - s - 1.0);
                if width < 5.0 {
                    break;
                }
                let c = [origin[0] + along[0] * (s + width / 2.0) + inward[0] * (setback + depth / 2.0), origin[1] + along[1] * (s + width / 2.0) + inward[1] * (setback + depth / 2.0)];
                let yaw = along[1].atan2(along[0]);
                if block.claim(c, along, width / 2.0, depth / 2.0) {
                    let material = Material::solid(b.rng.range(0.18, 0.5) as f32);
                    b.upright_box(c[0], c[1], yaw, width / 2.0, depth / 2.0, height, Class::Building, material);
                    if kind != Frontage::Residential && b.rng.chance(0.3) {
                        // an upper storey set back from the facade
                        let (w2, d2) = (width * b.rng.range(0.5, 0.9), depth * b.rng.range(0.5, 0.8));
                        let r0 = b.rng.range(3.0, 8.0);
                        b.upright_box(c[0] + inward[0] * (depth - d2) / 2.0, c[1] + inward[1] * (depth - d2) / 2.0, yaw, w2 / 2.0, d2 / 2.0, height + r0, Class::Building, material);
                    }
                    if kind == Frontage::Residential {
                        // a driveway and maybe a car on it, a tree in the front yard
                        let drive = [origin[0] + along[0] * (s + width + 1.5) + inward[0] * setback / 2.0, origin[1] + along[1] * (s + width + 1.5) + inward[1] * setback / 2.0];
                        b.terrain.paint_rect(drive, inward, setback / 2.0 + 0.3, 1.4, GroundKind::OtherGround);
                        if b.rng.chance(0.35) && setback > 5.0 {
                            let model = models::car(&mut b.rng);
                            let yaw_car = inward[1].atan2(inward[0]) + if b.rng.chance(0.5) { PI } else { 0.0 };
                            b.place_static(&model, drive[0], drive[1], yaw_car)?;
                        }
                        if b.rng.chance(0.6) {
                            let t = [origin[0] + along[0] * (s + width * b.rng.range(0.2, 0.8)) + inward[0] * setback * 0.5, origin[1] + along[1] * (s + width * b.rng.range(0.2, 0.8)) + inward[1] * setback * 0.5];
                            let r0 = b.rng.range(0.7, 1.1);
                            b.tree(t[0], t[1], r0);
                        }
                    }
                    if kind == Frontage::Downtown && b.rng.chance(0.25) {
                        // people by the entrance
                        let n = 1 + b.rng.below(3);
                        for k in 0..n {
                            let p = [origin[0] + along[0] * (s + width / 2.0 + k as f64 * 0.7) - inward[0] * 0.8, origin[1] + along[1] * (s + width / 2.0 + k as f64 * 0.7) - inward[1] * 0.8];
                            let model = models::person(&mut b.rng);
                            let yaw_p = b.rng.range(-PI, PI);
                            b.place_static(&model, p[0], p[1], yaw_p)?;
                        }
                    }
                    if b.rng.chance(0.12) {
                        let p = [origin[0] + along[0] * (s + 1.0) - inward[0] * 1.0, origin[1] + along[1] * (s + 1.0) - inward[1] * 1.0];
                        let model = models::bicycle(&mut b.rng);
                        b.place_static(&model, p[0], p[1], inward[1].atan2(inward[0]))?;
                    }
                }
                s += width + gap;
            }
            if let Some(kind) = boundary {
                // along the property line, with a gap per house for its path
                let line = 0.2;
                let mut s = 0.0;
                while s < length {
                    let run = b.rng.range(6.0, 14.0).min(length - s);
                    let a = [origin[0] + along[0] * s + inward[0] * line, origin[1] + along[1] * s + inward[1] * line];
                    let e = [origin[0] + along[0] * (s + run) + inward[0] * line, origin[1] + along[1] * (s + run) + inward[1] * line];
                    b.boundary(a, e, kind);
                    s += run + 3.0;
                }
            }
        }
        // trees in the interior
        let interior_trees = match kind {
            Frontage::Residential => 6,
            _ => 2,
        };
        for _ in 0..interior_trees {
            let p = [b.rng.range(r[0], r[2]), b.rng.range(r[1], r[3])];
            if block.free(p, 2.5) {
                let r0 = b.rng.range(0.8, 1.3);
                b.tree(p[0], p[1], r0);
            }
        }
        Ok(())
    }

    fn park(&mut self, b: &mut SceneBuilder, block: &Block) -> Result<(), SimError> {
        let r = block.rect;
        let area = (r[2] - r[0]) * (r[3] - r[1]);
        let trees = (area / b.rng.range(120.0, 300.0)) as usize;
        for _ in 0..trees {
            let p = [b.rng.range(r[0] + 1.0, r[2] - 1.0), b.rng.range(r[1] + 1.0, r[3] - 1.0)];
            let r0 = b.rng.range(0.8, 1.5);
            b.tree(p[0], p[1], r0);
        }
        for _ in 0..(area / 400.0) as usize {
            let p = [b.rng.range(r[0], r[2]), b.rng.range(r[1], r[3])];
            let radius = b.rng.range(0.6, 1.6);
            let height = b.rng.range(0.6, 1.8);
            b.bush(p[0], p[1], radius, height);
        }
        // a path across, with a few people standing on it
        let y = b.rng.range(r[1] + 3.0, r[3] - 3.0);
        b.terrain.paint_segment([r[0], y], [r[2], y], 1.2, GroundKind::OtherGround);
        for _ in 0..b.rng.below(4) {
            let x = b.rng.range(r[0], r[2]);
            let model = models::person(&mut b.rng);
            let yaw = b.rng.range(-PI, PI);
            let r0 = b.rng.range(-0.8, 0.8);
            b.place_static(&model, x, y + r0, yaw)?;
        }
        if b.rng.chance(0.5) {
            let kind = Boundary::random(&mut b.rng);
            for side in 0..4 {
                if block.sides[side].is_some() {
                    let (origin, along, inward, length) = block.side_frame(side);
                    b.boundary([origin[0] + inward[0] * 0.3, origin[1] + inward[1] * 0.3], [origin[0] + along[0] * length + inward[0] * 0.3, origin[1] + along[1] * length + inward[1] * 0.3], kind);
                }
            }
        }
        Ok(())
    }

    /// An open-air car park in a city block.
    fn surface_car_park(&mut self, b: &mut SceneBuilder, block: &Block) -> Result<(), SimError> {
        let r = block.rect;
        let center = [(r[0] + r[2]) / 2.0, (r[1] + r[3]) / 2.0];
        b.terrain.paint_rect(center, [1.0, 0.0], (r[2] - r[0]) / 2.0, (r[3] - r[1]) / 2.0, GroundKind::Parking);
        // stall rows along x, 5.2 m deep, aisles of 6 m between pairs of rows
        let mut y = r[1] + 0.5;
        let mut row = 0;
        while y + 5.2 < r[3] - 0.5 {
            let facing = if row % 2 == 0 { FRAC_PI_2 } else { -FRAC_PI_2 };
            let r0 = b.rng.range(0.4, 0.9);
            stall_row(b, [r[0] + 1.0, y], [r[2] - 1.0, y + 5.2], facing, r0)?;
            y += if row % 2 == 0 { 5.2 } else { 11.2 };
            row += 1;
        }
        let spacing = b.rng.range(25.0, 35.0);
        let mut x = r[0] + spacing / 2.0;
        while x < r[2] {
            b.street_light(x, center[1], 0.0);
            x += spacing;
        }
        Ok(())
    }

    /// A block of the car park: two rows of stalls back to back.
    fn stall_block(&mut self, b: &mut SceneBuilder, block: &Block, south: bool, north: bool) -> Result<(), SimError> {
        let r = block.rect;
        let mid = (r[1] + r[3]) / 2.0;
        b.terrain.paint_rect([(r[0] + r[2]) / 2.0, mid], [1.0, 0.0], (r[2] - r[0]) / 2.0 + 0.3, (r[3] - r[1]) / 2.0 + 0.3, GroundKind::Parking);
        let occupancy = b.rng.range(0.55, 0.95);
        if south {
            stall_row(b, [r[0], r[1] - 0.3], [r[2], mid], -FRAC_PI_2, occupancy)?;
        }
        if north {
            stall_row(b, [r[0], mid], [r[2], r[3] + 0.3], FRAC_PI_2, occupancy)?;
        }
        if b.rng.chance(0.5) {
            let spacing = b.rng.range(25.0, 40.0);
            let mut x = r[0] + spacing / 2.0;
            while x < r[2] - 2.0 {
                b.street_light(x, mid, 0.0);
                x += spacing;
            }
        }
        Ok(())
    }

    /// Around the car park: a row of stalls along the aisle, then a sidewalk and shops, or trees.
    fn lot_edge(&mut self, b: &mut SceneBuilder, block: &Block) -> Result<(), SimError> {
        for side in 0..4 {
            if block.sides[side].is_none() {
                continue;
            }
            let (origin, along, inward, length) = block.side_frame(side);
            let at = |s: f64, depth: f64| [origin[0] + along[0] * s + inward[0] * depth, origin[1] + along[1] * s + inward[1] * depth];
            let facing = (-inward[1]).atan2(-inward[0]);
            b.terrain.paint_rect(at(length / 2.0, 2.6), along, length / 2.0, 2.9, GroundKind::Parking);
            let occupancy = b.rng.range(0.5, 0.9);
            stall_row_along(b, at(0.0, 0.0), along, inward, length, facing, occupancy)?;
            b.ground_strip(at(0.0, 7.0), at(length, 7.0), 1.6, -0.3, 0.14, 4.0, Class::Sidewalk, Material::solid(0.3));
            b.terrain.paint_segment(at(0.0, 7.0), at(length, 7.0), 1.6, GroundKind::Sidewalk);
            if b.rng.chance(0.65) {
                // shops: the land beyond the car park is free, so they may reach past this cell
                let depth = b.rng.range(20.0, 40.0);
                let c = at(length / 2.0, 8.8 + depth / 2.0);
                let height = b.rng.range(5.0, 12.0);
                let reflectivity = b.rng.range(0.25, 0.5) as f32;
                b.upright_box(c[0], c[1], along[1].atan2(along[0]), length / 2.0, depth / 2.0, height, Class::Building, Material::solid(reflectivity));
                for _ in 0..b.rng.below(5) {
                    let p = at(b.rng.range(2.0, length - 2.0), b.rng.range(6.0, 8.0));
                    let model = models::person(&mut b.rng);
                    let yaw = b.rng.range(-PI, PI);
                    b.place_static(&model, p[0], p[1], yaw)?;
                }
            } else {
                let kind = Boundary::random(&mut b.rng);
                b.boundary(at(0.0, 9.0), at(length, 9.0), kind);
                let mut s = b.rng.range(2.0, 8.0);
                while s < length {
                    let p = at(s, b.rng.range(11.0, 18.0));
                    let r0 = b.rng.range(0.8, 1.3);
                    b.tree(p[0], p[1], r0);
                    s += b.rng.range(5.0, 12.0);
                }
            }
        }
        Ok(())
    }

    /// Routes, intersections and agents. Returns the ego's agent index.
    fn build_traffic(&mut self, b: &mut SceneBuilder, ego_exits: &[Dir], warmup: f64, travel: f64, request: &SceneRequest) -> Result<usize, SimError> {
        let t_start = -warmup;
        let t_end = request.duration_s;
        // the ego first, on its planned route
        let (ego_lane, ego_s) = match self.grid.style {
            Style::Urban => (LaneRef { from: (-1, 0), dir: Dir::E, lane: 0, from_stub: false }, 6.0),
            Style::Parking => (LaneRef { from: (0, 0), dir: Dir::E, lane: 0, from_stub: false }, 4.0),
        };
        let max_speed = match self.grid.style {
            Style::Urban => 14.5,
            Style::Parking => 5.5,
        };
        let (path, events) = self.vehicle_route(&ego_lane, ego_s, travel * max_speed + 120.0, &mut Steering::Planned(ego_exits))?;
        let mut rng = Rng::stream(request.seed, "ego");
        let mut events = events;
        // the ego pauses now and then (a drop-off, letting someone in)
        let route_length = path.length();
        let mut s = rng.range(60.0, 200.0);
        while s < route_length - 30.0 {
            if !events.iter().any(|e| (e.s - s).abs() < 40.0) {
                events.push(RouteEvent { s, kind: EventKind::Halt { duration: rng.range(2.0, 7.0) } });
            }
            s += rng.range(150.0, 450.0);
        }
        b.plan.routes.push(Route::new(path, events, RouteEnd::Leave, 2.2));
        let ego_speed = match self.grid.style {
            Style::Urban => rng.range(10.0, 13.5),
            Style::Parking => rng.range(3.0, 4.5),
        };
        let mut schedule = Vec::new();
        let mut t = t_start;
        while t < t_end {
            schedule.push((t, rng.range(0.6, 1.05)));
            t += rng.range(8.0, 25.0);
        }
        let ego = b.add_agent(
            AgentSpec {
                mover: Mover::Vehicle,
                route: b.plan.routes.len() - 1,
                length: 4.6,
                width: 1.85,
                idm: Idm::CAR,
                desired_speed: ego_speed,
                speed_schedule: schedule,
                spawn_time: t_start,
                start_s: 0.0,
                start_lateral: 0.0,
                depart_time: None,
                lane_changing: None,
            },
            None,
        )?;
        let ego_start = b.plan.routes[b.plan.agents[ego].route].path.pose(0.0);
        let mut rng = Rng::stream(request.seed, "traffic");
        let route_length_needed = travel * max_speed * 1.1 + 100.0;
        // vehicles already on the lanes at the start, and arrivals through the stubs later
        let mut lanes: Vec<LaneRef> = Vec::new();
        for k in self.keys() {
            let node = &self.grid.nodes[&k];
            for d in Dir::ALL {
                if node.arms[d as usize].is_none() {
                    continue;
                }
                let street = self.grid.street(k, d);
                for lane in 0..street.lanes {
                    lanes.push(LaneRef { from: k, dir: d, lane, from_stub: false });
                    if matches!(node.arms[d.opposite() as usize], Some(Some(_))) {
                        lanes.push(LaneRef { from: k, dir: d, lane, from_stub: true });
                    }
                }
            }
        }
        for lane in &lanes {
            let street = *self.grid.street(lane.from, lane.dir);
            let (start, end, _) = self.grid.lane_ends(lane);
            let length = (end[0] - start[0]).hypot(end[1] - start[1]);
            let per_metre = street.vehicles_per_km / 1000.0;
            if per_metre <= 0.0 {
                continue;
            }
            let mut s = rng.range(0.0, 1.0 / per_metre);
            while s < length - 3.0 {
                let p = [start[0] + (end[0] - start[0]) * s / length, start[1] + (end[1] - start[1]) * s / length];
                if (p[0] - ego_start.x).hypot(p[1] - ego_start.y) > 15.0 {
                    self.spawn_vehicle(b, &mut rng, lane, s, t_start, route_length_needed, street.lanes)?;
                }
                s += (-(rng.uniform().max(1e-9)).ln() / per_metre).max(9.0);
            }
            if lane.from_stub {
                // arrivals: flow = density × speed
                let rate = per_metre * street.speed * 0.8;
                let mut t = t_start + (-(rng.uniform().max(1e-9)).ln() / rate);
                while t < t_end {
                    self.spawn_vehicle(b, &mut rng, lane, 1.0, t, route_length_needed, street.lanes)?;
                    t += (-(rng.uniform().max(1e-9)).ln() / rate).max(2.0);
                }
            }
        }
        // parked vehicles that leave during the sequence
        for (lane, s, lateral, model) in std::mem::take(&mut self.street_lanes) {
            let (path, events) = self.vehicle_route(&lane, s, route_length_needed, &mut Steering::Random(&mut rng))?;
            b.plan.routes.push(Route::new(path, events, RouteEnd::Leave, 2.5));
            let spec = AgentSpec {
                mover: Mover::Vehicle,
                route: b.plan.routes.len() - 1,
                length: model.length,
                width: model.width,
                idm: Idm::CAR,
                desired_speed: self.grid.street(lane.from, lane.dir).speed * rng.range(0.85, 1.05),
                speed_schedule: Vec::new(),
                spawn_time: t_start,
                start_s: 0.0,
                start_lateral: lateral,
                depart_time: Some(rng.range(t_start + 10.0, t_end.max(t_start + 11.0))),
                lane_changing: None,
            };
            b.add_agent(spec, Some(model))?;
        }
        // vehicles that come to park in a free space during the sequence
        let spots = std::mem::take(&mut self.parked_spots);
        for (lane, s, lateral) in spots {
            // approach from up to two blocks before the space
            let lead = rng.range(40.0, 160.0);
            if s < lead {
                continue;
            }
            let model = models::car(&mut rng);
            let (path, events) = self.vehicle_route(&lane, s - lead, lead, &mut Steering::Random(&mut rng))?;
            b.plan.routes.push(Route::new(path, events, RouteEnd::Park { lateral }, 2.5));
            let spec = AgentSpec {
                mover: Mover::Vehicle,
                route: b.plan.routes.len() - 1,
                length: model.length,
                width: model.width,
                idm: Idm::CAR,
                desired_speed: self.grid.street(lane.from, lane.dir).speed * 0.7,
                speed_schedule: Vec::new(),
                spawn_time: rng.range(t_start + 5.0, t_end.max(t_start + 6.0)),
                start_s: 0.0,
                start_lateral: 0.0,
                depart_time: None,
                lane_changing: None,
            };
            b.add_agent(spec, Some(model))?;
        }
        self.pedestrians(b, &mut rng, t_start, travel)?;
        Ok(ego)
    }

    /// Adds a vehicle starting `s` metres along `lane` at time `t`.
    fn spawn_vehicle(&self, b: &mut SceneBuilder, rng: &mut Rng, lane: &LaneRef, s: f64, t: f64, length: f64, lanes: usize) -> Result<(), SimError> {
        let outer = lane.lane + 1 == lanes;
        let kind = if self.grid.style == Style::Parking { rng.weighted(&[0.97, 0.0, 0.0, 0.03]) } else { rng.weighted(&[0.84, 0.05, if outer { 0.07 } else { 0.0 }, 0.04]) };
        let (model, idm, speed_factor, lateral) = match kind {
            0 => (models::car(rng), Idm::CAR, rng.range(0.85, 1.1), 0.0),
            1 => (models::truck(rng, if self.grid.street(lane.from, lane.dir).arterial { 0.3 } else { 0.05 }), Idm::TRUCK, rng.range(0.75, 0.95), 0.0),
            2 => {
                let street = self.grid.street(lane.from, lane.dir);
                // cyclists keep to the right of the lane
                (models::cyclist(rng), Idm::CYCLE, 0.0, -(street.lane_width / 2.0 - 0.7))
            }
            _ => (models::motorcyclist(rng), Idm::CAR, rng.range(0.9, 1.15), 0.0),
        };
        let street = self.grid.street(lane.from, lane.dir);
        let desired = if kind == 2 { rng.range(3.5, 6.5) } else { street.speed * speed_factor };
        let (path, mut events) = self.vehicle_route(lane, s, length, &mut Steering::Random(rng))?;
        // deliveries and pick-ups: a few vehicles stop in lane for a while
        if kind <= 1 && rng.chance(0.06) && path.length() > 80.0 {
            events.push(RouteEvent { s: rng.range(30.0, path.length().min(400.0) - 10.0), kind: EventKind::Halt { duration: rng.range(4.0, 15.0) } });
        }
        b.plan.routes.push(Route::new(path, events, RouteEnd::Leave, 2.5));
        let spec = AgentSpec {
            mover: Mover::Vehicle,
            route: b.plan.routes.len() - 1,
            length: model.length,
            width: model.width,
            idm,
            desired_speed: desired,
            speed_schedule: Vec::new(),
            spawn_time: t,
            start_s: 0.0,
            start_lateral: lateral,
            depart_time: None,
            lane_changing: None,
        };
        b.add_agent(spec, Some(model))?;
        Ok(())
    }

    /// A vehicle route from `start_s` metres along `lane`: through intersections (stop lines as
    /// events) until `length` metres are covered or it leaves through a stub.
    fn vehicle_route(&self, lane: &LaneRef, start_s: f64, length: f64, steering: &mut Steering) -> Result<(Path, Vec<RouteEvent>), SimError> {
        let mut builder = PathBuilder::default();
        let mut events = Vec::new();
        let mut current = *lane;
        let (start, end, _) = self.grid.lane_ends(&current);
        let lane_length = (end[0] - start[0]).hypot(end[1] - start[1]);
        let f = (start_s / lane_length.max(1e-9)).clamp(0.0, 1.0);
        builder.push([start[0] + (end[0] - start[0]) * f, start[1] + (end[1] - start[1]) * f]);
        let mut planned = 0usize;
        loop {
            let (_, end, to) = self.grid.lane_ends(&current);
            builder.push(end);
            let Some(node_key) = to else { break };
            if builder.length >= length {
                break;
            }
            let node = &self.grid.nodes[&node_key];
            let arrival = current.dir;
            let options: Vec<Dir> = [arrival, arrival.turned_left(), arrival.turned_right()].into_iter().filter(|d| node.has(*d)).collect();
            if options.is_empty() {
                break;
            }
            let exit = match steering {
                Steering::Planned(exits) => {
                    let Some(&d) = exits.get(planned) else { break };
                    planned += 1;
                    if !node.has(d) {
                        return Err(SimError::Scene(format!("the ego's route has no street {d:?} at intersection {node_key:?}")));
                    }
                    d
                }
                Steering::Random(rng) => {
                    let weights: Vec<f64> = options.iter().map(|d| if *d == arrival { 0.6 } else { 0.2 }).collect();
                    options[rng.weighted(&weights)]
                }
            };
            let turn = if exit == arrival {
                Turn::Straight
            } else if exit == arrival.turned_left() {
                Turn::Left
            } else {
                Turn::Right
            };
            if !matches!(node.control, Control::Uncontrolled) {
                events.push(RouteEvent {
                    s: builder.length - self.grid.stop_setback(node_key) + 0.2,
                    kind: EventKind::StopLine { node: node.id, x_axis: arrival.along_x(), heading: arrival.heading(), turn },
                });
            }
            let exit_street = self.grid.street(node_key, exit);
            let lane_index = match turn {
                Turn::Straight => current.lane.min(exit_street.lanes - 1),
                Turn::Right => exit_street.lanes - 1,
                Turn::Left => 0,
            };
            let next = LaneRef { from: node_key, dir: exit, lane: lane_index, from_stub: false };
            let (next_start, _, _) = self.grid.lane_ends(&next);
            if turn == Turn::Straight {
                builder.push(next_start);
            } else {
                for p in bezier(end, arrival.heading(), next_start, exit.heading(), 0.5) {
                    builder.push(p);
                }
            }
            current = next;
        }
        Ok((Path::new(&builder.points), events))
    }

    /// Pedestrians walking the sidewalks (the aisles' edges in a car park) and crossing streets.
    fn pedestrians(&self, b: &mut SceneBuilder, rng: &mut Rng, t_start: f64, travel: f64) -> Result<(), SimError> {
        for (k, d, a, end, stub) in self.segments() {
            let street = *self.grid.street(k, d);
            let length = (end[0] - a[0]).abs() + (end[1] - a[1]).abs();
            let count = (street.walkers_per_km * length / 1000.0 * 2.0 * rng.range(0.6, 1.4)).round() as usize;
            for _ in 0..count {
                let left = rng.chance(0.5);
                let s = rng.range(0.0, length);
                // on a stub, walk back towards the network
                let towards_k = stub || rng.chance(0.5);
                let model = models::person(rng);
                let speed = rng.range(1.0, 1.6);
                let (path, events) = self.walk(rng, k, d, left, s, towards_k, speed * travel + 50.0);
                if path.length() < 1.0 {
                    continue;
                }
                b.plan.routes.push(Route::new(path, events, RouteEnd::Park { lateral: 0.0 }, 10.0));
                let spec = AgentSpec {
                    mover: Mover::Pedestrian,
                    route: b.plan.routes.len() - 1,
                    length: 0.5,
                    width: 0.6,
                    idm: Idm::WALK,
                    desired_speed: speed,
                    speed_schedule: Vec::new(),
                    spawn_time: t_start,
                    start_s: 0.0,
                    start_lateral: rng.range(-0.3, 0.3),
                    depart_time: None,
                    lane_changing: None,
                };
                b.add_agent(spec, Some(model))?;
            }
        }
        Ok(())
    }

    /// Corner (qx, qy) of node `k`, e.g. (1, 1) north-east: where its sidewalks meet.
    fn corner(&self, k: Key, q: (f64, f64)) -> [f64; 2] {
        let c = self.grid.pos(k);
        let h = self.grid.box_half(k);
        // sidewalks of the streets through k (walk at their middle; at the pavement's edge without)
        let sx = if self.grid.nodes[&k].has(Dir::N) || self.grid.nodes[&k].has(Dir::S) { self.grid.street(k, Dir::N).sidewalk } else { self.grid.street(k, Dir::E).sidewalk };
        let sy = if self.grid.nodes[&k].has(Dir::E) || self.grid.nodes[&k].has(Dir::W) { self.grid.street(k, Dir::E).sidewalk } else { self.grid.street(k, Dir::N).sidewalk };
        [c[0] + q.0 * (h[0] + sx.max(0.8) / 2.0), c[1] + q.1 * (h[1] + sy.max(0.8) / 2.0)]
    }

    /// A walk that starts `s` metres along the street (k, d), on its left or right side, heading
    /// to the corner at k or at the far end, then goes from corner to corner: along sidewalks to the
    /// next intersection, or across a street (a crosswalk event there), never straight back unless
    /// at a dead end.
    fn walk(&self, rng: &mut Rng, k: Key, d: Dir, left: bool, s: f64, towards_k: bool, length: f64) -> (Path, Vec<RouteEvent>) {
        let mut builder = PathBuilder::default();
        let mut events = Vec::new();
        let u = d.unit();
        let c = self.grid.pos(k);
        let street = self.grid.street(k, d);
        let side_dir = if left { d.turned_left() } else { d.turned_right() };
        let side = side_dir.unit();
        let lateral = street.pavement() + street.sidewalk.max(0.8) / 2.0;
        builder.push([c[0] + u[0] * s + side[0] * lateral, c[1] + u[1] * s + side[1] * lateral]);
        // the corner's quadrant on our side: the sign of the side direction on its axis
        let (node, travel) = if towards_k { (k, d.opposite()) } else { (neighbour(k, d), d) };
        if !self.grid.nodes.contains_key(&node) {
            return (Path::new(&builder.points), events);
        }
        let quadrant_of = |travel: Dir, side: [f64; 2]| -> (f64, f64) {
            let t = travel.unit();
            // arriving along `travel`, the corner is behind the node centre on that axis
            if t[0] != 0.0 {
                (-t[0], side[1])
            } else {
                (side[0], -t[1])
            }
        };
        let mut at = (node, quadrant_of(travel, side));
        let mut previous: Option<Corner> = None;
        builder.push(self.corner(at.0, at.1));
        let mut steps = 0;
        while builder.length < length && steps < 400 {
            steps += 1;
            let (n, q) = at;
            let data = &self.grid.nodes[&n];
            // moves from this corner: along the sidewalk away from the node on each axis (to the
            // neighbour's facing corner), or across the street on each axis (to the next corner)
            let ex = if q.0 > 0.0 { Dir::E } else { Dir::W };
            let ny = if q.1 > 0.0 { Dir::N } else { Dir::S };
            let mut moves: Vec<(Corner, Option<bool>)> = Vec::new();
            for axis_dir in [ex, ny] {
                if data.arms[axis_dir as usize] == Some(None) {
                    let next = neighbour(n, axis_dir);
                    if self.grid.nodes.contains_key(&next) {
                        let nq = if axis_dir.along_x() { (-q.0, q.1) } else { (q.0, -q.1) };
                        moves.push(((next, nq), None));
                    }
                }
            }
            // crossing the street that leaves along `ny` (a y-road) or `ex` (an x-road)
            moves.push(((n, (-q.0, q.1)), data.has(ny).then_some(false)));
            moves.push(((n, (q.0, -q.1)), data.has(ex).then_some(true)));
            let fresh: Vec<usize> = (0..moves.len()).filter(|&i| Some(moves[i].0) != previous).collect();
            let pick = fresh[rng.below(fresh.len())];
            let (next, crossing) = moves[pick];
            if let Some(crossing_x_road) = crossing {
                events.push(RouteEvent { s: builder.length, kind: EventKind::Crosswalk { node: data.id, crossing_x_road } });
            } else if rng.chance(0.15) {
                events.push(RouteEvent { s: builder.length, kind: EventKind::Halt { duration: rng.range(3.0, 30.0) } });
            }
            builder.push(self.corner(next.0, next.1));
            previous = Some(at);
            at = next;
        }
        (Path::new(&builder.points), events)
    }
}

/// Dashed line marking from `a` to `b`.
fn dashes(b: &mut SceneBuilder, a: [f64; 2], e: [f64; 2], dash: f64, gap: f64, half_width: f64) {
    let length = (e[0] - a[0]).hypot(e[1] - a[1]);
    let u = [(e[0] - a[0]) / length, (e[1] - a[1]) / length];
    let mut s = 0.0;
    while s + dash <= length {
        b.terrain.paint_segment([a[0] + u[0] * s, a[1] + u[1] * s], [a[0] + u[0] * (s + dash), a[1] + u[1] * (s + dash)], half_width, GroundKind::RoadMarking);
        s += dash + gap;
    }
}

/// A row of perpendicular stalls in the rectangle `min..max` (x along the row), cars facing `yaw`.
fn stall_row(b: &mut SceneBuilder, min: [f64; 2], max: [f64; 2], yaw: f64, occupancy: f64) -> Result<(), SimError> {
    let origin = if yaw > 0.0 { [min[0], min[1]] } else { [min[0], max[1]] };
    let inward = if yaw > 0.0 { [0.0, 1.0] } else { [0.0, -1.0] };
    stall_row_along(b, origin, [1.0, 0.0], inward, max[0] - min[0], yaw, occupancy)
}

/// Stalls 2.6 m wide and 5.2 m deep from `origin` along `along`, reaching `inward`, with marking lines
/// and parked cars (facing `yaw`, into or out of the stall).
fn stall_row_along(b: &mut SceneBuilder, origin: [f64; 2], along: [f64; 2], inward: [f64; 2], length: f64, yaw: f64, occupancy: f64) -> Result<(), SimError> {
    let stalls = (length / 2.6).floor() as usize;
    let at = |s: f64, depth: f64| [origin[0] + along[0] * s + inward[0] * depth, origin[1] + along[1] * s + inward[1] * depth];
    for k in 0..=stalls {
        b.terrain.paint_segment(at(k as f64 * 2.6, 0.3), at(k as f64 * 2.6, 5.0), 0.06, GroundKind::ParkingMarking);
    }
    for k in 0..stalls {
        if !b.rng.chance(occupancy) {
            continue;
        }
        let p = at(k as f64 * 2.6 + 1.3 + b.rng.range(-0.15, 0.15), 2.6 + b.rng.range(-0.2, 0.2));
        let facing = yaw + if b.rng.chance(0.75) { PI } else { 0.0 } + b.rng.range(-0.04, 0.04);
        let model = if b.rng.chance(0.04) { models::truck(&mut b.rng, 0.0) } else { models::car(&mut b.rng) };
        if model.length < 6.0 {
            b.place_static(&model, p[0], p[1], facing)?;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frontage {
    Downtown,
    Residential,
    Industrial,
}

/// A city block being filled: its usable rectangle, the streets along its sides and what already
/// stands in it.
struct Block {
    rect: [f64; 4],
    sides: [Option<Street>; 4],
    footprints: Vec<[f64; 4]>,
}

impl Block {
    /// Side `k` (0 south, 1 east, 2 north, 3 west) as (start corner, direction along it, inward
    /// normal, length), walking counter-clockwise.
    fn side_frame(&self, k: usize) -> ([f64; 2], [f64; 2], [f64; 2], f64) {
        let r = self.rect;
        match k {
            0 => ([r[0], r[1]], [1.0, 0.0], [0.0, 1.0], r[2] - r[0]),
            1 => ([r[2], r[1]], [0.0, 1.0], [-1.0, 0.0], r[3] - r[1]),
            2 => ([r[2], r[3]], [-1.0, 0.0], [0.0, -1.0], r[2] - r[0]),
            _ => ([r[0], r[3]], [0.0, -1.0], [1.0, 0.0], r[3] - r[1]),
        }
    }

    /// Reserves an axis-aligned footprint if it fits in the block without overlapping others.
    fn claim(&mut self, center: [f64; 2], along: [f64; 2], half_along: f64, half_across: f64) -> bool {
        let (hx, hy) = if along[0].abs() > 0.5 { (half_along, half_across) } else { (half_across, half_along) };
        let f = [center[0] - hx, center[1] - hy, center[0] + hx, center[1] + hy];
        let r = self.rect;
        if f[0] < r[0] - 0.01 || f[1] < r[1] - 0.01 || f[2] > r[2] + 0.01 || f[3] > r[3] + 0.01 {
            return false;
        }
        if self.footprints.iter().any(|o| f[0] < o[2] + 1.0 && o[0] < f[2] + 1.0 && f[1] < o[3] + 1.0 && o[1] < f[3] + 1.0) {
            return false;
        }
        self.footprints.push(f);
        true
    }

    fn free(&self, p: [f64; 2], margin: f64) -> bool {
        !self.footprints.iter().any(|o| p[0] > o[0] - margin && p[0] < o[2] + margin && p[1] > o[1] - margin && p[1] < o[3] + margin)
    }
}
