//! Traffic: a small microscopic simulation that turns routes and agents into trajectories.
//!
//! Vehicles (the ego included) follow their route with the Intelligent Driver Model: they keep a
//! desired speed, slow down for curves, follow whatever is in front of them (any agent inside a cone
//! ahead, so they queue behind each other and stop for crossing pedestrians), stop at red and
//! yellow signals and at stop signs, yield to oncoming traffic when turning left, pull out of and
//! into parking spaces, halt for a while where the route says so, and on highways change lanes to
//! overtake or to keep right. Pedestrians walk at their own pace, pause, and wait at signalised
//! crossings. Everything advances in fixed steps from a warm-up time before the first scan, agents in
//! index order, so the result is deterministic.
//!
//! A trajectory stores arc length, lateral offset and lateral slope per step; poses are evaluated
//! on the route's path, so agents move along smooth, kinematically plausible curves.

use super::path::{smoothstep, wrap_angle, Path, PathPose};
use super::rng::Rng;

/// How two agents' roles differ in the simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mover {
    Vehicle,
    Pedestrian,
}

/// Turn taken at an intersection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    Straight,
    Left,
    Right,
}

/// Traffic signal with a fixed cycle: the x-axis road is green, then yellow, then all red, then the
/// y-axis road likewise.
#[derive(Debug, Clone, Copy)]
pub struct Signal {
    pub offset: f64,
    pub green_x: f64,
    pub green_y: f64,
    pub yellow: f64,
    pub all_red: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Light {
    Green,
    Yellow,
    Red,
}

impl Signal {
    fn cycle(&self) -> f64 {
        self.green_x + self.green_y + 2.0 * (self.yellow + self.all_red)
    }

    /// The light shown to the road along `x_axis` (true) or the y axis, and how long it stays so.
    pub fn light(&self, x_axis: bool, t: f64) -> (Light, f64) {
        let cycle = self.cycle();
        let mut phase = (t + self.offset).rem_euclid(cycle);
        // the y road's phase starts half a cycle later
        let green = if x_axis { self.green_x } else { self.green_y };
        if !x_axis {
            phase = (phase - self.green_x - self.yellow - self.all_red).rem_euclid(cycle);
        }
        if phase < green {
            (Light::Green, green - phase)
        } else if phase < green + self.yellow {
            (Light::Yellow, green + self.yellow - phase)
        } else {
            (Light::Red, cycle - phase)
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Control {
    /// Nobody stops (parking aisles): agents only avoid what is in front of them.
    Uncontrolled,
    /// All-way stop.
    StopSign,
    Signal(Signal),
}

/// An intersection.
#[derive(Debug, Clone, Copy)]
pub struct Node {
    pub center: [f64; 2],
    /// Half extents of the box where the roads overlap.
    pub half: [f64; 2],
    pub control: Control,
}

impl Node {
    fn contains(&self, p: [f64; 2]) -> bool {
        (p[0] - self.center[0]).abs() <= self.half[0] && (p[1] - self.center[1]).abs() <= self.half[1]
    }
}

#[derive(Debug, Clone, Copy)]
pub enum EventKind {
    /// Stop line of an intersection approached along the x axis (`x_axis`) or the y axis, with
    /// `heading` the approach direction.
    StopLine { node: usize, x_axis: bool, heading: f64, turn: Turn },
    /// Pedestrian crossing over the road along the x axis (`crossing_x_road`) or the y axis.
    Crosswalk { node: usize, crossing_x_road: bool },
    /// Stop for `duration` seconds (delivery, drop-off, a pedestrian who pauses).
    Halt { duration: f64 },
}

#[derive(Debug, Clone, Copy)]
pub struct RouteEvent {
    /// Arc length of the stop position (front of a vehicle, centre of a pedestrian).
    pub s: f64,
    pub kind: EventKind,
}

/// What an agent does at the end of its route.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RouteEnd {
    /// Leaves the simulated area (the route ends out of sensor range).
    Leave,
    /// Stops there for good, e.g. parked `lateral` metres to the side.
    Park { lateral: f64 },
}

#[derive(Debug, Clone)]
pub struct Route {
    pub path: Path,
    pub events: Vec<RouteEvent>,
    pub end: RouteEnd,
    /// Speed at each path vertex above which the curve cannot be taken at the lateral acceleration
    /// limit, after a backward pass that adds braking distance.
    speed_cap: Vec<f64>,
}

impl Route {
    /// A route; `lateral_accel` bounds speeds in curves (about 2.5 m/s² for comfortable driving).
    pub fn new(path: Path, mut events: Vec<RouteEvent>, end: RouteEnd, lateral_accel: f64) -> Route {
        events.sort_by(|a, b| a.s.total_cmp(&b.s));
        let n = path.points().len();
        let mut cap: Vec<f64> = (0..n).map(|i| (lateral_accel / path.curvature_at_vertex(i).max(1e-6)).sqrt()).collect();
        let s = path.vertex_s();
        for i in (0..n.saturating_sub(1)).rev() {
            cap[i] = cap[i].min((cap[i + 1] * cap[i + 1] + 2.0 * CURVE_BRAKE * (s[i + 1] - s[i])).sqrt());
        }
        Route { path, events, end, speed_cap: cap }
    }

    /// The fastest speed from which the curves ahead can still be taken.
    fn speed_cap(&self, s: f64) -> f64 {
        let vs = self.path.vertex_s();
        if vs.len() < 2 {
            return f64::INFINITY;
        }
        let i = vs.partition_point(|&v| v <= s).clamp(1, vs.len() - 1);
        (self.speed_cap[i].powi(2) + 2.0 * CURVE_BRAKE * (vs[i] - s).max(0.0)).sqrt()
    }
}

/// Deceleration assumed when slowing down for curves, m/s².
const CURVE_BRAKE: f64 = 2.0;

/// Intelligent Driver Model parameters.
#[derive(Debug, Clone, Copy)]
pub struct Idm {
    pub max_accel: f64,
    pub comfortable_decel: f64,
    pub time_headway: f64,
    pub min_gap: f64,
}

impl Idm {
    pub const CAR: Idm = Idm { max_accel: 1.6, comfortable_decel: 2.5, time_headway: 1.3, min_gap: 2.0 };
    pub const TRUCK: Idm = Idm { max_accel: 0.8, comfortable_decel: 2.0, time_headway: 1.8, min_gap: 3.0 };
    pub const CYCLE: Idm = Idm { max_accel: 1.0, comfortable_decel: 2.0, time_headway: 1.0, min_gap: 1.5 };
    pub const WALK: Idm = Idm { max_accel: 0.9, comfortable_decel: 1.5, time_headway: 0.5, min_gap: 0.5 };

    fn accel(&self, v: f64, v0: f64, gap: Option<(f64, f64)>) -> f64 {
        let free = if v0 < 0.05 { -self.comfortable_decel } else { self.max_accel * (1.0 - (v / v0).powi(4)) };
        match gap {
            None => free,
            Some((gap, closing)) => {
                let s_star = self.min_gap + (v * self.time_headway + v * closing / (2.0 * (self.max_accel * self.comfortable_decel).sqrt())).max(0.0);
                let gap = gap.max(0.05);
                free - self.max_accel * (s_star / gap).powi(2)
            }
        }
    }
}

/// Highway lane changing: lane centres are lateral offsets `lanes` (ordered from the fastest lane).
#[derive(Debug, Clone)]
pub struct LaneChanging {
    pub lanes: Vec<f64>,
}

/// Everything the simulation needs to know about one agent.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    pub mover: Mover,
    pub route: usize,
    pub length: f64,
    pub width: f64,
    pub idm: Idm,
    /// Desired speed, m/s; `speed_schedule` (time, factor) scales it over time (the ego's moods).
    pub desired_speed: f64,
    pub speed_schedule: Vec<(f64, f64)>,
    /// When the agent appears, and where on its route.
    pub spawn_time: f64,
    pub start_s: f64,
    pub start_lateral: f64,
    /// A parked vehicle stays put until then, then pulls out to lateral 0.
    pub depart_time: Option<f64>,
    pub lane_changing: Option<LaneChanging>,
}

/// Where an agent is at each step of its life.
#[derive(Debug, Clone, Default)]
pub struct Trajectory {
    /// Time of the first sample.
    pub t0: f64,
    pub dt: f64,
    pub s: Vec<f64>,
    pub lateral: Vec<f32>,
    /// d(lateral)/ds, for the heading of lane changes and parking manoeuvres.
    pub lateral_slope: Vec<f32>,
}

impl Trajectory {
    pub fn start(&self) -> f64 {
        self.t0
    }

    pub fn end(&self) -> f64 {
        self.t0 + self.dt * self.s.len().saturating_sub(1) as f64
    }

    pub fn is_alive(&self, t: f64) -> bool {
        !self.s.is_empty() && t >= self.t0 - 1e-9 && t <= self.end() + 1e-9
    }

    /// (arc length, lateral offset, lateral slope) at time t, interpolated; clamped to the life span.
    pub fn state(&self, t: f64) -> (f64, f64, f64) {
        if self.s.is_empty() {
            return (0.0, 0.0, 0.0);
        }
        let x = ((t - self.t0) / self.dt).clamp(0.0, (self.s.len() - 1) as f64);
        let i = (x as usize).min(self.s.len().saturating_sub(2));
        let f = if self.s.len() < 2 { 0.0 } else { x - i as f64 };
        let j = (i + 1).min(self.s.len() - 1);
        let lerp = |a: f64, b: f64| a + (b - a) * f;
        (lerp(self.s[i], self.s[j]), lerp(f64::from(self.lateral[i]), f64::from(self.lateral[j])), lerp(f64::from(self.lateral_slope[i]), f64::from(self.lateral_slope[j])))
    }

    /// The planar pose on `route` at time t: the path pose shifted sideways, turned by the lateral
    /// slope.
    pub fn pose(&self, route: &Route, t: f64) -> PathPose {
        let (s, lateral, slope) = self.state(t);
        let base = route.path.pose(s);
        let [x, y] = base.offset(lateral);
        PathPose { x, y, heading: base.heading + slope.atan() }
    }
}

/// A lateral move from `from` to `to` between arc lengths `s0` and `s1`.
#[derive(Debug, Clone, Copy)]
struct Manoeuvre {
    s0: f64,
    s1: f64,
    from: f64,
    to: f64,
}

impl Manoeuvre {
    fn at(&self, s: f64) -> (f64, f64) {
        let (f, df) = smoothstep((s - self.s0) / (self.s1 - self.s0));
        (self.from + (self.to - self.from) * f, (self.to - self.from) * df / (self.s1 - self.s0))
    }
}

#[derive(Debug, Clone)]
struct State {
    alive: bool,
    gone: bool,
    s: f64,
    v: f64,
    lateral: f64,
    slope: f64,
    manoeuvre: Option<Manoeuvre>,
    /// Index of the next route event not yet passed.
    next_event: usize,
    /// Events before this index no longer hold the agent (a stop sign it has stopped at).
    cleared: usize,
    /// Time since the agent came to rest at the current event (stop sign, halt).
    rest: f64,
    departed: bool,
    pose: PathPose,
    /// Heading of the route at the agent (without the lateral manoeuvre's turn): where it looks.
    path_heading: f64,
    /// Obstacle followed in the last step (to break mutual waits).
    leader: Option<usize>,
    next_lane_check: f64,
}

/// The simulated scene: routes, intersections and agents.
#[derive(Debug, Clone, Default)]
pub struct TrafficPlan {
    pub routes: Vec<Route>,
    pub nodes: Vec<Node>,
    pub agents: Vec<AgentSpec>,
}

/// Runs the simulation from `t_start` to `t_end` in steps of `dt`.
pub fn simulate(plan: &TrafficPlan, t_start: f64, t_end: f64, dt: f64, rng: &mut Rng) -> Vec<Trajectory> {
    let n = plan.agents.len();
    let mut states: Vec<State> = plan
        .agents
        .iter()
        .map(|a| State {
            alive: false,
            gone: false,
            s: a.start_s,
            v: 0.0,
            lateral: a.start_lateral,
            slope: 0.0,
            manoeuvre: None,
            next_event: plan.routes[a.route].events.partition_point(|e| e.s < a.start_s + 0.5 * a.length),
            cleared: 0,
            rest: 0.0,
            departed: a.depart_time.is_none(),
            pose: plan.routes[a.route].path.pose(a.start_s),
            path_heading: plan.routes[a.route].path.pose(a.start_s).heading,
            leader: None,
            next_lane_check: t_start + rng.range(0.0, 1.0),
        })
        .collect();
    let mut trajectories: Vec<Trajectory> = (0..n).map(|_| Trajectory { dt, ..Default::default() }).collect();
    let steps = ((t_end - t_start) / dt).ceil() as usize + 1;
    let mut accel = vec![0.0; n];
    for step in 0..steps {
        let t = t_start + step as f64 * dt;
        spawn(plan, &mut states, t, t_start);
        for (i, state) in states.iter_mut().enumerate() {
            if state.alive {
                let route = &plan.routes[plan.agents[i].route];
                let base = route.path.pose(state.s);
                let [x, y] = base.offset(state.lateral);
                state.pose = PathPose { x, y, heading: base.heading + state.slope.atan() };
                state.path_heading = base.heading;
            }
        }
        // parked vehicles due to leave wait for a gap in the lane
        for i in 0..n {
            let agent = &plan.agents[i];
            if states[i].alive && !states[i].departed && agent.depart_time.is_some_and(|d| t >= d) && lane_clear(plan, &states, i) {
                let state = &mut states[i];
                state.departed = true;
                state.manoeuvre = Some(Manoeuvre { s0: state.s, s1: state.s + 12.0, from: state.lateral, to: 0.0 });
            }
        }
        let leaders: Vec<Option<usize>> = states.iter().map(|s| s.leader).collect();
        for i in 0..n {
            if !states[i].alive {
                continue;
            }
            let (a, leader, cleared) = match plan.agents[i].mover {
                Mover::Vehicle => vehicle_accel(plan, &states, &leaders, i, t),
                Mover::Pedestrian => (pedestrian_accel(plan, &states[i], i, t), None, None),
            };
            accel[i] = a;
            states[i].leader = leader;
            if let Some(cleared) = cleared {
                states[i].cleared = states[i].cleared.max(cleared);
            }
        }
        for i in 0..n {
            if !states[i].alive {
                continue;
            }
            lane_change(plan, &mut states, i, t, rng);
            advance(plan, &mut states[i], i, accel[i], dt);
            let state = &states[i];
            let trajectory = &mut trajectories[i];
            if trajectory.s.is_empty() {
                trajectory.t0 = t;
            }
            trajectory.s.push(state.s);
            trajectory.lateral.push(state.lateral as f32);
            trajectory.lateral_slope.push(state.slope as f32);
            if state.gone {
                states[i].alive = false;
            }
        }
    }
    trajectories
}

fn spawn(plan: &TrafficPlan, states: &mut [State], t: f64, t_start: f64) {
    for i in 0..states.len() {
        let agent = &plan.agents[i];
        if states[i].alive || states[i].gone || t < agent.spawn_time {
            continue;
        }
        // later arrivals enter only where there is room (the first ones were placed with room)
        if agent.spawn_time > t_start && agent.mover == Mover::Vehicle {
            let p = plan.routes[agent.route].path.pose(agent.start_s);
            let blocked = states.iter().enumerate().any(|(j, other)| {
                other.alive && j != i && plan.agents[j].mover == Mover::Vehicle && (other.pose.x - p.x).hypot(other.pose.y - p.y) < agent.length + 6.0
            });
            if blocked {
                continue;
            }
        }
        let state = &mut states[i];
        state.alive = true;
        state.v = if agent.depart_time.is_some() { 0.0 } else { agent.desired_speed * 0.7 };
    }
}

fn desired_speed(agent: &AgentSpec, t: f64) -> f64 {
    let factor = agent.speed_schedule.iter().rev().find(|(start, _)| *start <= t).map(|(_, f)| *f).unwrap_or(1.0);
    agent.desired_speed * factor
}

/// The acceleration of vehicle `i`, the agent it follows, and the route events it is done with.
fn vehicle_accel(plan: &TrafficPlan, states: &[State], leaders: &[Option<usize>], i: usize, t: f64) -> (f64, Option<usize>, Option<usize>) {
    let agent = &plan.agents[i];
    let state = &states[i];
    let route = &plan.routes[agent.route];
    if !state.departed {
        return (0.0, None, None);
    }
    let v0 = desired_speed(agent, t).min(route.speed_cap(state.s));
    let front = state.s + agent.length / 2.0;
    let mut gaps: Vec<(f64, f64)> = Vec::new();
    // what is in front
    let (cos, sin) = (state.path_heading.cos(), state.path_heading.sin());
    let mut leader = None;
    let mut nearest = f64::INFINITY;
    for (j, other) in states.iter().enumerate() {
        if j == i || !other.alive {
            continue;
        }
        let (dx, dy) = (other.pose.x - state.pose.x, other.pose.y - state.pose.y);
        if dx.abs() > 60.0 || dy.abs() > 60.0 {
            continue;
        }
        let along = dx * cos + dy * sin;
        if along <= 0.0 || along > 55.0 {
            continue;
        }
        let lateral = (-dx * sin + dy * cos).abs();
        let other_agent = &plan.agents[j];
        let relative = wrap_angle(other.pose.heading - state.path_heading);
        let corridor = match other_agent.mover {
            Mover::Vehicle => {
                // oncoming traffic passes by on its own side
                if relative.abs() > 1.75 {
                    continue;
                }
                (agent.width + other_agent.width) / 2.0 + 0.35
            }
            Mover::Pedestrian => agent.width / 2.0 + 0.7,
        };
        if lateral > corridor {
            continue;
        }
        // two agents that wait for each other: the lower index goes first
        if leaders[j] == Some(i) && other.v < 0.2 && state.v < 0.2 && i < j {
            continue;
        }
        let other_half = (relative.cos().abs() * other_agent.length + relative.sin().abs() * other_agent.width) / 2.0;
        let gap = along - agent.length / 2.0 - other_half;
        if gap < nearest {
            nearest = gap;
            leader = Some(j);
            gaps.push((gap, state.v - other.v * relative.cos()));
        }
    }
    let (stop, cleared) = stop_ahead(plan, states, i, t);
    if let Some(stop) = stop {
        gaps.push((stop - front, state.v));
    }
    if route.end != RouteEnd::Leave {
        gaps.push((route.path.length() - state.s, state.v));
    }
    let mut a = agent.idm.accel(state.v, v0, None);
    for &(gap, closing) in &gaps {
        a = a.min(agent.idm.accel(state.v, v0, Some((gap, closing))));
        // IDM only approaches its minimum gap asymptotically: come to a stop instead of creeping
        if gap < agent.idm.min_gap + 0.4 && state.v < 0.5 && closing >= 0.0 {
            a = a.min(-3.0);
        }
    }
    // a stopped vehicle stays stopped rather than creep towards what holds it
    if state.v < 0.05 && a < 0.3 {
        a = a.min(0.0);
    }
    (a.clamp(-9.0, agent.idm.max_accel), leader, cleared)
}

/// Arc length of the next place where vehicle `i` must stop, if any within reach, and the index
/// up to which route events are done with (a stop sign it has stopped at and may now pass).
fn stop_ahead(plan: &TrafficPlan, states: &[State], i: usize, t: f64) -> (Option<f64>, Option<usize>) {
    let agent = &plan.agents[i];
    let state = &states[i];
    let route = &plan.routes[agent.route];
    let front = state.s + agent.length / 2.0;
    let first = state.next_event.max(state.cleared);
    for (index, event) in route.events.iter().enumerate().skip(first) {
        if event.s - front > 90.0 {
            return (None, None);
        }
        match event.kind {
            EventKind::Halt { duration } => {
                if state.rest < duration {
                    return (Some(event.s), None);
                }
            }
            EventKind::Crosswalk { .. } => {}
            EventKind::StopLine { node, x_axis, heading, turn } => {
                let node_info = &plan.nodes[node];
                match node_info.control {
                    Control::Uncontrolled => {}
                    Control::StopSign => {
                        let stopped_here = state.rest >= 1.0 && event.s - front < 4.0;
                        let clear = !states.iter().enumerate().any(|(j, o)| j != i && o.alive && plan.agents[j].mover == Mover::Vehicle && node_info.contains([o.pose.x, o.pose.y]));
                        if stopped_here && clear {
                            return (None, Some(index + 1));
                        }
                        return (Some(event.s), None);
                    }
                    Control::Signal(signal) => {
                        let (light, _) = signal.light(x_axis, t);
                        let distance = event.s - front;
                        let must_stop = match light {
                            Light::Red => true,
                            // stop on yellow when a comfortable stop is possible
                            Light::Yellow => distance > state.v * state.v / (2.0 * 3.0),
                            Light::Green => turn == Turn::Left && oncoming(plan, states, i, node, heading),
                        };
                        if must_stop && distance > -0.5 {
                            return (Some(event.s), None);
                        }
                    }
                }
            }
        }
    }
    (None, None)
}

/// True when a left turn at `node` must wait: a vehicle comes the other way (not itself turning left)
/// within 45 m of the intersection, or is crossing it.
fn oncoming(plan: &TrafficPlan, states: &[State], i: usize, node: usize, heading: f64) -> bool {
    let center = plan.nodes[node].center;
    states.iter().enumerate().any(|(j, other)| {
        if j == i || !other.alive || plan.agents[j].mover != Mover::Vehicle {
            return false;
        }
        if wrap_angle(other.pose.heading - heading).cos() > -0.7 {
            return false;
        }
        if plan.nodes[node].contains([other.pose.x, other.pose.y]) {
            return true;
        }
        let route = &plan.routes[plan.agents[j].route];
        route.events.iter().skip(other.next_event).take(1).any(|e| match e.kind {
            EventKind::StopLine { node: n, turn, .. } => n == node && turn != Turn::Left && (e.s - other.s) < 45.0 && (other.pose.x - center[0]).hypot(other.pose.y - center[1]) < 60.0,
            _ => false,
        })
    })
}

fn pedestrian_accel(plan: &TrafficPlan, state: &State, i: usize, t: f64) -> f64 {
    let agent = &plan.agents[i];
    let route = &plan.routes[agent.route];
    let mut target = desired_speed(agent, t);
    for event in route.events.iter().skip(state.next_event) {
        let distance = event.s - state.s;
        if distance > 8.0 {
            break;
        }
        let wait = match event.kind {
            EventKind::Halt { duration } => state.rest < duration,
            EventKind::Crosswalk { node, crossing_x_road } => match plan.nodes[node].control {
                // walk while the crossed road is red and the other one has time left on green
                Control::Signal(signal) => {
                    let (light, remaining) = signal.light(!crossing_x_road, t);
                    !(light == Light::Green && remaining > 7.0)
                }
                _ => false,
            },
            EventKind::StopLine { .. } => false,
        };
        if wait {
            // come to rest at the event
            target = target.min((2.0 * agent.idm.comfortable_decel * (distance - 0.1).max(0.0)).sqrt());
            break;
        }
    }
    let dv = target - state.v;
    if dv >= 0.0 {
        dv.min(agent.idm.max_accel * 0.5).max(0.0) * 2.0
    } else {
        (dv * 4.0).max(-3.0)
    }
}

/// Starts a highway lane change when it pays off and is safe.
fn lane_change(plan: &TrafficPlan, states: &mut [State], i: usize, t: f64, rng: &mut Rng) {
    let agent = &plan.agents[i];
    let Some(changing) = &agent.lane_changing else { return };
    if states[i].manoeuvre.is_some() || t < states[i].next_lane_check {
        return;
    }
    states[i].next_lane_check = t + rng.range(0.8, 1.5);
    let state = &states[i];
    let Some(lane) = changing.lanes.iter().position(|&l| (l - state.lateral).abs() < 0.5) else { return };
    let v0 = desired_speed(agent, t);
    // the nearest vehicle ahead in a lane, on the same route
    let ahead_in = |lateral: f64| {
        states
            .iter()
            .enumerate()
            .filter(|(j, o)| *j != i && o.alive && plan.agents[*j].route == agent.route && (o.lateral - lateral).abs() < 1.6)
            .filter(|(_, o)| o.s > state.s)
            .map(|(_, o)| (o.s - state.s, o.v))
            .min_by(|a, b| a.0.total_cmp(&b.0))
    };
    let safe = |lateral: f64| {
        states.iter().enumerate().all(|(j, o)| {
            if j == i || !o.alive || plan.agents[j].route != agent.route {
                return true;
            }
            let target = o.manoeuvre.map(|m| m.to).unwrap_or(o.lateral);
            if (o.lateral - lateral).abs() > 1.6 && (target - lateral).abs() > 1.6 {
                return true;
            }
            let ds = o.s - state.s;
            ds > 18.0 + (state.v - o.v).max(0.0) * 2.0 || ds < -(12.0 + (o.v - state.v).max(0.0) * 3.0)
        })
    };
    let current = ahead_in(state.lateral);
    let blocked = current.is_some_and(|(gap, v)| gap < 45.0 && v < v0 - 2.5);
    let mut target = None;
    if blocked && lane > 0 {
        let faster = ahead_in(changing.lanes[lane - 1]).is_none_or(|(gap, v)| gap > 60.0 || v > current.map_or(0.0, |c| c.1) + 2.0);
        if faster && safe(changing.lanes[lane - 1]) {
            target = Some(changing.lanes[lane - 1]);
        }
    }
    if target.is_none() && lane + 1 < changing.lanes.len() && !blocked {
        // keep right when the right lane is free for a while
        let right = changing.lanes[lane + 1];
        if ahead_in(right).is_none_or(|(gap, v)| gap > 80.0 || v > v0 - 1.0) && safe(right) && rng.chance(0.25) {
            target = Some(right);
        }
    }
    if let Some(to) = target {
        let length = (state.v * 4.5).max(25.0);
        let s = state.s;
        let from = state.lateral;
        states[i].manoeuvre = Some(Manoeuvre { s0: s, s1: s + length, from, to });
    }
}

/// True when vehicle `i`, parked beside its lane, can pull out: no vehicle in the lane from 30 m
/// behind to 8 m ahead.
fn lane_clear(plan: &TrafficPlan, states: &[State], i: usize) -> bool {
    let state = &states[i];
    let lane = plan.routes[plan.agents[i].route].path.pose(state.s);
    let (cos, sin) = (lane.heading.cos(), lane.heading.sin());
    !states.iter().enumerate().any(|(j, o)| {
        if j == i || !o.alive || !o.departed || plan.agents[j].mover != Mover::Vehicle {
            return false;
        }
        let (dx, dy) = (o.pose.x - lane.x, o.pose.y - lane.y);
        let along = dx * cos + dy * sin;
        let lateral = -dx * sin + dy * cos;
        (-30.0..8.0).contains(&along) && lateral.abs() < 2.0 && wrap_angle(o.pose.heading - lane.heading).cos() > 0.0
    })
}

/// Integrates one step.
fn advance(plan: &TrafficPlan, state: &mut State, i: usize, accel: f64, dt: f64) {
    let agent = &plan.agents[i];
    let route = &plan.routes[agent.route];
    if !state.departed {
        return;
    }
    let v = (state.v + accel * dt).max(0.0);
    let ds = if accel < 0.0 && v == 0.0 && accel.abs() > 1e-9 { state.v * state.v / (2.0 * -accel) } else { (state.v + v) / 2.0 * dt };
    state.s += ds.min(state.v.max(v) * dt);
    state.v = v;
    // resting time at the next stop event (reset when moving again)
    state.rest = if state.v < 0.1 { state.rest + dt } else { 0.0 };
    let front = state.s + if agent.mover == Mover::Vehicle { agent.length / 2.0 } else { 0.0 };
    while let Some(event) = route.events.get(state.next_event) {
        if front > event.s + 0.3 || (matches!(event.kind, EventKind::Halt { duration } if state.rest >= duration && (event.s - front).abs() < 3.0)) {
            state.next_event += 1;
            state.rest = 0.0;
        } else {
            break;
        }
    }
    if let RouteEnd::Park { lateral } = route.end {
        let start = route.path.length() - 14.0;
        if state.s > start && state.manoeuvre.is_none() && (state.lateral - lateral).abs() > 0.01 {
            state.manoeuvre = Some(Manoeuvre { s0: start.max(state.s - 1.0), s1: route.path.length(), from: state.lateral, to: lateral });
        }
    }
    if let Some(m) = state.manoeuvre {
        let (lateral, slope) = m.at(state.s);
        state.lateral = lateral;
        state.slope = slope;
        if state.s >= m.s1 {
            state.lateral = m.to;
            state.slope = 0.0;
            state.manoeuvre = None;
        }
    }
    if route.end == RouteEnd::Leave && state.s >= route.path.length() {
        state.gone = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn straight(length: f64) -> Path {
        Path::new(&[[0.0, 0.0], [length, 0.0]])
    }

    fn car(route: usize, start_s: f64, speed: f64) -> AgentSpec {
        AgentSpec {
            mover: Mover::Vehicle,
            route,
            length: 4.5,
            width: 1.8,
            idm: Idm::CAR,
            desired_speed: speed,
            speed_schedule: Vec::new(),
            spawn_time: 0.0,
            start_s,
            start_lateral: 0.0,
            depart_time: None,
            lane_changing: None,
        }
    }

    #[test]
    fn red_light_stops_a_queue_and_green_releases_it() {
        let signal = Signal { offset: 0.0, green_x: 20.0, green_y: 20.0, yellow: 3.0, all_red: 2.0 };
        // x road is red from t = 23 to t = 50
        let node = Node { center: [200.0, 0.0], half: [6.0, 6.0], control: Control::Signal(signal) };
        let event = RouteEvent { s: 192.0, kind: EventKind::StopLine { node: 0, x_axis: true, heading: 0.0, turn: Turn::Straight } };
        let route = Route::new(straight(400.0), vec![event], RouteEnd::Leave, 2.5);
        let plan = TrafficPlan { routes: vec![route], nodes: vec![node], agents: vec![car(0, 20.0, 12.0), car(0, 5.0, 12.0)] };
        let mut rng = Rng::new(1);
        let traj = simulate(&plan, 24.0, 70.0, 0.05, &mut rng);
        // at t = 45 both wait behind the line, the second behind the first
        let (s0, _, _) = traj[0].state(45.0);
        let (s1, _, _) = traj[1].state(45.0);
        assert!(s0 + 2.25 <= 192.0 + 0.01 && s0 > 180.0, "first car at {s0}");
        assert!(s1 < s0 - 4.5 - 1.5 && s1 > s0 - 12.0, "second car at {s1}");
        assert!((traj[0].state(45.0).0 - traj[0].state(44.0).0).abs() < 1e-6);
        // after green at t = 50 they go
        assert!(traj[0].state(60.0).0 > 200.0);
    }

    #[test]
    fn parked_car_pulls_out_smoothly() {
        let route = Route::new(straight(300.0), Vec::new(), RouteEnd::Leave, 2.5);
        let mut agent = car(0, 50.0, 10.0);
        agent.start_lateral = -2.5;
        agent.depart_time = Some(5.0);
        let plan = TrafficPlan { routes: vec![route], nodes: Vec::new(), agents: vec![agent] };
        let traj = simulate(&plan, 0.0, 20.0, 0.05, &mut Rng::new(2));
        assert_eq!(traj[0].state(4.0).0, 50.0);
        assert_eq!(traj[0].state(4.0).1, -2.5);
        let (s, lateral, _) = traj[0].state(20.0);
        assert!(s > 100.0 && lateral.abs() < 1e-6);
        for k in 0..300 {
            let t = k as f64 * 0.05;
            let (_, _, slope) = traj[0].state(t);
            assert!(slope.abs() < 0.4);
        }
    }
}
