import os

from setuptools import find_packages, setup

# MXNet's CPU and CUDA builds are separate packages that both provide `mxnet`: with
# PRUNENET_GPU=1 the CUDA 11.2 build is required instead of the CPU one (see the README).
GPU = os.environ.get("PRUNENET_GPU", "") not in ("", "0")
MXNET = "mxnet-cu112>=1.9.1,<2" if GPU else "mxnet>=1.9.1,<2"

setup(
    name="prunenet",
    version="0.1.0",
    description="Global channel pruning (PruneNet) for MXNet Gluon and GluonCV networks",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["prunenet", "prunenet.*"]),
    package_data={"prunenet": ["gluoncv_reference.csv"]},  # GluonCV's published figures
    python_requires=">=3.8",
    install_requires=[
        MXNET,
        "numpy<1.24",  # MXNet 1.9.1 uses np.bool, removed in NumPy 1.24
        "gluoncv==0.10.5.post0",
        "matplotlib",
        "pandas",
        "tqdm",
        # the output locks: TemporaryFileLock retakes a lock file removed while it waited (4.0)
        "portalocker>=4.0",
        "highspy>=1.7",  # the qcqp method's MILP solver (HiGHS)
        "scipy",
        "onnx==1.14.1",  # --runtime onnxruntime and zoo export --format onnx
        "onnxruntime",
    ],
    extras_require={
        "gpu": ["mxnet-cu112>=1.9.1,<2"],
        "onnx": [],  # (onnx and onnxruntime are installed by default now; kept for old commands)
        # nbclient, nbformat, ipykernel: tests/test_notebooks.py executes the notebooks;
        # sphinx, myst-parser, sphinx-argparse: tests/test_docs.py builds the manual in docs/;
        # import-linter: lint-imports checks .importlinter's contracts (tests/test_layers.py);
        # pytest-xdist: the fast tier on both cores (pytest -m "not e2e" -n 2)
        "dev": ["pytest", "hypothesis", "nbclient", "nbformat",
                "ipykernel", "sphinx", "myst-parser", "sphinx-argparse", "import-linter>=2.17",
                "pytest-xdist"],
    },
    entry_points={"console_scripts": ["prunenet=prunenet.cli:main"]},
)
