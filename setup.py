"""Python packaging for catkin (no version here: catkin takes it from package.xml)."""
from catkin_pkg.python_setup import generate_distutils_setup
from setuptools import setup

setup(**generate_distutils_setup(
    packages=[
        "depth_ms",
        "depth_ms.core",
        "depth_ms.sim",
        "depth_ms.models",
        "depth_ms.models.marigold",
        "depth_ms.models.midas",
        "depth_ms.evaluation",
        "depth_ms.metric",
        "depth_ms.ros",
        "depth_ms.training",
    ],
    package_dir={"": "src"},
    package_data={"depth_ms.models": ["shipped/*.safetensors", "shipped/*/*", "shipped/*/*/*"]},
))
