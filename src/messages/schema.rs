//! Type names, `ros2msg` schema texts and RIHS01 type hashes of the messages kdseg writes to bags.
//!
//! An MCAP `ros2` profile schema is the message's own `.msg` text followed, for every nested type, by
//! a line of 80 `=`, `MSG: pkg/Type` and that type's text. The hashes are what rosidl generates for
//! ROS 2 Jazzy (the tests compare them with Python `rosbags`).

use super::*;

/// A message type that can be written to a bag.
pub trait RosMessage: Serialize {
    /// e.g. `sensor_msgs/msg/PointCloud2`
    const TYPE_NAME: &'static str;
    /// The `ros2msg` schema text, dependencies included.
    fn definition() -> String;
    /// The RIHS01 type description hash rosbag2 records in `metadata.yaml` (v7+).
    const TYPE_HASH: &'static str;
}

const TIME: &str = "int32 sec\nuint32 nanosec\n";
const HEADER: &str = "builtin_interfaces/Time stamp\nstring frame_id\n";
const POINT_FIELD: &str = "uint8 INT8    = 1\nuint8 UINT8   = 2\nuint8 INT16   = 3\nuint8 UINT16  = 4\nuint8 INT32   = 5\nuint8 UINT32  = 6\nuint8 FLOAT32 = 7\nuint8 FLOAT64 = 8\nstring name\nuint32 offset\nuint8  datatype\nuint32 count\n";
const POINT_CLOUD2: &str = "std_msgs/Header header\nuint32 height\nuint32 width\nPointField[] fields\nbool    is_bigendian\nuint32  point_step\nuint32  row_step\nuint8[] data\nbool is_dense\n";
const IMAGE: &str = "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\nuint32 step\nuint8[] data\n";
const COMPRESSED_IMAGE: &str = "std_msgs/Header header\nstring format\nuint8[] data\n";
const REGION_OF_INTEREST: &str = "uint32 x_offset\nuint32 y_offset\nuint32 height\nuint32 width\nbool do_rectify\n";
const CAMERA_INFO: &str = "std_msgs/Header header\nuint32 height\nuint32 width\nstring distortion_model\nfloat64[] d\nfloat64[9]  k\nfloat64[9]  r\nfloat64[12] p\nuint32 binning_x\nuint32 binning_y\nRegionOfInterest roi\n";
const POINT: &str = "float64 x\nfloat64 y\nfloat64 z\n";
const VECTOR3: &str = "float64 x\nfloat64 y\nfloat64 z\n";
const QUATERNION: &str = "float64 x 0\nfloat64 y 0\nfloat64 z 0\nfloat64 w 1\n";
const POSE: &str = "Point position\nQuaternion orientation\n";
const POSE_WITH_COVARIANCE: &str = "Pose pose\nfloat64[36] covariance\n";
const TWIST: &str = "Vector3  linear\nVector3  angular\n";
const TWIST_WITH_COVARIANCE: &str = "Twist twist\nfloat64[36] covariance\n";
const POSE_STAMPED: &str = "std_msgs/Header header\nPose pose\n";
const TRANSFORM: &str = "Vector3 translation\nQuaternion rotation\n";
const TRANSFORM_STAMPED: &str = "std_msgs/Header header\nstring child_frame_id\nTransform transform\n";
const ODOMETRY: &str = "std_msgs/Header header\nstring child_frame_id\ngeometry_msgs/PoseWithCovariance pose\ngeometry_msgs/TwistWithCovariance twist\n";
const TF_MESSAGE: &str = "geometry_msgs/TransformStamped[] transforms\n";
const KEY_VALUE: &str = "string key\nstring value\n";
const DIAGNOSTIC_STATUS: &str = "byte OK=0\nbyte WARN=1\nbyte ERROR=2\nbyte STALE=3\nbyte level\nstring name\nstring message\nstring hardware_id\nKeyValue[] values\n";
const DIAGNOSTIC_ARRAY: &str = "std_msgs/Header header\nDiagnosticStatus[] status\n";
const CLOCK: &str = "builtin_interfaces/Time clock\n";
const FLOAT64: &str = "float64 data\n";
const POINT_LABELS: &str = include_str!("../../msg/msg/PointLabels.msg");

/// Joins a type's text with its dependencies' texts in the MCAP `ros2msg` convention.
fn with_dependencies(own: &str, dependencies: &[(&str, &str)]) -> String {
    let mut out = own.to_string();
    for (name, text) in dependencies {
        out.push_str(&"=".repeat(80));
        out.push_str("\nMSG: ");
        out.push_str(name);
        out.push('\n');
        out.push_str(text);
    }
    out
}

const DEP_HEADER: [(&str, &str); 2] = [("std_msgs/Header", HEADER), ("builtin_interfaces/Time", TIME)];

macro_rules! ros_message {
    ($ty:ty, $name:literal, $hash:literal, $own:expr, [$($dep:expr),* $(,)?]) => {
        impl RosMessage for $ty {
            const TYPE_NAME: &'static str = $name;
            const TYPE_HASH: &'static str = $hash;
            fn definition() -> String {
                let deps: Vec<(&str, &str)> = vec![$($dep),*];
                with_dependencies($own, &deps)
            }
        }
    };
}

ros_message!(Header, "std_msgs/msg/Header",
    "RIHS01_f49fb3ae2cf070f793645ff749683ac6b06203e41c891e17701b1cb597ce6a01",
    HEADER, [DEP_HEADER[1]]);
ros_message!(PointCloud2, "sensor_msgs/msg/PointCloud2",
    "RIHS01_9198cabf7da3796ae6fe19c4cb3bdd3525492988c70522628af5daa124bae2b5",
    POINT_CLOUD2, [DEP_HEADER[0], DEP_HEADER[1], ("sensor_msgs/PointField", POINT_FIELD)]);
ros_message!(Image, "sensor_msgs/msg/Image",
    "RIHS01_d31d41a9a4c4bc8eae9be757b0beed306564f7526c88ea6a4588fb9582527d47",
    IMAGE, [DEP_HEADER[0], DEP_HEADER[1]]);
ros_message!(CompressedImage, "sensor_msgs/msg/CompressedImage",
    "RIHS01_15640771531571185e2efc8a100baf923961a4d15d5569652e6cb6691e8e371a",
    COMPRESSED_IMAGE, [DEP_HEADER[0], DEP_HEADER[1]]);
ros_message!(CameraInfo, "sensor_msgs/msg/CameraInfo",
    "RIHS01_b3dfd68ff46c9d56c80fd3bd4ed22c7a4ddce8c8348f2f59c299e73118e7e275",
    CAMERA_INFO, [DEP_HEADER[0], DEP_HEADER[1], ("sensor_msgs/RegionOfInterest", REGION_OF_INTEREST)]);
ros_message!(PoseStamped, "geometry_msgs/msg/PoseStamped",
    "RIHS01_10f3786d7d40fd2b54367835614bff85d4ad3b5dab62bf8bca0cc232d73b4cd8",
    POSE_STAMPED, [DEP_HEADER[0], DEP_HEADER[1], ("geometry_msgs/Pose", POSE),
        ("geometry_msgs/Point", POINT), ("geometry_msgs/Quaternion", QUATERNION)]);
ros_message!(TransformStamped, "geometry_msgs/msg/TransformStamped",
    "RIHS01_0a241f87d04668d94099cbb5ba11691d5ad32c2f29682e4eb5653424bd275206",
    TRANSFORM_STAMPED, [DEP_HEADER[0], DEP_HEADER[1], ("geometry_msgs/Transform", TRANSFORM),
        ("geometry_msgs/Vector3", VECTOR3), ("geometry_msgs/Quaternion", QUATERNION)]);
ros_message!(Odometry, "nav_msgs/msg/Odometry",
    "RIHS01_3cc97dc7fb7502f8714462c526d369e35b603cfc34d946e3f2eda2766dfec6e0",
    ODOMETRY, [DEP_HEADER[0], DEP_HEADER[1],
        ("geometry_msgs/PoseWithCovariance", POSE_WITH_COVARIANCE), ("geometry_msgs/Pose", POSE),
        ("geometry_msgs/Point", POINT), ("geometry_msgs/Quaternion", QUATERNION),
        ("geometry_msgs/TwistWithCovariance", TWIST_WITH_COVARIANCE), ("geometry_msgs/Twist", TWIST),
        ("geometry_msgs/Vector3", VECTOR3)]);
ros_message!(TfMessage, "tf2_msgs/msg/TFMessage",
    "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087",
    TF_MESSAGE, [("geometry_msgs/TransformStamped", TRANSFORM_STAMPED), DEP_HEADER[0], DEP_HEADER[1],
        ("geometry_msgs/Transform", TRANSFORM), ("geometry_msgs/Vector3", VECTOR3),
        ("geometry_msgs/Quaternion", QUATERNION)]);
ros_message!(DiagnosticArray, "diagnostic_msgs/msg/DiagnosticArray",
    "RIHS01_5a8a36efb05fb25070fa0fb3810290c0e6cd4862b54a8fb975a1ee8dc55a333e",
    DIAGNOSTIC_ARRAY, [DEP_HEADER[0], DEP_HEADER[1], ("diagnostic_msgs/DiagnosticStatus", DIAGNOSTIC_STATUS),
        ("diagnostic_msgs/KeyValue", KEY_VALUE)]);
ros_message!(Clock, "rosgraph_msgs/msg/Clock",
    "RIHS01_692f7a66e93a3c83e71765d033b60349ba68023a8c689a79e48078bcb5c58564",
    CLOCK, [DEP_HEADER[1]]);
ros_message!(Float64, "std_msgs/msg/Float64",
    "RIHS01_705ba9c3d1a09df43737eb67095534de36fd426c0587779bda2bc51fe790182a",
    FLOAT64, []);
ros_message!(PointLabels, "kdseg_msgs/msg/PointLabels",
    "RIHS01_c23a737df275bcbb28f23bbb12f8697aa5d4ecebbfc044f3d25c85b2a651db2b",
    POINT_LABELS, [DEP_HEADER[0], DEP_HEADER[1]]);

/// Definition text and hash for a type known only by name (used when re-writing messages that were
/// read from another bag as raw bytes).
pub fn definition_by_name(type_name: &str) -> Option<(String, &'static str)> {
    macro_rules! lookup {
        ($($ty:ty),*) => {
            $(if type_name == <$ty as RosMessage>::TYPE_NAME {
                return Some((<$ty as RosMessage>::definition(), <$ty as RosMessage>::TYPE_HASH));
            })*
        };
    }
    lookup!(Header, PointCloud2, Image, CompressedImage, CameraInfo, PoseStamped, TransformStamped,
        Odometry, TfMessage, DiagnosticArray, Clock, Float64, PointLabels);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_list_every_dependency_once() {
        let odom = Odometry::definition();
        assert!(odom.starts_with("std_msgs/Header header\n"));
        for dep in ["MSG: std_msgs/Header", "MSG: builtin_interfaces/Time", "MSG: geometry_msgs/Twist\n"] {
            assert_eq!(odom.matches(dep).count(), 1, "{dep} in\n{odom}");
        }
        assert!(definition_by_name("sensor_msgs/msg/PointCloud2").is_some());
        assert!(definition_by_name("foo_msgs/msg/Bar").is_none());
    }
}
