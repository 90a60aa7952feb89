//! A bounding volume hierarchy over shapes: binned surface-area-heuristic build, flat node array,
//! closest-hit traversal that visits the nearer child first.
//!
//! The static world (tens of thousands of primitives) is built once per sequence; the moving
//! objects (a few thousand primitives) are rebuilt at every scan, which the binned build does in
//! about a millisecond. The build is sequential and fully determined by its input order, so the
//! tree, and hence every hit, is the same on every run.

use super::shapes::{Aabb, Ray, V3};

const BINS: usize = 12;
const MAX_LEAF: usize = 4;
/// Relative cost of a primitive test against a node visit, for the SAH.
const PRIM_COST: f32 = 1.5;

#[derive(Debug, Clone, Copy)]
struct Node {
    bounds: Aabb,
    /// First primitive (leaf) or left child (interior; the right child follows it).
    first: u32,
    /// Number of primitives; 0 for an interior node.
    count: u32,
}

#[derive(Debug, Clone, Default)]
pub struct Bvh {
    nodes: Vec<Node>,
    /// Primitive indices in leaf order.
    order: Vec<u32>,
}

impl Bvh {
    /// Builds the hierarchy over primitives with the given bounding boxes.
    pub fn build(bounds: &[Aabb]) -> Bvh {
        let mut order: Vec<u32> = (0..bounds.len() as u32).collect();
        let mut nodes = Vec::with_capacity(2 * bounds.len().max(1));
        if bounds.is_empty() {
            return Bvh { nodes, order };
        }
        let centers: Vec<V3> = bounds.iter().map(Aabb::center).collect();
        nodes.push(Node { bounds: Aabb::EMPTY, first: 0, count: 0 });
        // explicit stack of (node, start, end) so deep trees cannot overflow the call stack
        let mut pending = vec![(0usize, 0usize, bounds.len())];
        while let Some((node, start, end)) = pending.pop() {
            let range = &mut order[start..end];
            let node_bounds = range.iter().fold(Aabb::EMPTY, |b, &i| b.union(&bounds[i as usize]));
            nodes[node].bounds = node_bounds;
            let count = end - start;
            let split = if count <= MAX_LEAF { None } else { best_split(range, bounds, &centers, &node_bounds) };
            match split {
                None => {
                    nodes[node].first = start as u32;
                    nodes[node].count = count as u32;
                }
                Some((axis, threshold)) => {
                    let mid = partition(range, |&i| centers[i as usize][axis] < threshold);
                    let mid = if mid == 0 || mid == count { count / 2 } else { mid };
                    let left = nodes.len();
                    nodes.push(Node { bounds: Aabb::EMPTY, first: 0, count: 0 });
                    nodes.push(Node { bounds: Aabb::EMPTY, first: 0, count: 0 });
                    nodes[node].first = left as u32;
                    nodes[node].count = 0;
                    pending.push((left + 1, start + mid, end));
                    pending.push((left, start, start + mid));
                }
            }
        }
        Bvh { nodes, order }
    }

    /// The closest primitive hit before `t_max`. `test(primitive, t_max)` returns the distance at
    /// which the ray hits that primitive, if it does so before `t_max`.
    #[inline]
    pub fn closest(&self, ray: &Ray, mut t_max: f32, mut test: impl FnMut(u32, f32) -> Option<f32>) -> Option<(u32, f32)> {
        if self.nodes.is_empty() || self.nodes[0].bounds.hit(ray, t_max).is_none() {
            return None;
        }
        let mut best = None;
        let mut stack = [0u32; 64];
        let mut top = 1usize;
        while top > 0 {
            top -= 1;
            let node = &self.nodes[stack[top] as usize];
            if node.count > 0 {
                let first = node.first as usize;
                for &prim in &self.order[first..first + node.count as usize] {
                    if let Some(t) = test(prim, t_max) {
                        if t < t_max {
                            t_max = t;
                            best = Some((prim, t));
                        }
                    }
                }
                continue;
            }
            let (l, r) = (node.first as usize, node.first as usize + 1);
            let hit_l = self.nodes[l].bounds.hit(ray, t_max);
            let hit_r = self.nodes[r].bounds.hit(ray, t_max);
            match (hit_l, hit_r) {
                (Some(tl), Some(tr)) => {
                    // push the farther child first so the nearer one is visited next
                    let (near, far) = if tl <= tr { (l, r) } else { (r, l) };
                    if top + 2 > stack.len() {
                        // degenerate depth: fall back to visiting without ordering
                        stack[top] = near as u32;
                        top += 1;
                        continue;
                    }
                    stack[top] = far as u32;
                    stack[top + 1] = near as u32;
                    top += 2;
                }
                (Some(_), None) => {
                    stack[top] = l as u32;
                    top += 1;
                }
                (None, Some(_)) => {
                    stack[top] = r as u32;
                    top += 1;
                }
                (None, None) => {}
            }
        }
        best
    }
}

/// Best (axis, centroid threshold) by the binned SAH, or `None` when a leaf is cheaper.
fn best_split(range: &[u32], bounds: &[Aabb], centers: &[V3], node_bounds: &Aabb) -> Option<(usize, f32)> {
    let centroid_bounds = range.iter().fold(Aabb::EMPTY, |b, &i| b.grow(&centers[i as usize]));
    let leaf_cost = PRIM_COST * range.len() as f32;
    let parent_area = node_bounds.half_area().max(1e-12);
    let mut best: Option<(usize, f32, f32)> = None;
    for (axis, (lo, hi)) in [(0, (centroid_bounds.min.x, centroid_bounds.max.x)), (1, (centroid_bounds.min.y, centroid_bounds.max.y)), (2, (centroid_bounds.min.z, centroid_bounds.max.z))] {
        if hi - lo < 1e-6 {
            continue;
        }
        let scale = BINS as f32 / (hi - lo);
        let mut bin_bounds = [Aabb::EMPTY; BINS];
        let mut bin_counts = [0usize; BINS];
        for &i in range {
            let b = (((centers[i as usize][axis] - lo) * scale) as usize).min(BINS - 1);
            bin_counts[b] += 1;
            bin_bounds[b] = bin_bounds[b].union(&bounds[i as usize]);
        }
        // sweep from the right to get the right-side areas, then from the left
        let mut right_area = [0f32; BINS];
        let mut right_count = [0usize; BINS];
        let (mut acc, mut n) = (Aabb::EMPTY, 0);
        for b in (1..BINS).rev() {
            acc = acc.union(&bin_bounds[b]);
            n += bin_counts[b];
            right_area[b] = acc.half_area();
            right_count[b] = n;
        }
        let (mut acc, mut n) = (Aabb::EMPTY, 0);
        for b in 0..BINS - 1 {
            acc = acc.union(&bin_bounds[b]);
            n += bin_counts[b];
            if n == 0 || right_count[b + 1] == 0 {
                continue;
            }
            let cost = 1.0 + PRIM_COST * (acc.half_area() * n as f32 + right_area[b + 1] * right_count[b + 1] as f32) / parent_area;
            if best.is_none_or(|(_, _, c)| cost < c) {
                best = Some((axis, lo + (b + 1) as f32 / scale, cost));
            }
        }
    }
    match best {
        Some((axis, threshold, cost)) if cost < leaf_cost || range.len() > 16 => Some((axis, threshold)),
        // identical centroids in a large node: split by count so leaves stay small
        None if range.len() > 16 => Some((0, f32::NAN)),
        _ => None,
    }
}

/// Moves the elements satisfying `pred` to the front; returns how many there are.
fn partition(items: &mut [u32], pred: impl Fn(&u32) -> bool) -> usize {
    let mut left = 0;
    for i in 0..items.len() {
        if pred(&items[i]) {
            items.swap(left, i);
            left += 1;
        }
    }
    left
}

#[cfg(test)]
mod tests {
    use super::super::shapes::{Shape, VerticalCylinder};
    use super::*;
    use crate::sim::rng::Rng;

    #[test]
    fn closest_hit_matches_brute_force() {
        let mut rng = Rng::new(5);
        let shapes: Vec<Shape> = (0..2000)
            .map(|_| {
                Shape::Cylinder(VerticalCylinder {
                    x: rng.range(-100.0, 100.0) as f32,
                    y: rng.range(-100.0, 100.0) as f32,
                    radius: rng.range(0.1, 2.0) as f32,
                    z_min: 0.0,
                    z_max: rng.range(0.5, 10.0) as f32,
                })
            })
            .collect();
        let bvh = Bvh::build(&shapes.iter().map(Shape::bounds).collect::<Vec<_>>());
        for k in 0..2000 {
            let a = k as f32 * 0.0031;
            let ray = Ray::new(V3::new(0.0, 0.0, 1.5), V3::new(a.cos(), a.sin(), -0.01).normalize());
            let fast = bvh.closest(&ray, 200.0, |i, t_max| shapes[i as usize].intersect(&ray, t_max).map(|c| c.t_in));
            let brute = shapes
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.intersect(&ray, 200.0).map(|c| (i as u32, c.t_in)))
                .min_by(|a, b| a.1.total_cmp(&b.1));
            assert_eq!(fast.map(|h| h.1), brute.map(|h| h.1), "ray {k}");
        }
    }
}
