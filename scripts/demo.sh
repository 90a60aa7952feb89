#!/usr/bin/env bash
# `make demo`: the main job on built-in data. A busy urban drive is simulated (exact moving/static
# labels, a rosbag2 MCAP bag and a SemanticKITTI copy), the bag is replayed through the MOS pipeline
# with the shipped weights (labelled clouds into a new bag, scored against the simulator's labels),
# the same drive is segmented and scored from the SemanticKITTI layout by the official rules, and one
# scan is drawn from above with what the network got right and wrong.
#
# Everything goes to ${KDSEG_DEMO_OUT:-demo-output}. Runs on the GPU when there is one, else on the CPU
# (about a second a scan on two cores). KDSEG_DEMO_SCANS sets the length of the drive.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${KDSEG_DEMO_OUT:-demo-output}
scans=${KDSEG_DEMO_SCANS:-40}
# seed 1018 with the urban preset is test sequence 18 of RESULTS.md: unseen in training, with traffic
seed=1018
weights=weights/kdmos_sim.safetensors
kdseg=target/release/kdseg

[[ -x $kdseg ]] || { echo "demo: $kdseg is missing; run 'make demo' (it builds first)" >&2; exit 1; }
[[ -f $weights ]] || { echo "demo: $weights is missing (it ships with the repository)" >&2; exit 1; }
(( scans >= 10 )) || { echo "demo: KDSEG_DEMO_SCANS=$scans is too short; the motion features need 10 scans of history" >&2; exit 1; }
mkdir -p "$out"

step() { printf '\n== %s\n' "$*"; }

step "1/5 simulate $scans scans of an urban drive (seed $seed) into $out/drive.mcap and $out/data"
"$kdseg" simulate --preset urban --seed "$seed" --scans "$scans" --out "$out/data" --bag "$out/drive.mcap" --overwrite

step "2/5 replay the bag through the MOS pipeline into $out/labelled.mcap"
"$kdseg" replay "$out/drive.mcap" --out "$out/labelled.mcap" --weights "$weights" --overwrite

step "3/5 what the labelled bag holds"
"$kdseg" bag info "$out/labelled.mcap"

step "4/5 segment the SemanticKITTI copy and score it by the rules of semantic-kitti-api's evaluate_mos.py"
"$kdseg" infer --dataset "$out/data" --sequences 00 --out "$out/predictions" --weights "$weights"
"$kdseg" eval --dataset "$out/data" --predictions "$out/predictions" --sequences 00 --json "$out/scores.json"

last=$((scans - 1))
step "5/5 draw scan $last from above"
"$kdseg" render --dataset "$out/data" --sequence 00 --scan "$last" --predictions "$out/predictions" --out "$out/scan_$last.png" --extent 80

cat <<EOF

Done. In $out:
  drive.mcap      the simulated drive (/velodyne_points with ground-truth labels, /odom, /tf)
  labelled.mcap   the drive plus /kdseg/labelled_points (label, score, rgb), /kdseg/moving_points,
                  /kdseg/static_points and /kdseg/point_labels
  predictions/    one .label file per scan (SemanticKITTI ids: 251 moving, 250 movable, 9 static)
  scores.json     moving IoU of the whole drive
  scan_$last.png  moving points red, false alarms amber, missed moving points blue, static grey
View the labelled bag in RViz with:  ros2 bag play $out/labelled.mcap  and  rviz2 -d rviz/kdseg.rviz
EOF
