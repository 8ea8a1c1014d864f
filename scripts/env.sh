# Source me: `source scripts/env.sh` puts ROS, the built catkin workspace and the project
# venv into this shell (after `make setup`). Order matters: the venv goes last so its
# python (with torch and numba) runs rosrun / roslaunch nodes.
_evd_root="$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")/.." && pwd)"
if [ ! -f "$_evd_root/.catkin_ws/devel/setup.bash" ] || [ ! -x "$_evd_root/.venv/bin/python" ]; then
  echo "evdistill_ros: not set up yet; run 'make setup' in $_evd_root first" >&2
  return 1 2>/dev/null || exit 1
fi
if [ -f /opt/ros/noetic/setup.bash ]; then
  source /opt/ros/noetic/setup.bash
fi
source "$_evd_root/.catkin_ws/devel/setup.bash"
VIRTUAL_ENV_DISABLE_PROMPT=${VIRTUAL_ENV_DISABLE_PROMPT:-1} source "$_evd_root/.venv/bin/activate"
export ROS_PYTHON_VERSION=3
unset _evd_root
