# kdseg: `make demo` runs the main job on built-in data, `make test` runs every test. Both install
# what is missing first (scripts/setup.sh, cached in ${KDSEG_DEPS:-$HOME/.cache/kdseg}).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
ENV := source scripts/env.sh
CARGO_FLAGS := --release --features ros

.PHONY: setup build test demo bench bench-report bench-node results device-binary

setup:
	@bash scripts/setup.sh

# The release binary with the ROS 2 node, at target/release/kdseg.
build: setup
	$(ENV) && cargo build $(CARGO_FLAGS) --bins

# Every test: unit, integration (bags from other tools, real sensor data, fixtures), the ROS node over
# Fast DDS with an rclpy harness. The ROS-free core must also build on its own.
test: setup
	$(ENV) && cargo build --release --lib
	$(ENV) && cargo test $(CARGO_FLAGS) -- --test-threads=2

demo: build
	$(ENV) && scripts/demo.sh

bench: build
	$(ENV) && target/release/kdseg bench run all --out benchmarks/cpu-2core
	$(ENV) && target/release/kdseg bench report --results benchmarks --out BENCHMARKS.md

bench-report: build
	$(ENV) && target/release/kdseg bench report --results benchmarks --out BENCHMARKS.md

# The ROS 2 node under a 10 Hz stream for 10 minutes (overhead over the engine, memory).
bench-node: build
	$(ENV) && target/release/kdseg bench run node --device cpu --out benchmarks/cpu-2core
	$(ENV) && target/release/kdseg bench report --results benchmarks --out BENCHMARKS.md

# RESULTS.md from the run records of the distillation experiment (scripts/experiments.sh).
results: build
	$(ENV) && target/release/kdseg results --runs results/experiments --out RESULTS.md

# A ROS-free binary for the GPU machine (no ROS there): .device/kdseg, run with its torch/lib.
device-binary: setup
	$(ENV) && cargo build --release --bins
	mkdir -p .device && cp target/release/kdseg .device/kdseg && strip .device/kdseg
