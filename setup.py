"""ns3l_tf: negative sampling in semi-supervised learning (NS³L) for Keras 3 / TensorFlow."""

import pathlib
import re

import setuptools

HERE = pathlib.Path(__file__).parent
VERSION = re.search(r'__version__ = "(.+)"', (HERE / "ns3l_tf" / "__init__.py").read_text())[1]

# TensorFlow is not a plain requirement, so that an installed TensorFlow (Colab's, a
# cluster's CUDA build) is never replaced; without one, the first use says which extra to add:
#   pip install ".[cpu]"   -> tensorflow-cpu (Linux, Windows; no CUDA download)
#   pip install ".[gpu]"   -> tensorflow[and-cuda] (Linux with an NVIDIA GPU)
#   pip install ".[tf]"    -> tensorflow (the standard wheel, e.g. macOS)
# The ranges are those tested (tests/test_packaging.py and CI): TF 2.18-2.21, Keras 3.10-3.15.
TENSORFLOW = ">=2.18,<2.22"

setuptools.setup(
    name="ns3l_tf",
    version=VERSION,
    description="Negative sampling in semi-supervised learning (NS3L) with Keras 3 and TensorFlow",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    author="The ns3l_tf Authors",
    license="Apache-2.0",
    license_files=["LICENSE"],
    keywords=["semi-supervised learning", "negative sampling", "keras", "tensorflow"],
    classifiers=[
        "Development Status :: 4 - Beta",
        "Intended Audience :: Science/Research",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
    packages=setuptools.find_packages(include=["ns3l_tf", "ns3l_tf.*"]),
    # The flagfiles of every paper cell, selectable by name: --preset=fmnist_2000.
    package_data={"ns3l_tf": ["flags/*.cfg", "flags/common/*.cfg"]},
    python_requires=">=3.10",
    install_requires=[
        "keras>=3.10,<4",
        "tensorflow-datasets>=4.9.6,<5",
        "keras-tuner[bayesian]>=1.4.7,<2",  # the default --tuner=bayesian needs scikit-learn
        "absl-py>=1.4,<3",
        "numpy>=1.26,<3",
        # TF 2.21 no longer pulls in tensorboard, which the TensorBoard callback and KerasTuner
        # import; TFDS 4.9.10 imports importlib_resources without declaring it.
        "tensorboard>=2.18,<3",
        "importlib_resources>=6",
    ],
    extras_require={
        "cpu": [f"tensorflow-cpu{TENSORFLOW}"],
        "gpu": [f"tensorflow[and-cuda]{TENSORFLOW}"],
        "tf": [f"tensorflow{TENSORFLOW}"],
        # The second Keras backend (--backend=jax); on NVIDIA GPUs install jax[cuda12] instead.
        "jax": ["jax>=0.4.36"],
        # The documentation site: `make docs` (mkdocs build --strict).
        "docs": ["mkdocs>=1.6", "mkdocs-material>=9.5", "mkdocstrings[python]>=0.26"],
        # The notebooks draw charts (Colab has matplotlib already).
        "notebooks": ["matplotlib>=3.8"],
        # CI executes the notebooks, and the benchmarks draw their charts.
        "test": [
            "pytest>=8",
            "pytest-xdist>=3.5",
            "ruff>=0.6",
            "matplotlib>=3.8",
            "nbclient>=0.10",
            "nbformat>=5.10",
            "ipykernel>=6.29",
        ],
    },
    entry_points={
        "console_scripts": [
            "ns3l-train = ns3l_tf.train:run",
            "ns3l-tune = ns3l_tf.tune:run",
            "ns3l-data = ns3l_tf.inspect_data:run",
            "ns3l-evaluate = ns3l_tf.evaluate:run",
        ]
    },
)
