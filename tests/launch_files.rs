//! The launch files and the parameters file they install: valid Python on the launch/launch_ros API
//! only (ros2 launch itself is not installable here), pointing at the params file that the node test
//! uses, which the typed configuration accepts.

mod common;

use common::*;
use kdseg::config::Config;

#[test]
fn params_file_is_the_typed_configuration() {
    let config = Config::load(&repo().join("config/kdseg.yaml")).expect("config/kdseg.yaml is a valid kdseg configuration");
    assert_eq!(config.topics.lidar, "/velodyne_points");
    assert_eq!(config.outputs.labelled_points, "~/labelled_points");
    assert_eq!(config.mos.motion, kdseg::features::MotionMode::Causal);
    assert!(kdseg::mos::engine::resolve_weights(&config.mos.weights).exists(), "the default weights ship with the repository");
}

#[test]
fn launch_files_use_only_launch_apis() {
    let Some(python) = python() else { return };
    let files = ["launch/kdseg.launch.py", "launch/kdseg_bag.launch.py"];
    let paths: Vec<String> = files.iter().map(|f| repo().join(f).display().to_string()).collect();
    let args: Vec<&str> = paths.iter().map(|s| s.as_str()).collect();
    let out = std::process::Command::new(&python).arg(python_script("check_launch.py")).args(&args).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "{}", report["problems"]);
    let main = &report["files"][&paths[0]];
    let strings: Vec<&str> = main["strings"].as_array().unwrap().iter().filter_map(|s| s.as_str()).collect();
    for expected in ["kdseg", "config", "kdseg.yaml", "node", "use_sim_time", "lidar_topic", "rviz"] {
        assert!(strings.contains(&expected), "{expected} not in kdseg.launch.py");
    }
    assert!(main["imports"].as_array().unwrap().iter().any(|i| i == "launch_ros.actions.Node"));
    // the RViz view the launch file opens is there and shows the labelled output by its colours
    let rviz = std::fs::read_to_string(repo().join("rviz/kdseg.rviz")).unwrap();
    assert!(rviz.contains("/kdseg/labelled_points") && rviz.contains("Color Transformer: RGB8") && rviz.contains("Reliability Policy: Reliable"));
}
