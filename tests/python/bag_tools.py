#!/usr/bin/env python3
"""Bags written and read by other tools, for kdseg's bag tests.

    bag_tools.py write OUTDIR   writes, with Python `rosbags` and `mcap`:
        OUTDIR/rosbags_mcap_v9/      rosbag2 MCAP, metadata v9
        OUTDIR/rosbags_sqlite_v8/    rosbag2 sqlite3, metadata v8 (the same messages)
        OUTDIR/mcap_ros2.mcap        a bare MCAP file from mcap_ros2's writer (zstd chunks)
        OUTDIR/expected.json         what every message holds, in log-time order
    bag_tools.py read BAG         reads BAG with rosbags' AnyReader and prints a JSON summary

The topics interleave: Velodyne clouds (22-byte points, `time` unaligned at 18), Ouster clouds
(48-byte points with padding, `t` in uint32 ns), odometry at twice the cloud rate, and /tf.
"""
import json
import sys
from pathlib import Path

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

TS = get_typestore(Stores.ROS2_JAZZY)
PointCloud2 = TS.types["sensor_msgs/msg/PointCloud2"]
PointField = TS.types["sensor_msgs/msg/PointField"]
Header = TS.types["std_msgs/msg/Header"]
Time = TS.types["builtin_interfaces/msg/Time"]
Odometry = TS.types["nav_msgs/msg/Odometry"]
TFMessage = TS.types["tf2_msgs/msg/TFMessage"]
TransformStamped = TS.types["geometry_msgs/msg/TransformStamped"]
Transform = TS.types["geometry_msgs/msg/Transform"]
Vector3 = TS.types["geometry_msgs/msg/Vector3"]
Quaternion = TS.types["geometry_msgs/msg/Quaternion"]
Pose = TS.types["geometry_msgs/msg/Pose"]
Point = TS.types["geometry_msgs/msg/Point"]
PoseWithCovariance = TS.types["geometry_msgs/msg/PoseWithCovariance"]
TwistWithCovariance = TS.types["geometry_msgs/msg/TwistWithCovariance"]
Twist = TS.types["geometry_msgs/msg/Twist"]

SENSOR_QOS = Qos(QosHistory.KEEP_LAST, 5, QosReliability.BEST_EFFORT, QosDurability.VOLATILE,
                 QosTime(0, 0), QosTime(0, 0), QosLiveliness.AUTOMATIC, QosTime(0, 0), False)

VELODYNE = np.dtype({"names": ["x", "y", "z", "intensity", "ring", "time"],
                     "formats": ["<f4", "<f4", "<f4", "<f4", "<u2", "<f4"],
                     "offsets": [0, 4, 8, 12, 16, 18], "itemsize": 22})
OUSTER = np.dtype({"names": ["x", "y", "z", "intensity", "t", "reflectivity", "ring", "ambient", "range"],
                   "formats": ["<f4", "<f4", "<f4", "<f4", "<u4", "<u2", "<u2", "<u2", "<u4"],
                   "offsets": [0, 4, 8, 16, 20, 24, 26, 28, 32], "itemsize": 48})
DATATYPE = {"<f4": 7, "<u2": 4, "<u4": 6, "<f8": 8, "|u1": 2, "|i1": 1}


def stamp(t):
    return Time(sec=t // 10**9, nanosec=t % 10**9)


def cloud(dtype, points, t, frame):
    fields = [PointField(name=n, offset=dtype.fields[n][1], datatype=DATATYPE[dtype.fields[n][0].str], count=1)
              for n in dtype.names]
    n = len(points)
    return PointCloud2(header=Header(stamp=stamp(t), frame_id=frame), height=1, width=n, fields=fields,
                       is_bigendian=False, point_step=dtype.itemsize, row_step=dtype.itemsize * n,
                       data=points.view(np.uint8).reshape(-1), is_dense=True)


def make_messages():
    """(topic, type, t, message, expected) in log-time order."""
    rng = np.random.default_rng(4242)
    out = []
    t0 = 1_700_000_000_000_000_000
    for k in range(6):  # 20 Hz odometry and tf
        t = t0 + k * 50_000_000
        x, yaw = 0.5 * k, 0.02 * k
        q = Quaternion(x=0.0, y=0.0, z=float(np.sin(yaw / 2)), w=float(np.cos(yaw / 2)))
        odom = Odometry(header=Header(stamp=stamp(t), frame_id="odom"), child_frame_id="velodyne",
                        pose=PoseWithCovariance(pose=Pose(position=Point(x=x, y=0.0, z=0.0), orientation=q),
                                                covariance=np.zeros(36)),
                        twist=TwistWithCovariance(twist=Twist(linear=Vector3(x=0.0, y=0.0, z=0.0),
                                                              angular=Vector3(x=0.0, y=0.0, z=0.0)),
                                                  covariance=np.zeros(36)))
        out.append(("/odom", Odometry.__msgtype__, t, odom, {"x": x, "qz": q.z}))
        tf = TFMessage(transforms=[TransformStamped(header=Header(stamp=stamp(t), frame_id="odom"),
                                                    child_frame_id="velodyne",
                                                    transform=Transform(translation=Vector3(x=x, y=0.0, z=0.0),
                                                                        rotation=q))])
        out.append(("/tf", TFMessage.__msgtype__, t + 1, tf, {"x": x}))
        if k % 2 == 0:
            n = 1000 + 37 * k
            v = np.zeros(n, dtype=VELODYNE)
            for c in ("x", "y", "z"):
                v[c] = rng.normal(0, 10, n)
            v["intensity"] = rng.uniform(0, 255, n)
            v["ring"] = rng.integers(0, 32, n)
            v["time"] = np.linspace(0, 0.1, n, dtype=np.float32)
            out.append(("/velodyne_points", PointCloud2.__msgtype__, t + 2, cloud(VELODYNE, v, t, "velodyne"),
                        summary(v, "time", 1.0)))
            o = np.zeros(n + 5, dtype=OUSTER)
            for c in ("x", "y", "z"):
                o[c] = rng.normal(0, 20, n + 5)
            o["intensity"] = rng.uniform(0, 1000, n + 5)
            o["t"] = rng.integers(0, 100_000_000, n + 5)
            o["ring"] = rng.integers(0, 128, n + 5)
            out.append(("/ouster/points", PointCloud2.__msgtype__, t + 3, cloud(OUSTER, o, t, "os_lidar"),
                        summary(o, "t", 1e-9)))
    return out


def summary(points, time_field, time_scale):
    return {
        "points": int(len(points)),
        "sum_x": float(points["x"].astype(np.float64).sum()),
        "sum_y": float(points["y"].astype(np.float64).sum()),
        "sum_z": float(points["z"].astype(np.float64).sum()),
        "sum_intensity": float(points["intensity"].astype(np.float64).sum()),
        "sum_time_s": float(points[time_field].astype(np.float64).sum() * time_scale),
        "sum_ring": int(points["ring"].astype(np.int64).sum()),
    }


def write(outdir):
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    messages = make_messages()
    for name, version, plugin in (("rosbags_mcap_v9", 9, StoragePlugin.MCAP),
                                  ("rosbags_sqlite_v8", 8, StoragePlugin.SQLITE3)):
        with Writer(outdir / name, version=version, storage_plugin=plugin) as writer:
            conns = {}
            for topic, msgtype, t, msg, _ in messages:
                if topic not in conns:
                    qos = [SENSOR_QOS] if "points" in topic else []
                    conns[topic] = writer.add_connection(topic, msgtype, typestore=TS, offered_qos_profiles=qos)
                writer.write(conns[topic], t, TS.serialize_cdr(msg, msgtype))
    from mcap_ros2.writer import Writer as McapWriter
    with open(outdir / "mcap_ros2.mcap", "wb") as f:
        writer = McapWriter(f)
        schemas = {}
        for topic, msgtype, t, msg, _ in messages:
            if msgtype not in schemas:
                text, _ = TS.generate_msgdef(msgtype, ros_version=2)
                schemas[msgtype] = writer.register_msgdef(msgtype, text)
            writer.write_message(topic, schemas[msgtype], to_plain(msg), log_time=t, publish_time=t)
        writer.finish()
    expected = [{"topic": topic, "type": msgtype, "log_time": t, **exp} for topic, msgtype, t, _, exp in messages]
    (outdir / "expected.json").write_text(json.dumps(expected, indent=1))


def to_plain(msg):
    """rosbags message → nested dicts for mcap_ros2's dynamic serializer."""
    if isinstance(msg, np.ndarray):
        return msg.tolist() if msg.dtype != np.uint8 else bytes(msg)
    if hasattr(msg, "__dataclass_fields__"):
        return {k: to_plain(getattr(msg, k)) for k in msg.__dataclass_fields__ if k != "__msgtype__"}
    if isinstance(msg, list):
        return [to_plain(m) for m in msg]
    return msg


def read(bag):
    out = {"topics": {}, "messages": []}
    path = Path(bag)
    with AnyReader([path], default_typestore=TS) as reader:
        for conn in reader.connections:
            out["topics"][conn.topic] = {"type": conn.msgtype, "count": conn.msgcount}
        for conn, t, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            entry = {"topic": conn.topic, "log_time": t}
            if conn.msgtype == "sensor_msgs/msg/PointCloud2":
                fields = {f.name: (f.offset, f.datatype) for f in msg.fields}
                names = list(fields)
                fmt = {7: "<f4", 6: "<u4", 4: "<u2", 2: "u1", 1: "i1", 8: "<f8"}
                dtype = np.dtype({"names": names, "formats": [fmt[fields[n][1]] for n in names],
                                  "offsets": [fields[n][0] for n in names], "itemsize": msg.point_step})
                pts = np.frombuffer(msg.data.tobytes(), dtype=dtype, count=msg.width * msg.height)
                entry.update({"points": int(len(pts)), "fields": names, "frame_id": msg.header.frame_id,
                              "stamp": msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec,
                              "sum_x": float(pts["x"].astype(np.float64).sum())})
                for extra in ("label", "score", "rgb"):
                    if extra in names:
                        entry["sum_" + extra] = float(pts[extra].astype(np.float64).sum())
            elif conn.msgtype == "nav_msgs/msg/Odometry":
                entry.update({"x": msg.pose.pose.position.x, "child_frame_id": msg.child_frame_id})
            elif conn.msgtype == "tf2_msgs/msg/TFMessage":
                entry.update({"frames": [tr.child_frame_id for tr in msg.transforms]})
            out["messages"].append(entry)
    print(json.dumps(out))


if __name__ == "__main__":
    {"write": write, "read": read}[sys.argv[1]](sys.argv[2])
