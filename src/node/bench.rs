//! `kdseg bench run node`: the node as a vehicle runs it, under a sustained LiDAR stream.
//!
//! The benchmark starts `kdseg node` as a child process with a parameters file, publishes simulated
//! HDL-64E clouds (Velodyne layout) and odometry at a fixed rate over real DDS, and measures what the
//! node adds to the engine — its work from taking a cloud to the last publish, less inference and
//! pose waiting, as the node reports it on `~/debug/node_overhead_ms` — and the node's resident
//! memory over the run. The node subscribes reliably (`node.input_qos: reliable`). The
//! simulated drive is replayed in a loop with its poses chained, so the pose stream stays continuous
//! however long the run.

use crate::bench::{pipeline::simulated_scans, BenchRecord, Latency, Metric};
use crate::cloud::encode_velodyne;
use crate::geometry::{pose_from_matrix, pose_to_msg};
use crate::messages::{self, DiagnosticArray, Float64, Header, Odometry, PoseWithCovariance, Time};
use futures::StreamExt;
use nalgebra::Matrix4;
use r2r::QosProfile;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the node benchmark runs.
#[derive(Debug, Clone)]
pub struct NodeBenchOptions {
    /// The node's parameters file (the node's own defaults otherwise apply).
    pub params_file: PathBuf,
    pub weights: PathBuf,
    /// `mos.device` of the node.
    pub device: String,
    /// Length of the stream.
    pub seconds: f64,
    pub rate_hz: f64,
    /// Memory before this point is the warm-up (libtorch and DDS allocate their pools).
    pub warm_up_s: f64,
    /// DDS domain of the benchmark, apart from other ROS 2 traffic.
    pub domain_id: u32,
}

/// Stops the child node on every way out of the benchmark.
struct NodeProcess(Child);

impl NodeProcess {
    fn interrupt(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill").arg("-INT").arg(self.0.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Resident memory of the node in MiB, from /proc.
    fn rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).ok()?;
        let kib: f64 = status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib / 1024.0)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn wall_time() -> Time {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Time::from_nanos(since_epoch.as_nanos() as i64)
}

/// Least-squares slope of `(t, y)` samples, per unit of t.
fn slope(samples: &[(f64, f64)]) -> f64 {
    let n = samples.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mt, my) = (samples.iter().map(|s| s.0).sum::<f64>() / n, samples.iter().map(|s| s.1).sum::<f64>() / n);
    let num: f64 = samples.iter().map(|(t, y)| (t - mt) * (y - my)).sum();
    let den: f64 = samples.iter().map(|(t, _)| (t - mt) * (t - mt)).sum();
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

/// Runs the node benchmark.
pub fn node_overhead(options: &NodeBenchOptions) -> Result<BenchRecord, String> {
    const SCANS: usize = 60;
    let scans = simulated_scans(SCANS, 21).map_err(|e| e.to_string())?;
    let first_inverse = scans[0].1.try_inverse().unwrap_or_else(Matrix4::identity);
    let loop_step = scans[SCANS - 1].1 * first_inverse;
    let mean_points = scans.iter().map(|s| s.0.len()).sum::<usize>() / SCANS;

    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut node = NodeProcess(
        Command::new(exe)
            .args(["node", "--ros-args", "--params-file"])
            .arg(&options.params_file)
            .args(["-p", &format!("mos.weights:={}", options.weights.display()), "-p", &format!("mos.device:={}", options.device)])
            // clouds of megabytes: best effort loses whole messages when a fragment is lost
            .args(["-p", "node.input_qos:=reliable"])
            .env("ROS_DOMAIN_ID", options.domain_id.to_string())
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting kdseg node: {e}"))?,
    );

    // this process is the driver: its own node on the same domain
    std::env::set_var("ROS_DOMAIN_ID", options.domain_id.to_string());
    let ctx = r2r::Context::create().map_err(|e| e.to_string())?;
    let mut driver = r2r::Node::create(ctx, "kdseg_bench_driver", "").map_err(|e| e.to_string())?;
    let ros = |e: r2r::Error| e.to_string();
    let clouds = driver.create_publisher_untyped("/velodyne_points", "sensor_msgs/msg/PointCloud2", QosProfile::default().keep_last(1)).map_err(ros)?;
    let odometry = driver.create_publisher_untyped("/odom", "nav_msgs/msg/Odometry", QosProfile::default().keep_last(10)).map_err(ros)?;
    let overhead_stream = driver.subscribe_raw("/kdseg/debug/node_overhead_ms", "std_msgs/msg/Float64", QosProfile::default().keep_last(100)).map_err(ros)?;
    let labelled_stream = driver.subscribe_raw("/kdseg/labelled_points", "sensor_msgs/msg/PointCloud2", QosProfile::default().keep_last(2)).map_err(ros)?;
    let diagnostics_stream = driver.subscribe_raw("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", QosProfile::default().keep_last(10)).map_err(ros)?;

    let overheads = Arc::new(Mutex::new(Vec::<f64>::new()));
    let labelled = Arc::new(Mutex::new(0usize));
    let input_counts = Arc::new(Mutex::new((0u64, 0u64, 0u64)));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().map_err(|e| e.to_string())?;
    {
        let overheads = overheads.clone();
        runtime.spawn(async move {
            let mut stream = overhead_stream;
            while let Some(bytes) = stream.next().await {
                if let (Ok(m), Ok(mut v)) = (messages::cdr::decode::<Float64>(&bytes), overheads.lock()) {
                    v.push(m.data);
                }
            }
        });
    }
    {
        let labelled = labelled.clone();
        runtime.spawn(async move {
            let mut stream = labelled_stream;
            while stream.next().await.is_some() {
                if let Ok(mut n) = labelled.lock() {
                    *n += 1;
                }
            }
        });
    }
    {
        let input_counts = input_counts.clone();
        runtime.spawn(async move {
            let mut stream = diagnostics_stream;
            while let Some(bytes) = stream.next().await {
                let Ok(array) = messages::cdr::decode::<DiagnosticArray>(&bytes) else { continue };
                for status in array.status.iter().filter(|s| s.name == "kdseg: input") {
                    let value = |key: &str| status.values.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.parse::<u64>().ok()).unwrap_or(0);
                    if let Ok(mut c) = input_counts.lock() {
                        *c = (value("received"), value("processed"), value("dropped_scans"));
                    }
                }
            }
        });
    }

    // wait for the node to load its weights and subscribe
    let ready_by = Instant::now() + Duration::from_secs(120);
    while clouds.get_inter_process_subscription_count().unwrap_or(0) == 0 {
        if Instant::now() > ready_by {
            return Err("kdseg node did not subscribe to /velodyne_points within 120 s".into());
        }
        if let Ok(Some(status)) = node.0.try_wait() {
            return Err(format!("kdseg node exited before the benchmark started ({status})"));
        }
        driver.spin_once(Duration::from_millis(50));
    }

    let period = Duration::from_secs_f64(1.0 / options.rate_hz);
    let start = Instant::now();
    let mut next = start;
    let mut published = 0usize;
    let mut memory: Vec<(f64, f64)> = Vec::new();
    let mut next_memory = start;
    let mut scratch = Vec::new();
    while start.elapsed().as_secs_f64() < options.seconds {
        let now = Instant::now();
        if now >= next {
            let (cloud, pose, _) = &scans[published % SCANS];
            // each lap of the drive continues from where the last one ended
            let lap = (published / SCANS) as u32;
            let chained = loop_step.pow(lap) * pose;
            let stamp = wall_time();
            let odom = Odometry {
                header: Header { stamp, frame_id: "odom".into() },
                child_frame_id: "velodyne".into(),
                pose: PoseWithCovariance { pose: pose_to_msg(&pose_from_matrix(&chained)), covariance: [0.0; 36] },
                ..Default::default()
            };
            if messages::cdr::encode_into(&odom, &mut scratch).is_ok() {
                let _ = odometry.publish_raw(&scratch);
            }
            let message = encode_velodyne(Header { stamp, frame_id: "velodyne".into() }, cloud);
            if messages::cdr::encode_into(&message, &mut scratch).is_ok() {
                let _ = clouds.publish_raw(&scratch);
            }
            published += 1;
            next += period;
        }
        if now >= next_memory {
            if let Some(rss) = node.rss_mib() {
                memory.push((start.elapsed().as_secs_f64(), rss));
            }
            next_memory += Duration::from_secs(1);
        }
        if let Ok(Some(status)) = node.0.try_wait() {
            return Err(format!("kdseg node exited during the benchmark ({status})"));
        }
        driver.spin_once(next.saturating_duration_since(Instant::now()).min(Duration::from_millis(5)));
    }
    let elapsed = start.elapsed().as_secs_f64();
    // let the last outputs arrive, then stop the node as a user would
    let settle = Instant::now();
    while settle.elapsed() < Duration::from_secs(3) {
        driver.spin_once(Duration::from_millis(20));
    }
    let exit = node.interrupt();
    runtime.shutdown_timeout(Duration::from_millis(200));

    let mut samples: Vec<Duration> = overheads.lock().map_err(|e| e.to_string())?.iter().map(|&ms| Duration::from_secs_f64(ms.max(0.0) * 1e-3)).collect();
    if samples.is_empty() {
        return Err("the node reported no overhead samples (did it label any scan?)".into());
    }
    let overhead = Latency::from_samples(&mut samples);
    let labelled = *labelled.lock().map_err(|e| e.to_string())?;
    let (received, processed, dropped) = *input_counts.lock().map_err(|e| e.to_string())?;
    // resident memory swings by hundreds of MiB within a scan (libtorch's activations come and go),
    // so growth compares the medians of the first and the last minute after the warm-up
    let steady: Vec<(f64, f64)> = memory.iter().copied().filter(|(t, _)| *t >= options.warm_up_s).collect();
    let window = 60.0_f64.min(options.seconds / 4.0);
    let median_between = |from: f64, to: f64| {
        let mut v: Vec<f64> = steady.iter().filter(|(t, _)| *t >= from && *t <= to).map(|s| s.1).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let baseline = median_between(options.warm_up_s, options.warm_up_s + window);
    let last = median_between(elapsed - window, elapsed);
    let peak = steady.iter().map(|s| s.1).fold(f64::NAN, f64::max);

    let mut record = BenchRecord::new(
        "node",
        &format!("ROS 2 node under a {:.0} Hz stream of {mean_points}-point clouds for {:.0} s ({})", options.rate_hz, options.seconds, options.device),
    );
    record.metrics.push(Metric::new("node overhead (decode, pose, encode, publish: taking the cloud → last publish, less inference), p50", overhead.p50_ms, "ms").at_most(2.0));
    record.metrics.push(Metric::new("node overhead, p99", overhead.p99_ms, "ms").at_most(2.0));
    record.metrics.push(Metric::new("clouds published", published as f64 / elapsed, "Hz").at_least(options.rate_hz * 0.98));
    record.metrics.push(Metric::new("clouds taken and decoded by the node's worker", received as f64, "clouds"));
    record.metrics.push(Metric::new("clouds labelled (labelled_points received)", labelled as f64, "clouds"));
    record.metrics.push(Metric::new("clouds dropped while busy (the newest wins)", dropped as f64, "clouds"));
    record.metrics.push(Metric::new(&format!("resident memory, median of the {window:.0} s after the {:.0} s warm-up", options.warm_up_s), baseline, "MiB"));
    record.metrics.push(Metric::new(&format!("resident memory, median of the last {window:.0} s"), last, "MiB"));
    record.metrics.push(Metric::new("resident memory, peak after the warm-up", peak, "MiB"));
    record.metrics.push(Metric::new("memory growth after the warm-up", last - baseline, "MiB").at_most(16.0));
    record.metrics.push(Metric::new("memory trend after the warm-up (least squares)", slope(&steady) * 60.0, "MiB/min"));
    record.notes.push(format!(
        "{published} clouds published over {elapsed:.0} s with odometry; the node's worker took {received} (the others were replaced by newer ones while it was busy) and labelled {processed}; {} overhead samples; parameters {}, weights {}",
        overhead.runs,
        options.params_file.display(),
        options.weights.display()
    ));
    let minutes: Vec<String> = (0..(elapsed / 60.0).ceil() as usize)
        .filter_map(|m| {
            let mut v: Vec<f64> = memory.iter().filter(|(t, _)| (*t / 60.0) as usize == m).map(|s| s.1).collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).map(|x| format!("{x:.0}"))
        })
        .collect();
    record.notes.push(format!("resident memory per minute (median, MiB): {}", minutes.join(", ")));
    record.notes.push(format!(
        "Fast DDS publication mode of the node: {}",
        std::env::var("RMW_FASTRTPS_PUBLICATION_MODE").unwrap_or_else(|_| "ASYNCHRONOUS (the node's default)".into())
    ));
    record.notes.push(format!(
        "the node exited on SIGINT {}",
        match exit {
            Some(status) if status.success() => "cleanly".to_string(),
            Some(status) => format!("with {status}"),
            None => "only after a kill (it did not stop within 10 s)".to_string(),
        }
    ));
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::slope;

    #[test]
    fn slope_of_a_line() {
        let samples: Vec<(f64, f64)> = (0..10).map(|i| (i as f64, 3.0 + 0.5 * i as f64)).collect();
        assert!((slope(&samples) - 0.5).abs() < 1e-12);
        assert_eq!(slope(&samples[..1]), 0.0);
    }
}
