"""evdistill_ros: event-camera semantic segmentation distilled from an APS-frame teacher (EvDistill, CVPR'21).

Everything outside `evdistill_ros.ros` imports without ROS.
"""
# The catkin build generates `evdistill_ros.msg` in its devel space; extending the package
# path lets it be found even when this source tree comes first on sys.path.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)

__version__ = "0.1.0"
