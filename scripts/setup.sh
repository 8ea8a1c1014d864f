#!/usr/bin/env bash
# One-command set-up (run by `make setup`; safe to run again, each step is skipped when done):
#   1. ROS1: an existing /opt/ros/noetic (Ubuntu) is used as is; otherwise Debian's ROS
#      packages are installed with apt-get (needs root or sudo).
#   2. A venv from the system python (so it sees rospy) with the pinned Python packages.
#   3. A catkin workspace in .catkin_ws/ with this repo linked in, built against the venv python.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
WS="$ROOT/.catkin_ws"
log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# ---- 1. ROS ---------------------------------------------------------------------------
APT_PACKAGES=(ros-core rosbash python3-rospy python3-rosbag python3-roslaunch python3-rostest python3-genpy
  python3-cv-bridge python3-opencv python3-venv catkin ros-message-generation libstd-msgs-dev
  libsensor-msgs-dev ros-std-msgs ros-sensor-msgs python3-std-msgs python3-sensor-msgs rviz xvfb
  ros-diagnostic-msgs python3-diagnostic-msgs python3-dynamic-reconfigure libdynamic-reconfigure-config-init-mutex-dev
  librostest-dev python3-tf2-ros python3-tf2-msgs g++)
have_debian_ros() {
  command -v roscore >/dev/null && command -v rosrun >/dev/null && command -v catkin_make >/dev/null && command -v rosbag >/dev/null &&
    /usr/bin/python3 -c 'import rospy, rosbag, genpy, cv_bridge, cv2, diagnostic_msgs, dynamic_reconfigure, tf2_ros' 2>/dev/null &&
    /usr/bin/python3 -m venv --help >/dev/null 2>&1 && dpkg -s "${APT_PACKAGES[@]}" >/dev/null 2>&1
}
if [ -f /opt/ros/noetic/setup.bash ]; then
  log "using ROS at /opt/ros/noetic"
  # shellcheck disable=SC1091
  set +u; source /opt/ros/noetic/setup.bash; set -u
elif have_debian_ros; then
  log "Debian ROS packages present"
else
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { echo "setup: ROS is missing and this is not root (no sudo): install ${APT_PACKAGES[*]}" >&2; exit 1; }
    SUDO=sudo
  fi
  log "installing Debian ROS packages (apt-get, about 2 minutes)"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${APT_PACKAGES[@]}" >/dev/null
fi

# ---- 2. venv --------------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv $VENV (system site packages, for rospy and cv2)"
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
req_hash=$(cat requirements.txt setup.py pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$VENV/.evdistill-req" 2>/dev/null)" != "$req_hash" ]; then
  log "installing Python packages into the venv (torch, numba, rosbags, ...)"
  quiet_pip() {  # hide pip's notes about this machine's local index mirrors; pipefail keeps pip's status
    "$VENV/bin/pip" install -q --disable-pip-version-check "$@" 2>&1 | { grep -v "is ignored: it is neither" || true; }
  }
  # EVDISTILL_TORCH_INDEX=https://download.pytorch.org/whl/cpu: torch's CPU build (about 200 MB)
  # where PyPI only has the CUDA one (Python 3.12+: about 2.7 GB more in the venv, docs/install.md)
  quiet_pip -r requirements.txt ${EVDISTILL_TORCH_INDEX:+--extra-index-url "$EVDISTILL_TORCH_INDEX"}
  # --no-deps: the pins above are the tested set; Debian provides cv2 (no PyPI opencv)
  quiet_pip --no-deps -e .
  echo "$req_hash" > "$VENV/.evdistill-req"
fi

# ---- 3. catkin workspace ----------------------------------------------------------------
# The package dir is a farm of links to the repo's top-level entries rather than one link to
# the repo: a link to the repo would contain the workspace itself, and rosrun's `find -L`
# would then see every node several times.
PKG="$WS/src/evdistill_ros"
mkdir -p "$ROOT/demo_output" "$ROOT/data"  # linked too: launch files find the demo checkpoints through the package
[ -L "$PKG" ] && rm -f "$PKG"
mkdir -p "$PKG"
find "$PKG" -maxdepth 1 -type l ! -exec test -e {} \; -delete  # drop links to removed entries
for entry in "$ROOT"/*; do
  case "$(basename "$entry")" in build|*.egg-info) continue ;; esac
  ln -sfn "$entry" "$PKG/$(basename "$entry")"
done
# The venv's python for catkin: PYTHON_EXECUTABLE (catkin <= 0.8.9, Noetic, Debian 12) and
# Python_EXECUTABLE (Debian 13's catkin 0.8.10 takes it from CMake's FindPython, which otherwise
# settles on /usr/bin/python3 and writes that into the nodes' devel wrappers: no torch, no numba)
CMAKE_PY=(-DPYTHON_EXECUTABLE="$VENV/bin/python" -DPython_EXECUTABLE="$VENV/bin/python")
build_hash=$( (cat CMakeLists.txt package.xml setup.py msg/*.msg cfg/*.cfg; echo "${CMAKE_PY[*]}") | sha256sum | cut -c1-16)
if [ ! -f "$WS/devel/setup.bash" ] || [ "$(cat "$WS/.evdistill-build" 2>/dev/null)" != "$build_hash" ]; then
  log "building the catkin workspace $WS"
  # Configure twice: catkin caches PYTHONPATH before devel/ exists on a fresh workspace.
  (cd "$WS" && catkin_make "${CMAKE_PY[@]}" >/dev/null && catkin_make --force-cmake "${CMAKE_PY[@]}" >/dev/null)
  echo "$build_hash" > "$WS/.evdistill-build"
fi
log "ready: source scripts/env.sh"
