//! Moving-object segmentation against the reference fixtures (made by running the original Python
//! code) and through the public commands: features, grid indices, network logits, motion features,
//! the official evaluation, checkpoint errors, degenerate scans, causality, and the shipped student on
//! an unseen simulated drive through replay, infer + eval and render.

mod common;

use common::*;
use kdseg::cloud::PointCloud;
use kdseg::dataset::semantic_kitti::{self, KittiSequence};
use kdseg::features::{MotionFeatures, MotionMode, MotionScan, PolarGrid};
use kdseg::model::{BevInput, NetConfig, PolarBevNet};
use kdseg::mos::{MosEngine, Precision, ScanInput};
use nalgebra::{Isometry3, Matrix4, Vector3};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

fn fixtures() -> Option<PathBuf> {
    shared().map(|s| s.join("fixtures/public"))
}

fn read_points(path: &Path) -> Tensor {
    let c = semantic_kitti::read_bin(path).unwrap();
    Tensor::stack(&[Tensor::from_slice(&c.x), Tensor::from_slice(&c.y), Tensor::from_slice(&c.z), Tensor::from_slice(&c.intensity)], 1)
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn features_and_grid_indices_match_the_reference_loader() {
    let Some(f) = fixtures() else { return };
    let points = read_points(&f.join("kdmos_net/points.bin"));
    let (features, grid) = PolarGrid::default().point_features(&points.narrow(1, 0, 3), &points.select(1, 3));
    let reference_grid = Tensor::read_npy(f.join("kdmos_net/grid_ind.npy")).unwrap();
    assert_eq!(grid.size(), reference_grid.size());
    assert_eq!(grid.ne_tensor(&reference_grid).sum(Kind::Int64).int64_value(&[]), 0, "grid indices differ");
    let reference = Tensor::read_npy(f.join("kdmos_net/features.npy")).unwrap();
    // NumPy's float32 arctan2 is not correctly rounded (SIMD kernels); φ may differ by one ulp
    let diff = (&features - reference.narrow(1, 0, 9)).abs().amax(0, false);
    let diff: Vec<f32> = Vec::try_from(&diff).unwrap();
    for (col, d) in diff.iter().enumerate() {
        assert!(*d <= 1e-6, "feature column {col} differs by {d}");
    }
}

#[test]
fn network_logits_match_the_reference_within_1e3() {
    let Some(f) = fixtures() else { return };
    let dir = f.join("kdmos_net");
    let out = tempdir();
    let logits_path = out.path().join("logits.npy");
    let mut logits_of = Vec::new();
    for weights in ["kdmos_state_dict.pt", "kdmos_state_dict.safetensors"] {
        kdseg_ok(&[
            "mos", "forward", "--device", "cpu", "--weights", dir.join(weights).to_str().unwrap(),
            "--points", dir.join("points.bin").to_str().unwrap(), "--residuals", dir.join("residuals.npy").to_str().unwrap(),
            "--out", logits_path.to_str().unwrap(),
        ]);
        logits_of.push(Tensor::read_npy(&logits_path).unwrap());
    }
    assert_eq!(max_abs(&logits_of[0], &logits_of[1]), 0.0, ".pt and .safetensors give the same network");
    let reference = Tensor::read_npy(dir.join("point_logits.npy")).unwrap();
    let err = max_abs(&logits_of[0], &reference);
    assert!(err < 1e-3, "max abs logit difference {err}");
    // labels agree wherever the reference is not a near-tie
    let labels = Tensor::read_npy(dir.join("labels.npy")).unwrap().to_kind(Kind::Int64);
    let top2 = reference.topk(2, 1, true, true).0;
    let margin = top2.select(1, 0) - top2.select(1, 1);
    let decisive = margin.gt(1e-3);
    let ours = logits_of[0].argmax(1, false);
    let wrong = ours.ne_tensor(&labels).logical_and(&decisive).sum(Kind::Int64).int64_value(&[]);
    assert_eq!(wrong, 0);
}

#[test]
fn voxel_logits_match_the_reference_slices() {
    let Some(f) = fixtures() else { return };
    let dir = f.join("kdmos_net");
    let net = PolarBevNet::from_checkpoint(&dir.join("kdmos_state_dict.pt"), Device::Cpu).unwrap();
    assert_eq!(net.parameter_count(), 4_031_366);
    let points = read_points(&dir.join("points.bin"));
    let (appearance, grid) = net.grid.point_features(&points.narrow(1, 0, 3), &points.select(1, 3));
    let features = Tensor::cat(&[appearance, Tensor::read_npy(dir.join("residuals.npy")).unwrap()], 1);
    let batch = Tensor::zeros([features.size()[0]], (Kind::Int64, Device::Cpu));
    let input = BevInput { features: &features, grid: &grid, batch: &batch, batch_size: 1 };
    let voxels = tch::no_grad(|| net.voxel_logits(&net.forward(&input, false)));
    assert_eq!(voxels.size(), vec![1, 4, 480, 360, 32]);
    let summary = Tensor::read_npz(dir.join("voxel_logits_summary.npz")).unwrap();
    let get = |name: &str| summary.iter().find(|(n, _)| n == name).map(|(_, t)| t.shallow_clone()).unwrap();
    let z: Vec<i64> = Vec::try_from(&get("z_indices")).unwrap();
    let slices = get("slices");
    for (k, zi) in z.iter().enumerate() {
        let ours = voxels.select(0, 0).select(3, *zi);
        let err = max_abs(&ours, &slices.select(0, k as i64));
        assert!(err < 1e-3, "voxel logits at z {zi} differ by {err}");
    }
}

#[test]
fn batch_norm_folded_for_inference_gives_the_same_logits() {
    // the fixture's batch-norm statistics are perturbed on purpose, so folding them is not a no-op
    let Some(f) = fixtures() else { return };
    let dir = f.join("kdmos_net");
    let mut net = PolarBevNet::from_checkpoint(&dir.join("kdmos_state_dict.safetensors"), Device::Cpu).unwrap();
    let points = read_points(&dir.join("points.bin"));
    let (appearance, grid) = net.grid.point_features(&points.narrow(1, 0, 3), &points.select(1, 3));
    let features = Tensor::cat(&[appearance, Tensor::read_npy(dir.join("residuals.npy")).unwrap()], 1);
    let batch = Tensor::zeros([features.size()[0]], (Kind::Int64, Device::Cpu));
    let input = BevInput { features: &features, grid: &grid, batch: &batch, batch_size: 1 };
    let logits = |net: &PolarBevNet, train: bool| tch::no_grad(|| net.point_logits(&net.forward(&input, train), &input));
    let separate = logits(&net, false);
    net.fold_batch_norm(Kind::Float);
    let folded = logits(&net, false);
    let err = max_abs(&separate, &folded);
    assert!(err < 1e-4, "folded and separate batch norms differ by {err}");
    assert!(separate.abs().max().double_value(&[]) > 1.0, "logits are not trivially small");
    // training mode still runs the separate layers on the unchanged parameters
    let trained = tch::no_grad(|| net.point_logits(&net.forward(&input, true), &input));
    assert!(max_abs(&trained, &folded) > 1e-3, "training mode must not use the folded layers");
}

#[test]
fn padded_points_leave_no_trace_in_the_bev_images() {
    // the MOS engine's CUDA graph pools a fixed number of points, masking the padding
    tch::manual_seed(5);
    let net = PolarBevNet::new(NetConfig::KDMOS, Device::Cpu);
    let (n, pad) = (4000, 1500);
    let opts = (Kind::Int64, Device::Cpu);
    let grid_of = |k: i64| Tensor::stack(&[Tensor::randint(480, [k], opts), Tensor::randint(360, [k], opts), Tensor::randint(32, [k], opts)], 1);
    let features = Tensor::randn([n, 17], (Kind::Float, Device::Cpu));
    let grid = grid_of(n);
    // padding large enough to win every maximum it could reach
    let padded_features = Tensor::cat(&[&features, &(Tensor::randn([pad, 17], (Kind::Float, Device::Cpu)) * 100.0)], 0);
    let padded_grid = Tensor::cat(&[&grid, &grid_of(pad)], 0);
    let valid = Tensor::arange(n + pad, opts).lt(n);
    let images = |features: &Tensor, grid: &Tensor, valid: Option<&Tensor>| {
        let batch = Tensor::zeros([features.size()[0]], opts);
        let input = BevInput { features, grid, batch: &batch, batch_size: 1 };
        tch::no_grad(|| net.bev_images_of(&input, valid, false))
    };
    let (appearance, motion) = images(&features, &grid, None);
    let (padded_appearance, padded_motion) = images(&padded_features, &padded_grid, Some(&valid));
    assert_eq!(padded_appearance.size(), vec![1, 32, 480, 360]);
    assert!(appearance.equal(&padded_appearance), "appearance image changed by masked padding");
    assert!(motion.equal(&padded_motion), "motion image changed by masked padding");
    let (unmasked, _) = images(&padded_features, &padded_grid, None);
    assert!(!appearance.equal(&unmasked), "the padding would show without the mask");
}

#[test]
fn reference_motion_features_match_motionbev() {
    let Some(f) = fixtures() else { return };
    let dir = tempdir();
    untar(&f.join("motionbev_residual/sequence.tar.gz"), dir.path());
    let out = dir.path().join("ours");
    kdseg_ok(&["mos", "residuals", "--dataset", dir.path().to_str().unwrap(), "--sequence", "00", "--mode", "reference", "--device", "cpu", "--out", out.to_str().unwrap()]);
    let (mut total, mut close) = (0i64, 0i64);
    for i in 0..20 {
        let ours = Tensor::read_npy(out.join(format!("{i:06}.npy"))).unwrap();
        let reference = Tensor::read_npy(dir.path().join(format!("residual_images/00/residual_images/{i:06}.npy"))).unwrap();
        assert_eq!(ours.size(), reference.size(), "scan {i}");
        total += ours.numel() as i64;
        close += (&ours - &reference).abs().le(1e-4).sum(Kind::Int64).int64_value(&[]);
    }
    let fraction = close as f64 / total as f64;
    assert!(fraction >= 0.999, "only {fraction:.6} of the values are within 1e-4");
}

#[test]
fn evaluation_reproduces_evaluate_mos_py() {
    let Some(f) = fixtures() else { return };
    let dir = tempdir();
    untar(&f.join("motionbev_residual/sequence.tar.gz"), &dir.path().join("dataset"));
    untar(&f.join("eval/predictions.tar.gz"), &dir.path().join("predictions"));
    let out = kdseg_ok(&["eval", "--dataset", dir.path().join("dataset").to_str().unwrap(), "--predictions", dir.path().join("predictions").to_str().unwrap(), "--sequences", "00"]);
    let expected = std::fs::read_to_string(f.join("eval/expected_iou.txt")).unwrap();
    let printed = std::fs::read_to_string(f.join("eval/evaluate_mos_stdout.txt")).unwrap();
    let official_line = printed.lines().find(|l| l.starts_with("iou_moving:")).unwrap();
    assert!(out.contains(official_line), "{official_line} not in\n{out}");
    for key in ["iou_moving_full_precision", "tp_moving", "fp_moving", "fn_moving", "iou_static", "accuracy"] {
        let line = expected.lines().find(|l| l.starts_with(key)).unwrap();
        assert!(out.lines().any(|l| l == line), "{line} not in\n{out}");
    }
    let confusion = expected.lines().find(|l| l.starts_with("confusion")).unwrap().split(": ").nth(1).unwrap();
    assert!(out.contains(confusion), "{confusion} not in\n{out}");
}

#[test]
fn bad_weights_name_the_tensor_and_both_shapes() {
    let Some(f) = fixtures() else { return };
    let good = f.join("kdmos_net/kdmos_state_dict.safetensors");
    let tensors = Tensor::read_safetensors(&good).unwrap();
    let dir = tempdir();
    let write = |name: &str, tensors: &[(String, Tensor)]| {
        let path = dir.path().join(name);
        Tensor::write_safetensors(tensors, &path).unwrap();
        path
    };
    let missing: Vec<(String, Tensor)> = tensors.iter().filter(|(n, _)| n != "BEV_model.network.up2.up.init_pos").map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    let mut extra: Vec<(String, Tensor)> = tensors.iter().map(|(n, t)| (n.clone(), t.shallow_clone())).collect();
    extra.push(("BEV_model.network.up9.weight".into(), Tensor::zeros([3], (Kind::Float, Device::Cpu))));
    let shaped: Vec<(String, Tensor)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), if n == "fea_compression.0.weight" { Tensor::zeros([16, 256], (Kind::Float, Device::Cpu)) } else { t.shallow_clone() }))
        .collect();
    let cases = [
        (write("missing.safetensors", &missing), vec!["missing tensor BEV_model.network.up2.up.init_pos", "[1, 32, 1, 1]"]),
        (write("extra.safetensors", &extra), vec!["unexpected tensor BEV_model.network.up9.weight", "[3]"]),
        (write("shaped.safetensors", &shaped), vec!["fea_compression.0.weight", "[16, 256]", "[32, 256]"]),
    ];
    for (path, expected) in cases {
        let err = match PolarBevNet::from_checkpoint(&path, Device::Cpu) {
            Ok(_) => panic!("{} loaded", path.display()),
            Err(e) => e.to_string(),
        };
        for text in expected {
            assert!(err.contains(text), "'{text}' not in: {err}");
        }
    }
    let garbage = dir.path().join("garbage.pt");
    std::fs::write(&garbage, b"not a checkpoint").unwrap();
    let err = kdseg_err(&["mos", "forward", "--device", "cpu", "--weights", garbage.to_str().unwrap(), "--points", "x.bin", "--residuals", "x.npy", "--out", "y.npy"]);
    assert!(err.contains("garbage.pt"), "{err}");
    let err = kdseg_err(&["mos", "forward", "--device", "cpu", "--weights", dir.path().join("nope.safetensors").to_str().unwrap(), "--points", "x.bin", "--residuals", "x.npy", "--out", "y.npy"]);
    assert!(err.contains("nope.safetensors"), "{err}");
}

/// A random-weight network is enough to exercise the pipeline's shapes and edge cases.
fn engine(mode: MotionMode) -> MosEngine {
    tch::manual_seed(7);
    MosEngine::with_network(PolarBevNet::new(NetConfig::KDMOS, Device::Cpu), mode, Precision::Fp32, 1.0)
}

fn ring(n: usize, radius: f32, z: f32) -> PointCloud {
    let a: Vec<f32> = (0..n).map(|i| i as f32 / n as f32 * std::f32::consts::TAU).collect();
    PointCloud::from_xyzi(a.iter().map(|t| radius * t.cos()).collect(), a.iter().map(|t| radius * t.sin()).collect(), vec![z; n], vec![0.5; n])
}

#[test]
fn empty_and_out_of_volume_scans_are_labelled_without_error() {
    let mut engine = engine(MotionMode::Causal);
    let empty = PointCloud::default();
    let far = ring(500, 200.0, 30.0); // every point beyond the polar volume: clipped into edge cells
    for i in 0..10u64 {
        let cloud = if i % 2 == 0 { &empty } else { &far };
        let results = engine.process(ScanInput { id: i, stamp_ns: i as i64 * 100_000_000, cloud, pose: Matrix4::identity() }).unwrap();
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].labels.len(), cloud.len());
        assert_eq!(results[0].complete, i >= 7);
        assert!(results[0].moving_probability.iter().all(|p| p.is_finite()));
    }
}

#[test]
fn reference_mode_labels_come_seven_scans_late_and_flush() {
    let mut engine = engine(MotionMode::Reference);
    assert_eq!(engine.delay(), 7);
    let mut ids = Vec::new();
    for i in 0..12u64 {
        let cloud = ring(300 + i as usize, 10.0, -1.0);
        for r in engine.process(ScanInput { id: i, stamp_ns: 1000 + i as i64, cloud: &cloud, pose: Matrix4::identity() }).unwrap() {
            assert_eq!(r.labels.len(), 300 + r.id as usize, "labels belong to the scan they name");
            assert_eq!(r.stamp_ns, 1000 + r.id as i64);
            ids.push((i, r.id));
        }
    }
    assert_eq!(ids, (7..12).map(|i| (i, i - 7)).collect::<Vec<_>>());
    let flushed: Vec<u64> = engine.flush().unwrap().iter().map(|r| r.id).collect();
    assert_eq!(flushed, (5..12).collect::<Vec<_>>());
}

/// A static wall all around, and a box that is present in some scans only.
fn scene(box_present: bool) -> PointCloud {
    let mut c = ring(4000, 20.0, -1.7);
    // the wall is 2.5 m tall, so the box stands in front of something in every direction
    for (i, z) in c.z.iter_mut().enumerate() {
        *z = -1.7 + 2.5 * (i % 10) as f32 / 9.0;
    }
    for k in 0..40 {
        for j in 0..40 {
            c.x.push(8.0 + 0.02 * k as f32);
            c.y.push(-1.0 + 0.05 * j as f32);
            c.z.push(if box_present { -1.7 + 0.04 * k as f32 } else { -1.7 });
            c.intensity.push(0.3);
        }
    }
    c.source_len = c.x.len();
    c
}

fn motion_of(mode: MotionMode, present: &[bool]) -> Vec<(u64, Tensor)> {
    let mut g = MotionFeatures::new(mode, Device::Cpu);
    let mut out = Vec::new();
    for (i, &p) in present.iter().enumerate() {
        let c = scene(p);
        let xyz = Tensor::stack(&[Tensor::from_slice(&c.x), Tensor::from_slice(&c.y), Tensor::from_slice(&c.z)], 1).to_kind(Kind::Double);
        let pose = Isometry3::translation(0.3 * i as f64, 0.0, 0.0).to_homogeneous();
        // shift the points so that the world is static while the sensor moves
        let xyz = xyz - Tensor::from_slice(&[0.3 * i as f64, 0.0, 0.0]).view([1, 3]);
        out.extend(g.push(MotionScan { id: i as u64, stamp_ns: i as i64, xyz, pose }).into_iter().map(|o| (o.id, o.residuals)));
    }
    out.extend(g.flush().into_iter().map(|o| (o.id, o.residuals)));
    out
}

#[test]
fn causal_features_ignore_the_future_and_reference_ones_do_not() {
    let _ = Vector3::<f64>::zeros();
    let mut base = vec![false; 16];
    for p in base.iter_mut().skip(8) {
        *p = true; // the box appears at scan 8
    }
    let mut changed_future = base.clone();
    for p in changed_future.iter_mut().skip(12) {
        *p = false; // the box leaves again at scan 12: only scans after 10 differ
    }
    for (mode, expect_independent) in [(MotionMode::Causal, true), (MotionMode::Reference, false)] {
        let a = motion_of(mode, &base);
        let b = motion_of(mode, &changed_future);
        let scan = 10u64;
        let fa = &a.iter().find(|(id, _)| *id == scan).unwrap().1;
        let fb = &b.iter().find(|(id, _)| *id == scan).unwrap().1;
        let same = max_abs(fa, fb) == 0.0;
        assert_eq!(same, expect_independent, "{mode}: features of scan 10 after changing scans 12-15");
        if mode == MotionMode::Causal {
            let at8 = &a.iter().find(|(id, _)| *id == 8).unwrap().1;
            assert!(at8.gt(0.0).any().int64_value(&[]) == 1, "the appearing box gives non-zero causal features");
        }
    }
}

#[test]
fn infer_writes_one_label_per_point_for_every_scan() {
    let dir = tempdir();
    let seq_dir = dir.path().join("sequences/03");
    for i in 0..9 {
        semantic_kitti::write_bin(&seq_dir.join(format!("velodyne/{i:06}.bin")), &scene(i >= 4)).unwrap();
    }
    let poses: Vec<Matrix4<f64>> = (0..9).map(|_| Matrix4::identity()).collect();
    semantic_kitti::write_poses(&seq_dir.join("poses.txt"), &poses).unwrap();
    let weights = dir.path().join("random.safetensors");
    tch::manual_seed(3);
    PolarBevNet::new(NetConfig::KDMOS, Device::Cpu).save(&weights).unwrap();
    for mode in ["causal", "reference"] {
        let out = dir.path().join(format!("pred_{mode}"));
        kdseg_ok(&["infer", "--dataset", dir.path().to_str().unwrap(), "--sequences", "03", "--weights", weights.to_str().unwrap(), "--device", "cpu", "--motion", mode, "--out", out.to_str().unwrap()]);
        let seq = KittiSequence::open(dir.path(), "03").unwrap();
        for i in 0..9 {
            let labels = semantic_kitti::read_label_file(&out.join(format!("sequences/03/predictions/{i:06}.label"))).unwrap();
            assert_eq!(labels.len(), seq.read_scan(i).unwrap().len());
            assert!(labels.iter().all(|l| [0, 9, 250, 251].contains(l)), "{mode}: KDMOS inverse map only");
        }
    }
}

/// Counts pixels of a packed 0xRRGGBB colour in an RGB PNG.
fn png_pixels_of(path: &Path, colour: u32) -> usize {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let rgb = [(colour >> 16) as u8, (colour >> 8) as u8, colour as u8];
    pixels[..info.buffer_size()].chunks_exact(3).filter(|c| *c == rgb).count()
}

/// "iou_moving: 0.918 (tp 95883, fp 1646, fn 6887)" → (iou, [tp, fp, fn])
fn replay_scores(stdout: &str) -> (f64, [u64; 3]) {
    let line = stdout.lines().find(|l| l.starts_with("iou_moving:")).unwrap_or_else(|| panic!("no moving IoU in:\n{stdout}"));
    let numbers: Vec<f64> = line.split(|c: char| !(c.is_ascii_digit() || c == '.')).filter(|s| !s.is_empty() && *s != ".").map(|s| s.parse().unwrap()).collect();
    (numbers[0], [numbers[1] as u64, numbers[2] as u64, numbers[3] as u64])
}

#[test]
fn shipped_student_segments_an_unseen_simulated_drive_through_replay_and_infer() {
    let dir = tempdir();
    let (root, bag) = (dir.path().join("data"), dir.path().join("drive.mcap"));
    // urban seed 1018: test sequence 18 of RESULTS.md, never trained on, with traffic from the start
    kdseg_ok(&["simulate", "--preset", "urban", "--seed", "1018", "--scans", "14", "--out", root.to_str().unwrap(), "--bag", bag.to_str().unwrap()]);
    let weights = repo().join("weights/kdmos_sim.safetensors");
    let weights = weights.to_str().unwrap();

    let labelled = dir.path().join("labelled.mcap");
    let stdout = kdseg_ok(&["replay", bag.to_str().unwrap(), "--weights", weights, "--device", "cpu", "--out", labelled.to_str().unwrap()]);
    assert!(stdout.contains("segmented: 14"), "{stdout}");
    let (iou, counts) = replay_scores(&stdout);
    assert!(iou > 0.6, "the shipped student should find the moving cars of an unseen drive: {stdout}");
    assert!(counts[0] > 1000);
    let info = kdseg_ok(&["bag", "info", labelled.to_str().unwrap()]);
    for topic in ["/kdseg/labelled_points", "/kdseg/moving_points", "/kdseg/static_points", "/kdseg/point_labels", "/velodyne_points"] {
        let line = info.lines().find(|l| l.trim_start().starts_with(topic)).unwrap_or_else(|| panic!("{topic} missing:\n{info}"));
        assert!(line.contains(" 14 msgs"), "{line}");
    }

    // the SemanticKITTI copy through infer + eval scores exactly what replay scored
    let predictions = dir.path().join("predictions");
    kdseg_ok(&["infer", "--dataset", root.to_str().unwrap(), "--sequences", "00", "--weights", weights, "--device", "cpu", "--out", predictions.to_str().unwrap()]);
    let scores_path = dir.path().join("scores.json");
    kdseg_ok(&["eval", "--dataset", root.to_str().unwrap(), "--predictions", predictions.to_str().unwrap(), "--sequences", "00", "--json", scores_path.to_str().unwrap()]);
    let scores: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&scores_path).unwrap()).unwrap();
    let eval_counts = ["tp_moving", "fp_moving", "fn_moving"].map(|k| scores[k].as_u64().unwrap());
    assert_eq!(eval_counts, counts, "infer + eval and replay disagree");
    assert!((scores["iou_moving"].as_f64().unwrap() - iou).abs() < 1e-3);

    // the last scan drawn with hits and misses
    let png = dir.path().join("scan.png");
    let stdout = kdseg_ok(&["render", "--dataset", root.to_str().unwrap(), "--sequence", "00", "--scan", "13", "--predictions", predictions.to_str().unwrap(), "--out", png.to_str().unwrap()]);
    assert!(stdout.contains("against ground truth"), "{stdout}");
    use kdseg::render::outcome;
    assert!(png_pixels_of(&png, outcome::TRUE_MOVING) > 20);
    assert!(png_pixels_of(&png, outcome::STATIC) > 1000);
    // predictions of another length are refused with both counts
    let wrong = predictions.join("sequences/00/predictions/000013.label");
    std::fs::write(&wrong, [0u8; 8]).unwrap();
    let err = kdseg_err(&["render", "--dataset", root.to_str().unwrap(), "--sequence", "00", "--scan", "13", "--predictions", predictions.to_str().unwrap(), "--out", png.to_str().unwrap()]);
    assert!(err.contains("000013.label") && err.contains("2 predictions for a scan of"), "{err}");
}
