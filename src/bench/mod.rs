//! Benchmarks: each suite measures one part of kdseg and returns a [`BenchRecord`]; `kdseg bench`
//! stores the records as JSON under `benchmarks/<machine>/` and `kdseg bench report` renders all of
//! them into `BENCHMARKS.md`, so every figure there comes from a run, with its command, machine and
//! date.

mod data_plane;
pub mod profile;
pub mod pipeline;
mod report;

pub use data_plane::{bag_read, decode_cloud};
pub use report::render_report;

use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// One measured figure.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub unit: String,
    /// The requirement, e.g. "≤ 1 ms"; `None` when the figure is only reported.
    pub target: Option<String>,
    /// Whether `value` meets `target`.
    pub meets_target: Option<bool>,
}

impl Metric {
    pub fn new(name: &str, value: f64, unit: &str) -> Self {
        Metric { name: name.into(), value, unit: unit.into(), target: None, meets_target: None }
    }

    pub fn at_most(mut self, limit: f64) -> Self {
        self.target = Some(format!("≤ {limit} {}", self.unit));
        self.meets_target = Some(self.value <= limit);
        self
    }

    pub fn at_least(mut self, limit: f64) -> Self {
        self.target = Some(format!("≥ {limit} {}", self.unit));
        self.meets_target = Some(self.value >= limit);
        self
    }
}

/// The result of one benchmark suite run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BenchRecord {
    pub suite: String,
    pub title: String,
    pub command: String,
    pub machine: String,
    pub date: String,
    pub metrics: Vec<Metric>,
    pub notes: Vec<String>,
}

impl BenchRecord {
    pub fn new(suite: &str, title: &str) -> Self {
        BenchRecord {
            suite: suite.into(),
            title: title.into(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            machine: machine_description(),
            date: today(),
            metrics: Vec::new(),
            notes: Vec::new(),
        }
    }
}

/// Latency statistics over repeated runs, milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub runs: usize,
}

impl Latency {
    pub fn from_samples(samples: &mut [Duration]) -> Latency {
        assert!(!samples.is_empty(), "no samples");
        samples.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let pick = |q: f64| ms(samples[((samples.len() - 1) as f64 * q).round() as usize]);
        Latency {
            p50_ms: pick(0.5),
            p99_ms: pick(0.99),
            mean_ms: samples.iter().map(|&d| ms(d)).sum::<f64>() / samples.len() as f64,
            runs: samples.len(),
        }
    }
}

/// Times `f` `runs` times after `warmup` untimed runs.
pub fn time_runs(warmup: usize, runs: usize, mut f: impl FnMut()) -> Latency {
    for _ in 0..warmup {
        f();
    }
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    Latency::from_samples(&mut samples)
}

/// "CPU model, N cores" (and the GPU when tch sees one), for the record.
pub fn machine_description() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split(':').nth(1)).map(|s| s.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    match gpu_name() {
        Some(gpu) => format!("{gpu}; {cpu}, {cores} cores"),
        None => format!("{cpu}, {cores} cores"),
    }
}

/// The first GPU's name, when libtorch sees CUDA (asked of nvidia-smi).
fn gpu_name() -> Option<String> {
    if !tch::Cuda::is_available() {
        return None;
    }
    let out = std::process::Command::new("nvidia-smi").args(["--query-gpu=name", "--format=csv,noheader"]).output().ok()?;
    String::from_utf8(out.stdout).ok()?.lines().next().map(|l| l.trim().to_string()).filter(|l| !l.is_empty())
}

/// A short directory name for this machine's results ("cpu-2core" or "gpu-<name>").
pub fn machine_slug() -> String {
    if let Some(gpu) = gpu_name() {
        return gpu.to_lowercase().split_whitespace().filter(|w| !["nvidia", "80gb", "hbm3"].contains(w)).collect::<Vec<_>>().join("-");
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    format!("cpu-{cores}core")
}

/// Today's date (UTC) as YYYY-MM-DD.
pub fn today() -> String {
    let days = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() / 86_400).unwrap_or(0) as i64;
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles() {
        let mut samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let l = Latency::from_samples(&mut samples);
        assert_eq!(l.p50_ms, 51.0);
        assert_eq!(l.p99_ms, 99.0);
        assert!((l.mean_ms - 50.5).abs() < 1e-9);
    }

    #[test]
    fn targets() {
        assert_eq!(Metric::new("t", 0.8, "ms").at_most(1.0).meets_target, Some(true));
        assert_eq!(Metric::new("r", 400.0, "MB/s").at_least(500.0).meets_target, Some(false));
        assert_eq!(today().len(), 10);
    }
}
