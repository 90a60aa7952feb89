"""Moving-object segmentation of a recorded bag: plays it with a clock and runs kdseg on sim time.

    ros2 launch kdseg kdseg_bag.launch.py bag:=/path/to/bag rate:=1.0

For evaluation, `kdseg replay BAG --out OUT.mcap` processes every scan deterministically instead.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    share = FindPackageShare("kdseg")
    arguments = [
        DeclareLaunchArgument("bag", description="rosbag2 directory or .mcap file"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback rate"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "kdseg.yaml"])),
        DeclareLaunchArgument("rviz", default_value="true"),
    ]
    play = ExecuteProcess(
        cmd=["ros2", "bag", "play", LaunchConfiguration("bag"), "--clock", "100", "--rate", LaunchConfiguration("rate")],
        output="screen",
    )
    kdseg = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "kdseg.launch.py"])),
        launch_arguments={"params_file": LaunchConfiguration("params_file"), "use_sim_time": "true", "rviz": LaunchConfiguration("rviz")}.items(),
    )
    return LaunchDescription(arguments + [play, kdseg])
