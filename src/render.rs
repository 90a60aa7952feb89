//! Bird's-eye-view images of point clouds, for people to look at what was simulated or predicted.
//!
//! [`render_bev`] rasterises points with caller-chosen colours (so the same function draws ground
//! truth by label, predictions as moving/static, or errors highlighted) into a top-down image
//! centred on the sensor: x (forward) up, y (left) to the left. Where several points fall into one
//! pixel, the highest wins, as when looking down on the scene. Range rings and a marker at the
//! sensor help to judge distances.

use crate::cloud::{label_color, PointCloud};
use std::path::Path;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RenderError {
    #[error("{0}")]
    Options(String),
    #[error("{colors} colours for {points} points")]
    ColorCount { points: usize, colors: usize },
    #[error("PNG encoding: {0}")]
    Png(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// Largest image side, pixels (an RGB image and a height buffer of 8192² take about 460 MB).
const MAX_SIDE: f64 = 8192.0;

/// What area to draw and how.
#[derive(Debug, Clone, PartialEq)]
pub struct BevOptions {
    /// Side of the square area drawn, metres.
    pub extent_m: f64,
    /// Metres per pixel.
    pub resolution_m: f64,
    /// Centre of the image in the cloud's frame (x, y), metres.
    pub center: [f64; 2],
    /// Background colour, `0xRRGGBB`.
    pub background: u32,
    /// Points are drawn as squares of this many pixels around their pixel (0: single pixels).
    pub point_radius: u32,
    /// Spacing of range rings around the origin, metres (none if 0).
    pub ring_spacing_m: f64,
}

impl Default for BevOptions {
    fn default() -> Self {
        BevOptions { extent_m: 100.0, resolution_m: 0.1, center: [0.0, 0.0], background: 0x101014, point_radius: 0, ring_spacing_m: 10.0 }
    }
}

/// An RGB image, row-major, top row first.
#[derive(Debug, Clone, PartialEq)]
pub struct BevImage {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl BevImage {
    fn set(&mut self, col: i64, row: i64, color: u32) {
        if col < 0 || row < 0 || col >= i64::from(self.width) || row >= i64::from(self.height) {
            return;
        }
        let i = (row as usize * self.width as usize + col as usize) * 3;
        self.rgb[i..i + 3].copy_from_slice(&[(color >> 16) as u8, (color >> 8) as u8, color as u8]);
    }

    /// The image as PNG bytes.
    pub fn to_png(&self) -> Result<Vec<u8>, RenderError> {
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, self.width, self.height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| RenderError::Png(e.to_string()))?;
        writer.write_image_data(&self.rgb).map_err(|e| RenderError::Png(e.to_string()))?;
        writer.finish().map_err(|e| RenderError::Png(e.to_string()))?;
        Ok(bytes)
    }

    pub fn write_png(&self, path: &Path) -> Result<(), RenderError> {
        let bytes = self.to_png()?;
        std::fs::write(path, bytes).map_err(|source| RenderError::Io { path: path.display().to_string(), source })
    }
}

/// Display colours of SemanticKITTI labels (moving classes red), for [`render_bev`].
pub fn label_colors(labels: &[u32]) -> Vec<u32> {
    labels.iter().map(|&l| label_color(l)).collect()
}

/// Colours of predictions against ground truth, for [`outcome_colors`].
pub mod outcome {
    /// Moving, predicted moving.
    pub const TRUE_MOVING: u32 = 0xE8302A;
    /// Static, but predicted moving.
    pub const FALSE_MOVING: u32 = 0xFFB000;
    /// Moving, but predicted static.
    pub const MISSED_MOVING: u32 = 0x2E8BFF;
    /// Static, predicted static.
    pub const STATIC: u32 = 0x8C8C8C;
    /// Unlabelled in the ground truth (ignored by the evaluation).
    pub const IGNORED: u32 = 0x4A4A50;
}

/// Colours that show what a MOS prediction got right and wrong: moving points red, false alarms amber,
/// missed moving points blue, static grey, unlabelled dark (classes as the official evaluation maps
/// raw ids). Without ground truth, predicted moving points are red and the rest grey.
pub fn outcome_colors(predicted: &[u32], ground_truth: Option<&[u32]>) -> Result<Vec<u32>, RenderError> {
    use crate::evaluation::{mos_class, IGNORED, MOVING};
    let moving = |raw: u32| mos_class(raw) == MOVING;
    match ground_truth {
        None => Ok(predicted.iter().map(|&p| if moving(p) { outcome::TRUE_MOVING } else { outcome::STATIC }).collect()),
        Some(truth) if truth.len() != predicted.len() => Err(RenderError::ColorCount { points: truth.len(), colors: predicted.len() }),
        Some(truth) => Ok(predicted
            .iter()
            .zip(truth)
            .map(|(&p, &t)| match (mos_class(t), moving(p)) {
                (IGNORED, _) => outcome::IGNORED,
                (MOVING, true) => outcome::TRUE_MOVING,
                (MOVING, false) => outcome::MISSED_MOVING,
                (_, true) => outcome::FALSE_MOVING,
                (_, false) => outcome::STATIC,
            })
            .collect()),
    }
}

/// Draws `cloud` from above with one colour (`0xRRGGBB`) per point.
pub fn render_bev(cloud: &PointCloud, colors: &[u32], options: &BevOptions) -> Result<BevImage, RenderError> {
    if colors.len() != cloud.len() {
        return Err(RenderError::ColorCount { points: cloud.len(), colors: colors.len() });
    }
    if !(options.resolution_m > 0.0 && options.extent_m > 0.0) {
        return Err(RenderError::Options(format!("extent {} m and resolution {} m must be positive", options.extent_m, options.resolution_m)));
    }
    let side = (options.extent_m / options.resolution_m).round();
    if !(1.0..=MAX_SIDE).contains(&side) {
        return Err(RenderError::Options(format!("{side} pixels per side (1 to {MAX_SIDE} are possible)")));
    }
    let side = side as u32;
    let mut image = BevImage { width: side, height: side, rgb: Vec::with_capacity(side as usize * side as usize * 3) };
    for _ in 0..side as usize * side as usize {
        image.rgb.extend_from_slice(&[(options.background >> 16) as u8, (options.background >> 8) as u8, options.background as u8]);
    }
    let half = options.extent_m / 2.0;
    let to_pixel = |x: f64, y: f64| (((half - (y - options.center[1])) / options.resolution_m).floor() as i64, ((half - (x - options.center[0])) / options.resolution_m).floor() as i64);
    if options.ring_spacing_m > 0.0 {
        let ring_color = blend(options.background, 0x505060);
        let mut radius = options.ring_spacing_m;
        while radius < half * 1.5 {
            let steps = (std::f64::consts::TAU * radius / options.resolution_m).ceil() as usize;
            for k in 0..steps {
                let a = std::f64::consts::TAU * k as f64 / steps as f64;
                let (col, row) = to_pixel(radius * a.cos(), radius * a.sin());
                image.set(col, row, ring_color);
            }
            radius += options.ring_spacing_m;
        }
    }
    // highest point per pixel wins
    let mut top = vec![f32::NEG_INFINITY; side as usize * side as usize];
    let r = i64::from(options.point_radius);
    for (i, &color) in colors.iter().enumerate() {
        let (col, row) = to_pixel(f64::from(cloud.x[i]), f64::from(cloud.y[i]));
        for dr in -r..=r {
            for dc in -r..=r {
                let (c, w) = (col + dc, row + dr);
                if c < 0 || w < 0 || c >= i64::from(side) || w >= i64::from(side) {
                    continue;
                }
                let k = w as usize * side as usize + c as usize;
                if cloud.z[i] >= top[k] {
                    top[k] = cloud.z[i];
                    image.set(c, w, color);
                }
            }
        }
    }
    // the sensor: a small white cross
    let (col, row) = to_pixel(0.0, 0.0);
    for d in -4..=4 {
        image.set(col + d, row, 0xFFFFFF);
        image.set(col, row + d, 0xFFFFFF);
    }
    Ok(image)
}

/// A colour a quarter of the way from `a` to `b`.
fn blend(a: u32, b: u32) -> u32 {
    let channel = |shift: u32| {
        let (x, y) = ((a >> shift) & 0xFF, (b >> shift) & 0xFF);
        ((x * 3 + y) / 4) << shift
    };
    channel(16) | channel(8) | channel(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_land_where_they_should() {
        let cloud = PointCloud::from_xyzi(vec![10.0, 0.0, 0.0], vec![0.0, 10.0, 10.0], vec![0.0, 0.0, 1.0], vec![0.0; 3]);
        let options = BevOptions { extent_m: 40.0, resolution_m: 1.0, ring_spacing_m: 0.0, ..Default::default() };
        let image = render_bev(&cloud, &[0xFF0000, 0x00FF00, 0x0000FF], &options).unwrap();
        assert_eq!((image.width, image.height), (40, 40));
        let pixel = |col: usize, row: usize| {
            let i = (row * 40 + col) * 3;
            [image.rgb[i], image.rgb[i + 1], image.rgb[i + 2]]
        };
        // 10 m forward is 10 pixels above the centre (row 20 - 10)
        assert_eq!(pixel(20, 10), [255, 0, 0]);
        // 10 m to the left is 10 pixels left of the centre; the higher (blue) point wins
        assert_eq!(pixel(10, 20), [0, 0, 255]);
        assert!(render_bev(&cloud, &[0], &options).is_err());
    }

    #[test]
    fn outcome_colours_follow_the_official_classes() {
        // predictions: moving, moving, static, static, moving; truth: moving car, static car, moving person, road, unlabelled
        let predicted = [251, 251, 9, 9, 251];
        let truth = [252, 10, 254, 40, 0];
        let colors = outcome_colors(&predicted, Some(&truth)).unwrap();
        assert_eq!(colors, vec![outcome::TRUE_MOVING, outcome::FALSE_MOVING, outcome::MISSED_MOVING, outcome::STATIC, outcome::IGNORED]);
        assert_eq!(outcome_colors(&predicted, None).unwrap()[..3], [outcome::TRUE_MOVING, outcome::TRUE_MOVING, outcome::STATIC]);
        assert!(outcome_colors(&predicted, Some(&truth[..2])).is_err());
    }
}
