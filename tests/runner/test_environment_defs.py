"""The definition side of environments: Environment, its sections, CondaDependencies.

Pure data: nothing here builds or installs anything. The samples are what users type
(azureml v1 docs and the seeds under shared/seeds).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runner.conda_dependencies import PYTHON_DEFAULT_VERSION, CondaDependencies
from runner.environment import (
    DEFAULT_CPU_IMAGE,
    DEFAULT_ENVIRONMENT_NAME,
    Environment,
    EnvironmentRegistry,
)
from runner.errors import ConfigError, ConflictError, NotFoundError, RunnerWarning

ROOT = Path(__file__).resolve().parents[2]
PY39 = Path("/root/.pyenv/versions/3.9.18/bin/python")
WEIRD = "we ird 'q' \"dq\" ;semi\nnewline ünï"


def full_env(name: str = "full") -> Environment:
    """An environment with every field that can be set, set."""
    env = Environment(name)
    cd = CondaDependencies.create(
        conda_packages=["numpy=1.26", "scikit-learn"],
        pip_packages=["requests==2.31.0", "pillow"],
        python_version="3.10",
        pip_indexurl="https://pypi.internal/simple",
    )
    cd.add_channel("file:///srv/conda-mirror")
    env.python.conda_dependencies = cd
    env.docker.enabled = True
    env.docker.base_image = "python:3.10-slim"
    env.docker.shm_size = "4g"
    env.docker.arguments = ["--ulimit", "nofile=1024"]
    env.environment_variables = {"OMP_NUM_THREADS": "4"}
    return env


# --- CondaDependencies: what users type ---------------------------------------------------


def test_create_as_in_the_docs_adds_nothing_of_its_own():
    # from azureml.core.conda_dependencies import CondaDependencies
    myenv = CondaDependencies.create(conda_packages=["numpy", "scikit-learn"])
    assert myenv.conda_packages == ("numpy", "scikit-learn")
    assert myenv.pip_packages == ()  # azureml would add azureml-defaults here
    assert myenv.pip_options == ()
    assert myenv.python_version == PYTHON_DEFAULT_VERSION
    assert myenv.conda_channels == ("conda-forge",)


def test_create_with_everything():
    cd = CondaDependencies.create(
        pip_packages=["requests"],
        conda_packages=["numpy"],
        python_version="3.9.18",
        pin_sdk_version=False,
        pip_indexurl="https://pypi.internal/simple",
    )
    assert cd.python_version == "3.9.18"
    assert cd.get_python_version() == "3.9.18"
    assert cd.pip_options == ("--index-url https://pypi.internal/simple",)
    assert cd.as_dict() == {
        "name": "project_environment",
        "channels": ["conda-forge"],
        "dependencies": [
            "python=3.9.18",
            "numpy",
            {"pip": ["--index-url https://pypi.internal/simple", "requests"]},
        ],
    }


def test_docs_sample_built_step_by_step():
    conda = CondaDependencies()
    conda.add_channel("pytorch")
    conda.add_conda_package("python=3.10")
    conda.add_conda_package("pytorch")
    conda.add_conda_package("torchvision")
    conda.add_pip_package("pyyaml")
    assert conda.python_version == "3.10"
    assert conda.conda_channels == ("conda-forge", "pytorch")
    assert conda.conda_packages == ("pytorch", "torchvision")
    assert conda.pip_packages == ("pyyaml",)


def test_add_pip_package_replaces_the_same_package():
    cd = CondaDependencies()
    cd.add_pip_package("pillow")
    cd.add_pip_package("requests")
    cd.add_pip_package("Pillow==6.2.1")
    assert cd.pip_packages == ("requests", "Pillow==6.2.1")
    cd.add_pip_package("scikit_learn>=1.0")
    cd.add_pip_package("scikit-learn[extra]==1.4")  # same package, PEP 503 names
    assert cd.pip_packages == ("requests", "Pillow==6.2.1", "scikit-learn[extra]==1.4")
    cd.remove_pip_package("pillow")
    cd.remove_pip_package("not-there")
    assert cd.pip_packages == ("requests", "scikit-learn[extra]==1.4")


def test_conda_packages_dedup_and_remove_by_name():
    cd = CondaDependencies.create(conda_packages=["numpy=1.26", "numpy=1.26", "pandas"])
    assert cd.conda_packages == ("numpy=1.26", "pandas")
    cd.remove_conda_package("numpy")
    assert cd.conda_packages == ("pandas",)
    cd.remove_conda_package("conda-forge::pandas>=2")
    assert cd.conda_packages == ()


def test_python_is_the_python_version_not_a_package():
    cd = CondaDependencies()
    cd.add_conda_package("python==3.12.1")
    cd.add_conda_package("python-dateutil")  # not python
    assert cd.python_version == "3.12.1"
    assert cd.conda_packages == ("python-dateutil",)
    cd.set_python_version("3.9")
    assert cd.as_dict()["dependencies"][0] == "python=3.9"


def test_properties_are_copies_that_refuse_changes():
    cd = CondaDependencies.create(pip_packages=["a"])
    with pytest.raises(AttributeError, match="append"):
        cd.pip_packages.append("b")  # type: ignore[attr-defined]
    assert cd.pip_packages == ("a",)


def test_channels_keep_order_and_no_duplicates():
    cd = CondaDependencies()
    cd.add_channel("file:///srv/mirror")
    cd.add_channel("conda-forge")
    assert cd.conda_channels == ("conda-forge", "file:///srv/mirror")
    cd.remove_channel("conda-forge")
    cd.remove_channel("never-added")
    assert cd.conda_channels == ("file:///srv/mirror",)


def test_pip_options():
    cd = CondaDependencies()
    cd.set_pip_option("-i https://a/simple")
    cd.set_pip_option("--index-url=https://b/simple")  # one index: replaced
    cd.set_pip_option("--extra-index-url https://c/simple")
    cd.set_pip_option("--extra-index-url https://d/simple")  # several: kept
    cd.set_pip_option("--pre")
    cd.set_pip_option("--pre")
    assert cd.pip_options == (
        "--index-url https://b/simple",
        "--extra-index-url https://c/simple",
        "--extra-index-url https://d/simple",
        "--pre",
    )
    cd.remove_pip_option("--extra-index-url")
    cd.set_pip_index_url("https://e/simple")
    assert cd.pip_options == ("--index-url https://e/simple", "--pre")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "is not a non-empty string"),
        ("   ", "is not a non-empty string"),
        (None, "is not a non-empty string"),
        (3, "is not a non-empty string"),
        ("numpy\nscipy", "line break or control character"),
        ("--index-url x", "looks like an option"),
    ],
)
@pytest.mark.parametrize("kind", ["conda", "pip"])
def test_bad_package_specs(kind, spec, message):
    cd = CondaDependencies()
    add = cd.add_conda_package if kind == "conda" else cd.add_pip_package
    with pytest.raises(ConfigError, match=f"{kind} package .*{message}"):
        add(spec)
    assert cd == CondaDependencies()  # nothing was changed


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"python_version": 3.10}, r"is a number; pass it as a string such as '3.10'"),
        ({"python_version": "3"}, r"python_version '3' is not a version"),
        ({"python_version": "latest"}, r"is not a version; pass 'X.Y'"),
        ({"pip_packages": "numpy"}, r"pip_packages 'numpy' is not a list"),
        ({"conda_packages": ["numpy", 1]}, r"conda_packages: 1 is not a string"),
        ({"pip_indexurl": ""}, r"pip_indexurl '' is not a non-empty string"),
    ],
)
def test_bad_create_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        CondaDependencies.create(**kwargs)


def test_other_bad_inputs():
    cd = CondaDependencies()
    with pytest.raises(ConfigError, match="python must not be removed"):
        cd.remove_conda_package("python")
    with pytest.raises(ConfigError, match="python must be pinned to one version"):
        cd.add_conda_package("python>=3.9")
    with pytest.raises(ConfigError, match="conda channel 'a b' contains whitespace"):
        cd.add_channel("a b")
    with pytest.raises(ConfigError, match="conda channel '' is not a non-empty string"):
        cd.add_channel("")
    with pytest.raises(ConfigError, match="pip option 'numpy' does not start with '-'"):
        cd.set_pip_option("numpy")
    with pytest.raises(ConfigError, match="is not a path"):
        CondaDependencies(42)  # type: ignore[arg-type]


# --- CondaDependencies: YAML out and back in ---------------------------------------------


def test_serialize_to_string_is_a_conda_environment_file():
    cd = CondaDependencies.create(
        conda_packages=["numpy>=1.26", "conda-forge::pandas"],
        pip_packages=["requests==2.31.0"],
        pip_indexurl="https://pypi.internal/simple",
    )
    text = cd.serialize_to_string()
    body = [line for line in text.splitlines() if not line.startswith("#")]
    assert body == [
        "name: project_environment",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        "  - python=3.11",
        "  - numpy>=1.26",
        "  - conda-forge::pandas",
        "  - pip:",
        '      - "--index-url https://pypi.internal/simple"',
        "      - requests==2.31.0",
    ]
    assert yaml.safe_load(text) == cd.as_dict()


@pytest.mark.parametrize(
    "spec",
    [
        "numpy 1.26.*",  # a space
        "pkg @ file:///wheels/pkg-1.0-py3-none-any.whl",
        "yes",
        "null",
        "on",
        "a: b",
        "trailing:",
        "hash #not-a-comment",
        "quote'single",
        'quote"double',
        "back\\slash",
        "ünïcode-pkg",
        "[brackets]",
        "*star",
        "&anchor",
        "!tag",
        "%percent",
        "@at",
        "`tick",
        "{brace}",
        "|pipe",
        ">fold",
        "?question",
        "1.0",
        "0o17",
        "~",
    ],
)
def test_yaml_quoting_round_trips(tmp_path, spec):
    cd = CondaDependencies()
    cd.add_pip_package(f"x{spec}" if spec.startswith("-") else spec)
    cd.add_conda_package(spec)
    path = tmp_path / "env.yml"
    cd.save(path)
    assert yaml.safe_load(path.read_text(encoding="utf-8")) == cd.as_dict()
    assert CondaDependencies(path) == cd


def test_save_and_reload(tmp_path):
    cd = CondaDependencies.create(conda_packages=["numpy"], pip_packages=["requests"])
    cd.add_channel("file:///srv/conda mirror".replace(" ", "%20"))
    cd.set_pip_option("--extra-index-url https://x/simple")
    path = tmp_path / "environment.yml"
    assert cd.save(path) == str(path)
    again = CondaDependencies(conda_dependencies_file_path=str(path))
    assert again == cd
    assert again.serialize_to_string() == cd.serialize_to_string()
    assert not [p for p in tmp_path.iterdir() if p.name != "environment.yml"]  # no temp left


def test_save_to_file(tmp_path):
    cd = CondaDependencies.create(pip_packages=["requests"])
    relative = cd.save_to_file(str(tmp_path))
    assert relative == ".runner/auto_conda_dependencies.yml"
    assert CondaDependencies(tmp_path / relative) == cd
    assert cd.save_to_file(tmp_path, conda_file_path="envs\\train.yml") == "envs/train.yml"
    assert CondaDependencies(tmp_path / "envs" / "train.yml") == cd
    with pytest.raises(ConfigError, match="is not an existing folder"):
        cd.save_to_file(tmp_path / "missing")


def test_save_refuses_bad_paths(tmp_path):
    cd = CondaDependencies()
    with pytest.raises(ConfigError, match=r"save\(\) needs a file path"):
        cd.save()
    with pytest.raises(ConfigError, match="it is a folder"):
        cd.save(tmp_path)
    with pytest.raises(ConfigError, match="does not exist; create it first"):
        cd.save(tmp_path / "no" / "env.yml")


def test_load_a_conda_env_export(tmp_path):
    path = tmp_path / "exported.yml"
    path.write_text(
        "name: myenv\n"
        "channels:\n  - defaults\n  - conda-forge\n"
        "dependencies:\n"
        "  - python=3.10.13=h955ad1f_0\n"
        "  - numpy=1.26.4=py310hb13e2d6_0\n"
        "  - pip\n"
        "  - pip:\n      - requests==2.31.0\n      - -e ./src\n"
        "variables:\n  OMP_NUM_THREADS: 4\n"
        "prefix: /home/u/miniconda3/envs/myenv\n",
        encoding="utf-8",
    )
    cd = CondaDependencies(path)
    assert cd.python_version == "3.10.13"  # the build string is dropped
    assert cd.conda_channels == ("defaults", "conda-forge")
    assert cd.conda_packages == ("numpy=1.26.4=py310hb13e2d6_0", "pip")
    assert cd.pip_packages == ("requests==2.31.0",)
    assert cd.pip_options == ("--editable ./src",)
    assert cd.as_dict()["variables"] == {"OMP_NUM_THREADS": "4"}
    assert "prefix" not in cd.as_dict()
    assert cd.as_dict()["name"] == "myenv"


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("- numpy\n", ConfigError, "is not a conda environment specification"),
        ("name: x\npackages: [numpy]\n", ConfigError, r"unknown key\(s\) 'packages'"),
        ("dependencies: [numpy, {conda: [x]}]\n", ConfigError, "only mapping allowed"),
        ("dependencies: [[numpy]]\n", ConfigError, "is not a package spec string"),
        ("dependencies: [python>=3.9]\n", ConfigError, "python must be pinned"),
        ("dependencies: numpy\n", ConfigError, "dependencies 'numpy' is not a list"),
        ("dependencies: [{pip: requests}]\n", ConfigError, "pip 'requests' is not a list"),
        ("channels: [a, 1]\n", ConfigError, "channels: 1 is not a string"),
        ("variables: [a]\n", ConfigError, "variables must be a mapping"),
        ("dependencies: [numpy\n", ConfigError, "is not valid YAML"),
    ],
)
def test_bad_conda_files(tmp_path, text, error, message):
    path = tmp_path / "env.yml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(error, match=message):
        CondaDependencies(path)


def test_missing_conda_file(tmp_path):
    with pytest.raises(NotFoundError, match="not found; pass the path to an existing YAML"):
        CondaDependencies(tmp_path / "nope.yml")


# --- Environment: what users type -------------------------------------------------------


def test_user_managed_sample_from_the_seeds():
    user_managed_env = Environment("user-managed-env")
    user_managed_env.python.user_managed_dependencies = True
    user_managed_env.python.interpreter_path = "/home/johndoe/miniconda3/envs/myenv/bin/python"
    assert user_managed_env.python.user_managed_dependencies is True
    assert user_managed_env.python.interpreter_path.endswith("myenv/bin/python")
    assert repr(user_managed_env) == "Environment(name='user-managed-env', version=None)"


def test_conda_sample_from_the_docs():
    env = Environment("training_environment")
    deps = CondaDependencies.create(
        conda_packages=["scikit-learn", "pandas", "numpy"], pip_packages=["joblib"]
    )
    env.python.conda_dependencies = deps
    env.docker.enabled = True
    env.docker.base_image = "my-base-image"
    assert env.python.conda_dependencies is deps
    assert env.docker.enabled is True
    conda_dep = env.python.conda_dependencies
    conda_dep.add_pip_package("graphviz")
    env.python.conda_dependencies = conda_dep
    assert "graphviz" in env.python.conda_dependencies.pip_packages


def test_defaults_of_a_new_environment():
    env = Environment("myenv")
    assert env.name == "myenv"
    assert env.version is None
    assert env.environment_variables == {}
    assert env.python.user_managed_dependencies is False  # as in azureml v1
    assert env.python.interpreter_path is None
    assert env.python.conda_dependencies == CondaDependencies()
    assert env.python.conda_dependencies_file is None
    assert env.docker.enabled is False
    assert env.docker.base_image == DEFAULT_CPU_IMAGE == "python:3.11-slim"
    assert env.docker.base_dockerfile is None
    assert env.docker.shm_size == "2g"
    assert env.docker.arguments == []
    assert env.docker.shared_volumes is True


def test_default_environment_is_the_submitting_python():
    env = Environment.default()
    assert env.name == DEFAULT_ENVIRONMENT_NAME == "runner-default"
    assert env.python.user_managed_dependencies is True
    assert env.python.interpreter_path is None
    assert env.python.conda_dependencies is None
    assert env.docker.enabled is False
    env.validate()


@pytest.mark.parametrize("name", ["", " env", "a/b", "..", "-x", "a b", None, 3, "x" * 256])
def test_bad_environment_names(name):
    with pytest.raises(ConfigError, match=r"environment name .* is not valid; use up to 255"):
        Environment(name)


def test_setters_refuse_bad_values():
    env = Environment("e")
    with pytest.raises(ConfigError, match="user_managed_dependencies 'yes' is not True or False"):
        env.python.user_managed_dependencies = "yes"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="interpreter_path is empty"):
        env.python.interpreter_path = ""
    with pytest.raises(ConfigError, match="interpreter_path 3 is not a path"):
        env.python.interpreter_path = 3  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="is not a CondaDependencies; build one"):
        env.python.conda_dependencies = ["numpy"]  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="conda_dependencies_file 1 is not a path"):
        env.python.conda_dependencies_file = 1  # type: ignore[assignment]
    with pytest.raises(ConfigError, match=r"docker.enabled 1 is not True or False"):
        env.docker.enabled = 1  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="base_image 'a b' is not an image name"):
        env.docker.base_image = "a b"
    with pytest.raises(ConfigError, match="shm_size 'lots' is not a size"):
        env.docker.shm_size = "lots"
    with pytest.raises(ConfigError, match="arguments '--rm' is not a list of strings"):
        env.docker.arguments = "--rm"  # type: ignore[assignment]
    with pytest.raises(ConfigError, match="shared_volumes None is not True or False"):
        env.docker.shared_volumes = None  # type: ignore[assignment]
    with pytest.raises(ConfigError, match=r"environment_variables \['A'\] is not a dict"):
        env.environment_variables = ["A"]  # type: ignore[assignment]
    with pytest.raises(ConfigError, match=r"\['N'\] = 1 is not a string.*str\(1\)"):
        env.environment_variables = {"N": 1}  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match="'A=B' is not a variable name"):
        env.environment_variables = {"A=B": "x"}
    with pytest.raises(ConfigError, match=r"environment version 1.5 is not valid"):
        env.version = 1.5  # type: ignore[assignment]
    assert env == Environment("e")  # nothing was changed


def test_changes_in_place_are_checked_when_serialised():
    env = Environment("e")
    env.environment_variables["N"] = 1  # type: ignore[assignment]
    with pytest.raises(ConfigError, match=r"environment_variables\['N'\] = 1 is not a string"):
        env.to_dict()
    env.environment_variables["N"] = "1"
    env.docker.arguments.append(2)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"docker.arguments .* is not a list of strings"):
        env.spec_hash()


def test_validate_says_what_cannot_be_built():
    env = Environment("e")
    env.docker.enabled = True
    env.docker.base_image = None
    with pytest.raises(ConfigError, match=r"docker.enabled is True but there is no docker.base"):
        env.validate()
    env.docker.enabled = False
    env.python.conda_dependencies = None
    with pytest.raises(ConfigError, match="conda_dependencies is None, so there is nothing"):
        env.spec_hash()
    env.python.user_managed_dependencies = True
    env.validate()


def test_base_image_and_base_dockerfile_exclude_each_other(tmp_path):
    env = Environment("e")
    env.docker.base_dockerfile = "FROM ubuntu:22.04\nRUN echo hi\n"
    assert env.docker.base_image is None
    env.docker.base_image = "ubuntu:22.04"
    assert env.docker.base_dockerfile is None
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM debian:12\r\nRUN true\r\n", encoding="utf-8")
    env.docker.base_dockerfile = str(dockerfile)  # a path is read, line endings kept
    assert env.docker.base_dockerfile == "FROM debian:12\r\nRUN true\r\n"
    assert env.docker.base_image is None
    env.docker.base_dockerfile = None
    assert env.docker.base_dockerfile is None
    with pytest.raises(ConfigError, match="'docker/Dockerfile' not found: there is no such file"):
        env.docker.base_dockerfile = "docker/Dockerfile"


def test_gpu_support_is_a_deprecated_no_op():
    env = Environment("e")
    with pytest.warns(DeprecationWarning, match="gpu_support is deprecated and ignored"):
        env.docker.gpu_support = True
    with pytest.warns(DeprecationWarning, match="gpu_support is deprecated"):
        assert env.docker.gpu_support is True
    assert env == Environment("e")


# --- Environment: constructors from files -----------------------------------------------


def test_from_conda_specification(tmp_path):
    path = tmp_path / "conda.yml"
    path.write_text(
        "name: py_env\ndependencies:\n  - python=3.10\n  - numpy\n  - pandas\n"
        "  - scikit-learn\n  - pip:\n    - joblib\n",
        encoding="utf-8",
    )
    env = Environment.from_conda_specification(name="training_environment", file_path=str(path))
    cd = env.python.conda_dependencies
    assert cd is not None
    assert cd.python_version == "3.10"
    assert cd.conda_packages == ("numpy", "pandas", "scikit-learn")
    assert cd.pip_packages == ("joblib",)
    assert cd.conda_channels == ()  # the file's channels, not ours
    assert env.python.user_managed_dependencies is False


def test_from_conda_specification_without_python_warns_and_pins(tmp_path):
    path = tmp_path / "conda.yml"
    path.write_text("dependencies: [numpy]\n", encoding="utf-8")
    with pytest.warns(RunnerWarning, match=r"pins no Python version; using python=3\.11"):
        env = Environment.from_conda_specification("e", path)
    assert env.python.conda_dependencies is not None
    assert env.python.conda_dependencies.python_version == PYTHON_DEFAULT_VERSION


def test_from_conda_specification_bad_inputs(tmp_path):
    with pytest.raises(NotFoundError, match="not found"):
        Environment.from_conda_specification("e", tmp_path / "missing.yml")
    with pytest.raises(ConfigError, match="environment name 'a/b' is not valid"):
        Environment.from_conda_specification("a/b", tmp_path / "missing.yml")


def test_from_pip_requirements(tmp_path):
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "common.txt").write_text(
        "# shared pins\nnumpy==1.26.4\n--extra-index-url https://extra/simple\n",
        encoding="utf-8",
    )
    req = tmp_path / "requirements.txt"
    req.write_text(
        "\ufeff# a comment line\n"
        "-i https://pypi.internal/simple\n"
        "\n"
        "requests==2.31.0   # inline comment\n"
        "-r base/common.txt\n"
        "pandas>=2.0; python_version >= '3.9'\n"
        "scikit-learn \\\n"
        "    >=1.4\n"
        "git+https://example.com/repo.git#egg=mypkg\n"
        "--find-links ./wheels\n"
        "torch==2.3.0 --hash=sha256:abc\n",
        encoding="utf-8",
    )
    env = Environment.from_pip_requirements("pip-env", req)
    cd = env.python.conda_dependencies
    assert cd is not None
    assert cd.pip_packages == (
        "requests==2.31.0",
        "numpy==1.26.4",
        "pandas>=2.0; python_version >= '3.9'",
        "scikit-learn     >=1.4",
        "git+https://example.com/repo.git#egg=mypkg",
        "torch==2.3.0 --hash=sha256:abc",
    )
    assert cd.pip_options == (
        "--index-url https://pypi.internal/simple",
        "--extra-index-url https://extra/simple",
        "--find-links ./wheels",
    )
    assert cd.conda_packages == ("pip",)
    assert cd.python_version == PYTHON_DEFAULT_VERSION
    # and it survives the trip through YAML
    cd.save(tmp_path / "env.yml")
    assert CondaDependencies(tmp_path / "env.yml") == cd


def test_from_pip_requirements_pip_version(tmp_path):
    req = tmp_path / "r.txt"
    req.write_text("requests\n", encoding="utf-8")
    env = Environment.from_pip_requirements("e", str(req), pip_version="24.0")
    assert env.python.conda_dependencies is not None
    assert env.python.conda_dependencies.conda_packages == ("pip=24.0",)
    with pytest.raises(ConfigError, match="pip_version 'latest' is not a version"):
        Environment.from_pip_requirements("e", req, pip_version="latest")


@pytest.mark.parametrize(
    ("files", "error", "message"),
    [
        ({"r.txt": "-r r.txt\n"}, ConfigError, "include each other in a loop"),
        ({"r.txt": "-r a.txt\n", "a.txt": "--requirement=r.txt\n"}, ConfigError, "in a loop"),
        ({"r.txt": "-r missing.txt\n"}, NotFoundError, r"included by .*r\.txt'\) .* not found"),
        ({"r.txt": "-c constraints.txt\n"}, ConfigError, "constraints files .* are not supported"),
        ({"r.txt": "-r https://x/r.txt\n"}, ConfigError, "must name a local requirements file"),
        ({"r.txt": "-r\n"}, ConfigError, "must name a local requirements file"),
    ],
)
def test_from_pip_requirements_bad_files(tmp_path, files, error, message):
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(error, match=message):
        Environment.from_pip_requirements("e", tmp_path / "r.txt")


def test_from_pip_requirements_missing_file(tmp_path):
    with pytest.raises(NotFoundError, match=r"pip requirements file '.*nope\.txt' not found"):
        Environment.from_pip_requirements("e", tmp_path / "nope.txt")
    with pytest.raises(ConfigError, match="is not the path to a requirements file"):
        Environment.from_pip_requirements("e", 5)  # type: ignore[arg-type]


def test_from_dockerfile_text_path_and_one_line(tmp_path):
    text = 'FROM python:3.11-slim\nRUN echo "Hello from custom container!"\n'
    env = Environment.from_dockerfile("custom", text)
    assert env.docker.base_dockerfile == text
    assert env.docker.base_image is None
    assert env.docker.enabled is True
    assert env.python.user_managed_dependencies is True  # the image's own Python
    path = tmp_path / "Dockerfile"
    path.write_text(text, encoding="utf-8")
    assert Environment.from_dockerfile("custom", str(path)).docker.base_dockerfile == text
    assert Environment.from_dockerfile("custom", path).docker.base_dockerfile == text
    one_line = Environment.from_dockerfile("custom", "from ubuntu:22.04")
    assert one_line.docker.base_dockerfile == "from ubuntu:22.04"


def test_from_dockerfile_with_python_dependencies(tmp_path):
    conda = tmp_path / "conda.yml"
    conda.write_text("dependencies: [python=3.10, numpy]\n", encoding="utf-8")
    req = tmp_path / "requirements.txt"
    req.write_text("requests\n", encoding="utf-8")
    env = Environment.from_dockerfile("d", "FROM x\n", conda_specification=conda)
    assert env.python.user_managed_dependencies is False
    assert env.python.conda_dependencies is not None
    assert env.python.conda_dependencies.conda_packages == ("numpy",)
    env = Environment.from_dockerfile("d", "FROM x\n", pip_requirements=str(req))
    assert env.python.conda_dependencies is not None
    assert env.python.conda_dependencies.pip_packages == ("requests",)
    with pytest.raises(ConfigError, match="pass conda_specification or pip_requirements, not"):
        Environment.from_dockerfile(
            "d", "FROM x\n", conda_specification=conda, pip_requirements=req
        )


@pytest.mark.parametrize(
    ("dockerfile", "message"),
    [
        ("Dockerfile.gpu", r"dockerfile 'Dockerfile.gpu' not found: there is no such file"),
        ("", "is neither a Dockerfile's text nor a path"),
        (None, "is neither a Dockerfile's text nor a path"),
    ],
)
def test_from_dockerfile_bad_inputs(dockerfile, message):
    with pytest.raises(ConfigError, match=message):
        Environment.from_dockerfile("d", dockerfile)


def test_from_dockerfile_missing_path_object(tmp_path):
    with pytest.raises(NotFoundError, match=r"dockerfile .* not found"):
        Environment.from_dockerfile("d", tmp_path / "Dockerfile")


def test_from_docker_image():
    env = Environment.from_docker_image("img", "pytorch/pytorch:2.3.1-cuda12.1-cudnn8-runtime")
    assert env.docker.base_image == "pytorch/pytorch:2.3.1-cuda12.1-cudnn8-runtime"
    assert env.docker.enabled is True
    assert env.python.user_managed_dependencies is True
    with pytest.raises(ConfigError, match=r"container_registry .* is not a ContainerRegistry"):
        Environment.from_docker_image("img", "x", container_registry=object())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="image '' is not an image name"):
        Environment.from_docker_image("img", "")


# --- serialisation ----------------------------------------------------------------------


def test_to_dict_has_azureml_keys_and_is_json_safe():
    data = full_env().to_dict()
    assert json.loads(json.dumps(data)) == data
    assert set(data) == {"name", "version", "environmentVariables", "python", "docker"}
    assert data["python"] == {
        "userManagedDependencies": False,
        "interpreterPath": None,
        "condaDependenciesFile": None,
        "condaDependencies": {
            "name": "project_environment",
            "channels": ["conda-forge", "file:///srv/conda-mirror"],
            "dependencies": [
                "python=3.10",
                "numpy=1.26",
                "scikit-learn",
                {"pip": ["--index-url https://pypi.internal/simple", "requests==2.31.0", "pillow"]},
            ],
        },
    }
    assert data["docker"] == {
        "enabled": True,
        "baseImage": "python:3.10-slim",
        "baseDockerfile": None,
        "sharedVolumes": True,
        "shmSize": "4g",
        "arguments": ["--ulimit", "nofile=1024"],
    }


@pytest.mark.parametrize(
    "make",
    [
        full_env,
        Environment.default,
        lambda: Environment.from_dockerfile("d", "FROM a\nRUN b\n"),
        lambda: Environment("plain"),
    ],
)
def test_to_dict_from_dict_round_trip(make):
    env = make()
    env.version = "7"
    env.python.conda_dependencies_file = "envs/conda.yml"
    again = Environment.from_dict(json.loads(json.dumps(env.to_dict())))
    assert again == env
    assert again.to_dict() == env.to_dict()
    assert again.version == "7"
    assert again.spec_hash() == env.spec_hash()


def test_from_dict_reads_an_azureml_definition():
    # the shape azureml's save_to_directory writes (condaDependencies moved to its own file)
    data = {
        "name": "myenv",
        "version": None,
        "environmentVariables": {"EXAMPLE_ENV_VAR": "EXAMPLE_VALUE"},
        "python": {
            "userManagedDependencies": False,
            "interpreterPath": "python",
            "condaDependenciesFile": None,
            "baseCondaEnvironment": None,
        },
        "docker": {
            "enabled": False,
            "baseImage": "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:20230509.v1",
            "platform": {"os": "Linux", "architecture": "amd64"},
            "baseDockerfile": None,
            "baseImageRegistry": {"address": None, "username": None, "password": None},
            "enabled_": None,
        },
        "spark": {"repositories": [], "packages": [], "precachePackages": True},
        "databricks": {"mavenLibraries": [], "pypiLibraries": []},
        "r": None,
        "inferencingStackVersion": None,
    }
    with pytest.raises(ConfigError, match=r"docker: unknown key\(s\) 'enabled_'"):
        Environment.from_dict(data)
    del data["docker"]["enabled_"]  # type: ignore[union-attr]
    env = Environment.from_dict(data)
    assert env.python.interpreter_path == "python"
    assert env.python.conda_dependencies is None  # left out means unset
    assert env.docker.shm_size is None
    assert env.environment_variables == {"EXAMPLE_ENV_VAR": "EXAMPLE_VALUE"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(nme="x"), r"environment definition: unknown key\(s\) 'nme'"),
        (lambda d: d.pop("name"), "environment name None is not valid"),
        (lambda d: d.update(r={"rVersion": "4"}), "R environments"),
        (lambda d: d["python"].update(userManagedDependencies="no"), "is not True or False"),
        (lambda d: d["python"].update(baseCondaEnvironment="base"), "not supported"),
        (lambda d: d["python"].update(condaDependencies=["numpy"]), "not a conda environment"),
        (lambda d: d["docker"].update(buildContext={"location": "x"}), "buildContext is not"),
        (lambda d: d["docker"].update(baseDockerfile="FROM x\n"), "exclude each other"),
        (lambda d: d["docker"].update(baseImage=None, baseDockerfile=3), "is not text"),
        (lambda d: d["docker"].update(arguments="--rm"), "is not a list of strings"),
        (lambda d: d.update(docker=[1]), "docker is not a JSON object"),
        (lambda d: d.update(environmentVariables={"A": 1}), r"\['A'\] = 1 is not a string"),
    ],
)
def test_from_dict_bad_definitions(change, message):
    data = full_env().to_dict()
    change(data)
    with pytest.raises(ConfigError, match=message):
        Environment.from_dict(data)


def test_from_dict_needs_a_mapping():
    with pytest.raises(ConfigError, match="environment definition is not a JSON object, got list"):
        Environment.from_dict([])


def test_save_to_directory_and_load_back(tmp_path):
    env = full_env()
    folder = tmp_path / WEIRD
    env.save_to_directory(str(folder))
    assert sorted(p.name for p in folder.iterdir()) == [
        "azureml_environment.json",
        "conda_dependencies.yml",
    ]
    saved = json.loads((folder / "azureml_environment.json").read_text(encoding="utf-8"))
    assert "condaDependencies" not in saved["python"]  # it is in conda_dependencies.yml
    assert Environment.load_from_directory(folder) == env


def test_save_to_directory_with_a_dockerfile_and_no_conda(tmp_path):
    env = Environment.from_docker_image("img", "x:1")
    env.python.conda_dependencies = None
    env.docker.base_dockerfile = "FROM x:1\r\nRUN true\r\n"
    env.save_to_directory(tmp_path / "env")
    assert sorted(p.name for p in (tmp_path / "env").iterdir()) == [
        "BaseDockerfile",
        "azureml_environment.json",
    ]
    again = Environment.load_from_directory(tmp_path / "env")
    assert again == env
    assert again.docker.base_dockerfile == "FROM x:1\r\nRUN true\r\n"


def test_save_to_directory_overwrite(tmp_path):
    env = full_env()
    env.save_to_directory(tmp_path)  # an existing, empty folder is fine
    with pytest.raises(ConflictError, match="the folder is not empty; pass overwrite=True"):
        env.save_to_directory(tmp_path)
    user_managed = Environment.default()
    user_managed.save_to_directory(tmp_path, overwrite=True)
    assert not (tmp_path / "conda_dependencies.yml").exists()  # stale file removed
    assert Environment.load_from_directory(tmp_path) == user_managed
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match="it is a file"):
        env.save_to_directory(tmp_path / "file")


def test_load_from_directory_errors(tmp_path):
    with pytest.raises(NotFoundError, match=r"no saved environment in .*azureml_environment.json"):
        Environment.load_from_directory(tmp_path)
    (tmp_path / "azureml_environment.json").write_text("{nope", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not valid JSON"):
        Environment.load_from_directory(tmp_path)


def test_equality_and_clone():
    env = full_env()
    assert env == full_env()
    assert env != full_env("other")
    assert env != "full"
    clone = env.clone("copy")
    assert clone.name == "copy"
    assert clone.version is None
    assert clone.spec_hash() == env.spec_hash()
    clone.python.conda_dependencies.add_pip_package("extra")  # type: ignore[union-attr]
    assert "extra" not in env.python.conda_dependencies.pip_packages  # type: ignore[union-attr]
    with pytest.raises(TypeError, match="unhashable"):
        hash(env)


# --- the spec hash ----------------------------------------------------------------------


def test_spec_hash_is_pinned():
    # If this changes, every build cache key changes: bump _SPEC_SCHEMA on purpose.
    assert (
        Environment.default().spec_hash()
        == "953e66aa7af7c1866148a472185db269630c4016cb8ac3b9d87f9d1574dae5d9"
    )


def test_spec_hash_ignores_what_is_applied_at_launch():
    base = full_env().spec_hash()
    env = full_env("another-name")
    env.version = "12"
    env.environment_variables = {"X": "1"}
    env.docker.shm_size = "16g"
    env.docker.arguments = ["--cpus", "2"]
    env.docker.shared_volumes = False
    assert env.spec_hash() == base


def test_spec_hash_ignores_package_order():
    a = Environment("a")
    a.python.conda_dependencies = CondaDependencies.create(
        conda_packages=["numpy", "scipy"], pip_packages=["requests", "flask"]
    )
    b = Environment("b")
    b.python.conda_dependencies = CondaDependencies.create(
        conda_packages=["scipy", "numpy"], pip_packages=["flask", "requests"]
    )
    assert a != b
    assert a.spec_hash() == b.spec_hash()


def _change_channel_order(env):
    cd = env.python.conda_dependencies
    channels = list(cd.conda_channels)
    for c in channels:
        cd.remove_channel(c)
    for c in reversed(channels):
        cd.add_channel(c)


@pytest.mark.parametrize(
    "change",
    [
        _change_channel_order,
        lambda e: e.python.conda_dependencies.add_channel("pytorch"),
        lambda e: e.python.conda_dependencies.set_python_version("3.11"),
        lambda e: e.python.conda_dependencies.add_conda_package("pandas"),
        lambda e: e.python.conda_dependencies.add_pip_package("requests==2.32.0"),
        lambda e: e.python.conda_dependencies.remove_pip_package("pillow"),
        lambda e: e.python.conda_dependencies.set_pip_option("--extra-index-url https://x"),
        lambda e: setattr(e.python, "conda_dependencies", CondaDependencies()),
        lambda e: setattr(e.python, "user_managed_dependencies", True),
        lambda e: setattr(e.python, "interpreter_path", "/opt/py/bin/python"),
        lambda e: setattr(e.python, "conda_dependencies_file", "conda.yml"),
        lambda e: setattr(e.docker, "enabled", False),
        lambda e: setattr(e.docker, "base_image", "python:3.12-slim"),
        lambda e: setattr(e.docker, "base_dockerfile", "FROM python:3.10-slim\n"),
    ],
)
def test_spec_hash_follows_what_changes_the_build(change):
    env = full_env()
    before = env.spec_hash()
    change(env)
    assert env.spec_hash() != before


def test_spec_hash_dockerfile_line_endings_do_not_matter():
    a = Environment.from_dockerfile("a", "FROM x\nRUN y\n")
    b = Environment.from_dockerfile("b", "FROM x\r\nRUN y\r\n")
    assert a.spec_hash() == b.spec_hash()
    c = Environment.from_dockerfile("c", "FROM x\nRUN z\n")
    assert c.spec_hash() != a.spec_hash()


def test_spec_hash_survives_files_and_dicts(tmp_path):
    env = full_env()
    env.save_to_directory(tmp_path / "e")
    assert Environment.load_from_directory(tmp_path / "e").spec_hash() == env.spec_hash()
    assert Environment.from_dict(env.to_dict()).spec_hash() == env.spec_hash()
    assert env.canonical_spec()["conda"]["pipPackages"] == ["pillow", "requests==2.31.0"]


@pytest.mark.skipif(not PY39.exists(), reason="needs the Python 3.9 interpreter at " + str(PY39))
def test_modules_import_on_python39_stdlib_only_with_the_same_hash():
    code = (
        "import sys, json\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from runner.environment import Environment\n"
        "from runner.conda_dependencies import CondaDependencies\n"
        "env = Environment('a')\n"
        "env.python.conda_dependencies = CondaDependencies.create(conda_packages=['numpy'])\n"
        "third = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('yaml', 'psutil', 'docker', 'filelock', 'watchdog'))\n"
        "print(json.dumps([env.spec_hash(), third]))\n"
    )
    out = subprocess.run(
        [str(PY39), "-I", "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    digest, third_party = json.loads(out)
    env = Environment("a")
    env.python.conda_dependencies = CondaDependencies.create(conda_packages=["numpy"])
    assert digest == env.spec_hash()
    assert third_party == []


# --- the workspace side -----------------------------------------------------------------


class FakeRegistry:
    """An edge fake of the workspace's environment registry (runner.workspace implements it)."""

    def __init__(self):
        self.stored: dict[str, list[dict]] = {}
        self.built: list[Environment] = []

    def _register_environment(self, environment):
        versions = self.stored.setdefault(environment.name, [])
        versions.append(environment.to_dict())
        registered = Environment.from_dict(versions[-1])
        registered.version = str(len(versions))
        return registered

    def _get_environment(self, name, version):
        versions = self.stored.get(name)
        if not versions:
            raise NotFoundError(f"no environment {name!r}")
        index = len(versions) if version is None else int(version)
        env = Environment.from_dict(versions[index - 1])
        env.version = str(index)
        return env

    def _list_environments(self):
        return {name: self._get_environment(name, None) for name in self.stored}

    def _build_environment(self, environment):
        self.built.append(environment)
        return "prepared"


def test_fake_registry_satisfies_the_protocol():
    registry: EnvironmentRegistry = FakeRegistry()
    assert isinstance(registry, EnvironmentRegistry)
    assert not isinstance(object(), EnvironmentRegistry)


def test_register_get_list():
    ws = FakeRegistry()
    env = full_env("myenv")
    first = env.register(workspace=ws)
    assert first.version == "1"
    assert env.version is None
    env.python.conda_dependencies.add_pip_package("graphviz")  # type: ignore[union-attr]
    assert env.register(ws).version == "2"
    assert Environment.get(ws, "myenv").version == "2"
    old = Environment.get(ws, "myenv", version="1")
    assert old.version == "1"
    assert "graphviz" not in old.python.conda_dependencies.pip_packages  # type: ignore[union-attr]
    assert Environment.get(ws, "myenv", 2).version == "2"  # type: ignore[arg-type]
    envs = Environment.list(workspace=ws)
    assert list(envs) == ["myenv"]
    assert envs["myenv"].version == "2"
    with pytest.raises(NotFoundError, match="no environment 'other'"):
        Environment.get(ws, "other")


def test_registry_calls_check_their_arguments():
    ws = FakeRegistry()
    for call in (
        lambda: Environment("e").register("ws"),
        lambda: Environment.get(None, "e"),
        lambda: Environment.list({}),
        lambda: Environment("e").build_local(42),
    ):
        with pytest.raises(ConfigError, match=r"needs a Workspace, got \w+; pass ws = Workspace"):
            call()
    with pytest.raises(ConfigError, match="environment name 'a b' is not valid"):
        Environment.get(ws, "a b")
    bad = Environment("e")
    bad.python.conda_dependencies = None
    with pytest.raises(ConfigError, match="nothing to build"):
        bad.register(ws)
    assert ws.stored == {}


def test_build_local():
    ws = FakeRegistry()
    env = full_env()
    env.docker.enabled = False
    assert env.build_local(ws) is None
    assert ws.built[-1] is env
    env.build_local(ws, useDocker=True)
    assert ws.built[-1].docker.enabled is True
    assert env.docker.enabled is False  # the caller's environment is not changed
    here = {"linux": "Linux", "win32": "Windows", "darwin": "OSX"}.get(sys.platform)
    env.build_local(ws, platform=here)
    other = "Windows" if here != "Windows" else "Linux"
    with pytest.raises(ConfigError, match=r"builds for this machine .* only"):
        env.build_local(ws, platform=other)
    assert len(ws.built) == 3


def test_no_leftover_temporary_files(tmp_path):
    full_env().save_to_directory(tmp_path)
    full_env().save_to_directory(tmp_path, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["azureml_environment.json", "conda_dependencies.yml"]
