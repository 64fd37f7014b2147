"""ns3l_tf: negative sampling in semi-supervised learning (NS³L) for Keras 3 / TensorFlow."""

import pathlib

import setuptools

# TensorFlow comes from one of two extras so that CPU machines do not download CUDA:
#   pip install -e ".[cpu]"   -> tensorflow-cpu
#   pip install -e ".[gpu]"   -> tensorflow[and-cuda]
_TENSORFLOW = "2.21.0"

setuptools.setup(
    name="ns3l_tf",
    version="0.1.0",
    description="Negative sampling in semi-supervised learning (NS3L) with Keras 3 and TensorFlow",
    long_description=pathlib.Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    packages=setuptools.find_packages(include=["ns3l_tf", "ns3l_tf.*"]),
    python_requires=">=3.10",
    install_requires=[
        "keras~=3.15.1",
        "tensorflow-datasets~=4.9.10",
        "keras-tuner~=1.4.8",
        "absl-py~=2.5",
        "numpy>=1.26,<3",
        # TF 2.21 no longer pulls in tensorboard, which the TensorBoard callback and KerasTuner
        # import; TFDS 4.9.10 imports importlib_resources without declaring it.
        "tensorboard~=2.21.0",
        "importlib_resources>=6",
    ],
    extras_require={
        "cpu": [f"tensorflow-cpu~={_TENSORFLOW}"],
        "gpu": [f"tensorflow[and-cuda]~={_TENSORFLOW}"],
        # matplotlib draws the benchmarks' and notebooks' charts; CI executes the notebooks.
        "test": [
            "pytest>=8",
            "ruff>=0.6",
            "matplotlib>=3.8",
            "nbclient>=0.10",
            "nbformat>=5.10",
            "ipykernel>=6.29",
        ],
    },
)
