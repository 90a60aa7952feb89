//! The ROS 2 node (cargo feature `ros`): a thin r2r layer over [`crate::online`].
//!
//! * Parameters are read once at start (`--ros-args --params-file config/kdseg.yaml`) into the typed
//!   [`Config`]; `use_sim_time` switches the node's clock to `/clock`.
//! * Messages travel as CDR bytes (r2r's raw subscriptions and publishers); kdseg's own codecs decode
//!   and encode them.
//! * A subscription task moves each cloud into a one-slot mailbox: the newest scan wins when the
//!   worker is busy, and every replaced scan is counted (r2r's own 10-slot channel is drained at once,
//!   so it does not drop silently). Pose messages go straight to the pose buffer, also while the
//!   worker is busy.
//! * The worker thread owns the engine: it waits for the scan's pose (up to
//!   `pose.lookup_timeout_s`), segments, publishes, and publishes `/diagnostics` periodically.
//! * Optional outputs (moving/static split, per-point labels, debug timings) are built only when
//!   somebody subscribes; `~/labelled_points` is always published.
//! * SIGINT/SIGTERM stop it cleanly.
//!
//! A second pipeline (4D radar + camera) plugs in as another set of subscriptions, mailbox and
//! worker next to the MOS one, sharing [`common`].

pub mod bench;
mod common;
mod parameters;

pub use parameters::config_from_parameters;

use crate::config::{InputQos, OutputConfig};
use crate::messages::{self, Time};
use crate::mos::outputs::Wanted;
use crate::online::{OnlineMos, PoseStatus};
use common::{Mailbox, RateLimitedLog};
use futures::StreamExt;
use r2r::{QosProfile, PublisherUntyped};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum NodeError {
    #[error("ROS: {0}")]
    Ros(#[from] r2r::Error),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Engine(#[from] crate::mos::EngineError),
    #[error("{0}")]
    Runtime(String),
}

struct Publishers {
    labelled: PublisherUntyped,
    moving: PublisherUntyped,
    statik: PublisherUntyped,
    point_labels: PublisherUntyped,
    processing_ms: PublisherUntyped,
    latency_ms: PublisherUntyped,
    overhead_ms: PublisherUntyped,
    diagnostics: PublisherUntyped,
}

fn subscribed(p: &PublisherUntyped) -> bool {
    p.get_inter_process_subscription_count().map(|n| n > 0).unwrap_or(true)
}

/// Runs the node until SIGINT/SIGTERM.
pub fn run() -> Result<(), NodeError> {
    // Fast DDS publishes synchronously by default: the worker would push every 3 MB cloud through the
    // transport itself (about a millisecond here). Asynchronous publishing hands it to Fast DDS's
    // thread; a user's own setting wins. Set before rmw starts, while this is the only thread.
    if std::env::var_os("RMW_FASTRTPS_PUBLICATION_MODE").is_none() {
        std::env::set_var("RMW_FASTRTPS_PUBLICATION_MODE", "ASYNCHRONOUS");
    }
    let ctx = r2r::Context::create()?;
    let mut node = r2r::Node::create(ctx, "kdseg", "")?;
    let node_name = node.name()?;
    let config = {
        let params = node.params.lock().map_err(|_| NodeError::Runtime("parameter lock poisoned".into()))?;
        let use_sim_time = matches!(params.get("use_sim_time").map(|p| &p.value), Some(r2r::ParameterValue::Bool(true)));
        let config = config_from_parameters(&params)?;
        drop(params);
        if use_sim_time {
            let time_source = node.get_time_source();
            time_source.enable_sim_time(&mut node)?;
            log::info!("use_sim_time: the node's clock follows /clock");
        }
        config
    };
    let topics = config.topics.clone();
    let input_qos = match config.node.input_qos {
        InputQos::SensorData => QosProfile::sensor_data().keep_last(config.node.input_depth),
        InputQos::Reliable => QosProfile::default().keep_last(config.node.input_depth),
    };
    // best effort receives from reliable and best-effort publishers alike
    let pose_qos = QosProfile::sensor_data().keep_last(100);
    let output_qos = QosProfile::default().keep_last(config.node.output_depth);
    let resolve = |t: &str| OutputConfig::resolve(t, &node_name);
    let publishers = Publishers {
        labelled: node.create_publisher_untyped(&resolve(&config.outputs.labelled_points), "sensor_msgs/msg/PointCloud2", output_qos.clone())?,
        moving: node.create_publisher_untyped(&resolve(&config.outputs.moving_points), "sensor_msgs/msg/PointCloud2", output_qos.clone())?,
        statik: node.create_publisher_untyped(&resolve(&config.outputs.static_points), "sensor_msgs/msg/PointCloud2", output_qos.clone())?,
        point_labels: node.create_publisher_untyped(&resolve(&config.outputs.point_labels), "kdseg_msgs/msg/PointLabels", output_qos.clone())?,
        processing_ms: node.create_publisher_untyped(&resolve("~/debug/processing_time_ms"), "std_msgs/msg/Float64", output_qos.clone())?,
        latency_ms: node.create_publisher_untyped(&resolve("~/debug/pipeline_latency_ms"), "std_msgs/msg/Float64", output_qos.clone())?,
        overhead_ms: node.create_publisher_untyped(&resolve("~/debug/node_overhead_ms"), "std_msgs/msg/Float64", output_qos.clone())?,
        diagnostics: node.create_publisher_untyped("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", QosProfile::default().keep_last(10))?,
    };
    let clouds = node.subscribe_raw(&topics.lidar, "sensor_msgs/msg/PointCloud2", input_qos)?;
    let pipeline = OnlineMos::new(config.clone())?;
    log::info!(
        "kdseg node: {} → {} ({:?} on {:?}, {} motion features, delay {} scans)",
        topics.lidar,
        resolve(&config.outputs.labelled_points),
        pipeline.engine().network().config.variant,
        pipeline.engine().device(),
        pipeline.engine().motion_mode(),
        pipeline.engine().delay()
    );
    let inbox = pipeline.pose_inbox();
    let mut pose_streams = Vec::new();
    match config.pose.source {
        crate::config::PoseSource::Odometry => pose_streams.push(("odometry", node.subscribe_raw(&topics.odometry, "nav_msgs/msg/Odometry", pose_qos.clone())?)),
        crate::config::PoseSource::Tf => pose_streams.push(("tf", node.subscribe_raw(&topics.tf, "tf2_msgs/msg/TFMessage", pose_qos.clone())?)),
    }
    // static transforms (sensor mounts) are used with odometry too, and are latched
    let tf_static = node.subscribe_raw(&topics.tf_static, "tf2_msgs/msg/TFMessage", QosProfile::default().keep_last(100).transient_local())?;
    let clock = node.get_ros_clock();
    let now = move || -> Time {
        let d = clock.lock().ok().and_then(|mut c| c.get_now().ok()).unwrap_or_default();
        Time::from_nanos(d.as_nanos() as i64)
    };

    let stop = Arc::new(AtomicBool::new(false));
    let mailbox = Arc::new(Mailbox::new());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().map_err(|e| NodeError::Runtime(e.to_string()))?;
    let log_period = Duration::from_secs_f64(config.node.log_period_s);
    let pose_log = Arc::new(Mutex::new(RateLimitedLog::new(log_period)));

    // clouds: drain r2r's channel into the one-slot mailbox
    {
        let mailbox = mailbox.clone();
        runtime.spawn(async move {
            let mut clouds = clouds;
            while let Some(bytes) = clouds.next().await {
                mailbox.put(bytes);
            }
        });
    }
    for (kind, stream) in pose_streams {
        let (inbox, log) = (inbox.clone(), pose_log.clone());
        runtime.spawn(async move {
            let mut stream = stream;
            while let Some(bytes) = stream.next().await {
                let result = if kind == "odometry" { inbox.on_odometry(&bytes) } else { inbox.on_tf(&bytes, false) };
                if let Err(e) = result {
                    if let Ok(mut l) = log.lock() {
                        l.warn("pose", &e.to_string());
                    }
                }
            }
        });
    }
    {
        let (inbox, log) = (inbox.clone(), pose_log.clone());
        runtime.spawn(async move {
            let mut stream = tf_static;
            while let Some(bytes) = stream.next().await {
                if let Err(e) = inbox.on_tf(&bytes, true) {
                    if let Ok(mut l) = log.lock() {
                        l.warn("pose", &e.to_string());
                    }
                }
            }
        });
    }
    // signals: the first stops the node
    {
        let (stop, mailbox) = (stop.clone(), mailbox.clone());
        runtime.spawn(async move {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    log::error!("cannot watch SIGTERM: {e}");
                    return;
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            log::info!("shutting down");
            stop.store(true, Ordering::SeqCst);
            mailbox.wake();
        });
    }
    // the worker owns the engine
    let worker = {
        let (stop, mailbox) = (stop.clone(), mailbox.clone());
        let timeout = Duration::from_secs_f64(config.pose.lookup_timeout_s);
        let diagnostics_period = Duration::from_secs_f64(config.node.diagnostics_period_s);
        std::thread::Builder::new()
            .name("kdseg-worker".into())
            .spawn(move || worker_loop(pipeline, publishers, mailbox, stop, timeout, diagnostics_period, log_period, now))
            .map_err(|e| NodeError::Runtime(e.to_string()))?
    };
    // rcl spins on this thread until stopped
    while !stop.load(Ordering::SeqCst) {
        node.spin_once(Duration::from_millis(20));
        if worker.is_finished() {
            break;
        }
    }
    stop.store(true, Ordering::SeqCst);
    mailbox.wake();
    let result = worker.join().map_err(|_| NodeError::Runtime("the worker thread panicked".into()))?;
    runtime.shutdown_timeout(Duration::from_millis(500));
    drop(node);
    result
}

#[allow(clippy::too_many_arguments)]
fn worker_loop(
    mut pipeline: OnlineMos,
    publishers: Publishers,
    mailbox: Arc<Mailbox>,
    stop: Arc<AtomicBool>,
    pose_timeout: Duration,
    diagnostics_period: Duration,
    log_period: Duration,
    now: impl Fn() -> Time,
) -> Result<(), NodeError> {
    let mut log = RateLimitedLog::new(log_period);
    let mut last_diagnostics = Instant::now() - diagnostics_period;
    let mut scratch = Vec::new();
    let publish = |p: &PublisherUntyped, bytes: &[u8], log: &mut RateLimitedLog| {
        if let Err(e) = p.publish_raw(bytes) {
            log.warn("publish", &format!("publishing failed: {e}"));
        }
    };
    while !stop.load(Ordering::SeqCst) {
        if last_diagnostics.elapsed() >= diagnostics_period {
            last_diagnostics = Instant::now();
            if messages::cdr::encode_into(&pipeline.diagnostics(now()), &mut scratch).is_ok() {
                publish(&publishers.diagnostics, &scratch, &mut log);
            }
        }
        let Some((bytes, arrived, replaced)) = mailbox.take(diagnostics_period) else { continue };
        let taken = Instant::now();
        for _ in 0..replaced {
            pipeline.record_drop();
        }
        let scan = match pipeline.decode_cloud(&bytes) {
            Ok(s) => s,
            Err(e) => {
                log.warn("malformed", &format!("skipping a cloud: {e}"));
                continue;
            }
        };
        // wait for the pose, up to the timeout
        let waited = Instant::now();
        let pose = loop {
            match pipeline.pose(&scan) {
                PoseStatus::Ready(p) => break Some(p),
                PoseStatus::Wait(e) if waited.elapsed() < pose_timeout && !stop.load(Ordering::SeqCst) => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(2));
                }
                PoseStatus::Wait(e) | PoseStatus::Failed(e) => {
                    log.warn("pose", &format!("skipping the cloud stamped {:.3} s: {e}", scan.header.stamp.to_seconds()));
                    break None;
                }
            }
        };
        let Some(pose) = pose else {
            pipeline.record_pose_failure();
            continue;
        };
        let pose_wait = waited.elapsed();
        let wanted = Wanted { split: subscribed(&publishers.moving) || subscribed(&publishers.statik), point_labels: subscribed(&publishers.point_labels) };
        let segmented = match pipeline.segment(scan, pose, wanted) {
            Ok(s) => s,
            Err(e) => {
                log.warn("engine", &format!("segmentation failed: {e}"));
                continue;
            }
        };
        for s in segmented {
            let mut send = |p: &PublisherUntyped, message: &dyn erased::Encode| {
                if message.encode_into(&mut scratch).is_ok() {
                    publish(p, &scratch, &mut log);
                }
            };
            send(&publishers.labelled, &s.outputs.labelled);
            if wanted.split {
                send(&publishers.moving, &s.outputs.moving);
                send(&publishers.statik, &s.outputs.statik);
            }
            if wanted.point_labels {
                send(&publishers.point_labels, &s.outputs.point_labels);
            }
            let latency = (now().to_nanos() - s.header.stamp.to_nanos()) as f64 * 1e-6;
            pipeline.record_latency(latency);
            if subscribed(&publishers.processing_ms) {
                send(&publishers.processing_ms, &messages::Float64 { data: s.processing_ms });
            }
            if subscribed(&publishers.latency_ms) {
                send(&publishers.latency_ms, &messages::Float64 { data: latency });
            }
            pipeline.recycle(s.outputs);
        }
        // what the node adds to the engine for this message: its work from taking the cloud to the
        // last publish, less inference and less waiting for the pose; the time the cloud waited for
        // the busy worker is queueing, reported apart
        let overhead = (taken.elapsed().saturating_sub(pose_wait)).as_secs_f64() * 1e3 - pipeline.stats().last_processing_ms;
        pipeline.record_overhead(overhead, (taken - arrived).as_secs_f64() * 1e3, pose_wait.as_secs_f64() * 1e3);
        if subscribed(&publishers.overhead_ms) {
            if messages::cdr::encode_into(&messages::Float64 { data: overhead }, &mut scratch).is_ok() {
                publish(&publishers.overhead_ms, &scratch, &mut log);
            }
        }
    }
    Ok(())
}

/// Object-safe encoding of the different message types the worker publishes.
mod erased {
    pub trait Encode {
        fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), crate::messages::CdrError>;
    }

    impl<T: serde::Serialize> Encode for T {
        fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), crate::messages::CdrError> {
            crate::messages::cdr::encode_into(self, out)
        }
    }
}
