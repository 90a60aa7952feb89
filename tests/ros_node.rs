//! The ROS 2 node over Fast DDS, against a real rclpy peer (`tests/python/node_harness.py`).
//!
//! A simulated drive (exact labels in the clouds' `label` field) is written to a bag; the harness
//! publishes it scan by scan as a driver and an odometry source would, and collects what the node
//! publishes. The node must answer every scan with a labelled cloud of the same header and size, give
//! the same labels as `kdseg replay` of the same bag (the node is a thin layer over the library), count
//! a malformed cloud instead of dying, report diagnostics, follow `/clock` under `use_sim_time`, take
//! poses from `/tf`, and exit cleanly on SIGINT.
#![cfg(feature = "ros")]

mod common;

use common::*;
use kdseg::bag::Bag;
use kdseg::cloud::decode;
use kdseg::messages::PointCloud2Ref;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A drive with traffic (seed 1018 is test sequence 18 of RESULTS.md, unseen in training).
fn simulated_bag(dir: &Path, scans: usize) -> std::path::PathBuf {
    let bag = dir.join("drive.mcap");
    kdseg_ok(&["simulate", "--preset", "urban", "--seed", "1018", "--scans", &scans.to_string(), "--bag", bag.to_str().unwrap()]);
    bag
}

/// A DDS domain of its own for each test, so that tests running side by side do not hear each other.
fn domain(case: u32) -> String {
    (10 + (std::process::id() % 40) * 4 + case).to_string()
}

struct Node {
    child: Child,
    log: std::path::PathBuf,
}

impl Node {
    fn start(dir: &Path, domain: &str, params: &[&str]) -> Node {
        let log = dir.join(format!("node-{domain}.log"));
        let mut args = vec!["node", "--ros-args", "--params-file", "config/kdseg.yaml", "-p", "node.input_qos:=reliable", "-p", "mos.device:=cpu"];
        for p in params {
            args.extend(["-p", p]);
        }
        let child = kdseg()
            .args(&args)
            .current_dir(repo())
            .env("ROS_DOMAIN_ID", domain)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start kdseg node");
        Node { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGINT, then the exit status within `timeout`.
    fn interrupt(mut self, timeout: Duration) -> std::process::ExitStatus {
        let status = Command::new("kill").args(["-INT", &self.child.id().to_string()]).status().expect("kill");
        assert!(status.success());
        let end = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!("the node did not stop within {timeout:?} of SIGINT; its log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn harness(python: &Path, domain: &str, bag: &Path, args: &[&str], node: &Node) -> serde_json::Value {
    let out = Command::new(python)
        .arg(python_script("node_harness.py"))
        .arg(bag)
        .args(args)
        .env("ROS_DOMAIN_ID", domain)
        .output()
        .expect("start the rclpy harness");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|_| panic!("harness output is not a report:\n{stdout}\n{}\nnode log:\n{}", String::from_utf8_lossy(&out.stderr), node.log()));
    assert!(out.status.success() && report.get("error").is_none(), "harness failed: {report}\nnode log:\n{}", node.log());
    report
}

/// Per scan, what `kdseg replay` of the same bag published: (tp, fp, fn) of the moving label against
/// the ground truth, or `None` while the labels are "unknown" (motion history too short). This is what
/// the harness counts on the node's output, so the two must agree exactly.
fn replayed_counts(dir: &Path, bag: &Path, extra: &[&str]) -> Vec<Option<[u64; 3]>> {
    let out_bag = dir.join(format!("replayed{}.mcap", extra.len()));
    let mut args = vec!["replay", bag.to_str().unwrap(), "--out", out_bag.to_str().unwrap(), "--device", "cpu", "--config", "config/kdseg.yaml"];
    args.extend(extra);
    let out = kdseg().args(&args).current_dir(repo()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let replayed = Bag::open(&out_bag).unwrap();
    let mut truth = std::collections::HashMap::new();
    let mut counts = Vec::new();
    for message in replayed.messages_on(&["/velodyne_points", "/kdseg/labelled_points"]).unwrap() {
        let message = message.unwrap();
        let msg: PointCloud2Ref = message.decode().unwrap();
        let stamp = (msg.header.stamp.sec as i64, msg.header.stamp.nanosec);
        let labels = decode(&msg).unwrap().0.label.expect("a label field");
        if &*message.topic == "/velodyne_points" {
            truth.insert(stamp, labels);
            continue;
        }
        let gt = truth.get(&stamp).expect("the input precedes its labelled cloud");
        if labels.iter().all(|&l| l == 0) {
            counts.push(None);
            continue;
        }
        let mut c = [0u64; 3];
        for (&p, &t) in labels.iter().zip(gt) {
            let t = t & 0xFFFF;
            if t <= 1 {
                continue;
            }
            match (p == 251, (251..=259).contains(&t)) {
                (true, true) => c[0] += 1,
                (true, false) => c[1] += 1,
                (false, true) => c[2] += 1,
                _ => {}
            }
        }
        counts.push(Some(c));
    }
    counts
}

fn node_counts(report: &serde_json::Value) -> Vec<Option<[u64; 3]>> {
    report["per_scan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_array().map(|c| [as_u64(&c[0]), as_u64(&c[1]), as_u64(&c[2])]))
        .collect()
}

fn as_u64(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[test]
fn node_labels_every_scan_like_replay_and_survives_a_malformed_cloud() {
    let Some(python) = python() else { return };
    let dir = tempdir();
    let scans = 16;
    let bag = simulated_bag(dir.path(), scans);
    let expected = replayed_counts(dir.path(), &bag, &[]);
    let found: u64 = expected.iter().flatten().map(|c| c[0]).sum();
    assert!(found > 10_000, "the drive has moving points the network finds: {expected:?}");

    let domain = domain(0);
    let node = Node::start(dir.path(), &domain, &[]);
    let report = harness(&python, &domain, &bag, &["--poses", "odometry", "--malformed-at", "5", "--timeout", "60"], &node);

    // one labelled cloud per scan, same header and size
    assert_eq!(as_u64(&report["received"]), scans as u64, "{report}");
    assert_eq!(report["missing"].as_array().unwrap().len(), 0, "{report}");
    assert_eq!(as_u64(&report["header_mismatch"]), 0);
    assert_eq!(as_u64(&report["point_count_mismatch"]), 0);
    // causal motion features label from the 10th scan on
    assert!(as_u64(&report["labels_checked"]) >= scans as u64 - 10, "{report}");
    // the same labels as the library's replay of the same bag, scan by scan
    assert_eq!(node_counts(&report), expected, "node's (tp, fp, fn) per scan against replay's");
    // optional outputs are served to subscribers, with consistent sizes
    assert!(as_u64(&report["point_labels"]) >= scans as u64 - 1, "{report}");
    assert_eq!(report["point_labels_sizes_ok"], true);
    assert!(as_u64(&report["moving_clouds"]) >= 1);
    assert!(report["processing_ms"].as_array().unwrap().iter().all(|v| v.as_f64().is_some_and(|ms| ms > 0.0)));
    // the malformed cloud was counted, not fatal; diagnostics say what happened
    let diag = &report["diagnostics"];
    assert_eq!(diag["kdseg: input/malformed_messages"], "1", "{diag}");
    assert_eq!(diag["kdseg: input/processed"], scans.to_string().as_str(), "{diag}");
    assert_eq!(diag["kdseg: input/dropped_scans"], "0", "{diag}");
    assert!(diag.as_object().unwrap().keys().any(|k| k.ends_with("/device")), "{diag}");
    // what the node adds around the engine (decode, pose, encoding, publishing) is measured
    let overhead: f64 = diag["kdseg: processing time/max_node_overhead_ms"].as_str().and_then(|v| v.parse().ok()).unwrap_or(-1.0);
    assert!(overhead > 0.0 && overhead < 1000.0, "{diag}");

    let status = node.interrupt(Duration::from_secs(15));
    assert!(status.success(), "the node exits cleanly on SIGINT: {status}");
}

#[test]
fn node_follows_sim_time_and_tf_poses() {
    let Some(python) = python() else { return };
    let dir = tempdir();
    let scans = 12;
    let bag = simulated_bag(dir.path(), scans);
    let expected = replayed_counts(dir.path(), &bag, &["--tf"]);

    let domain = domain(1);
    let node = Node::start(dir.path(), &domain, &["pose.source:=tf", "use_sim_time:=true"]);
    let report = harness(&python, &domain, &bag, &["--poses", "tf", "--sim-time", "--timeout", "60"], &node);
    assert_eq!(as_u64(&report["received"]), scans as u64, "{report}");
    assert_eq!(node_counts(&report), expected, "node's (tp, fp, fn) per scan against replay's, poses from /tf");
    // the harness's clock stands 1 ms after each scan's stamp while the node works, so the latency in
    // sim time is about 1 ms; under wall time it would be the age of the simulated stamps
    let latency: Vec<f64> = report["latency_ms"].as_array().unwrap().iter().filter_map(|v| v.as_f64()).collect();
    assert!(!latency.is_empty(), "{report}");
    assert!(latency.iter().all(|&ms| (0.0..50.0).contains(&ms)), "latency under sim time: {latency:?}");
    let status = node.interrupt(Duration::from_secs(15));
    assert!(status.success(), "{status}");
}

#[test]
fn node_refuses_a_bad_parameter_by_name() {
    let dir = tempdir();
    let mut node = Node::start(dir.path(), &domain(2), &["mos.precision:=fp12"]);
    let end = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = node.child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < end, "the node kept running with mos.precision fp12");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    let log = node.log();
    assert!(log.contains("precision") && log.contains("fp12"), "{log}");
}
