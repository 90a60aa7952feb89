//! The ground: a smooth height field (gentle hills, a few per cent of slope) and a map of what covers
//! it (road, markings, parking, sidewalk, terrain, ...).
//!
//! Heights are a sum of long-wavelength sinusoids sampled on a 2 m grid and interpolated bilinearly
//! (the interpolation error is below a millimetre at these wavelengths, and a grid lookup is much
//! cheaper than the sinusoids in the ray caster). Rays meet the ground by regula falsi on
//! `ray_z(t) - height(ray_xy(t))`, which is almost linear, so two or three steps suffice. Ground
//! cover is painted into 0.25 m cells held in 16 m tiles that exist only where something was
//! painted; everywhere else is terrain.

use super::rng::Rng;
use super::semantics::GroundKind;
use super::shapes::{Ray, V3};

const TILE: usize = 64;
const HEIGHT_CELL: f64 = 2.0;
const KIND_CELL: f64 = 0.25;

/// One sinusoidal undulation of the ground.
#[derive(Debug, Clone, Copy)]
struct Wave {
    kx: f64,
    ky: f64,
    phase: f64,
    amplitude: f64,
}

#[derive(Debug, Clone)]
pub struct Terrain {
    origin_x: f64,
    origin_y: f64,
    nx: usize,
    ny: usize,
    heights: Vec<f32>,
    /// Upper bound of the slope anywhere (sum of the waves' slopes).
    max_slope: f32,
    tiles_x: usize,
    tiles_y: usize,
    /// 0: nothing painted (terrain); otherwise 1 + index into `tiles`.
    tile_index: Vec<u32>,
    tiles: Vec<Box<[u8; TILE * TILE]>>,
}

impl Terrain {
    /// A terrain over `[min, max]` (scene frame) whose steepest slope is about `max_slope`.
    pub fn new(min: [f64; 2], max: [f64; 2], max_slope: f64, rng: &mut Rng) -> Terrain {
        let waves: Vec<Wave> = (0..3)
            .map(|_| {
                let wavelength = rng.range(250.0, 700.0);
                let direction = rng.range(0.0, std::f64::consts::TAU);
                let k = std::f64::consts::TAU / wavelength;
                // slope of one wave is amplitude × k; three waves share the budget
                let amplitude = max_slope / 3.0 / k * rng.range(0.5, 1.0);
                Wave { kx: k * direction.cos(), ky: k * direction.sin(), phase: rng.range(0.0, std::f64::consts::TAU), amplitude }
            })
            .collect();
        let nx = ((max[0] - min[0]) / HEIGHT_CELL).ceil() as usize + 2;
        let ny = ((max[1] - min[1]) / HEIGHT_CELL).ceil() as usize + 2;
        let mut heights = Vec::with_capacity(nx * ny);
        for j in 0..ny {
            for i in 0..nx {
                let (x, y) = (min[0] + i as f64 * HEIGHT_CELL, min[1] + j as f64 * HEIGHT_CELL);
                heights.push(waves.iter().map(|w| w.amplitude * (w.kx * x + w.ky * y + w.phase).sin()).sum::<f64>() as f32);
            }
        }
        let tiles_x = ((max[0] - min[0]) / KIND_CELL / TILE as f64).ceil() as usize + 1;
        let tiles_y = ((max[1] - min[1]) / KIND_CELL / TILE as f64).ceil() as usize + 1;
        let max_slope = waves.iter().map(|w| w.amplitude * w.kx.hypot(w.ky)).sum::<f64>() as f32;
        Terrain { origin_x: min[0], origin_y: min[1], nx, ny, heights, max_slope, tiles_x, tiles_y, tile_index: vec![0; tiles_x * tiles_y], tiles: Vec::new() }
    }

    /// Grid coordinates and bilinear weights of a point (clamped to the grid).
    #[inline]
    fn cell(&self, x: f32, y: f32) -> (usize, f32, f32) {
        let gx = ((x - self.origin_x as f32) * (1.0 / HEIGHT_CELL as f32)).clamp(0.0, (self.nx - 2) as f32 + 0.999);
        let gy = ((y - self.origin_y as f32) * (1.0 / HEIGHT_CELL as f32)).clamp(0.0, (self.ny - 2) as f32 + 0.999);
        let (i, j) = (gx as usize, gy as usize);
        (j * self.nx + i, gx - i as f32, gy - j as f32)
    }

    /// Ground height at (x, y), metres.
    #[inline]
    pub fn height(&self, x: f32, y: f32) -> f32 {
        self.height_and_slope(x, y).0
    }

    /// Height and its gradient (dh/dx, dh/dy) of the bilinear patch at (x, y).
    #[inline]
    fn height_and_slope(&self, x: f32, y: f32) -> (f32, f32, f32) {
        let (k, fx, fy) = self.cell(x, y);
        let h = &self.heights;
        let (h00, h10, h01, h11) = (h[k], h[k + 1], h[k + self.nx], h[k + self.nx + 1]);
        let bottom = h00 + (h10 - h00) * fx;
        let top = h01 + (h11 - h01) * fx;
        let inv = 1.0 / HEIGHT_CELL as f32;
        ((bottom + (top - bottom) * fy), ((h10 - h00) * (1.0 - fy) + (h11 - h01) * fy) * inv, (top - bottom) * inv)
    }

    pub fn height_at(&self, x: f64, y: f64) -> f64 {
        f64::from(self.height(x as f32, y as f32))
    }

    /// Height gradient (dh/dx, dh/dy).
    pub fn gradient(&self, x: f64, y: f64) -> (f64, f64) {
        // central differences over one cell: the height field is smooth at this scale
        let d = HEIGHT_CELL;
        ((self.height_at(x + d, y) - self.height_at(x - d, y)) / (2.0 * d), (self.height_at(x, y + d) - self.height_at(x, y - d)) / (2.0 * d))
    }

    /// Distance along the ray to the ground and the ground normal there, if the ground is hit
    /// within `t_max`.
    pub fn intersect(&self, ray: &Ray, t_max: f32) -> Option<(f32, V3)> {
        let horizontal = ray.dir.x.hypot(ray.dir.y);
        // rising faster than the ground can: no hit
        if ray.dir.z > self.max_slope * horizontal {
            return None;
        }
        let f = |t: f32| ray.origin.z + t * ray.dir.z - self.height(ray.origin.x + t * ray.dir.x, ray.origin.y + t * ray.dir.y);
        let (h0, gx0, gy0) = self.height_and_slope(ray.origin.x, ray.origin.y);
        let f0 = ray.origin.z - h0;
        if f0 <= 0.0 {
            return None;
        }
        // Newton from the tangent plane below the origin: the ground curves so little that two or
        // three steps reach a tenth of a millimetre
        let descent = ray.dir.z - gx0 * ray.dir.x - gy0 * ray.dir.y;
        if descent < -0.02 {
            let mut t = f0 / -descent;
            for _ in 0..6 {
                if !(t > 0.0 && t < t_max * 1.5) {
                    break;
                }
                let p = ray.at(t);
                let (h, gx, gy) = self.height_and_slope(p.x, p.y);
                let ft = p.z - h;
                let slope = ray.dir.z - gx * ray.dir.x - gy * ray.dir.y;
                if ft.abs() < 1e-4 {
                    if t > t_max {
                        return None;
                    }
                    return Some((t, V3::new(-gx, -gy, 1.0).normalize()));
                }
                if slope >= -1e-3 {
                    break;
                }
                t -= ft / slope;
            }
        }
        // grazing rays: bracket the root and use regula falsi
        let (mut a, mut fa) = (0.0f32, f0);
        let (mut b, mut fb) = (t_max, f(t_max));
        if fb > 0.0 {
            return None;
        }
        // Illinois regula falsi: the function is nearly linear, so this converges in a few steps
        let mut t = b;
        for _ in 0..20 {
            t = (a * fb - b * fa) / (fb - fa);
            let ft = f(t);
            if ft.abs() < 2e-4 {
                break;
            }
            if ft * fb < 0.0 {
                a = b;
                fa = fb;
            } else {
                fa *= 0.5;
            }
            b = t;
            fb = ft;
        }
        let p = ray.at(t);
        let (_, gx, gy) = self.height_and_slope(p.x, p.y);
        Some((t, V3::new(-gx, -gy, 1.0).normalize()))
    }

    /// What covers the ground at (x, y).
    #[inline]
    pub fn kind(&self, x: f32, y: f32) -> GroundKind {
        let gx = (f64::from(x) - self.origin_x) / KIND_CELL;
        let gy = (f64::from(y) - self.origin_y) / KIND_CELL;
        if gx < 0.0 || gy < 0.0 {
            return GroundKind::Terrain;
        }
        let (ix, iy) = (gx as usize, gy as usize);
        let (tx, ty) = (ix / TILE, iy / TILE);
        if tx >= self.tiles_x || ty >= self.tiles_y {
            return GroundKind::Terrain;
        }
        match self.tile_index[ty * self.tiles_x + tx] {
            0 => GroundKind::Terrain,
            t => GroundKind::from_u8(self.tiles[t as usize - 1][(iy % TILE) * TILE + ix % TILE]),
        }
    }

    fn set_cell(&mut self, ix: usize, iy: usize, kind: GroundKind) {
        let (tx, ty) = (ix / TILE, iy / TILE);
        if tx >= self.tiles_x || ty >= self.tiles_y {
            return;
        }
        let slot = ty * self.tiles_x + tx;
        if self.tile_index[slot] == 0 {
            if kind == GroundKind::Terrain {
                return;
            }
            self.tiles.push(Box::new([GroundKind::Terrain as u8; TILE * TILE]));
            self.tile_index[slot] = self.tiles.len() as u32;
        }
        let tile = self.tile_index[slot] as usize - 1;
        self.tiles[tile][(iy % TILE) * TILE + ix % TILE] = kind as u8;
    }

    /// Paints a rectangle centred at `center`, with its length along the unit vector `along`.
    pub fn paint_rect(&mut self, center: [f64; 2], along: [f64; 2], half_length: f64, half_width: f64, kind: GroundKind) {
        let across = [-along[1], along[0]];
        let ex = along[0].abs() * half_length + across[0].abs() * half_width;
        let ey = along[1].abs() * half_length + across[1].abs() * half_width;
        let to_cell = |v: f64, o: f64| ((v - o) / KIND_CELL).max(0.0) as usize;
        let (i0, i1) = (to_cell(center[0] - ex, self.origin_x), to_cell(center[0] + ex, self.origin_x) + 1);
        let (j0, j1) = (to_cell(center[1] - ey, self.origin_y), to_cell(center[1] + ey, self.origin_y) + 1);
        for j in j0..j1 {
            for i in i0..i1 {
                let x = self.origin_x + (i as f64 + 0.5) * KIND_CELL - center[0];
                let y = self.origin_y + (j as f64 + 0.5) * KIND_CELL - center[1];
                if (x * along[0] + y * along[1]).abs() <= half_length && (x * across[0] + y * across[1]).abs() <= half_width {
                    self.set_cell(i, j, kind);
                }
            }
        }
    }

    /// Paints a rectangle between two points (a strip of the given half width along the segment).
    pub fn paint_segment(&mut self, a: [f64; 2], b: [f64; 2], half_width: f64, kind: GroundKind) {
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        let length = dx.hypot(dy);
        if length < 1e-9 {
            return;
        }
        self.paint_rect([(a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0], [dx / length, dy / length], length / 2.0, half_width, kind);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ground_intersection_is_on_the_surface_and_slopes_stay_gentle() {
        let mut rng = Rng::new(3);
        let mut terrain = Terrain::new([-300.0, -300.0], [300.0, 300.0], 0.04, &mut rng);
        let mut steepest = 0.0f64;
        for i in 0..50 {
            let (x, y) = (-250.0 + 10.0 * i as f64, 37.0 - 5.0 * i as f64);
            let (gx, gy) = terrain.gradient(x, y);
            steepest = steepest.max(gx.hypot(gy));
        }
        assert!(steepest < 0.045 && steepest > 0.003, "{steepest}");
        let origin = V3::new(10.0, -20.0, terrain.height(10.0, -20.0) + 1.73);
        for k in 0..100 {
            let a = k as f32 * 0.063;
            let dir = V3::new(a.cos(), a.sin(), -0.05 - 0.004 * k as f32).normalize();
            let ray = Ray::new(origin, dir);
            let (t, normal) = terrain.intersect(&ray, 120.0).unwrap();
            let p = ray.at(t);
            assert!((p.z - terrain.height(p.x, p.y)).abs() < 1e-3, "ray {k}");
            assert!(normal.z > 0.99);
        }
        assert!(terrain.intersect(&Ray::new(origin, V3::new(1.0, 0.0, 0.2).normalize()), 120.0).is_none());
        terrain.paint_segment([0.0, 0.0], [50.0, 0.0], 3.0, GroundKind::Road);
        assert_eq!(terrain.kind(25.0, 2.9), GroundKind::Road);
        assert_eq!(terrain.kind(25.0, 3.4), GroundKind::Terrain);
        assert_eq!(terrain.kind(-1000.0, 0.0), GroundKind::Terrain);
    }
}
