"""One setup.py for two worlds.

* colcon / ament_python (ROS 2 Humble, Jazzy): `colcon build` installs the `gmos_ros` package
  (Python modules gmos_core and gmos_ros, the node executable, launch and config files).
* plain pip outside ROS: `pip install -e .[test]` gives the ROS-free library and the `gmos` command.

torch and sam2 are deliberately not hard requirements: torch must be installed first for the machine
(CPU wheel, CUDA wheel, or NVIDIA's Jetson wheel), and sam2 1.1.0 is installed with --no-deps because
its metadata pulls torchvision, which GMOS does not use. See README.md.
"""
from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE_NAME = "gmos_ros"

data_files = [
    ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE_NAME}"]),
    (f"share/{PACKAGE_NAME}", ["package.xml"]),
    (f"share/{PACKAGE_NAME}/launch", glob("launch/*.py")),
    (f"share/{PACKAGE_NAME}/config", glob("config/*.yaml")),
    (f"share/{PACKAGE_NAME}/msg", glob("gmos_msgs/msg/*.msg")),
]

setup(
    name=PACKAGE_NAME,
    version="0.1.0",
    description="GMOS: moving object segmentation from a single RGB camera, for ROS 2 and offline use",
    license="Apache-2.0",
    packages=find_packages(include=["gmos_core", "gmos_core.*", "gmos_ros", "gmos_ros.*", "training", "training.*"]),
    package_data={"gmos_core": ["configs/*.yaml", "data/*", "data/default_model/*", "metrics/data/*"], "training": ["configs/*.yaml"]},
    data_files=[(d, f) for d, f in data_files if f],
    python_requires=">=3.10",
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "pillow>=10",
        "safetensors>=0.4",
        "pyyaml>=6",
        "tqdm>=4.60",
        "hydra-core>=1.3",  # sam2's config system
        "iopath>=0.1.10",   # sam2 dependency
        "opencv-python-headless>=4.8",  # the default model's refinement stage runs the geometric mode (DIS, MAGSAC)
        "torch>=2.1",       # install the right wheel for your machine first; see README
    ],
    extras_require={
        "video": ["av>=11", "matplotlib>=3.7"],
        "bags": ["rosbags>=0.11,<0.12"],  # the interruption-safe writers subclass rosbags 0.11 internals
        "eval": ["matplotlib>=3.7"],
        "geometric": ["opencv-python-headless>=4.8"],  # kept for old install lines: OpenCV is now a core dependency
        "onnx": ["onnx>=1.15", "onnxscript>=0.5", "onnxruntime>=1.17"],  # gmos export (dynamo exporter), parity
        "training": ["opencv-python-headless", "av>=11"],  # generator (cv2), texture clips (av); tensorboard optional
        "test": ["pytest>=7", "rosbags>=0.11,<0.12", "mcap", "av>=11", "matplotlib>=3.7", "opencv-python-headless",
                 "colcon-core", "colcon-common-extensions", "catkin_pkg", "onnx>=1.15", "onnxscript>=0.5",
                 "onnxruntime>=1.17"],
    },
    entry_points={
        "console_scripts": [
            "gmos = gmos_core.cli.main:main",
            "gmos_node = gmos_ros.node:main",
        ],
    },
    zip_safe=False,
)
