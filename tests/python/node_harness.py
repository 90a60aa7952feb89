#!/usr/bin/env python3
"""An rclpy harness for the kdseg node: publishes a recorded sequence, collects the node's outputs,
prints a JSON report.

    node_harness.py BAG --poses odometry|tf [--sim-time] [--malformed-at K] [--timeout S]

It publishes, scan by scan, the bag's poses (odometry or /tf, plus /tf_static once, latched) and the
cloud (reliable, as drivers do), and waits for the node's labelled cloud of that scan before it sends
the next, so that no scan is dropped for overload. With --sim-time it publishes /clock at each scan's
stamp. With --malformed-at K it sends a truncated cloud before scan K. Ground truth comes from the
clouds' `label` field.
"""
import argparse
import json
import sys
import time

import numpy as np
import rclpy
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rosbags.highlevel import AnyReader

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from kdseg_msgs.msg import PointLabels
from nav_msgs.msg import Odometry
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Float64
from tf2_msgs.msg import TFMessage

TYPES = {"sensor_msgs/msg/PointCloud2": PointCloud2, "nav_msgs/msg/Odometry": Odometry, "tf2_msgs/msg/TFMessage": TFMessage}


def field_array(msg, name, dtype):
    field = next(f for f in msg.fields if f.name == name)
    n = msg.width * msg.height
    raw = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(n, msg.point_step)
    return raw[:, field.offset:field.offset + np.dtype(dtype).itemsize].copy().view(dtype).reshape(n)


def stamp_ns(stamp):
    return stamp.sec * 10**9 + stamp.nanosec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bag")
    ap.add_argument("--poses", choices=["odometry", "tf"], default="odometry")
    ap.add_argument("--sim-time", action="store_true")
    ap.add_argument("--malformed-at", type=int, default=-1)
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args()

    scans, odoms, tfs, statics = [], {}, {}, []
    with AnyReader([__import__("pathlib").Path(args.bag)]) as reader:
        for conn, _t, raw in reader.messages():
            cls = TYPES.get(conn.msgtype)
            if cls is None:
                continue
            msg = deserialize_message(bytes(raw), cls)
            if conn.topic == "/velodyne_points":
                scans.append(msg)
            elif conn.topic == "/odom":
                odoms.setdefault(stamp_ns(msg.header.stamp), []).append(msg)
            elif conn.topic == "/tf":
                tfs.setdefault(stamp_ns(msg.transforms[0].header.stamp), []).append(msg)
            elif conn.topic == "/tf_static":
                statics.append(msg)

    rclpy.init()
    node = rclpy.create_node("kdseg_test_harness")
    reliable = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
    latched = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    pub_cloud = node.create_publisher(PointCloud2, "/velodyne_points", reliable)
    pub_odom = node.create_publisher(Odometry, "/odom", reliable)
    pub_tf = node.create_publisher(TFMessage, "/tf", reliable)
    pub_static = node.create_publisher(TFMessage, "/tf_static", latched)
    pub_clock = node.create_publisher(Clock, "/clock", reliable)

    outputs, labels, moving, diagnostics, processing, latency = {}, {}, [], [], [], []
    node.create_subscription(PointCloud2, "/kdseg/labelled_points", lambda m: outputs.setdefault(stamp_ns(m.header.stamp), m), reliable)
    node.create_subscription(PointLabels, "/kdseg/point_labels", lambda m: labels.setdefault(stamp_ns(m.header.stamp), m), reliable)
    node.create_subscription(PointCloud2, "/kdseg/moving_points", lambda m: moving.append(m.width), reliable)
    node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diagnostics.append(m), reliable)
    node.create_subscription(Float64, "/kdseg/debug/processing_time_ms", lambda m: processing.append(m.data), reliable)
    node.create_subscription(Float64, "/kdseg/debug/pipeline_latency_ms", lambda m: latency.append(m.data), reliable)

    def spin_until(pred, timeout):
        end = time.time() + timeout
        while time.time() < end:
            rclpy.spin_once(node, timeout_sec=0.05)
            if pred():
                return True
        return False

    # wait for the node to subscribe, and for it to see our subscriptions
    ready = spin_until(lambda: pub_cloud.get_subscription_count() > 0 and node.count_publishers("/kdseg/labelled_points") > 0, args.timeout)
    if not ready:
        print(json.dumps({"error": "the node did not come up"}))
        return 2
    spin_until(lambda: False, 1.0)
    for msg in statics:
        pub_static.publish(msg)

    report = {"scans": len(scans), "received": 0, "missing": [], "point_count_mismatch": 0, "header_mismatch": 0, "labels_checked": 0}
    tp = fp = fn = 0
    per_scan = []  # [tp, fp, fn] of each received scan, None while the labels are "unknown"
    for k, cloud in enumerate(scans):
        t = stamp_ns(cloud.header.stamp)
        if args.sim_time:
            c = t + 1_000_000  # the clock runs 1 ms ahead of the scan it delivers
            pub_clock.publish(Clock(clock=Time(sec=c // 10**9, nanosec=c % 10**9)))
        if k == args.malformed_at:
            bad = PointCloud2(header=cloud.header, height=1, width=cloud.width, fields=cloud.fields, is_bigendian=False,
                              point_step=cloud.point_step, row_step=cloud.row_step, data=bytes(cloud.data)[:100], is_dense=True)
            pub_cloud.publish(bad)
            spin_until(lambda: False, 0.5)
        for msg in odoms.get(t, []) if args.poses == "odometry" else tfs.get(t, []):
            (pub_odom if args.poses == "odometry" else pub_tf).publish(msg)
        # a pose just after the scan too, so that lookups need no extrapolation
        nxt = scans[k + 1].header.stamp if k + 1 < len(scans) else None
        spin_until(lambda: False, 0.05)
        pub_cloud.publish(cloud)
        if nxt is not None:
            for msg in odoms.get(stamp_ns(nxt), []) if args.poses == "odometry" else tfs.get(stamp_ns(nxt), []):
                (pub_odom if args.poses == "odometry" else pub_tf).publish(msg)
        if not spin_until(lambda: t in outputs, args.timeout):
            report["missing"].append(k)
            continue
        report["received"] += 1
        out = outputs[t]
        if out.header.frame_id != cloud.header.frame_id:
            report["header_mismatch"] += 1
        if out.width * out.height != cloud.width * cloud.height:
            report["point_count_mismatch"] += 1
        predicted = field_array(out, "label", np.uint32)
        if predicted.max(initial=0) == 0:
            per_scan.append(None)
            continue  # history too short: labels are "unknown"
        truth = field_array(cloud, "label", np.uint32) & 0xFFFF
        gt_moving = (truth >= 251) & (truth <= 259)
        labelled = truth > 1
        pm = predicted == 251
        tp += int(np.sum(pm & gt_moving & labelled))
        counts = [int(np.sum(pm & gt_moving & labelled)), int(np.sum(pm & ~gt_moving & labelled)), int(np.sum(~pm & gt_moving & labelled))]
        per_scan.append(counts)
        tp, fp, fn = tp + counts[0], fp + counts[1], fn + counts[2]
        report["labels_checked"] += 1
    spin_until(lambda: False, 2.5)  # one more diagnostics period
    report["iou_moving"] = tp / (tp + fp + fn) if tp + fp + fn > 0 else None
    report["tp_fp_fn"] = [tp, fp, fn]
    report["per_scan"] = per_scan
    report["point_labels"] = len(labels)
    report["point_labels_sizes_ok"] = all(len(m.labels) == m.width * m.height and len(m.scores) == len(m.labels) for m in labels.values())
    report["moving_clouds"] = len(moving)
    report["processing_ms"] = processing[-5:]
    report["latency_ms"] = latency[-5:]
    values = {}
    for d in diagnostics:
        for s in d.status:
            for kv in s.values:
                values[f"{s.name}/{kv.key}"] = kv.value
    report["diagnostics"] = values
    report["diagnostics_messages"] = len(diagnostics)
    print(json.dumps(report))
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
