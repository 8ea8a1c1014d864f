"""Works two ways: `catkin_python_setup()` in CMakeLists.txt, and `pip install -e .`
for the ROS-free core, which provides the `evdistill` console command."""
from setuptools import find_packages, setup

setup(
    name="evdistill_ros",
    version="0.1.0",
    description="Event-camera semantic segmentation distilled from an APS teacher (EvDistill) for ROS",
    packages=find_packages(include=["evdistill_ros", "evdistill_ros.*"]),
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.22",
        "numba>=0.57",
        "torch>=2.0",
        "rosbags>=0.10,<0.11",
        "opencv-python-headless>=4.6,<4.11",
        "tqdm",
        "pyyaml",
        "h5py",
        "matplotlib",
    ],
    extras_require={"tensorboard": ["tensorboard"], "test": ["pytest", "pytest-timeout"]},
    entry_points={"console_scripts": ["evdistill = evdistill_ros.cli:main"]},
)
