"""train_node: offline distillation from recorded bags, run from ROS (not from live topics).

The same trainer as `evdistill train`, logging through rospy (rosout) instead of a progress
bar; SIGINT from roslaunch saves a resumable checkpoint before exit.

Parameters  ~config (YAML, default config/demo.yaml), ~bags (list or space-separated paths;
            empty: the config's), ~stage (teacher | student), ~method (supervised | kd | evdistill),
            ~teacher (checkpoint), ~use_labels (evdistill + CE on labels), ~out (output dir), ~resume (bool), ~set (list of "key=value" overrides)

    rosrun evdistill_ros train_node _config:=config/demo.yaml _bags:="a.bag b.bag" _stage:=teacher
"""
from __future__ import annotations

import shlex

import rospy

from .common import param


def _bags(value) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return shlex.split(str(value or ""))


def main() -> int:
    # rospy must not swallow SIGINT: the trainer catches it to save a checkpoint first.
    rospy.init_node("train_node", disable_signals=True)
    from ..distill.config import load_config, parse_override  # on use: after the signal set-up above
    from ..distill.trainer import run_training  # on use: after the signal set-up above

    try:
        overrides = [parse_override(o) for o in _bags(param("set"))]
        cfg = load_config(param("config") or None, overrides)
        stage = param("stage")
        kwargs = {}
        if stage == "student":
            use_labels = rospy.get_param("~use_labels", None)  # unset: the config's student.use_labels
            kwargs = {"method": param("method") or None, "teacher": param("teacher") or None,
                      "use_labels": None if use_labels in (None, "") else bool(use_labels)}
        path = run_training(cfg, _bags(param("bags")) or None, stage, out_dir=param("out") or None,
                            resume=param("resume"), log=rospy.loginfo, progress=False, **kwargs)
    except KeyboardInterrupt:
        rospy.logwarn("training interrupted; the last checkpoint was saved (resume with _resume:=true)")
        return 130
    except Exception as exc:  # noqa: BLE001 - one clear line, non-zero exit
        rospy.logfatal(f"training failed: {exc}")
        return 1
    rospy.loginfo(f"checkpoint: {path}")
    rospy.signal_shutdown("training done")
    return 0
