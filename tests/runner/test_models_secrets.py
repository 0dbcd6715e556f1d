"""The model registry (versioned per name) and the workspace keyvault (file mode 0600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runner import Model, Run
from runner.errors import ConfigError, ConflictError, NotFoundError

# -- models ---------------------------------------------------------------------------


@pytest.fixture
def trained(exp, tmp_path):
    """A completed run with outputs/model.pkl and outputs/extra/vocab.txt."""
    out = tmp_path / "outputs"
    (out / "extra").mkdir(parents=True)
    (out / "model.pkl").write_bytes(b"weights v1")
    (out / "extra" / "vocab.txt").write_text("a b c", encoding="utf-8")
    run = exp.start_logging(outputs=str(out))
    run.complete()
    return run


def test_register_model_from_a_run_file(ws, trained):
    model = trained.register_model(
        "mnist",
        "outputs/model.pkl",
        tags={"area": "vision"},
        properties={"accuracy": 0.97},
        model_framework="ScikitLearn",
        model_framework_version="1.3",
        description="first",
    )
    assert model.name == "mnist"
    assert model.version == 1
    assert model.id == "mnist:1"
    assert model.run_id == trained.id
    assert model.tags == {"area": "vision"}
    assert model.properties == {"accuracy": "0.97"}
    assert model.model_framework == "ScikitLearn"
    assert model.model_framework_version == "1.3"
    assert model.description == "first"
    assert model.get_file_names() == ["model.pkl"]


def test_versions_count_up_per_name(ws, trained):
    assert trained.register_model("m", "outputs/model.pkl").version == 1
    assert trained.register_model("m", "outputs/model.pkl").version == 2
    assert trained.register_model("other", "outputs/model.pkl").version == 1
    assert Model(ws, "m").version == 2
    assert Model(ws, "m", version=1).version == 1
    assert Model(ws, id="m:1").version == 1
    assert [m.id for m in Model.list(ws, name="m")] == ["m:2", "m:1"]
    assert sorted(ws.models) == ["m", "other"]
    assert ws.models["m"].version == 2


def test_register_a_whole_folder_and_download_it(ws, trained, tmp_path):
    model = trained.register_model("bundle")  # model_path defaults to outputs
    assert sorted(model.get_file_names()) == ["outputs/extra/vocab.txt", "outputs/model.pkl"]
    where = Path(model.download(tmp_path / "dl"))
    assert where == tmp_path / "dl" / "outputs"
    assert (where / "model.pkl").read_bytes() == b"weights v1"
    assert (where / "extra" / "vocab.txt").read_text(encoding="utf-8") == "a b c"
    with pytest.raises(ConflictError, match=r"exists; pass exist_ok=True to overwrite it"):
        model.download(tmp_path / "dl")
    model.download(tmp_path / "dl", exist_ok=True)


def test_model_list_filters_by_tags_and_properties(ws, trained):
    trained.register_model("a", "outputs/model.pkl", tags={"team": "red"}, properties={"p": "1"})
    trained.register_model("b", "outputs/model.pkl", tags={"team": "blue", "best": None})
    assert [m.name for m in Model.list(ws, tags={"team": "red"})] == ["a"]
    assert [m.name for m in Model.list(ws, tags=["best"])] == ["b"]
    assert [m.name for m in Model.list(ws, tags="team")] == ["a", "b"]
    assert [m.name for m in Model.list(ws, properties={"p": "1"})] == ["a"]
    assert Model.list(ws, name="nothing") == []


def test_model_register_from_a_local_path(ws, tmp_path):
    src = tmp_path / "local-model.bin"
    src.write_bytes(b"local")
    model = Model.register(ws, model_path=src, model_name="local", tags={"src": "disk"})
    assert model.version == 1
    assert model.run_id is None
    out = Path(model.download(tmp_path / "back"))
    assert out.read_bytes() == b"local"


def test_model_properties_are_immutable_and_tags_change(ws, trained):
    model = trained.register_model("m", "outputs/model.pkl", properties={"k": "1"})
    model.add_tags({"stage": "prod"})
    model.add_properties({"k": "1", "new": "x"})
    with pytest.raises(ConflictError, match=r"model property 'k' is already '1'"):
        model.add_properties({"k": "2"})
    again = Model(ws, "m")
    assert again.tags == {"stage": "prod"}
    assert again.properties == {"k": "1", "new": "x"}


def test_model_errors(ws, trained, tmp_path):
    with pytest.raises(
        NotFoundError, match=r"has no file or folder 'outputs/nope\.pkl' to register"
    ):
        trained.register_model("m", "outputs/nope.pkl")
    with pytest.raises(ConfigError, match=r"model_path '\.\./x' climbs out"):
        trained.register_model("m", "../x")
    with pytest.raises(ConfigError, match=r"model name 'a/b' is not valid"):
        trained.register_model("a/b", "outputs/model.pkl")
    with pytest.raises(ConfigError, match=r"model name '' is not valid"):
        trained.register_model("", "outputs/model.pkl")
    with pytest.raises(NotFoundError, match=r"no model 'ghost' in workspace .*register one"):
        Model(ws, "ghost")
    trained.register_model("real", "outputs/model.pkl")
    with pytest.raises(NotFoundError, match=r"no model 'real' version 9"):
        Model(ws, "real", version=9)
    with pytest.raises(NotFoundError, match=r"Model\.register: .* does not exist"):
        Model.register(ws, tmp_path / "missing", "x")
    with pytest.raises(ConfigError, match=r"model tags must be a dict"):
        trained.register_model("real", "outputs/model.pkl", tags=["x"])
    assert [m.version for m in Model.list(ws, name="real")] == [1]


# -- keyvault -------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keyvault_set_get_list_delete(ws):
    kv = ws.get_default_keyvault()
    assert kv.list_secrets() == []
    kv.set_secret("db-password", "hunter2")
    kv.set_secrets({"api-key": "k-1", "token": "t"})
    assert kv.get_secret("db-password") == "hunter2"
    assert kv.list_secrets() == [{"name": "api-key"}, {"name": "db-password"}, {"name": "token"}]
    kv.set_secret("api-key", "k-2")
    assert kv.get_secret("api-key") == "k-2"
    kv.delete_secret("token")
    assert [s["name"] for s in kv.list_secrets()] == ["api-key", "db-password"]
    assert kv.get_secrets(["api-key", "token"]) == {"api-key": "k-2", "token": None}


def test_keyvault_file_is_mode_0600_and_stays_so(ws):
    kv = ws.get_default_keyvault()
    kv.set_secret("a", "1")
    assert _mode(kv.path) == 0o600
    assert kv.path.parent == ws.path
    kv.set_secret("b", "2")
    kv.delete_secret("a")
    assert _mode(kv.path) == 0o600
    assert not list(ws.path.glob("keyvault.json.tmp*"))


def test_keyvault_is_0600_even_with_a_permissive_umask(ws):
    old = os.umask(0)
    try:
        ws.get_default_keyvault().set_secret("a", "1")
    finally:
        os.umask(old)
    assert _mode(ws.get_default_keyvault().path) == 0o600


def test_keyvault_is_shared_by_workspace_objects(ws):
    from runner import Workspace

    ws.get_default_keyvault().set_secret("shared", "yes")
    assert Workspace(ws.path).get_default_keyvault().get_secret("shared") == "yes"


def test_keyvault_errors(ws):
    kv = ws.get_default_keyvault()
    with pytest.raises(
        NotFoundError, match=r"no secret named 'nope' in the workspace keyvault.*set_secret"
    ):
        kv.get_secret("nope")
    with pytest.raises(NotFoundError, match=r"no secret named 'nope' to delete"):
        kv.delete_secret("nope")
    with pytest.raises(
        ConfigError, match=r"secret name 'has space' is not valid; use 1-127 letters"
    ):
        kv.set_secret("has space", "x")
    with pytest.raises(ConfigError, match=r"secret name '' is not valid"):
        kv.set_secret("", "x")
    with pytest.raises(ConfigError, match=r"secret 'n': the value must be a str, not int"):
        kv.set_secret("n", 5)
    with pytest.raises(ConfigError, match=r"secret name 'bad name' is not valid"):
        kv.set_secrets({"good": "1", "bad name": "2"})
    assert kv.list_secrets() == [], "a refused batch stores none of it"


def test_run_get_secret_reads_the_workspace_keyvault(ws, exp):
    ws.get_default_keyvault().set_secrets({"s1": "one", "s2": "two"})
    run = exp.start_logging()
    assert run.get_secret("s1") == "one"
    assert run.get_secrets(["s1", "s2", "s3"]) == {"s1": "one", "s2": "two", "s3": None}
    with pytest.raises(NotFoundError, match=r"no secret named 's3'"):
        run.get_secret("s3")
    assert Run.get(ws, run.id).get_secret("s2") == "two"
