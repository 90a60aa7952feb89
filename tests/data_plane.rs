//! The data plane through its public interfaces: PointCloud2 layouts of real drivers, bags written
//! and read by other tools, SemanticKITTI sequences, conversions, the `kdseg bag` CLI, and every class
//! of bad input naming what is wrong.

mod common;

use common::*;
use kdseg::bag::{Bag, BagWriter, Qos, WriterOptions};
use kdseg::cloud::{self, pcd, CloudError, FieldMapping, PointCloud};
use kdseg::dataset::semantic_kitti::{self, KittiSequence};
use kdseg::messages::{self, Header, Odometry, PointCloud2, PointCloud2Ref, PointField, TfMessage, Time};
use std::path::Path;

fn field(name: &str, offset: u32, datatype: u8) -> PointField {
    PointField { name: name.into(), offset, datatype, count: 1 }
}

fn raw_cloud(fields: Vec<PointField>, point_step: u32, points: usize, big_endian: bool, fill: impl Fn(usize, &mut [u8])) -> PointCloud2 {
    let mut data = vec![0u8; points * point_step as usize];
    for (i, p) in data.chunks_exact_mut(point_step as usize).enumerate() {
        fill(i, p);
    }
    PointCloud2 {
        header: Header { stamp: Time { sec: 100, nanosec: 0 }, frame_id: "sensor".into() },
        height: 1,
        width: points as u32,
        fields,
        is_bigendian: big_endian,
        point_step,
        row_step: points as u32 * point_step,
        data,
        is_dense: true,
    }
}

#[test]
fn velodyne_22_byte_layout_with_unaligned_time() {
    let msg = raw_cloud(
        vec![field("x", 0, 7), field("y", 4, 7), field("z", 8, 7), field("intensity", 12, 7), field("ring", 16, 4), field("time", 18, 7)],
        22,
        3,
        false,
        |i, p| {
            p[0..4].copy_from_slice(&(i as f32 + 0.5).to_le_bytes());
            p[4..8].copy_from_slice(&(-(i as f32)).to_le_bytes());
            p[8..12].copy_from_slice(&1.25f32.to_le_bytes());
            p[12..16].copy_from_slice(&(10.0 * i as f32).to_le_bytes());
            p[16..18].copy_from_slice(&(i as u16 + 3).to_le_bytes());
            p[18..22].copy_from_slice(&(0.01 * i as f32).to_le_bytes());
        },
    );
    // through CDR as on the wire, decoding the cloud from the borrowed buffer
    let bytes = messages::encode(&msg).unwrap();
    let view: PointCloud2Ref = messages::decode(&bytes).unwrap();
    let (c, report) = cloud::decode(&view).unwrap();
    assert_eq!(report.total, 3);
    assert_eq!(c.x, vec![0.5, 1.5, 2.5]);
    assert_eq!(c.y, vec![0.0, -1.0, -2.0]);
    assert_eq!(c.intensity, vec![0.0, 10.0, 20.0]);
    assert_eq!(c.ring.as_deref(), Some(&[3u16, 4, 5][..]));
    assert_eq!(c.time.as_deref(), Some(&[0.0f32, 0.01, 0.02][..]));
}

#[test]
fn ouster_layout_with_padding_and_nanosecond_time() {
    let msg = raw_cloud(
        vec![field("x", 0, 7), field("y", 4, 7), field("z", 8, 7), field("intensity", 16, 7), field("t", 20, 6), field("reflectivity", 24, 4), field("ring", 26, 4), field("ambient", 28, 4), field("range", 32, 6)],
        48,
        2,
        false,
        |i, p| {
            p[0..4].copy_from_slice(&(i as f32).to_le_bytes());
            p[16..20].copy_from_slice(&77.0f32.to_le_bytes());
            p[20..24].copy_from_slice(&(50_000_000u32 * i as u32).to_le_bytes());
            p[26..28].copy_from_slice(&(100u16 + i as u16).to_le_bytes());
        },
    );
    let (c, _) = cloud::decode(&msg).unwrap();
    assert_eq!(c.intensity, vec![77.0, 77.0]);
    assert_eq!(c.time.as_deref(), Some(&[0.0f32, 0.05][..]));
    assert_eq!(c.ring.as_deref(), Some(&[100u16, 101][..]));
}

#[test]
fn big_endian_float64_coordinates() {
    let msg = raw_cloud(vec![field("x", 0, 8), field("y", 8, 8), field("z", 16, 8), field("intensity", 24, 2)], 25, 2, true, |i, p| {
        p[0..8].copy_from_slice(&(1.0 + i as f64).to_be_bytes());
        p[8..16].copy_from_slice(&(-2.0f64).to_be_bytes());
        p[16..24].copy_from_slice(&(0.125f64).to_be_bytes());
        p[24] = 200;
    });
    let (c, _) = cloud::decode(&msg).unwrap();
    assert_eq!(c.x, vec![1.0, 2.0]);
    assert_eq!(c.y, vec![-2.0, -2.0]);
    assert_eq!(c.z, vec![0.125, 0.125]);
    assert_eq!(c.intensity, vec![200.0, 200.0]);
}

#[test]
fn organised_cloud_with_row_padding() {
    // height 2, width 2, 16-byte points, rows padded to 40 bytes
    let mut msg = raw_cloud(vec![field("x", 0, 7), field("y", 4, 7), field("z", 8, 7)], 16, 0, false, |_, _| {});
    msg.height = 2;
    msg.width = 2;
    msg.row_step = 40;
    msg.data = vec![0u8; 80];
    for r in 0..2 {
        for c in 0..2 {
            let o = r * 40 + c * 16;
            msg.data[o..o + 4].copy_from_slice(&((10 * r + c) as f32).to_le_bytes());
        }
    }
    let (c, report) = cloud::decode(&msg).unwrap();
    assert_eq!(report.total, 4);
    assert_eq!(c.x, vec![0.0, 1.0, 10.0, 11.0]);
}

#[test]
fn radar_layouts_map_fields_by_configuration() {
    // VoD-style radar: x, y, z, RCS, v_r, v_r_compensated, time
    let names = ["x", "y", "z", "RCS", "v_r", "v_r_compensated", "time"];
    let fields = names.iter().enumerate().map(|(k, n)| field(n, 4 * k as u32, 7)).collect();
    let msg = raw_cloud(fields, 28, 2, false, |i, p| {
        for k in 0..7 {
            p[4 * k..4 * k + 4].copy_from_slice(&((10 * k + i) as f32).to_le_bytes());
        }
    });
    let (c, _) = cloud::decode(&msg).unwrap();
    assert_eq!(c.rcs.as_deref(), Some(&[30.0f32, 31.0][..]));
    assert_eq!(c.radial_velocity.as_deref(), Some(&[40.0f32, 41.0][..]));
    assert_eq!(c.radial_velocity_compensated.as_deref(), Some(&[50.0f32, 51.0][..]));
    // a driver that calls it "doppler": configure the name
    let mut renamed = msg.clone();
    renamed.fields[4].name = "doppler".into();
    assert_eq!(cloud::decode(&renamed).unwrap().0.radial_velocity, None);
    let mapping = FieldMapping { radial_velocity: vec!["doppler".into()], ..Default::default() };
    assert_eq!(cloud::decode_with(&renamed, &mapping).unwrap().0.radial_velocity.as_deref(), Some(&[40.0f32, 41.0][..]));
}

/// A real Continental ARS548 detection list (TIER IV Nebula), packed in the community driver's
/// PointCloud2 layout: x, y, z, v, r (f32), RCS (int8 at 20), azimuth (f32, unaligned at 21), elevation.
#[test]
fn ars548_real_detections_in_packed_layout() {
    let Some(shared) = shared() else { return };
    let text = std::fs::read_to_string(shared.join("data/nebula/continental-ars548-detections.yaml")).unwrap();
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let detections = doc["detections"].as_sequence().unwrap();
    assert_eq!(detections.len(), 308);
    let get = |d: &serde_yaml::Value, k: &str| d[k].as_f64().unwrap();
    let fields = vec![field("x", 0, 7), field("y", 4, 7), field("z", 8, 7), field("v", 12, 7), field("r", 16, 7), field("RCS", 20, 1), field("azimuth", 21, 7), field("elevation", 25, 7)];
    let msg = raw_cloud(fields, 29, detections.len(), false, |i, p| {
        let d = &detections[i];
        let (az, el, r) = (get(d, "azimuth_angle"), get(d, "elevation_angle"), get(d, "range"));
        let xyz = [r * el.cos() * az.cos(), r * el.cos() * az.sin(), r * el.sin()];
        for (k, v) in xyz.iter().enumerate() {
            p[4 * k..4 * k + 4].copy_from_slice(&(*v as f32).to_le_bytes());
        }
        p[12..16].copy_from_slice(&(get(d, "range_rate") as f32).to_le_bytes());
        p[16..20].copy_from_slice(&(r as f32).to_le_bytes());
        p[20] = (get(d, "rcs") as i8) as u8;
        p[21..25].copy_from_slice(&(az as f32).to_le_bytes());
        p[25..29].copy_from_slice(&(el as f32).to_le_bytes());
    });
    let (c, report) = cloud::decode(&msg).unwrap();
    assert_eq!(report.total, 308);
    let v = c.radial_velocity.as_ref().unwrap();
    let rcs = c.rcs.as_ref().unwrap();
    for (i, d) in detections.iter().enumerate() {
        assert!((v[i] as f64 - get(d, "range_rate")).abs() < 1e-4);
        assert_eq!(rcs[i], get(d, "rcs") as f32, "RCS is a signed byte");
    }
    assert!(rcs.iter().any(|&r| r < 0.0), "the capture has negative RCS values");
}

/// Real TIER IV Nebula scans (PCD): the Autoware XYZIRCAEDT layout with uint8 intensity and uint32
/// nanosecond time, and plain XYZ scans of other sensors.
#[test]
fn nebula_real_scans_decode_with_exact_counts() {
    let Some(shared) = shared() else { return };
    let dir = shared.join("data/nebula");
    let vlp16 = pcd::read(&dir.join("velodyne-vlp16.pcd"), 10_000_000).unwrap();
    assert_eq!(vlp16.point_step, 32, "XYZIRCAEDT is 32 bytes");
    assert_eq!(vlp16.fields.iter().find(|f| f.name == "intensity").unwrap().datatype, 2);
    let (c, report) = cloud::decode(&vlp16).unwrap();
    assert_eq!(report.total, 14_831);
    assert!(c.intensity.iter().all(|v| v.fract() == 0.0 && (0.0..=255.0).contains(v)));
    let t = c.time.as_ref().unwrap();
    assert!(t.iter().all(|v| (0.0..0.2).contains(v)), "u32 ns time becomes seconds within one sweep");
    assert!(c.ring.as_ref().unwrap().iter().all(|&r| r < 16), "channel is the ring of a VLP-16");
    for (file, n) in [("velodyne-vls128.pcd", 208_680), ("hesai-pandar64.pcd", 93_591)] {
        let msg = pcd::read(&dir.join(file), 10_000_000).unwrap();
        let (c, report) = cloud::decode(&msg).unwrap();
        assert_eq!(report.total, n, "{file}");
        assert_eq!(c.len() + report.dropped_nonfinite, n);
        assert!(c.intensity.iter().all(|&v| v == 0.0), "no intensity field in {file}");
    }
}

#[test]
fn labelled_output_layout_is_what_rviz_colours() {
    let c = PointCloud::from_xyzi(vec![1.0, 2.0], vec![0.0, 0.0], vec![0.5, 0.5], vec![3.0, 4.0]);
    let msg = cloud::encode_labelled(Header::default(), &c, &[9, 251], &[0.1, 0.9]);
    let names: Vec<(&str, u32, u8)> = msg.fields.iter().map(|f| (f.name.as_str(), f.offset, f.datatype)).collect();
    assert_eq!(names, vec![("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("intensity", 12, 7), ("label", 16, 6), ("score", 20, 7), ("rgb", 24, 6)]);
    assert_eq!(msg.point_step, 28);
    let (back, _) = cloud::decode(&msg).unwrap();
    assert_eq!(back.label.as_deref(), Some(&[9u32, 251][..]));
    let rgb = u32::from_le_bytes(msg.data[28 + 24..28 + 28].try_into().unwrap());
    assert_eq!(rgb, cloud::label_color(251));
    assert_ne!(cloud::label_color(9), cloud::label_color(251));
}

#[test]
fn malformed_clouds_name_what_is_wrong() {
    let good = raw_cloud(vec![field("x", 0, 7), field("y", 4, 7), field("z", 8, 7)], 12, 4, false, |_, _| {});
    let mut short = good.clone();
    short.data.truncate(40);
    assert_eq!(cloud::decode(&short).unwrap_err(), CloudError::DataTooShort { len: 40, height: 1, row_step: 48, needed: 48 });
    let mut step = good.clone();
    step.point_step = 10;
    step.row_step = 40;
    let err = cloud::decode(&step).unwrap_err();
    assert!(matches!(&err, CloudError::FieldOutsidePoint { field, end: 12, point_step: 10 } if field == "z"), "{err}");
    let mut datatype = good.clone();
    datatype.fields[1].datatype = 9;
    assert!(cloud::decode(&datatype).unwrap_err().to_string().contains("field 'y' has unknown datatype 9"));
    let mut missing = good.clone();
    missing.fields.remove(2);
    let err = cloud::decode(&missing).unwrap_err().to_string();
    assert!(err.contains("field 'z' is missing") && err.contains("x, y"), "{err}");
    let mut huge = good.clone();
    huge.height = 1 << 20;
    huge.width = 1 << 20;
    assert!(matches!(cloud::decode(&huge).unwrap_err(), CloudError::TooManyPoints { .. }));
    let mut rows = good.clone();
    rows.row_step = 20;
    assert!(matches!(cloud::decode(&rows).unwrap_err(), CloudError::RowStepTooSmall { .. }));
    // non-finite points are dropped and counted, not an error
    let nan = raw_cloud(vec![field("x", 0, 7), field("y", 4, 7), field("z", 8, 7)], 12, 4, false, |i, p| {
        let x = match i {
            1 => f32::NAN,
            2 => f32::INFINITY,
            _ => i as f32,
        };
        p[0..4].copy_from_slice(&x.to_le_bytes());
    });
    let (c, report) = cloud::decode(&nan).unwrap();
    assert_eq!(report.dropped_nonfinite, 2);
    assert_eq!(c.x, vec![0.0, 3.0]);
    assert_eq!(c.source_index.as_deref(), Some(&[0u32, 3][..]));
    assert_eq!(c.scatter_to_source(&[7u16, 8], 0), vec![7, 0, 0, 8]);
    // an empty cloud is fine
    let empty = raw_cloud(vec![field("x", 0, 7), field("y", 4, 7), field("z", 8, 7)], 12, 0, false, |_, _| {});
    assert!(cloud::decode(&empty).unwrap().0.is_empty());
}

#[test]
fn truncated_cdr_in_a_bag_names_topic_and_index() {
    let dir = tempdir();
    let path = dir.path().join("bad.mcap");
    {
        let mut w = BagWriter::create(&path, WriterOptions::default()).unwrap();
        let (name, definition, hash) = ("sensor_msgs/msg/PointCloud2", messages::schema::definition_by_name("sensor_msgs/msg/PointCloud2").unwrap(), "");
        let topic = w.add_topic_raw("/points", name, &definition.0, hash, Qos::SENSOR_DATA).unwrap();
        let cloud = raw_cloud(vec![field("x", 0, 7), field("y", 4, 7), field("z", 8, 7)], 12, 10, false, |_, _| {});
        let bytes = messages::encode(&cloud).unwrap();
        w.write_raw(topic, 1, &bytes).unwrap();
        w.write_raw(topic, 2, &bytes[..bytes.len() - 30]).unwrap();
        w.finish().unwrap();
    }
    let bag = Bag::open(&path).unwrap();
    let messages: Vec<_> = bag.messages().unwrap().map(|m| m.unwrap()).collect();
    assert!(messages[0].decode::<PointCloud2Ref>().is_ok());
    let err = messages[1].decode::<PointCloud2Ref>().unwrap_err().to_string();
    assert!(err.contains("topic /points, message #1") && err.contains("byte offset") && err.contains("truncated"), "{err}");
}

/// Bags written by Python rosbags (MCAP v9, sqlite3 v8) and by mcap_ros2 (bare MCAP, zstd chunks) read
/// in log-time order with every message's content intact.
#[test]
fn bags_from_other_tools_read_in_order() {
    let Some(python) = python() else { return };
    let dir = tempdir();
    run_python(&python, "bag_tools.py", &["write", dir.path().to_str().unwrap()]);
    let expected: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(dir.path().join("expected.json")).unwrap()).unwrap();
    for name in ["rosbags_mcap_v9", "rosbags_sqlite_v8", "mcap_ros2.mcap"] {
        let bag = Bag::open(dir.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let counts: Vec<(String, u64)> = bag.topics().iter().map(|t| (t.name.clone(), t.message_count)).collect();
        assert!(counts.contains(&("/velodyne_points".to_string(), 3)) && counts.contains(&("/odom".to_string(), 6)), "{name}: {counts:?}");
        if name != "mcap_ros2.mcap" {
            let qos = bag.topic("/velodyne_points").unwrap().qos;
            assert_eq!(qos, Some(Qos { reliable: false, transient_local: false, depth: 5 }), "{name}: offered QoS");
        }
        let messages: Vec<_> = bag.messages().unwrap().map(|m| m.unwrap()).collect();
        assert_eq!(messages.len(), expected.len(), "{name}");
        for (m, e) in messages.iter().zip(&expected) {
            assert_eq!(*m.topic, *e["topic"].as_str().unwrap(), "{name}: order");
            assert_eq!(m.log_time, e["log_time"].as_i64().unwrap(), "{name}");
            match &*m.type_name {
                "sensor_msgs/msg/PointCloud2" => {
                    let msg: PointCloud2Ref = m.decode().unwrap();
                    let (c, _) = cloud::decode(&msg).unwrap();
                    assert_eq!(c.len() as u64, e["points"].as_u64().unwrap());
                    let sum = |v: &[f32]| v.iter().map(|&x| x as f64).sum::<f64>();
                    assert!(approx(sum(&c.x), e["sum_x"].as_f64().unwrap(), 1e-9), "{name} {}", m.topic);
                    assert!(approx(sum(&c.z), e["sum_z"].as_f64().unwrap(), 1e-9));
                    assert!(approx(sum(&c.intensity), e["sum_intensity"].as_f64().unwrap(), 1e-9));
                    assert!(approx(sum(c.time.as_ref().unwrap()), e["sum_time_s"].as_f64().unwrap(), 1e-6));
                    let ring: u64 = c.ring.as_ref().unwrap().iter().map(|&r| r as u64).sum();
                    assert_eq!(ring, e["sum_ring"].as_u64().unwrap());
                }
                "nav_msgs/msg/Odometry" => {
                    let odom: Odometry = m.decode().unwrap();
                    assert_eq!(odom.pose.pose.position.x, e["x"].as_f64().unwrap());
                    assert_eq!(odom.pose.pose.orientation.z, e["qz"].as_f64().unwrap());
                }
                "tf2_msgs/msg/TFMessage" => {
                    let tf: TfMessage = m.decode().unwrap();
                    assert_eq!(tf.transforms[0].transform.translation.x, e["x"].as_f64().unwrap());
                }
                other => panic!("unexpected type {other}"),
            }
        }
        // topic filter keeps the order and skips the rest
        let clouds: Vec<_> = bag.messages_on(&["/ouster/points"]).unwrap().map(|m| m.unwrap()).collect();
        assert_eq!(clouds.len(), 3);
        assert!(clouds.windows(2).all(|w| w[0].log_time <= w[1].log_time));
        assert_eq!(clouds[2].index, 2);
    }
}

/// A SemanticKITTI sequence with labels, non-identity calibration and camera-frame poses.
fn small_sequence(root: &Path, scans: usize) -> Vec<PointCloud> {
    let dir = root.join("sequences/04");
    let tr = semantic_kitti::parse_calib("Tr: 4.276802385584e-04 -9.999672484946e-01 -8.084491683471e-03 -1.198459927713e-02 -7.210626507497e-03 8.081198471645e-03 -9.999413164504e-01 -5.403984729748e-02 9.999738645903e-01 4.859485810390e-04 -7.206933692422e-03 -2.921968648686e-01", Path::new("calib.txt")).unwrap();
    let mut lidar = Vec::new();
    let mut clouds = Vec::new();
    for i in 0..scans {
        let n = 500 + 10 * i;
        let f = |k: usize, s: f32| (0..n).map(|j| ((j * 7 + k * 13 + i) % 97) as f32 * s - 20.0).collect::<Vec<_>>();
        let mut c = PointCloud::from_xyzi(f(0, 0.4), f(1, 0.4), f(2, 0.05), f(3, 0.01));
        c.label = Some((0..n).map(|j| if j % 10 == 0 { 251 | (3 << 16) } else { 40 }).collect());
        semantic_kitti::write_bin(&dir.join(format!("velodyne/{i:06}.bin")), &c).unwrap();
        semantic_kitti::write_label_file(&dir.join(format!("labels/{i:06}.label")), c.label.as_ref().unwrap()).unwrap();
        lidar.push(nalgebra::Isometry3::new(nalgebra::Vector3::new(0.9 * i as f64, 0.1 * i as f64, 0.0), nalgebra::Vector3::new(0.0, 0.0, 0.01 * i as f64)).to_homogeneous());
        clouds.push(c);
    }
    semantic_kitti::write_calib(&dir.join("calib.txt"), &tr).unwrap();
    let offset = nalgebra::Isometry3::new(nalgebra::Vector3::new(3.0, -0.4, 12.0), nalgebra::Vector3::new(0.0, 0.12, 0.0)).to_homogeneous();
    let camera: Vec<_> = semantic_kitti::camera_frame_poses(&lidar, &tr).into_iter().map(|p| offset * p).collect();
    semantic_kitti::write_poses(&dir.join("poses.txt"), &camera).unwrap();
    clouds
}

#[test]
fn kitti_sequence_reads_lidar_frame_poses() {
    let dir = tempdir();
    small_sequence(dir.path(), 4);
    let seq = KittiSequence::open(dir.path(), "4").unwrap();
    assert_eq!(seq.len(), 4);
    assert!(seq.has_labels() && seq.has_poses());
    let p = seq.lidar_pose(2).unwrap();
    // the rigid offset in front of the camera poses cancels out: P_L,2 is the pose we wrote
    assert!((p[(0, 3)] - 1.8).abs() < 1e-6 && (p[(1, 3)] - 0.2).abs() < 1e-6, "{p}");
    assert!(seq.lidar_pose(0).unwrap().is_identity(1e-9));
    let scan = seq.read_scan(1).unwrap();
    assert_eq!(scan.len(), 510);
    assert_eq!(seq.read_labels(1, 510).unwrap().unwrap()[0], 251 | (3 << 16));
    let err = seq.read_labels(1, 511).unwrap_err().to_string();
    assert!(err.contains("510 labels for 511 points"), "{err}");
    std::fs::write(dir.path().join("sequences/04/velodyne/000003.bin"), [0u8; 17]).unwrap();
    let err = seq.read_scan(3).unwrap_err().to_string();
    assert!(err.contains("000003.bin") && err.contains("17 bytes"), "{err}");
}

/// from-kitti → bag → to-kitti gives back the same points, labels and poses; rosbags reads our bag.
#[test]
fn kitti_bag_round_trip_through_the_cli() {
    let dir = tempdir();
    let clouds = small_sequence(dir.path(), 5);
    let bag = dir.path().join("seq04");
    let root = dir.path().to_str().unwrap();
    kdseg_ok(&["bag", "from-kitti", "--dataset", root, "--sequence", "04", "--out", bag.to_str().unwrap()]);
    let info = kdseg_ok(&["bag", "info", bag.to_str().unwrap()]);
    assert!(info.contains("storage:   mcap, metadata.yaml version 9"), "{info}");
    assert!(info.contains("messages:  15"), "{info}");
    assert!(info.contains("/velodyne_points") && info.contains("sensor_msgs/msg/PointCloud2") && info.contains("best effort"), "{info}");
    assert!(info.contains("duration:  0.400 s"), "{info}");
    let out = dir.path().join("back");
    kdseg_ok(&["bag", "to-kitti", bag.to_str().unwrap(), "--out", out.to_str().unwrap(), "--sequence", "07"]);
    let original = KittiSequence::open(dir.path(), "04").unwrap();
    let back = KittiSequence::open(&out, "07").unwrap();
    assert_eq!(back.len(), 5);
    for i in 0..5 {
        let c = back.read_scan(i).unwrap();
        assert_eq!(c.x, clouds[i].x);
        assert_eq!(c.intensity, clouds[i].intensity);
        assert_eq!(back.read_labels(i, c.len()).unwrap(), clouds[i].label);
        let (a, b) = (original.lidar_pose(i).unwrap(), back.lidar_pose(i).unwrap());
        assert!((a - b).abs().max() < 1e-6, "pose {i}: {a} vs {b}");
    }
    // the same through TF instead of odometry
    let out_tf = dir.path().join("back_tf");
    kdseg_ok(&["bag", "to-kitti", bag.to_str().unwrap(), "--out", out_tf.to_str().unwrap(), "--tf"]);
    let via_tf = KittiSequence::open(&out_tf, "00").unwrap();
    assert!((via_tf.lidar_pose(4).unwrap() - original.lidar_pose(4).unwrap()).abs().max() < 1e-6);

    let Some(python) = python() else { return };
    let report: serde_json::Value = serde_json::from_str(&run_python(&python, "bag_tools.py", &["read", bag.to_str().unwrap()])).unwrap();
    assert_eq!(report["topics"]["/velodyne_points"]["count"], 5);
    let clouds_read: Vec<&serde_json::Value> = report["messages"].as_array().unwrap().iter().filter(|m| m["topic"] == "/velodyne_points").collect();
    assert_eq!(clouds_read.len(), 5);
    for (i, m) in clouds_read.iter().enumerate() {
        assert_eq!(m["points"].as_u64().unwrap() as usize, clouds[i].len());
        assert_eq!(m["fields"], serde_json::json!(["x", "y", "z", "intensity", "ring", "time", "label"]));
        let label_sum: f64 = clouds[i].label.as_ref().unwrap().iter().map(|&l| l as f64).sum();
        assert_eq!(m["sum_label"].as_f64().unwrap(), label_sum);
    }
    let odom: Vec<&serde_json::Value> = report["messages"].as_array().unwrap().iter().filter(|m| m["topic"] == "/odom").collect();
    assert!((odom[3]["x"].as_f64().unwrap() - 2.7).abs() < 1e-6);
}

/// metadata v8 for Humble, and a single-file .mcap output, both readable by rosbags.
#[test]
fn writer_versions_and_single_file_output() {
    let dir = tempdir();
    small_sequence(dir.path(), 2);
    let root = dir.path().to_str().unwrap();
    let v8 = dir.path().join("v8");
    kdseg_ok(&["bag", "from-kitti", "--dataset", root, "--sequence", "04", "--out", v8.to_str().unwrap(), "--metadata-version", "8"]);
    let yaml = std::fs::read_to_string(v8.join("metadata.yaml")).unwrap();
    assert!(yaml.contains("version: 8") && yaml.contains("offered_qos_profiles: "), "{yaml}");
    assert!(Bag::open(&v8).unwrap().topic("/velodyne_points").unwrap().qos.is_some());
    let single = dir.path().join("one.mcap");
    kdseg_ok(&["bag", "from-kitti", "--dataset", root, "--sequence", "04", "--out", single.to_str().unwrap()]);
    assert!(single.is_file());
    let err = kdseg_err(&["bag", "from-kitti", "--dataset", root, "--sequence", "04", "--out", single.to_str().unwrap()]);
    assert!(err.contains("already exists"), "{err}");
    let Some(python) = python() else { return };
    for bag in [&v8, &single] {
        let report: serde_json::Value = serde_json::from_str(&run_python(&python, "bag_tools.py", &["read", bag.to_str().unwrap()])).unwrap();
        assert_eq!(report["messages"].as_array().unwrap().len(), 6, "{}", bag.display());
    }
}

/// The real Ouster OS-1-128 frames go through bag conversion and decode with their exact counts.
#[test]
fn real_ouster_frames_through_a_bag() {
    let Some(shared) = shared() else { return };
    let seq_dir = shared.join("data/ouster-os1-128");
    let seq = KittiSequence::open_dir(&seq_dir, "ouster").unwrap();
    assert_eq!(seq.len(), 3);
    let counts: Vec<usize> = (0..3).map(|i| std::fs::metadata(seq.scan_path(i)).unwrap().len() as usize / 16).collect();
    let dir = tempdir();
    let bag = dir.path().join("ouster");
    kdseg_ok(&["bag", "from-kitti", "--dataset", seq_dir.to_str().unwrap(), "--sequence", "ouster", "--out", bag.to_str().unwrap()]);
    let bag = Bag::open(&bag).unwrap();
    let mut seen = 0;
    for m in bag.messages_on(&["/velodyne_points"]).unwrap() {
        let m = m.unwrap();
        let msg: PointCloud2Ref = m.decode().unwrap();
        assert_eq!(msg.point_step, 22, "no labels: the plain Velodyne layout");
        let (c, report) = cloud::decode(&msg).unwrap();
        assert_eq!(report.total, counts[seen]);
        assert_eq!(c.len(), counts[seen]);
        assert!(c.len() > 100_000);
        let original = seq.read_scan(seen).unwrap();
        assert_eq!(c.x, original.x);
        assert_eq!(c.intensity, original.intensity);
        seen += 1;
    }
    assert_eq!(seen, 3);
    let poses: Vec<Odometry> = bag.messages_on(&["/odom"]).unwrap().map(|m| m.unwrap().decode().unwrap()).collect();
    assert!((poses[1].pose.pose.position.x - 0.2454).abs() < 1e-3, "about 0.25 m per frame");
}

#[test]
fn broken_bags_name_the_file() {
    let dir = tempdir();
    small_sequence(dir.path(), 2);
    let bag = dir.path().join("b");
    kdseg_ok(&["bag", "from-kitti", "--dataset", dir.path().to_str().unwrap(), "--sequence", "04", "--out", bag.to_str().unwrap()]);
    // a missing storage file
    std::fs::rename(bag.join("b_0.mcap"), dir.path().join("moved.mcap")).unwrap();
    let err = kdseg_err(&["bag", "info", bag.to_str().unwrap()]);
    assert!(err.contains("b_0.mcap") && err.contains("missing"), "{err}");
    // a corrupt storage file
    std::fs::write(bag.join("b_0.mcap"), b"\x89MCAP0\r\nthis is not an mcap file").unwrap();
    let err = kdseg_err(&["bag", "info", bag.to_str().unwrap()]);
    assert!(err.contains("b_0.mcap") && err.contains("MCAP"), "{err}");
    // unsupported metadata version
    let yaml = std::fs::read_to_string(bag.join("metadata.yaml")).unwrap().replace("version: 9", "version: 3");
    std::fs::write(bag.join("metadata.yaml"), yaml).unwrap();
    let err = kdseg_err(&["bag", "info", bag.to_str().unwrap()]);
    assert!(err.contains("metadata version 3 is not supported"), "{err}");
    // not a bag at all
    let err = kdseg_err(&["bag", "info", dir.path().join("sequences").to_str().unwrap()]);
    assert!(err.contains("not a rosbag2 bag"), "{err}");
    // a db3 that is not a rosbag2 database
    let fake = dir.path().join("fake.db3");
    std::fs::write(&fake, b"SQLite format 3\0garbage").unwrap();
    let err = kdseg_err(&["bag", "info", fake.to_str().unwrap()]);
    assert!(err.contains("fake.db3"), "{err}");
}

/// Dropping a writer without `finish` (an early return or error) still leaves a complete bag.
#[test]
fn unfinished_writer_is_finalised_on_drop() {
    let dir = tempdir();
    let path = dir.path().join("dropped");
    {
        let mut w = BagWriter::create(&path, WriterOptions::default()).unwrap();
        let t = w.add_topic::<Odometry>("/odom", Qos::RELIABLE).unwrap();
        for i in 0..3 {
            w.write(t, i * 1000, &Odometry::default()).unwrap();
        }
    }
    let bag = Bag::open(&path).unwrap();
    assert_eq!(bag.summary().message_count, 3);
    assert_eq!(bag.messages().unwrap().count(), 3);
}

/// A stream of clouds decoded into one reused buffer: lengths and columns follow each message.
#[test]
fn decode_into_reuses_buffers_without_stale_columns() {
    let big = raw_cloud(vec![field("x", 0, 7), field("y", 4, 7), field("z", 8, 7), field("ring", 12, 4)], 14, 5, false, |i, p| {
        p[0..4].copy_from_slice(&(i as f32).to_le_bytes());
        p[12..14].copy_from_slice(&(i as u16).to_le_bytes());
    });
    let small = raw_cloud(vec![field("x", 0, 7), field("y", 4, 7), field("z", 8, 7)], 12, 2, false, |i, p| {
        let x = if i == 0 { f32::NAN } else { 9.0 };
        p[0..4].copy_from_slice(&x.to_le_bytes());
    });
    let mapping = FieldMapping::default();
    let mut c = PointCloud::default();
    cloud::decode_into(&big, &mapping, &mut c).unwrap();
    assert_eq!((c.len(), c.ring.as_ref().map(|r| r.len())), (5, Some(5)));
    let report = cloud::decode_into(&small, &mapping, &mut c).unwrap();
    assert_eq!(report.dropped_nonfinite, 1);
    assert_eq!(c.x, vec![9.0]);
    assert_eq!(c.ring, None, "a column the message lacks must not survive from the previous cloud");
    assert_eq!(c.source_len, 2);
    cloud::decode_into(&big, &mapping, &mut c).unwrap();
    assert_eq!(c.x, vec![0.0, 1.0, 2.0, 3.0, 4.0]);
    assert_eq!(c.source_index, None);
    assert_eq!(c.intensity, vec![0.0; 5]);
}
