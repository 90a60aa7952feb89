"""Live LiDAR moving-object segmentation: the kdseg node, optionally with RViz.

    ros2 launch kdseg kdseg.launch.py lidar_topic:=/velodyne_points odom_topic:=/odom
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare("kdseg")
    arguments = [
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "kdseg.yaml"]),
                              description="kdseg parameters (topics, frames, weights, device, ...)"),
        DeclareLaunchArgument("lidar_topic", default_value="/velodyne_points", description="input PointCloud2"),
        DeclareLaunchArgument("odom_topic", default_value="/odom", description="input nav_msgs/Odometry"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="follow /clock (bag playback)"),
        DeclareLaunchArgument("rviz", default_value="true", description="start RViz with the kdseg view"),
    ]
    kdseg = Node(
        package="kdseg",
        executable="kdseg",
        name="kdseg",
        arguments=["node"],
        parameters=[LaunchConfiguration("params_file"), {"use_sim_time": LaunchConfiguration("use_sim_time")}],
        remappings=[("/velodyne_points", LaunchConfiguration("lidar_topic")), ("/odom", LaunchConfiguration("odom_topic"))],
        output="screen",
    )
    rviz = Node(
        package="rviz2",
        executable="rviz2",
        arguments=["-d", PathJoinSubstitution([share, "rviz", "kdseg.rviz"])],
        parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
        condition=IfCondition(LaunchConfiguration("rviz")),
    )
    return LaunchDescription(arguments + [kdseg, rviz])
