//! Data-plane benchmarks: PointCloud2 decoding and bag reading.

use super::{time_runs, BenchRecord, Metric};
use crate::bag::{Bag, BagWriter, Qos, WriterOptions};
use crate::cloud::{self, PointCloud};
use crate::messages::{self, Header, PointCloud2, PointCloud2Ref, Time};
use std::path::Path;
use std::time::Instant;

/// A Velodyne-like scan of `n` points (64 rings) with plausible values.
fn synthetic_scan(n: usize) -> PointCloud {
    let mut c = PointCloud::from_xyzi(Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let mut ring = Vec::with_capacity(n);
    let mut time = Vec::with_capacity(n);
    for i in 0..n {
        let az = i as f32 * 0.0031;
        let r = 5.0 + (i % 977) as f32 * 0.05;
        c.x.push(r * az.cos());
        c.y.push(r * az.sin());
        c.z.push(-1.7 + (i % 64) as f32 * 0.03);
        c.intensity.push((i % 255) as f32);
        ring.push((i % 64) as u16);
        time.push(i as f32 / n as f32 * 0.1);
    }
    c.ring = Some(ring);
    c.time = Some(time);
    c.source_len = n;
    c
}

/// Decoding a 120k-point Velodyne-layout cloud (22-byte points) into structure-of-arrays.
pub fn decode_cloud(points: usize, runs: usize) -> BenchRecord {
    let mut record = BenchRecord::new("decode", &format!("PointCloud2 decode, {points}-point Velodyne layout (22-byte points)"));
    let msg = cloud::encode_velodyne(Header { stamp: Time { sec: 1, nanosec: 0 }, frame_id: "velodyne".into() }, &synthetic_scan(points));
    let bytes = messages::encode(&msg).expect("encode synthetic cloud");
    let mapping = cloud::FieldMapping::default();
    let mut reused = PointCloud::default();
    let fields_only = time_runs(5, runs, || {
        cloud::decode_into(&msg, &mapping, &mut reused).expect("decode synthetic cloud");
        std::hint::black_box(&reused);
    });
    let from_cdr = time_runs(5, runs, || {
        let view: PointCloud2Ref = messages::decode(&bytes).expect("decode CDR");
        cloud::decode_into(&view, &mapping, &mut reused).expect("decode cloud");
        std::hint::black_box(&reused);
    });
    let fresh = time_runs(5, runs, || {
        let (c, _) = cloud::decode(&msg).expect("decode synthetic cloud");
        std::hint::black_box(c);
    });
    record.metrics.push(Metric::new("decode fields → SoA (reused buffers), p50", fields_only.p50_ms, "ms").at_most(1.0));
    record.metrics.push(Metric::new("decode fields → SoA (reused buffers), p99", fields_only.p99_ms, "ms"));
    record.metrics.push(Metric::new("CDR bytes → SoA (zero-copy view, reused buffers), p50", from_cdr.p50_ms, "ms").at_most(1.0));
    record.metrics.push(Metric::new("CDR bytes → SoA (zero-copy view, reused buffers), p99", from_cdr.p99_ms, "ms"));
    record.metrics.push(Metric::new("decode into freshly allocated SoA, p50", fresh.p50_ms, "ms"));
    record.notes.push(format!(
        "{runs} runs each after 5 warm-up runs; x, y, z, intensity, ring and time decoded; one thread. A stream of clouds reuses \
         its buffers (`cloud::decode_into`); fresh allocations add page faults that cost more than the decoding itself here"
    ));
    record
}

/// Reading a bag of PointCloud2 messages from the page cache.
pub fn bag_read(dir: &Path, clouds: usize, points: usize) -> Result<BenchRecord, crate::bag::BagError> {
    let mut record = BenchRecord::new("bag", &format!("rosbag2 MCAP read, {clouds} clouds of {points} points"));
    let path = dir.join("kdseg-bench-bag.mcap");
    {
        let mut writer = BagWriter::create(&path, WriterOptions { overwrite: true, ..Default::default() })?;
        let topic = writer.add_topic::<PointCloud2>("/velodyne_points", Qos::SENSOR_DATA)?;
        let scan = synthetic_scan(points);
        for i in 0..clouds {
            let t = 1_000_000_000 + i as i64 * 100_000_000;
            let msg = cloud::encode_velodyne(Header { stamp: Time::from_nanos(t), frame_id: "velodyne".into() }, &scan);
            writer.write(topic, t, &msg)?;
        }
        writer.finish()?;
    }
    let bytes = std::fs::metadata(&path).map_err(|e| crate::bag::BagError::Io { path: path.display().to_string(), source: e })?.len() as f64;
    let read_all = |decode: bool| -> Result<f64, crate::bag::BagError> {
        let start = Instant::now();
        let bag = Bag::open(&path)?;
        let mut total = 0usize;
        for message in bag.messages()? {
            let message = message?;
            total += message.data.len();
            if decode {
                let view: PointCloud2Ref = message.decode()?;
                let (c, _) = cloud::decode(&view).map_err(|source| crate::bag::BagError::Cloud { topic: message.topic.to_string(), index: message.index, source })?;
                std::hint::black_box(c);
            }
        }
        std::hint::black_box(total);
        Ok(start.elapsed().as_secs_f64())
    };
    read_all(false)?; // bring the file into the page cache
    let best = |decode: bool| -> Result<f64, crate::bag::BagError> { Ok((0..3).map(|_| read_all(decode)).collect::<Result<Vec<_>, _>>()?.into_iter().fold(f64::INFINITY, f64::min)) };
    let read_s = best(false)?;
    let decode_s = best(true)?;
    let mb = bytes / 1e6;
    record.metrics.push(Metric::new("read (messages in log-time order)", mb / read_s, "MB/s").at_least(500.0));
    record.metrics.push(Metric::new("read + decode every cloud to SoA", mb / decode_s, "MB/s"));
    record.notes.push(format!("bag of {:.0} MB in the page cache, best of 3; one thread", mb));
    let _ = std::fs::remove_file(&path);
    Ok(record)
}
