//! The simulator through its public interfaces: `kdseg simulate` and `kdseg render` on the command
//! line, and the `kdseg::sim` library the training code uses. Checks determinism, the geometry of
//! returns, that moving labels follow the objects' actual motion, realism bounds, the consistency of
//! poses between SemanticKITTI files, the bag and the simulator, splits, the BEV render and errors.

mod common;

use common::*;
use kdseg::bag::Bag;
use kdseg::cloud;
use kdseg::dataset::KittiSequence;
use kdseg::geometry::{pose_from_msg, transform_from_msg, Pose3};
use kdseg::messages::{Odometry, PointCloud2Ref, TfMessage};
use kdseg::sim::output::KITTI_TR;
use kdseg::sim::{self, is_moving_label, Preset, ScanStats, SequenceStats, SimConfig, Simulator, SplitManifest};
use nalgebra::{Matrix4, Point3};
use std::collections::BTreeMap;
use std::path::Path;

fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.insert(path.strip_prefix(dir).unwrap().display().to_string(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

fn simulate(args: &[&str], threads: &str) {
    let out = kdseg().args(["simulate"]).args(args).env("RAYON_NUM_THREADS", threads).output().expect("start kdseg");
    assert!(out.status.success(), "kdseg simulate {args:?} failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

fn max_abs(a: &Matrix4<f64>, b: &Matrix4<f64>) -> f64 {
    (a - b).abs().max()
}

#[test]
fn same_seed_gives_identical_files_with_any_thread_count_and_other_seeds_differ() {
    let dir = tempdir();
    let (a, b, c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
    let args = |out: &Path, bag: &Path, seed: &str| {
        vec!["--preset".to_string(), "urban".into(), "--seed".into(), seed.into(), "--scans".into(), "6".into(), "--out".into(), out.display().to_string(), "--bag".into(), bag.display().to_string(), "--odometry-noise".into()]
    };
    let run = |out: &Path, seed: &str, threads: &str| {
        let list = args(out, &out.join("bag"), seed);
        simulate(&list.iter().map(String::as_str).collect::<Vec<_>>(), threads);
    };
    run(&a, "7", "1");
    run(&b, "7", "2");
    run(&c, "8", "2");
    let (fa, fb, fc) = (files_under(&a), files_under(&b), files_under(&c));
    // 6 scans × (bin + label) + poses, calib, times + bag file and metadata
    assert_eq!(fa.len(), 6 * 2 + 3 + 2, "{:?}", fa.keys().collect::<Vec<_>>());
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (name, bytes) in &fa {
        assert!(bytes == &fb[name], "{name} differs between two runs with the same seed (1 and 2 threads)");
    }
    for name in ["sequences/00/velodyne/000003.bin", "sequences/00/labels/000003.label", "sequences/00/poses.txt", "bag/bag_0.mcap"] {
        assert!(fa[name] != fc[name], "{name} is the same for seeds 7 and 8");
    }
}

#[test]
fn moving_labels_follow_actual_motion_and_every_object_point_lies_on_its_object() {
    let config = SimConfig { preset: Preset::Urban, seed: 4, scans: 12, ..Default::default() };
    let period = config.scan_period();
    let threshold = config.moving_speed_threshold;
    let sim = Simulator::new(config).unwrap();
    let world = sim.world();
    let (mut moving_points, mut static_object_points, mut stopped_agent_points) = (0, 0, 0);
    for scan in sim.scans() {
        let scan = scan.unwrap();
        let labels = scan.cloud.label.as_ref().unwrap();
        for (i, &label) in labels.iter().enumerate() {
            let instance = (label >> 16) as u16;
            if instance == 0 {
                assert!(!is_moving_label(label), "scan {} point {i}: moving label {label} without an instance", scan.index);
                continue;
            }
            let info = world.object(instance).unwrap_or_else(|| panic!("scan {}: instance {instance} is not in the world", scan.index));
            let now = world.object_state(instance, scan.time_s).unwrap_or_else(|| panic!("instance {instance} does not exist at scan {}", scan.index));
            // the point, in the world frame, lies on the object's box
            let p = scan.lidar_pose * Point3::new(f64::from(scan.cloud.x[i]), f64::from(scan.cloud.y[i]), f64::from(scan.cloud.z[i]));
            let local = now.pose.inverse() * p;
            let margin = 0.35;
            assert!(
                local.x.abs() <= info.length / 2.0 + margin && local.y.abs() <= info.width / 2.0 + margin && local.z >= -margin && local.z <= info.height + margin,
                "scan {} point {i} (label {}) is off its {:?} {instance}: {local:?}",
                scan.index,
                label & 0xFFFF,
                info.class
            );
            let before = world.object_state(instance, scan.time_s - period);
            let travelled = before.as_ref().map(|b| (now.pose.translation.vector - b.pose.translation.vector).norm());
            if is_moving_label(label) {
                moving_points += 1;
                let travelled = travelled.unwrap_or_else(|| panic!("moving instance {instance} did not exist at the previous scan"));
                assert!(info.agent && now.moving);
                assert!(travelled > threshold * period * 0.999, "scan {}: moving instance {instance} moved only {travelled} m since the previous scan", scan.index);
            } else {
                assert!(!now.moving);
                if info.agent {
                    stopped_agent_points += 1;
                    assert!(travelled.is_none_or(|d| d <= threshold * period * 1.001), "instance {instance} moved {travelled:?} m but is labelled static");
                } else {
                    static_object_points += 1;
                    assert_eq!(travelled, Some(0.0), "parked instance {instance} moved");
                }
            }
        }
    }
    // the check is not vacuous: this scene has moving things, parked things and stopped agents
    assert!(moving_points > 500 && static_object_points > 5000 && stopped_agent_points > 100, "{moving_points} moving, {static_object_points} parked, {stopped_agent_points} stopped-agent points");
}

#[test]
fn ground_returns_lie_on_the_ground_within_noise() {
    // range noise only (no surface roughness), so the error bound is the sensor's
    let lidar = sim::LidarConfig { roughness: Some(false), ..Default::default() };
    let sim = Simulator::new(SimConfig { preset: Preset::Highway, seed: 4, scans: 3, lidar, ..Default::default() }).unwrap();
    let model = sim.lidar().model().clone();
    let scan = sim.scan(2).unwrap();
    let labels = scan.cloud.label.as_ref().unwrap();
    let mut road = 0;
    for (i, &label) in labels.iter().enumerate() {
        if label & 0xFFFF != 40 {
            continue;
        }
        let local = nalgebra::Vector3::new(f64::from(scan.cloud.x[i]), f64::from(scan.cloud.y[i]), f64::from(scan.cloud.z[i]));
        let range = local.norm();
        if range > 40.0 {
            continue;
        }
        road += 1;
        let p = scan.lidar_pose * Point3::from(local);
        // the noise is Gaussian-like but bounded at 3.5 σ; along the ray it moves the point
        // vertically by the ray's vertical component
        let sigma = model.range_noise_m + model.range_noise_per_m * range;
        let vertical = (scan.lidar_pose.rotation * local / range).z.abs();
        let error = (p.z - sim.world().ground_height(p.x, p.y)).abs();
        assert!(error < 3.5 * sigma * (vertical + 0.05) + 1e-3, "road point {i} at {range:.1} m is {error:.4} m off the ground");
    }
    assert!(road > 20_000, "{road} road points within 40 m");
}

#[test]
fn point_counts_and_moving_fractions_are_realistic() {
    let mut all = SequenceStats::default();
    // a quiet and a busy city, a motorway, a car park
    for (preset, seed) in [(Preset::Urban, 2), (Preset::Urban, 4), (Preset::Highway, 1), (Preset::Parking, 4)] {
        let sim = Simulator::new(SimConfig { preset, seed, scans: 40, ..Default::default() }).unwrap();
        let mut stats = SequenceStats::default();
        for scan in sim.scans() {
            let scan = scan.unwrap();
            let cloud = &scan.cloud;
            assert_eq!(cloud.time.as_ref().unwrap().len(), cloud.len());
            assert!(cloud.time.as_ref().unwrap().iter().all(|t| (0.0..0.1).contains(t)));
            assert!(cloud.ring.as_ref().unwrap().iter().all(|r| *r < 64));
            assert!(cloud.intensity.iter().all(|i| (0.0..=1.0).contains(i)));
            stats.add(&ScanStats::of(cloud));
        }
        // an HDL-64E gives about 120k points in a city (less where it sees sky)
        assert!(stats.points_min > 95_000 && stats.points_max < 135_000, "{preset:?}: {}", stats.describe());
        assert!(stats.moving_fraction_mean() < 0.05 && stats.moving_fraction_max < 0.3, "{preset:?}: {}", stats.describe());
        all.merge(&stats);
    }
    assert!((0.005..0.05).contains(&all.moving_fraction_mean()), "{}", all.describe());
    assert!(all.scans_without_moving > 0, "no scan without moving points:\n{}", all.describe());
    assert!(all.scans_with_moving_near as f64 > 0.3 * all.scans as f64, "too few scans with moving objects within 30 m:\n{}", all.describe());
    let report = sim::bench(&SimConfig { scans: 3, ..Default::default() }).unwrap();
    assert_eq!(report.scans, 3);
    assert!(report.scans_per_s > 0.0 && report.mean_points > 95_000.0, "{report:?}");
}

#[test]
fn kitti_sequence_reads_what_simulate_wrote() {
    let dir = tempdir();
    let root = dir.path();
    simulate(&["--preset", "parking", "--seed", "11", "--scans", "8", "--out", root.to_str().unwrap(), "--sequence", "3"], "2");
    let sequence = KittiSequence::open(root, "03").unwrap();
    assert_eq!(sequence.len(), 8);
    assert!(sequence.has_labels() && sequence.has_poses());
    let tr = kdseg::geometry::matrix_from_kitti_row(&KITTI_TR);
    assert!(max_abs(&sequence.calib, &tr) < 1e-12 && max_abs(&sequence.calib, &Matrix4::identity()) > 0.5);
    let sim = Simulator::new(SimConfig { preset: Preset::Parking, seed: 11, scans: 8, ..Default::default() }).unwrap();
    let first = sim.scan(0).unwrap().lidar_pose;
    let mut travelled = 0.0f64;
    for i in 0..8 {
        let scan = sim.scan(i).unwrap();
        let expected: Pose3 = first.inverse() * scan.lidar_pose;
        let read = sequence.lidar_pose(i).unwrap();
        assert!(max_abs(&read, &expected.to_homogeneous()) < 1e-6, "scan {i}: {read} vs {}", expected.to_homogeneous());
        travelled = travelled.max(expected.translation.vector.norm());
        let cloud = sequence.read_scan(i).unwrap();
        assert_eq!(cloud.x, scan.cloud.x);
        assert_eq!(cloud.z, scan.cloud.z);
        assert_eq!(cloud.intensity, scan.cloud.intensity);
        assert_eq!(sequence.read_labels(i, cloud.len()).unwrap().as_ref(), scan.cloud.label.as_ref());
    }
    assert!(travelled > 0.5, "the ego stood still ({travelled} m)");
    let times = std::fs::read_to_string(root.join("sequences/03/times.txt")).unwrap();
    assert_eq!(times.lines().count(), 8);
}

/// The bag's odometry and static transform give the LiDAR pose of every cloud, equal to what
/// poses.txt holds (odometry poses with --odometry-noise) and to the simulator's reported pose,
/// while the true pose differs by the drift.
#[test]
fn bag_poses_are_consistent_with_odometry_clouds_and_poses_txt() {
    let dir = tempdir();
    let (root, bag_path) = (dir.path().join("kitti"), dir.path().join("run.mcap"));
    let scans = 12;
    simulate(&["--preset", "urban", "--seed", "3", "--scans", "12", "--out", root.to_str().unwrap(), "--bag", bag_path.to_str().unwrap(), "--odometry-noise"], "2");
    let bag = Bag::open(&bag_path).unwrap();
    let static_topic = bag.topic("/tf_static").unwrap();
    assert!(static_topic.qos.is_some_and(|q| q.transient_local), "{static_topic:?}");
    let mut mount = None;
    for message in bag.messages_on(&["/tf_static"]).unwrap() {
        let tf: TfMessage = message.unwrap().decode().unwrap();
        assert_eq!((tf.transforms[0].header.frame_id.as_str(), tf.transforms[0].child_frame_id.as_str()), ("base_link", "velodyne"));
        mount = Some(transform_from_msg(&tf.transforms[0].transform));
    }
    let mount = mount.expect("a static transform");
    let mut odometry: BTreeMap<i64, Pose3> = BTreeMap::new();
    for message in bag.messages_on(&["/odom"]).unwrap() {
        let odom: Odometry = message.unwrap().decode().unwrap();
        assert_eq!((odom.header.frame_id.as_str(), odom.child_frame_id.as_str()), ("odom", "base_link"));
        odometry.insert(odom.header.stamp.to_nanos(), pose_from_msg(&odom.pose.pose));
    }
    // 50 Hz from the first scan to the end of the last sweep
    assert_eq!(odometry.len(), scans * 5 + 1);
    let stamps: Vec<i64> = odometry.keys().copied().collect();
    assert!(stamps.windows(2).all(|w| w[1] - w[0] == 20_000_000));
    let mut tf_count = 0;
    for message in bag.messages_on(&["/tf"]).unwrap() {
        let tf: TfMessage = message.unwrap().decode().unwrap();
        let t = &tf.transforms[0];
        assert_eq!(t.child_frame_id, "base_link");
        let pose = transform_from_msg(&t.transform);
        assert!((pose.translation.vector - odometry[&t.header.stamp.to_nanos()].translation.vector).norm() < 1e-12);
        tf_count += 1;
    }
    assert_eq!(tf_count, odometry.len());
    let sequence = KittiSequence::open(&root, "00").unwrap();
    let sim = Simulator::new(SimConfig { preset: Preset::Urban, seed: 3, scans, odometry: sim::OdometryConfig { noise: true, ..Default::default() }, ..Default::default() }).unwrap();
    let mut first: Option<Pose3> = None;
    let mut drift = 0.0f64;
    let mut clouds = 0;
    let mut last_log = 0;
    for (i, message) in bag.messages_on(&["/velodyne_points"]).unwrap().enumerate() {
        let message = message.unwrap();
        assert!(message.log_time > last_log);
        last_log = message.log_time;
        let msg: PointCloud2Ref = message.decode().unwrap();
        assert_eq!(msg.header.frame_id, "velodyne");
        let stamp = msg.header.stamp.to_nanos();
        assert_eq!(stamp, 1_700_000_000_000_000_000 + i as i64 * 100_000_000);
        // recorded after the sweep
        assert!(message.log_time >= stamp + 100_000_000);
        let lidar = odometry[&stamp] * mount;
        let first = *first.get_or_insert(lidar);
        let relative = first.inverse() * lidar;
        assert!(max_abs(&relative.to_homogeneous(), &sequence.lidar_pose(i).unwrap()) < 1e-6, "scan {i}");
        let scan = sim.scan(i).unwrap();
        assert!((scan.odom_pose.translation.vector - lidar.translation.vector).norm() < 1e-9);
        drift = drift.max((scan.lidar_pose.translation.vector - lidar.translation.vector).norm());
        let (decoded, _) = cloud::decode(&msg).unwrap();
        assert_eq!(decoded.x, scan.cloud.x);
        assert_eq!(decoded.label, scan.cloud.label);
        assert_eq!(decoded.time, scan.cloud.time);
        assert_eq!(decoded.ring, scan.cloud.ring);
        clouds += 1;
    }
    assert_eq!(clouds, scans);
    assert!(drift > 1e-4, "odometry noise left the poses exact");
}

#[test]
fn split_writes_sequences_from_disjoint_seeds_and_split_yaml() {
    let dir = tempdir();
    let root = dir.path();
    let out = kdseg_ok(&["simulate", "--split", "--out", root.to_str().unwrap(), "--train", "2", "--valid", "1", "--test", "1", "--scans", "2", "--seed", "40"]);
    assert!(out.contains("wrote 4 sequences"), "{out}");
    let manifest: SplitManifest = serde_yaml::from_str(&std::fs::read_to_string(root.join("split.yaml")).unwrap()).unwrap();
    assert_eq!((manifest.train.clone(), manifest.valid.clone(), manifest.test.clone()), (vec![0, 1], vec![2], vec![3]));
    let seeds: std::collections::BTreeSet<u64> = manifest.sequences.iter().map(|e| e.seed).collect();
    assert_eq!(seeds.len(), 4);
    let presets: Vec<Preset> = manifest.sequences.iter().map(|e| e.preset).collect();
    assert_eq!(presets, vec![Preset::Urban, Preset::Highway, Preset::Parking, Preset::Urban]);
    for entry in &manifest.sequences {
        let sequence = KittiSequence::open(root, &entry.sequence).unwrap();
        assert_eq!(sequence.len(), 2);
        assert!(sequence.has_labels());
    }
    // the same sequence from its own seed and preset is byte-identical
    let single = root.join("single");
    simulate(&["--preset", "highway", "--seed", "41", "--scans", "2", "--out", single.to_str().unwrap()], "2");
    assert_eq!(std::fs::read(root.join("sequences/01/velodyne/000001.bin")).unwrap(), std::fs::read(single.join("sequences/00/velodyne/000001.bin")).unwrap());
}

#[test]
fn render_draws_a_png_of_the_requested_size() {
    let dir = tempdir();
    let root = dir.path();
    simulate(&["--preset", "urban", "--seed", "1", "--scans", "3", "--out", root.to_str().unwrap()], "2");
    let png_path = root.join("scan.png");
    let out = kdseg_ok(&["render", "--dataset", root.to_str().unwrap(), "--sequence", "00", "--scan", "2", "--out", png_path.to_str().unwrap(), "--extent", "60", "--resolution", "0.2"]);
    assert!(out.contains("300×300"), "{out}");
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png_path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!((info.width, info.height, info.color_type), (300, 300, png::ColorType::Rgb));
    let colours: Vec<[u8; 3]> = pixels[..info.buffer_size()].chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect();
    let count = |rgb: [u8; 3]| colours.iter().filter(|c| **c == rgb).count();
    // dark background, grey road, red moving objects, orange parked cars
    assert!(count([0x10, 0x10, 0x14]) > 300 * 300 / 3);
    assert!(count([0x8C, 0x8C, 0x8C]) > 2000);
    assert!(count([0xFF, 0x1E, 0x1E]) > 10);
    assert!(count([0xF5, 0xA0, 0x30]) > 100);
}

#[test]
fn bad_input_is_refused_with_the_reason() {
    let dir = tempdir();
    let root = dir.path().to_str().unwrap();
    let err = kdseg_err(&["simulate", "--preset", "desert", "--out", root]);
    assert!(err.contains("unknown preset 'desert'"), "{err}");
    let err = kdseg_err(&["simulate", "--scans", "0", "--out", root]);
    assert!(err.contains("scans"), "{err}");
    let err = kdseg_err(&["simulate", "--scans", "2"]);
    assert!(err.contains("--out") && err.contains("--bag"), "{err}");
    let config = dir.path().join("sim.yaml");
    std::fs::write(&config, "lidar:\n  beams: 32\n").unwrap();
    let err = kdseg_err(&["simulate", "--config", config.to_str().unwrap(), "--out", root]);
    assert!(err.contains("beams"), "{err}");
    std::fs::write(&config, "preset: highway\nodometry:\n  rate_hz: 33\n").unwrap();
    let err = kdseg_err(&["simulate", "--config", config.to_str().unwrap(), "--out", root]);
    assert!(err.contains("odometry.rate_hz"), "{err}");
    kdseg_ok(&["simulate", "--scans", "1", "--out", root]);
    let err = kdseg_err(&["simulate", "--scans", "1", "--out", root]);
    assert!(err.contains("already exists"), "{err}");
    let err = kdseg_err(&["render", "--dataset", root, "--scan", "5", "--out", dir.path().join("x.png").to_str().unwrap()]);
    assert!(err.contains("--scan 5") && err.contains("1 scans"), "{err}");
}
