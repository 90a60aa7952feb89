//! `curves.png`: training loss, learning rate and validation moving IoU against the step, drawn from
//! `log.csv` with a small rasteriser (three stacked panels, min and max of each axis written in a
//! 3×5 pixel font).

use std::path::Path;

const WIDTH: usize = 900;
const PANEL: usize = 220;
const MARGIN: usize = 40;

struct Canvas {
    pixels: Vec<[u8; 3]>,
    height: usize,
}

impl Canvas {
    fn new(height: usize) -> Self {
        Canvas { pixels: vec![[255, 255, 255]; WIDTH * height], height }
    }

    fn set(&mut self, x: i64, y: i64, color: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < WIDTH && (y as usize) < self.height {
            self.pixels[y as usize * WIDTH + x as usize] = color;
        }
    }

    fn line(&mut self, (x0, y0): (i64, i64), (x1, y1): (i64, i64), color: [u8; 3]) {
        let steps = (x1 - x0).abs().max((y1 - y0).abs()).max(1);
        for i in 0..=steps {
            let x = x0 + (x1 - x0) * i / steps;
            let y = y0 + (y1 - y0) * i / steps;
            self.set(x, y, color);
        }
    }

    /// Digits, '.', '-', 'e' in a 3×5 font, scaled ×2.
    fn text(&mut self, x: i64, y: i64, s: &str, color: [u8; 3]) {
        const GLYPHS: [(char, [u8; 5]); 14] = [
            ('0', [7, 5, 5, 5, 7]), ('1', [2, 6, 2, 2, 7]), ('2', [7, 1, 7, 4, 7]), ('3', [7, 1, 7, 1, 7]),
            ('4', [5, 5, 7, 1, 1]), ('5', [7, 4, 7, 1, 7]), ('6', [7, 4, 7, 5, 7]), ('7', [7, 1, 1, 1, 1]),
            ('8', [7, 5, 7, 5, 7]), ('9', [7, 5, 7, 1, 7]), ('.', [0, 0, 0, 0, 2]), ('-', [0, 0, 7, 0, 0]),
            ('e', [0, 7, 7, 4, 7]), ('+', [0, 2, 7, 2, 0]),
        ];
        for (k, c) in s.chars().enumerate() {
            let Some((_, rows)) = GLYPHS.iter().find(|(g, _)| *g == c) else { continue };
            for (r, bits) in rows.iter().enumerate() {
                for b in 0..3 {
                    if bits & (4 >> b) != 0 {
                        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                            self.set(x + k as i64 * 8 + b * 2 + dx, y + r as i64 * 2 + dy, color);
                        }
                    }
                }
            }
        }
    }

    fn panel(&mut self, index: usize, series: &[(f64, f64)], color: [u8; 3]) {
        let top = (index * (PANEL + MARGIN) + MARGIN) as i64;
        let (left, right) = (MARGIN as i64 + 40, (WIDTH - MARGIN) as i64);
        let bottom = top + PANEL as i64;
        self.line((left, top), (left, bottom), [0, 0, 0]);
        self.line((left, bottom), (right, bottom), [0, 0, 0]);
        let finite: Vec<(f64, f64)> = series.iter().copied().filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
        if finite.is_empty() {
            return;
        }
        let (xmin, xmax) = finite.iter().fold((f64::MAX, f64::MIN), |(a, b), (x, _)| (a.min(*x), b.max(*x)));
        let (ymin, ymax) = finite.iter().fold((f64::MAX, f64::MIN), |(a, b), (_, y)| (a.min(*y), b.max(*y)));
        let (xspan, yspan) = ((xmax - xmin).max(1e-12), (ymax - ymin).max(1e-12));
        let to_px = |(x, y): (f64, f64)| (left + ((x - xmin) / xspan * (right - left) as f64) as i64, bottom - ((y - ymin) / yspan * PANEL as f64) as i64);
        for pair in finite.windows(2) {
            self.line(to_px(pair[0]), to_px(pair[1]), color);
        }
        if finite.len() == 1 {
            let (x, y) = to_px(finite[0]);
            for d in -2..=2 {
                self.set(x + d, y, color);
                self.set(x, y + d, color);
            }
        }
        self.text(2, top, &format_number(ymax), [0, 0, 0]);
        self.text(2, bottom - 10, &format_number(ymin), [0, 0, 0]);
        self.text(left, bottom + 6, &format_number(xmin), [0, 0, 0]);
        self.text(right - 60, bottom + 6, &format_number(xmax), [0, 0, 0]);
    }
}

fn format_number(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-2 || v.abs() >= 1e5) {
        format!("{v:.1e}")
    } else {
        format!("{v:.3}")
    }
}

/// Reads `log.csv` and draws loss (blue), learning rate (green) and validation IoU (red).
pub fn training_curves(log_csv: &Path, out: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(log_csv).map_err(|e| format!("{}: {e}", log_csv.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().ok_or("empty log")?.split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).ok_or(format!("no column {name} in {}", log_csv.display()));
    let (step, loss, lr, iou) = (col("step")?, col("loss")?, col("lr")?, col("valid_iou")?);
    let (mut losses, mut rates, mut ious) = (Vec::new(), Vec::new(), Vec::new());
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        let get = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
        let Some(s) = get(step) else { continue };
        if let Some(v) = get(loss) {
            losses.push((s, v));
        }
        if let Some(v) = get(lr) {
            rates.push((s, v));
        }
        if let Some(v) = get(iou) {
            ious.push((s, v));
        }
    }
    let height = 3 * (PANEL + MARGIN) + MARGIN;
    let mut canvas = Canvas::new(height);
    canvas.panel(0, &losses, [30, 80, 200]);
    canvas.panel(1, &rates, [30, 150, 60]);
    canvas.panel(2, &ious, [210, 40, 40]);
    let file = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), WIDTH as u32, height as u32);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    let bytes: Vec<u8> = canvas.pixels.iter().flatten().copied().collect();
    writer.write_image_data(&bytes).map_err(|e| e.to_string())
}
