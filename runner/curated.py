"""Local equivalents of azureml's curated environments (``Environment.get(ws, "AzureML-...")``).

v1 scripts name curated environments that lived in Microsoft's registry: a Docker image
with a pinned Python and pinned packages. Offline, on this machine, the useful part is the
package list: each name here is a pip-only definition built as a venv (uv) on this
machine's Python, with the libraries the curated environment was made for. Pins follow
the major.minor release the name promises where that release installs on current Python;
otherwise the lower bound is kept and the newest release is taken. The Python and CUDA
versions of the name are not reproduced (the venv uses this machine's Python; GPU
libraries use this machine's driver).

Names starting with ``AzureML`` are reserved for these, as in azureml: registering one is
refused, and an unknown one is a NotFoundError that lists what there is.
"""

from __future__ import annotations

from runner.errors import NotFoundError

#: the prefix azureml reserves for curated environments
PREFIX = "AzureML"

_SKLEARN = ["numpy", "scipy", "pandas", "joblib"]
_TORCH_EXTRAS = ["numpy", "pillow", "tqdm"]

#: name -> (what it is for, its pip packages)
CURATED: dict[str, tuple[str, list[str]]] = {
    "AzureML-Minimal": ("Python with nothing but runner's in-run client", []),
    "AzureML-Tutorial": (
        "the tutorials' data science stack",
        ["numpy", "scipy", "pandas", "scikit-learn", "matplotlib", "joblib"],
    ),
    "AzureML-Scikit-learn-0.20.3": ("scikit-learn", ["scikit-learn>=0.20.3", *_SKLEARN]),
    "AzureML-sklearn-0.24-ubuntu18.04-py37-cpu": (
        "scikit-learn",
        ["scikit-learn>=0.24", *_SKLEARN],
    ),
    "AzureML-sklearn-1.0-ubuntu20.04-py38-cpu": (
        "scikit-learn",
        ["scikit-learn>=1.0", *_SKLEARN],
    ),
    "AzureML-sklearn-1.5": ("scikit-learn", ["scikit-learn~=1.5.0", *_SKLEARN]),
    "AzureML-lightgbm-3.2-ubuntu18.04-py37-cpu": (
        "LightGBM",
        ["lightgbm>=3.2", "scikit-learn", *_SKLEARN],
    ),
    "AzureML-PyTorch-1.6-GPU": ("PyTorch", ["torch", "torchvision", *_TORCH_EXTRAS]),
    "AzureML-pytorch-1.10-ubuntu18.04-py38-cuda11-gpu": (
        "PyTorch",
        ["torch", "torchvision", *_TORCH_EXTRAS],
    ),
    "AzureML-acpt-pytorch-2.2-cuda12.1": ("PyTorch", ["torch", "torchvision", *_TORCH_EXTRAS]),
    "AzureML-TensorFlow-2.3-GPU": ("TensorFlow", ["tensorflow", "numpy"]),
    "AzureML-tensorflow-2.4-ubuntu18.04-py37-cuda11-gpu": ("TensorFlow", ["tensorflow", "numpy"]),
}


def is_curated_name(name: str) -> bool:
    """True for a name in azureml's reserved ``AzureML`` namespace (any case)."""
    return name.lower().startswith(PREFIX.lower())


def packages(name: str, version: str | None = None) -> list[str]:
    """The pip packages of curated environment ``name`` (version None or ``"1"``).

    Raises:
        NotFoundError: no such curated name (or version), listing the names there are.
    """
    entry = CURATED.get(name)
    if entry is None or version not in (None, "1"):
        import difflib  # only on this error path: ~1 ms that submit need not pay

        close = difflib.get_close_matches(name, list(CURATED), n=3, cutoff=0.5)
        raise NotFoundError(
            f"no curated environment {name!r}"
            + (f" version {version}" if entry is not None else "")
            + (f"; did you mean {' or '.join(map(repr, close))}?" if close else "")
            + f"; runner has local equivalents of: {', '.join(CURATED)}. Otherwise build "
            "your own: Environment.from_pip_requirements(name, 'requirements.txt') or "
            "Environment.from_conda_specification(name, 'environment.yml'), or use the "
            "current Python with Environment.default()"
        )
    return list(entry[1])
