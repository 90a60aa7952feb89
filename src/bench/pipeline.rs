//! Benchmarks of the simulator, the MOS pipeline (decode → features → motion features → network →
//! labels → encode) and one training step, on simulated HDL-64E scans.

use super::{time_runs, BenchRecord, Latency, Metric};
use crate::cloud::{self, PointCloud};
use crate::config::Config;
use crate::features::{MotionFeatures, MotionMode, MotionScan};
use crate::geometry::{pose_from_matrix, pose_to_msg};
use crate::messages::{self, Header, Odometry, PoseWithCovariance, Time};
use crate::model::{NetConfig, PolarBevNet};
use crate::mos::outputs::Wanted;
use crate::mos::{EngineConfig, MosEngine, Precision, ScanInput};
use crate::online::{OnlineMos, PoseStatus};
use crate::sim::{self, Preset, SimConfig, Simulator};
use crate::train::data::{MotionInput, Scan};
use crate::train::{self, Augmentation, TrainConfig};
use nalgebra::Matrix4;
use std::time::{Duration, Instant};
use tch::{Device, Kind, Tensor};

/// PyTorch reference figures on the H100 (spec §2.5, §3.8), for the ratios.
pub const REFERENCE_FORWARD_MS: f64 = 16.1;
pub const REFERENCE_RESIDUALS_MS: f64 = 190.0;
pub const REFERENCE_TRAIN_STEP_MS: f64 = 190.0;
pub const REFERENCE_TRAIN_PEAK_GIB: f64 = 16.3;

/// Scans of a busy urban simulation with their true poses.
pub fn simulated_scans(count: usize, seed: u64) -> Result<Vec<(PointCloud, Matrix4<f64>, i64)>, sim::SimError> {
    let simulator = Simulator::new(SimConfig { preset: Preset::Urban, seed, scans: count, ..Default::default() })?;
    let mut out = Vec::with_capacity(count);
    for scan in simulator.scans() {
        let scan = scan?;
        out.push((scan.cloud, scan.lidar_pose.to_homogeneous(), scan.stamp_ns));
    }
    Ok(out)
}

/// Simulator throughput per preset.
pub fn simulator(scans: usize) -> Result<BenchRecord, sim::SimError> {
    let mut record = BenchRecord::new("sim", &format!("Simulator: {scans} HDL-64E scans per preset"));
    for preset in Preset::ALL {
        let report = sim::bench(&SimConfig { preset, seed: 1, scans, ..Default::default() })?;
        record.metrics.push(Metric::new(&format!("{} scans/s", preset.name()), report.scans_per_s, "scans/s").at_least(20.0));
        record.metrics.push(Metric::new(&format!("{} points per scan", preset.name()), report.mean_points, "points"));
        record.metrics.push(Metric::new(&format!("{} {scans} scans incl. world set-up", preset.name()), report.setup_s + report.scan_s, "s").at_most(60.0 * scans as f64 / 1000.0));
        record.notes.push(format!("{}: {} threads, world set-up {:.2} s", preset.name(), report.threads, report.setup_s));
    }
    Ok(record)
}

/// The MOS pipeline per stage and end to end on `device` with `precision`, as the node runs it
/// ([`OnlineMos`], less DDS): odometry and PointCloud2 messages in as CDR bytes, the labelled cloud
/// out as CDR bytes, buffers reused from scan to scan.
/// With `profile`, a third pass of up to 20 scans runs under libtorch's profiler (see
/// [`super::profile`]) and its totals go to that folder.
#[allow(clippy::too_many_arguments)]
pub fn mos_pipeline(engine: &EngineConfig, runs: usize, profile: Option<&std::path::Path>) -> Result<BenchRecord, String> {
    let scans = simulated_scans(runs + 10, 7).map_err(|e| e.to_string())?;
    let (weights, precision, motion, cuda_graph) = (&engine.weights, engine.precision, engine.motion, engine.cuda_graph);
    let mut online = OnlineMos::new(Config { mos: engine.clone(), ..Config::default() }).map_err(|e| e.to_string())?;
    let dev = online.engine().device();
    let mean_points = scans.iter().map(|s| s.0.len()).sum::<usize>() as f64 / scans.len() as f64;
    let mut record = BenchRecord::new(
        "mos",
        &format!(
            "MOS pipeline on {dev:?}, {precision}{}{}, {motion} motion features, {:.0}-point simulated HDL-64E scans",
            if cuda_graph && dev.is_cuda() { ", features → labels in a CUDA graph" } else { "" },
            if !engine.cudnn_benchmark && dev.is_cuda() && precision != Precision::Fp32 { ", cuDNN heuristics" } else { "" },
            mean_points
        ),
    );
    // the wire format the node receives: each scan's odometry, then its cloud
    let messages: Vec<(Vec<u8>, Vec<u8>)> = scans
        .iter()
        .map(|(c, pose, t)| {
            let stamp = Time::from_nanos(*t);
            let odom = Odometry {
                header: Header { stamp, frame_id: "odom".into() },
                child_frame_id: "velodyne".into(),
                pose: PoseWithCovariance { pose: pose_to_msg(&pose_from_matrix(pose)), covariance: [0.0; 36] },
                ..Default::default()
            };
            let cloud = cloud::encode_velodyne(Header { stamp, frame_id: "velodyne".into() }, c);
            Ok((messages::encode(&odom).map_err(|e| e.to_string())?, messages::encode(&cloud).map_err(|e| e.to_string())?))
        })
        .collect::<Result<_, String>>()?;
    let mut e2e = Vec::new();
    let mut stages: Vec<[f64; 7]> = Vec::new();
    let mut scratch = Vec::new();
    crate::gpu::reset_peak(dev);
    let mut segment = |online: &mut OnlineMos, i: usize| segment_message(online, &messages[i], &mut scratch);
    // first pass: end to end, no synchronisation between stages (the latency a user sees)
    for i in 0..messages.len() {
        let start = Instant::now();
        segment(&mut online, i)?;
        if i >= 8 {
            e2e.push(start.elapsed());
        }
    }
    let memory = crate::gpu::memory_stats(dev);
    // second pass: per stage, with the device synchronised between stages
    online.reset();
    online.engine_mut().set_profiling(true);
    for i in 0..messages.len() {
        let scan = segment(&mut online, i)?;
        if let (Some(t), true) = (scan.timings, i >= 8) {
            stages.push([scan.decode_ms, t.upload_ms, t.motion_ms, t.features_ms, t.network_ms, t.labels_ms, scan.encode_ms]);
        }
    }
    // optional third pass: end to end again, under libtorch's profiler
    if let Some(dir) = profile {
        online.engine_mut().set_profiling(false);
        online.reset();
        let profiled = messages.len().saturating_sub(8).min(20);
        for i in 0..8 {
            segment(&mut online, i)?;
        }
        let name = format!("mos-{precision}");
        let (outcome, summary) = super::profile::record(dir, &name, dev.is_cuda(), profiled, || (8..8 + profiled).try_for_each(|i| segment(&mut online, i).map(drop)))?;
        outcome?;
        print!("{}", super::profile::render(&summary, &name, 25));
    }
    let e2e = Latency::from_samples(&mut e2e);
    let target = if dev == Device::Cpu { 2000.0 } else { 3.0 };
    record.metrics.push(Metric::new("end to end (decode → labels → encode), p50", e2e.p50_ms, "ms").at_most(target));
    record.metrics.push(Metric::new("end to end, p99", e2e.p99_ms, "ms").at_most(if dev == Device::Cpu { 2000.0 } else { 5.0 }));
    // with the CUDA graph, point features, network and argmax are one replay, timed as one stage
    let graphed = dev.is_cuda() && cuda_graph && !stages.is_empty() && stages.iter().all(|s| s[3] == 0.0);
    let names = if graphed {
        ["decode", "upload", "motion features", "", "point features → network → argmax (one CUDA graph)", "labels (download)", "encode labelled cloud"]
    } else {
        ["decode", "upload", "motion features", "point features", "network", "labels (argmax, download)", "encode labelled cloud"]
    };
    for (k, name) in names.iter().enumerate().filter(|(_, name)| !name.is_empty()) {
        let mut samples: Vec<Duration> = stages.iter().map(|s| Duration::from_secs_f64(s[k] / 1e3)).collect();
        let l = Latency::from_samples(&mut samples);
        record.metrics.push(Metric::new(&format!("{name}, p50"), l.p50_ms, "ms"));
        record.metrics.push(Metric::new(&format!("{name}, p99"), l.p99_ms, "ms"));
    }
    if let Some(m) = memory {
        record.metrics.push(Metric::new("GPU memory, peak allocated", m.peak_allocated as f64 / (1u64 << 30) as f64, "GiB").at_most(1.0));
        record.metrics.push(Metric::new("GPU memory, reserved by the caching allocator", m.reserved as f64 / (1u64 << 30) as f64, "GiB"));
    }
    if dev != Device::Cpu {
        record.metrics.push(Metric::new("speed-up over the PyTorch forward alone (16.1 ms)", REFERENCE_FORWARD_MS / e2e.p50_ms, "×"));
    }
    let motion_p50 = {
        let mut s: Vec<Duration> = stages.iter().map(|s| Duration::from_secs_f64(s[2] / 1e3)).collect();
        Latency::from_samples(&mut s).p50_ms
    };
    record.metrics.push(Metric::new("speed-up of motion features over MotionBEV's generator (190 ms/scan, CPU)", REFERENCE_RESIDUALS_MS / motion_p50.max(1e-6), "×"));
    record.notes.push(format!("{runs} scans timed after 8 warm-up scans (the motion history fills); weights {}", weights.display()));
    record.notes.push("the node's pipeline (`OnlineMos`) without DDS: odometry + PointCloud2 CDR in, the labelled PointCloud2 (x, y, z, intensity, label, score, rgb) out as CDR, buffers reused".into());
    record.notes.push("end to end: no device synchronisation except the final download; per stage: synchronised between stages".into());
    Ok(record)
}

/// One scan through the node's pipeline: its odometry, then its cloud decoded, segmented, and the
/// labelled cloud serialised.
struct SegmentedMessage {
    timings: Option<crate::mos::StageTimings>,
    decode_ms: f64,
    encode_ms: f64,
}

fn segment_message(online: &mut OnlineMos, (odometry, cloud): &(Vec<u8>, Vec<u8>), scratch: &mut Vec<u8>) -> Result<SegmentedMessage, String> {
    online.on_odometry(odometry).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let scan = online.decode_cloud(cloud).map_err(|e| e.to_string())?;
    let decode_ms = t0.elapsed().as_secs_f64() * 1e3;
    let pose = match online.pose(&scan) {
        PoseStatus::Ready(p) => p,
        PoseStatus::Wait(e) | PoseStatus::Failed(e) => return Err(format!("no pose for a simulated scan: {e}")),
    };
    let t1 = Instant::now();
    let segmented = online.segment(scan, pose, Wanted { split: false, point_labels: false }).map_err(|e| e.to_string())?;
    let mut encode_ms = 0.0;
    let mut timings = None;
    for s in segmented {
        // labelling the cloud happens inside `segment`, after the engine
        encode_ms += (t1.elapsed().as_secs_f64() * 1e3 - s.processing_ms).max(0.0);
        let t2 = Instant::now();
        messages::cdr::encode_into(&s.outputs.labelled, scratch).map_err(|e| e.to_string())?;
        std::hint::black_box(&scratch);
        encode_ms += t2.elapsed().as_secs_f64() * 1e3;
        timings = Some(s.timings);
        online.recycle(s.outputs);
    }
    Ok(SegmentedMessage { timings, decode_ms, encode_ms })
}

/// How far reduced-precision labels are from float32 labels, on the same scans.
pub fn precision_agreement(weights: &std::path::Path, device: crate::mos::DeviceChoice, scans: usize) -> Result<BenchRecord, String> {
    let data = simulated_scans(scans, 11).map_err(|e| e.to_string())?;
    let mut record = BenchRecord::new("precision", "Reduced precision against float32 labels");
    let labels_of = |precision: Precision, cuda_graph: bool| -> Result<Vec<Vec<u8>>, String> {
        let config = EngineConfig { weights: weights.to_path_buf(), device, precision, motion: MotionMode::Causal, cuda_graph, ..EngineConfig::default() };
        let mut engine = MosEngine::new(&config).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for (i, (c, pose, t)) in data.iter().enumerate() {
            for r in engine.process(ScanInput { id: i as u64, stamp_ns: *t, cloud: c, pose: *pose }).map_err(|e| e.to_string())? {
                out.push(r.classes);
            }
        }
        Ok(out)
    };
    let differing = |a: &[Vec<u8>], b: &[Vec<u8>]| {
        let (mut differ, mut total) = (0usize, 0usize);
        for (a, b) in a.iter().zip(b) {
            total += a.len();
            differ += a.iter().zip(b).filter(|(x, y)| x != y).count();
        }
        100.0 * differ as f64 / total.max(1) as f64
    };
    // the reference: float32, the U-Net run eagerly
    let reference = labels_of(Precision::Fp32, false)?;
    for precision in [Precision::Bf16, Precision::Fp16] {
        let other = labels_of(precision, true)?;
        record.metrics.push(Metric::new(&format!("{precision}: points whose label differs from fp32"), differing(&reference, &other), "%").at_most(0.1));
    }
    if device.resolve()?.is_cuda() {
        // the CUDA graph replays the same kernels: labels must not change at all
        for precision in [Precision::Fp32, Precision::Bf16] {
            let eager = if precision == Precision::Fp32 { reference.clone() } else { labels_of(precision, false)? };
            let graph = labels_of(precision, true)?;
            record.metrics.push(Metric::new(&format!("{precision}, features → labels in a CUDA graph: points whose label differs from eager"), differing(&eager, &graph), "%").at_most(0.0));
        }
    }
    record.notes.push(format!("{scans} simulated scans, causal motion features, weights {}", weights.display()));
    Ok(record)
}

/// Motion features alone (the online generator), per scan.
pub fn motion_features(device: crate::mos::DeviceChoice, mode: MotionMode, runs: usize) -> Result<Latency, String> {
    let dev = device.resolve()?;
    let scans = simulated_scans(runs + 8, 5).map_err(|e| e.to_string())?;
    let mut generator = MotionFeatures::new(mode, dev);
    let mut samples = Vec::new();
    for (i, (c, pose, t)) in scans.iter().enumerate() {
        let xyz = Tensor::stack(&[Tensor::from_slice(&c.x), Tensor::from_slice(&c.y), Tensor::from_slice(&c.z)], 1).to_kind(Kind::Double).to_device(dev);
        let start = Instant::now();
        let out = generator.push(MotionScan { id: i as u64, stamp_ns: *t, xyz, pose: *pose });
        for o in &out {
            std::hint::black_box(o.residuals.sum(Kind::Float).double_value(&[]));
        }
        if i >= 8 {
            samples.push(start.elapsed());
        }
    }
    Ok(Latency::from_samples(&mut samples))
}

/// One training step at `batch` scans (about 120k points each).
/// With `profile`, 5 more steps run under libtorch's profiler and their totals go to that folder.
pub fn train_step(device: crate::mos::DeviceChoice, batch: usize, steps: usize, bf16: bool, profile: Option<&std::path::Path>) -> Result<BenchRecord, String> {
    let dev = device.resolve()?;
    if dev.is_cuda() {
        // as `kdseg train` does by default (train.cudnn_benchmark)
        tch::Cuda::cudnn_set_benchmark(TrainConfig::default().cudnn_benchmark);
    }
    let kind = if bf16 { Kind::BFloat16 } else { Kind::Float };
    let data = simulated_scans(batch * 2, 3).map_err(|e| e.to_string())?;
    let scans: Vec<Scan> = data
        .iter()
        .enumerate()
        .map(|(i, (c, _, _))| {
            let n = c.len() as i64;
            let labels: Vec<i64> = c.label.as_ref().map(|l| l.iter().map(|&v| i64::from(crate::mos::kdmos_class(v))).collect()).unwrap_or_else(|| vec![1; n as usize]);
            Scan {
                sequence: "00".into(),
                frame: i,
                sample_index: i,
                xyz: Tensor::stack(&[Tensor::from_slice(&c.x), Tensor::from_slice(&c.y), Tensor::from_slice(&c.z)], 1).to_device(dev),
                remission: Tensor::from_slice(&c.intensity).to_device(dev),
                classes: Tensor::from_slice(&labels).to_device(dev),
                raw_labels: c.label.clone().unwrap_or_default(),
                residuals: Tensor::rand([n, 8], (Kind::Float, dev)),
                moving_points: 0,
                teacher: Some(Tensor::randn([n, 4], (Kind::Float, dev))),
            }
        })
        .collect();
    let net = PolarBevNet::new(NetConfig { motion_channels: MotionInput::Causal.channels(), ..NetConfig::KDMOS }, dev);
    let mut optimizer = train::optimizer::FlatSgd::new(net.vs.trainable_variables(), 0.9, 1e-4);
    let augment = Augmentation::default();
    let mut rng = crate::random::Rng::new(1);
    let points: usize = scans[..batch].iter().map(|s| s.len()).sum();
    let mut step = |i: usize| -> f64 {
        let chosen: Vec<&Scan> = scans[(i % 2) * batch..(i % 2 + 1) * batch].iter().collect();
        let b = train::make_batch(&chosen, &net.grid, Some((&augment, &mut rng)), kind, true);
        let input = crate::model::BevInput { features: &b.features, grid: &b.grid, batch: &b.batch, batch_size: b.batch_size };
        let bev = net.forward(&input, true);
        let logits = train::training_logits(&net, &b, &bev);
        let terms = train::loss::kdmos_loss(&logits.voxel, &logits.voxel_labels, &logits.point, &b.classes, b.teacher.as_ref(), 0.3, 4.0);
        optimizer.zero_grad();
        terms.total.backward();
        optimizer.step(0.01);
        terms.total.double_value(&[])
    };
    for i in 0..3 {
        step(i);
    }
    crate::gpu::reset_peak(dev);
    let mut i = 3;
    let latency = time_runs(0, steps, || {
        std::hint::black_box(step(i));
        i += 1;
    });
    let memory = crate::gpu::memory_stats(dev);
    if let Some(dir) = profile {
        let name = if bf16 { "train-bf16" } else { "train-fp32" };
        let (_, summary) = super::profile::record(dir, name, dev.is_cuda(), 5, || {
            for _ in 0..5 {
                std::hint::black_box(step(i));
                i += 1;
            }
        })?;
        print!("{}", super::profile::render(&summary, name, 25));
    }
    // where a step's time goes: the same steps with the device synchronised between stages
    let sync = || {
        if let Device::Cuda(d) = dev {
            tch::Cuda::synchronize(d as i64);
        }
    };
    const STAGES: [&str; 5] = ["batch (features, grid indices, augmentation)", "forward (network, voxel targets, point logits)", "loss (Lovász, cross-entropy, NCKD, TCKD)", "backward", "SGD update"];
    let mut stage_samples: Vec<Vec<Duration>> = vec![Vec::new(); STAGES.len()];
    for _ in 0..steps.min(10) {
        let mut times = Vec::with_capacity(STAGES.len());
        let mut t = Instant::now();
        let mut lap = |times: &mut Vec<Duration>| {
            sync();
            times.push(t.elapsed());
            t = Instant::now();
        };
        let chosen: Vec<&Scan> = scans[(i % 2) * batch..(i % 2 + 1) * batch].iter().collect();
        let b = train::make_batch(&chosen, &net.grid, Some((&augment, &mut rng)), kind, true);
        lap(&mut times);
        let input = crate::model::BevInput { features: &b.features, grid: &b.grid, batch: &b.batch, batch_size: b.batch_size };
        let bev = net.forward(&input, true);
        let logits = train::training_logits(&net, &b, &bev);
        lap(&mut times);
        let terms = train::loss::kdmos_loss(&logits.voxel, &logits.voxel_labels, &logits.point, &b.classes, b.teacher.as_ref(), 0.3, 4.0);
        lap(&mut times);
        optimizer.zero_grad();
        terms.total.backward();
        lap(&mut times);
        optimizer.step(0.01);
        lap(&mut times);
        for (k, d) in times.into_iter().enumerate() {
            stage_samples[k].push(d);
        }
        i += 1;
    }
    let mut record = BenchRecord::new("train", &format!("Training step on {dev:?}, batch {batch} ({points} points), {}", if bf16 { "bf16 mixed precision" } else { "fp32" }));
    let on_gpu = dev != Device::Cpu;
    let m = Metric::new("one step (forward, loss with KD, backward, SGD), p50", latency.p50_ms, "ms");
    record.metrics.push(if on_gpu { m.at_most(95.0) } else { m });
    record.metrics.push(Metric::new("one step, p99", latency.p99_ms, "ms"));
    if let Some(mem) = memory {
        record.metrics.push(Metric::new("peak GPU memory allocated", mem.peak_allocated as f64 / (1u64 << 30) as f64, "GiB").at_most(8.0));
    }
    if on_gpu {
        record.metrics.push(Metric::new("speed-up over the PyTorch reference step (190 ms)", REFERENCE_TRAIN_STEP_MS / latency.p50_ms, "×"));
    }
    for (name, samples) in STAGES.iter().zip(stage_samples.iter_mut()) {
        if !samples.is_empty() {
            record.metrics.push(Metric::new(&format!("{name}, p50 (synchronised)"), Latency::from_samples(samples).p50_ms, "ms"));
        }
    }
    record.notes.push(format!("{steps} steps after 3 warm-up steps; random motion features and teacher logits (the step's cost does not depend on their values)"));
    Ok(record)
}
