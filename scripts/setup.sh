#!/usr/bin/env bash
# Installs everything kdseg needs to build and test, only what is missing, into a cache outside the
# repository: ${KDSEG_DEPS:-$HOME/.cache/kdseg}. A second run finishes in seconds.
#
#   1. Debian packages: libclang-dev and clang (bindgen, for r2r), python3 headers if missing.
#   2. A Python venv ($KDSEG_DEPS/venv) from scripts/requirements.txt: torch 2.11.0 (libtorch for
#      tch 0.24), the ROS 2 Jazzy wheels, the rosidl/ament/colcon wheels, rosbags, mcap, numpy.
#   3. The two r2r fixes for the PyPI wheels: a librmw_implementation.so shim, and the libpython that
#      librcl's type-description bindings need (linked by build.rs from the variables in env.sh).
#   4. The interface packages built with colcon: kdseg_msgs (from msg/) and tf2_msgs (not on PyPI).
#   5. $KDSEG_DEPS/env.sh, which `scripts/env.sh` and every make target source.
#
# Each step says what failed and how to retry. Delete $KDSEG_DEPS (or one of its parts) to force a
# rebuild of it.
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEPS=${KDSEG_DEPS:-$HOME/.cache/kdseg}
PY=${KDSEG_PYTHON3:-python3}
VENV=$DEPS/venv
STEP="start"

step() { STEP="$1"; echo "[setup] $1"; }
on_error() {
  echo "[setup] FAILED in step: $STEP" >&2
  echo "[setup] The output above says why. Fix it and run 'make setup' again; finished steps are kept." >&2
  echo "[setup] To redo a step from scratch, delete its part of $DEPS (venv/, interfaces/, shim/)." >&2
}
trap on_error ERR
sha() { sha256sum | cut -c1-16; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

mkdir -p "$DEPS"

# ---------------------------------------------------------------------------------------------
step "Debian packages (libclang-dev clang for r2r's bindgen; Python headers for rosidl)"
PYINC=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
need=()
dpkg -s libclang-dev >/dev/null 2>&1 || need+=(libclang-dev)
dpkg -s clang >/dev/null 2>&1 || need+=(clang)
[ -f "$PYINC/Python.h" ] || need+=(python3-dev)
"$PY" -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  echo "[setup] installing ${need[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need[@]}" >/dev/null
fi

# ---------------------------------------------------------------------------------------------
step "Python venv with torch 2.11.0, ROS 2 Jazzy wheels, rosbags ($VENV)"
want=$( (cat "$REPO/scripts/requirements.txt"; "$PY" --version) | sha)
if [ "$(cat "$VENV/.kdseg-stamp" 2>/dev/null)" != "$want" ]; then
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q --progress-bar off -r "$REPO/scripts/requirements.txt"
  echo "$want" > "$VENV/.kdseg-stamp"
else
  echo "[setup] venv up to date"
fi
VPY=$VENV/bin/python
TORCH_LIB=$("$VPY" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
PYLIBDIR=$("$VPY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
PYVER=$("$VPY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
if [ -e "$PYLIBDIR/libpython$PYVER.so" ]; then
  PYLIB="python$PYVER"
elif [ -e "$PYLIBDIR/libpython$PYVER.so.1.0" ]; then
  PYLIB=":libpython$PYVER.so.1.0"
else
  echo "[setup] no shared libpython$PYVER in $PYLIBDIR: r2r's librcl needs it. Use a Python built with --enable-shared (Debian's python3 has it in libpython$PYVER)." >&2
  false
fi

# ---------------------------------------------------------------------------------------------
step "r2r fixes: librmw_implementation shim, rosidl Python include paths"
mkdir -p "$DEPS/shim"
ln -sfn "$VENV/lib/librmw_fastrtps_cpp.so" "$DEPS/shim/librmw_implementation.so"
# The Python generator's exported CMake targets name the include dirs of the machine the wheels
# were built on; point them at this machine's Python and numpy headers.
NPINC=$("$VPY" -c 'import numpy; print(numpy.get_include())')
{ grep -rl --include='*Export.cmake' '/opt/python/cp3' "$VENV/share" 2>/dev/null || true; } | while read -r f; do
  sed -i -E "s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#$NPINC#g; s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#$PYINC#g" "$f"
done

# ---------------------------------------------------------------------------------------------
step "interface packages kdseg_msgs (msg/) and tf2_msgs with colcon"
IFACE=$DEPS/interfaces
want=$( (cat "$VENV/.kdseg-stamp"; find "$REPO/msg" -type f | sort | xargs cat; cat "$REPO/scripts/setup.sh") | sha)
if [ "$(cat "$IFACE/.kdseg-stamp" 2>/dev/null)" != "$want" ]; then
  rm -rf "$IFACE"
  mkdir -p "$IFACE/src/tf2_msgs/msg"
  cp -r "$REPO/msg" "$IFACE/src/kdseg_msgs"
  # tf2_msgs/msg/TFMessage as in ros2/geometry2 (jazzy); real ROS installs ship it already.
  echo 'geometry_msgs/TransformStamped[] transforms' > "$IFACE/src/tf2_msgs/msg/TFMessage.msg"
  cat > "$IFACE/src/tf2_msgs/package.xml" <<'XML'
<?xml version="1.0"?>
<package format="3">
  <name>tf2_msgs</name>
  <version>0.36.0</version>
  <description>tf2_msgs/msg/TFMessage for environments without a ROS 2 installation (kdseg set-up).</description>
  <maintainer email="kdseg@example.org">kdseg</maintainer>
  <license>BSD-3-Clause</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
  <depend>geometry_msgs</depend>
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
XML
  cat > "$IFACE/src/tf2_msgs/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.16)
project(tf2_msgs)
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
find_package(geometry_msgs REQUIRED)
rosidl_generate_interfaces(${PROJECT_NAME} "msg/TFMessage.msg" DEPENDENCIES geometry_msgs)
ament_export_dependencies(rosidl_default_runtime)
ament_package()
CMAKE
  (
    trap - ERR
    cd "$IFACE"
    export AMENT_PREFIX_PATH=$VENV CMAKE_PREFIX_PATH=$VENV PATH=$VENV/bin:$PATH
    export PYTHONPATH=$VENV/lib/python$PYVER/site-packages
    export LD_LIBRARY_PATH=$VENV/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    "$VENV/bin/colcon" --log-base "$IFACE/log" build --base-paths src --build-base build --install-base install \
      --merge-install --event-handlers console_cohesion- \
      --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VPY" -DPYTHON_EXECUTABLE="$VPY" >"$IFACE/colcon.log" 2>&1 \
      || { tail -40 "$IFACE/colcon.log" >&2; echo "[setup] colcon log: $IFACE/colcon.log" >&2; false; }
  )
  echo "$want" > "$IFACE/.kdseg-stamp"
else
  echo "[setup] interface packages up to date"
fi

# ---------------------------------------------------------------------------------------------
step "environment file $DEPS/env.sh"
LIBS_DIRS=$(find "$VENV/lib/python$PYVER/site-packages" -maxdepth 1 -type d -name 'ros_*.libs' | sort | tr '\n' ':')
cat > "$DEPS/env.sh.tmp" <<EOF
# Generated by kdseg scripts/setup.sh; source it (scripts/env.sh does) for the build and run-time
# environment of kdseg: ROS 2 Jazzy from the PyPI wheels, libtorch from torch 2.11.0.
export KDSEG_DEPS="$DEPS"
export KDSEG_VENV="$VENV"
export KDSEG_PYTHON="$VPY"
export ROS_DISTRO=jazzy
export RMW_IMPLEMENTATION=rmw_fastrtps_cpp
export AMENT_PREFIX_PATH="$IFACE/install:$VENV"
export CMAKE_PREFIX_PATH="$IFACE/install:$VENV"
export IDL_PACKAGE_FILTER="std_msgs;builtin_interfaces;sensor_msgs;geometry_msgs;nav_msgs;rosgraph_msgs;diagnostic_msgs;tf2_msgs;kdseg_msgs"
export LIBTORCH_USE_PYTORCH=1
export KDSEG_TORCH_LIB="$TORCH_LIB"
export KDSEG_RMW_SHIM_DIR="$DEPS/shim"
# r2r's own crates link -lrmw_implementation; the C compiler driver passes LIBRARY_PATH to the linker
export LIBRARY_PATH="$DEPS/shim\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
export KDSEG_PYTHON_LIBDIR="$PYLIBDIR"
export KDSEG_PYTHON_LIB="$PYLIB"
export PYTHONPATH="$IFACE/install/lib/python$PYVER/site-packages:$IFACE/install/local/lib/python$PYVER/dist-packages:$VENV/lib/python$PYVER/site-packages"
export LD_LIBRARY_PATH="$IFACE/install/lib:$VENV/lib:${LIBS_DIRS}$DEPS/shim:$PYLIBDIR:$TORCH_LIB\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}"
export PATH="$VENV/bin:\$PATH"
EOF
mv "$DEPS/env.sh.tmp" "$DEPS/env.sh"
echo "[setup] done: source scripts/env.sh (or $DEPS/env.sh)"
