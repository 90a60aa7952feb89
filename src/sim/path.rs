//! Planar paths that agents and the ego follow: polylines parameterised by arc length, dense only
//! where they curve, with headings interpolated between vertices so that poses turn smoothly.

use std::f64::consts::PI;

/// Wraps an angle to (-π, π].
pub fn wrap_angle(a: f64) -> f64 {
    let mut a = a % (2.0 * PI);
    if a > PI {
        a -= 2.0 * PI;
    } else if a <= -PI {
        a += 2.0 * PI;
    }
    a
}

/// A position and heading on a path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathPose {
    pub x: f64,
    pub y: f64,
    pub heading: f64,
}

impl PathPose {
    /// The point `lateral` metres to the left of this pose.
    pub fn offset(&self, lateral: f64) -> [f64; 2] {
        [self.x - lateral * self.heading.sin(), self.y + lateral * self.heading.cos()]
    }
}

/// Distance over which the heading turns from a long segment's direction to a vertex's, metres.
const BLEND: f64 = 0.5;

#[derive(Debug, Clone, Default)]
pub struct Path {
    points: Vec<[f64; 2]>,
    /// Arc length at each point.
    s: Vec<f64>,
    /// Heading at each point (continuous: no wrapping between neighbours).
    heading: Vec<f64>,
}

impl Path {
    /// A path through the given points (consecutive duplicates are dropped). Vertex headings are
    /// the mean of the adjacent segments' headings.
    pub fn new(points: &[[f64; 2]]) -> Path {
        let mut pts: Vec<[f64; 2]> = Vec::with_capacity(points.len());
        for p in points {
            if pts.last().is_none_or(|q| (p[0] - q[0]).hypot(p[1] - q[1]) > 1e-6) {
                pts.push(*p);
            }
        }
        let mut s = Vec::with_capacity(pts.len());
        let mut acc = 0.0;
        for (i, p) in pts.iter().enumerate() {
            if i > 0 {
                acc += (p[0] - pts[i - 1][0]).hypot(p[1] - pts[i - 1][1]);
            }
            s.push(acc);
        }
        let segment: Vec<f64> = pts.windows(2).map(|w| (w[1][1] - w[0][1]).atan2(w[1][0] - w[0][0])).collect();
        let mut heading = Vec::with_capacity(pts.len());
        for i in 0..pts.len() {
            let h = match (i.checked_sub(1).and_then(|k| segment.get(k)), segment.get(i)) {
                (Some(&a), Some(&b)) => a + wrap_angle(b - a) / 2.0,
                (Some(&a), None) => a,
                (None, Some(&b)) => b,
                (None, None) => 0.0,
            };
            heading.push(h);
        }
        // make headings continuous so interpolation never goes the long way round
        for i in 1..heading.len() {
            heading[i] = heading[i - 1] + wrap_angle(heading[i] - heading[i - 1]);
        }
        Path { points: pts, s, heading }
    }

    pub fn length(&self) -> f64 {
        self.s.last().copied().unwrap_or(0.0)
    }

    pub fn points(&self) -> &[[f64; 2]] {
        &self.points
    }

    pub fn vertex_s(&self) -> &[f64] {
        &self.s
    }

    /// Index of the segment that holds arc length `s` (clamped).
    fn segment(&self, s: f64) -> usize {
        let n = self.s.len();
        if n < 2 {
            return 0;
        }
        self.s.partition_point(|&v| v <= s).clamp(1, n - 1) - 1
    }

    /// The pose at arc length `s` (clamped to the path; extrapolated straight beyond its ends).
    pub fn pose(&self, s: f64) -> PathPose {
        match self.points.len() {
            0 => return PathPose { x: 0.0, y: 0.0, heading: 0.0 },
            1 => return PathPose { x: self.points[0][0], y: self.points[0][1], heading: 0.0 },
            _ => {}
        }
        let i = self.segment(s);
        let (s0, s1) = (self.s[i], self.s[i + 1]);
        let f = (s - s0) / (s1 - s0);
        let (a, b) = (self.points[i], self.points[i + 1]);
        let length = s1 - s0;
        let (h0, h1) = (self.heading[i], self.heading[i + 1]);
        let heading = if length <= 2.0 * BLEND {
            h0 + (h1 - h0) * f.clamp(0.0, 1.0)
        } else {
            // long segments keep their own heading and turn only near their ends
            let along = self.heading[i] + wrap_angle((b[1] - a[1]).atan2(b[0] - a[0]) - self.heading[i]);
            let d = s - s0;
            if d < BLEND {
                h0 + (along - h0) * (d / BLEND).max(0.0)
            } else if d > length - BLEND {
                along + (h1 - along) * ((d - length + BLEND) / BLEND).min(1.0)
            } else {
                along
            }
        };
        PathPose { x: a[0] + (b[0] - a[0]) * f, y: a[1] + (b[1] - a[1]) * f, heading }
    }

    /// Heading change per metre around vertex `i` (for speed limits in curves).
    pub fn curvature_at_vertex(&self, i: usize) -> f64 {
        if i == 0 || i + 1 >= self.points.len() {
            return 0.0;
        }
        let ds = self.s[i + 1] - self.s[i - 1];
        if ds <= 0.0 {
            return 0.0;
        }
        (self.heading[i + 1] - self.heading[i - 1]).abs() / ds
    }
}

/// Points of a cubic Bézier from `p0` leaving with heading `h0` to `p1` arriving with heading `h1`,
/// spaced about `step` metres (first point excluded, last included): smooth turns and merges.
pub fn bezier(p0: [f64; 2], h0: f64, p1: [f64; 2], h1: f64, step: f64) -> Vec<[f64; 2]> {
    let chord = (p1[0] - p0[0]).hypot(p1[1] - p0[1]);
    let arm = 0.42 * chord;
    let c0 = [p0[0] + arm * h0.cos(), p0[1] + arm * h0.sin()];
    let c1 = [p1[0] - arm * h1.cos(), p1[1] - arm * h1.sin()];
    let n = ((chord * 1.2 / step).ceil() as usize).max(2);
    (1..=n)
        .map(|k| {
            let t = k as f64 / n as f64;
            let u = 1.0 - t;
            let (b0, b1, b2, b3) = (u * u * u, 3.0 * u * u * t, 3.0 * u * t * t, t * t * t);
            [b0 * p0[0] + b1 * c0[0] + b2 * c1[0] + b3 * p1[0], b0 * p0[1] + b1 * c0[1] + b2 * c1[1] + b3 * p1[1]]
        })
        .collect()
}

/// Smooth 0→1 step over [0, 1] (zero slope at both ends) and its derivative.
pub fn smoothstep(x: f64) -> (f64, f64) {
    let x = x.clamp(0.0, 1.0);
    (x * x * (3.0 - 2.0 * x), 6.0 * x * (1.0 - x))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poses_along_a_turn() {
        let mut pts = vec![[0.0, 0.0], [10.0, 0.0]];
        pts.extend(bezier([10.0, 0.0], 0.0, [20.0, 10.0], PI / 2.0, 0.25));
        pts.push([20.0, 30.0]);
        let path = Path::new(&pts);
        let start = path.pose(5.0);
        assert!((start.x - 5.0).abs() < 1e-9 && start.heading.abs() < 1e-9);
        let end = path.pose(path.length() - 1.0);
        assert!((end.x - 20.0).abs() < 1e-9 && (end.heading - PI / 2.0).abs() < 1e-9);
        // headings change smoothly along the turn
        let mut last = path.pose(10.0).heading;
        let mut s = 10.0;
        while s < path.length() {
            let h = path.pose(s).heading;
            assert!((h - last).abs() < 0.05, "jump at {s}");
            last = h;
            s += 0.1;
        }
        assert!((wrap_angle(3.0 * PI) - PI).abs() < 1e-12);
    }
}
