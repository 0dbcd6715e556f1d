"""runner.metrics: metric names, scalar/list/row/table values, structured shapes, images.

The valid structured examples are the ones on the seeds' Run reference page, verbatim.
"""

from __future__ import annotations

import copy
import decimal
import enum
import io
import json
import math
from pathlib import Path

import pytest

from runner.errors import ConfigError
from runner.metrics import (
    SCALAR_TYPES,
    check_accuracy_table,
    check_confusion_matrix,
    check_image_path,
    check_list,
    check_metric_name,
    check_predictions,
    check_residuals,
    check_row,
    check_table,
    coerce_scalar,
    render_plot_png,
)

# -- the seed page's valid examples (log_accuracy_table, log_confusion_matrix, ...) ----

SEED_ACCURACY_TABLE_JSON = """{
"schema_type": "accuracy_table",
"schema_version": "1.0.1",
"data": {
"probability_tables": [
[
[82, 118, 0, 0],
[75, 31, 87, 7],
[66, 9, 109, 16],
[46, 2, 116, 36],
[0, 0, 118, 82]
],
[
[60, 140, 0, 0],
[56, 20, 120, 4],
[47, 4, 136, 13],
[28, 0, 140, 32],
[0, 0, 140, 60]
],
[
[58, 142, 0, 0],
[53, 29, 113, 5],
[40, 10, 132, 18],
[24, 1, 141, 34],
[0, 0, 142, 58]
]
],
"percentile_tables": [
[
[82, 118, 0, 0],
[82, 67, 51, 0],
[75, 26, 92, 7],
[48, 3, 115, 34],
[3, 0, 118, 79]
],
[
[60, 140, 0, 0],
[60, 89, 51, 0],
[60, 41, 99, 0],
[46, 5, 135, 14],
[3, 0, 140, 57]
],
[
[58, 142, 0, 0],
[56, 93, 49, 2],
[54, 47, 95, 4],
[41, 10, 132, 17],
[3, 0, 142, 55]
]
],
"probability_thresholds": [0.0, 0.25, 0.5, 0.75, 1.0],
"percentile_thresholds": [0.0, 0.01, 0.24, 0.98, 1.0],
"class_labels": ["0", "1", "2"]
}
}"""

SEED_CONFUSION_MATRIX_JSON = """{
"schema_type": "confusion_matrix",
"schema_version": "1.0.0",
"data": {
"class_labels": ["0", "1", "2", "3"],
"matrix": [
[3, 0, 1, 0],
[0, 1, 0, 1],
[0, 0, 1, 0],
[0, 0, 0, 1]
]
}
}"""

SEED_PREDICTIONS_JSON = """{
"schema_type": "predictions",
"schema_version": "1.0.0",
"data": {
"bin_averages": [0.25, 0.75],
"bin_errors": [0.013, 0.042],
"bin_counts": [56, 34],
"bin_edges": [0.0, 0.5, 1.0]
}
}"""

SEED_RESIDUALS_JSON = """{
"schema_type": "residuals",
"schema_version": "1.0.0",
"data": {
"bin_edges": [50, 100, 200, 300, 350],
"bin_counts": [0.88, 20, 30, 50.99]
}
}"""


@pytest.fixture
def accuracy_table():
    return json.loads(SEED_ACCURACY_TABLE_JSON)


@pytest.fixture
def confusion_matrix():
    return json.loads(SEED_CONFUSION_MATRIX_JSON)


@pytest.fixture
def predictions():
    return json.loads(SEED_PREDICTIONS_JSON)


@pytest.fixture
def residuals():
    return json.loads(SEED_RESIDUALS_JSON)


class Color(enum.IntEnum):
    RED = 1


class Split(str, enum.Enum):
    TRAIN = "train"


class MyFloat(float):
    pass


class BrokenRepr:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")


# -- names ----------------------------------------------------------------------------


def test_metric_name_is_returned_as_plain_str():
    assert check_metric_name("loss") == "loss"
    assert check_metric_name("val/loss top-1 é") == "val/loss top-1 é"
    assert type(check_metric_name(Split.TRAIN)) is str
    assert check_metric_name(Split.TRAIN) == "train"


@pytest.mark.parametrize(
    ("name", "match"),
    [
        (None, r"metric name None is a NoneType; pass a non-empty str"),
        (3, r"metric name 3 is an int"),
        (b"loss", r"metric name b'loss' is a bytes"),
        ("", r"metric name '' is empty; pass a name such as 'loss'"),
        ("   \t", r"metric name '   \\t' is empty"),
        ("a\nb", r"contains the control character '\\n'; use printable"),
        ("a\x00b", r"control character '\\x00'"),
    ],
)
def test_bad_metric_names(name, match):
    with pytest.raises(ConfigError, match=match):
        check_metric_name(name)


def test_name_with_non_ascii_space_is_allowed():
    # Not printable for str.isprintable(), but not a control character either.
    assert check_metric_name("a\u00a0b") == "a\u00a0b"


# -- scalars --------------------------------------------------------------------------


def test_scalar_types_are_exactly_the_four_bases():
    assert frozenset({int, float, bool, str}) == SCALAR_TYPES


@pytest.mark.parametrize("value", [0, -7, 2**70, 1.5, float("inf"), True, False, "", "abc"])
def test_plain_scalars_pass_through_unchanged(value):
    result = coerce_scalar("m", value)
    assert result is value


def test_nan_is_a_valid_scalar():
    value = coerce_scalar("loss", float("nan"))
    assert isinstance(value, float)
    assert math.isnan(value)


@pytest.mark.parametrize(
    ("value", "expected", "kind"),
    [(Color.RED, 1, int), (MyFloat(2.5), 2.5, float), (Split.TRAIN, "train", str)],
)
def test_scalar_subclasses_become_their_base_type(value, expected, kind):
    result = coerce_scalar("m", value)
    assert result == expected
    assert type(result) is kind


def test_list_message_is_the_documented_one():
    with pytest.raises(ConfigError, match=r"^metric 'loss': value \[1, 2\]") as info:
        coerce_scalar("loss", [1, 2])
    assert str(info.value) == (
        "metric 'loss': value [1, 2] is a list; log() takes int, float, bool or str; "
        "use log_list() for lists"
    )


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (None, r"metric 'm': value is None; log\(\) takes .*skip the call"),
        ((1, 2), r"value \(1, 2\) is a tuple; .*use log_list\(\) for sequences"),
        ({1, 2}, r"value \{1, 2\} is a set; .*use log_list\(\)"),
        ({"a": 1}, r"value \{'a': 1\} is a dict; .*log_row\(\).*log_table\(\)"),
        (b"\x00\x01", r"is a bytes; .*use upload_file\(\) for binary data"),
        (bytearray(b"x"), r"is a bytearray; .*decode it to str"),
        (1 + 2j, r"value \(1\+2j\) is a complex; .*value\.real and value\.imag"),
        (decimal.Decimal("1.5"), r"Decimal\('1\.5'\) is a decimal\.Decimal; .*float\(value\)"),
        (object(), r"is an object; .*convert it first"),
        (BrokenRepr(), r"value <BrokenRepr instance at 0x[0-9a-f]+> is a .*BrokenRepr"),
        (iter([1]), r"is a list_iterator; .*use log_list\(\)"),
    ],
)
def test_non_scalars_are_refused_with_the_fix(value, match):
    with pytest.raises(ConfigError, match=match):
        coerce_scalar("m", value)


def test_long_values_are_shortened_in_messages():
    with pytest.raises(ConfigError, match=r"value \[0, 1, 2, 3, 4, 5, \.\.\.\] is a list") as info:
        coerce_scalar("m", list(range(100_000)))
    assert len(str(info.value)) < 200
    with pytest.raises(ConfigError, match=r"value 'x+\.\.\.x+' is a .*Big") as info:
        coerce_scalar("m", type("Big", (), {"__repr__": lambda self: "'" + "x" * 5000 + "'"})())
    assert len(str(info.value)) < 300


def test_config_error_is_a_value_error():
    with pytest.raises(ValueError, match="metric 'm'"):
        coerce_scalar("m", None)


# -- numpy (optional) -----------------------------------------------------------------


def test_numpy_scalars_and_small_arrays_become_plain():
    np = pytest.importorskip("numpy")
    cases = [
        (np.float64(0.5), 0.5, float),
        (np.float32(0.25), 0.25, float),
        (np.int64(3), 3, int),
        (np.uint8(255), 255, int),
        (np.bool_(True), True, bool),
        (np.str_("a"), "a", str),
        (np.array(1.5), 1.5, float),
        (np.array([7]), 7, int),
    ]
    for value, expected, kind in cases:
        result = coerce_scalar("m", value)
        assert result == expected
        assert type(result) is kind, value


def test_numpy_non_scalars_are_refused():
    np = pytest.importorskip("numpy")
    with pytest.raises(ConfigError, match=r"value array\(\[1, 2\]\) is a numpy\.ndarray.*log_list"):
        coerce_scalar("m", np.array([1, 2]))
    with pytest.raises(ConfigError, match=r"is a numpy\.complex128; .*value\.real"):
        coerce_scalar("m", np.complex128(1 + 1j))
    with pytest.raises(ConfigError, match=r"is a numpy\.datetime64; .*convert it first"):
        coerce_scalar("m", np.datetime64("2024-01-01"))


def test_numpy_arrays_in_lists_and_tables():
    np = pytest.importorskip("numpy")
    values = check_list("m", np.arange(5, dtype=np.int32))
    assert values == [0, 1, 2, 3, 4]
    assert all(type(v) is int for v in values)
    assert check_list("m", [np.float64(0.5), np.bool_(False), 1]) == [0.5, False, 1]
    table = check_table("t", {"x": np.array([1.0, 2.0]), "y": ("a", "b")})
    assert table == {"x": [1.0, 2.0], "y": ["a", "b"]}
    assert check_row("r", {"acc": np.float32(0.5), "epoch": np.int64(2)}) == {
        "acc": 0.5,
        "epoch": 2,
    }
    with pytest.raises(ConfigError, match=r"element 0 \[1, 2\] is a list; log_list\(\) takes"):
        check_list("m", np.array([[1, 2], [3, 4]]))
    with pytest.raises(ConfigError, match=r"is a numpy\.ndarray.*holds a single value; use log"):
        check_list("m", np.array(3.0))


# -- log_list -------------------------------------------------------------------------


def test_check_list_accepts_sequences_and_copies():
    source = [1, 2.5, True, "x"]
    result = check_list("m", source)
    assert result == source
    assert result is not source
    assert check_list("m", (1, 2)) == [1, 2]
    assert check_list("m", range(3)) == [0, 1, 2]
    assert check_list("m", []) == []
    # any other iterable, read once, as azureml takes it (issue 14)
    assert check_list("m", (i * i for i in range(3))) == [0, 1, 4]
    assert check_list("m", map(float, [1, 2])) == [1.0, 2.0]
    assert check_list("m", iter([0.5])) == [0.5]


def test_check_list_converts_subclasses():
    result = check_list("m", [Color.RED, MyFloat(1.5), Split.TRAIN, 4])
    assert result == [1, 1.5, "train", 4]
    assert [type(v) for v in result] == [int, float, str, int]


def test_check_list_of_100k_values():
    values = [float(i) for i in range(100_000)]
    assert check_list("m", values) == values
    mixed = [*values[:-1], Color.RED]
    assert check_list("m", mixed)[-1] == 1


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ("abc", r"value 'abc' is a str; log_list\(\) takes a list.*use log\(\) for one string"),
        (b"abc", r"value b'abc' is a bytes; log_list\(\).*upload_file"),
        ({"a": [1]}, r"value .* is a dict; log_list\(\).*use log_table\(\)"),
        ({1, 2}, r"value \{1, 2\} is a set; .*a set has no order; pass sorted\(value\)"),
        (5, r"value 5 is an int; log_list\(\) takes a list.*use log\(\) for one value"),
        (None, r"value None is a NoneType; log_list\(\)"),
        ([1, [2, 3]], r"element 1 \[2, 3\] is a list; .*flatten it, or use log_table"),
        ([1, None], r"element 1 is None; .*fill in missing values"),
        ([{"a": 1}], r"element 0 \{'a': 1\} is a dict; .*use log_table\(\)"),
        ([0.5, 1j], r"element 1 1j is a complex"),
    ],
)
def test_check_list_refusals(value, match):
    with pytest.raises(ConfigError, match=r"^metric 'm': " + match):
        check_list("m", value)


# -- log_row --------------------------------------------------------------------------


def test_check_row_accepts_scalars():
    assert check_row("r", {"epoch": 1, "loss": 0.5, "ok": True, "tag": "a"}) == {
        "epoch": 1,
        "loss": 0.5,
        "ok": True,
        "tag": "a",
    }
    result = check_row("r", {"c": Color.RED})
    assert type(result["c"]) is int


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ({}, r"log_row\(\) got no columns; pass them as keywords"),
        ({"loss": [1, 2]}, r"column 'loss' \[1, 2\] is a list; log_row\(\) values.*log_table"),
        ({"loss": None}, r"column 'loss' is None; .*float\('nan'\)"),
        ({"loss": {"a": 1}}, r"column 'loss' .* is a dict; .*one keyword per column"),
        ({3: 1}, r"column name 3 is an int; log_row\(\) column names are strings"),
        ({" ": 1}, r"column name ' ' is empty"),
    ],
)
def test_check_row_refusals(row, match):
    with pytest.raises(ConfigError, match=r"^metric 'r': " + match):
        check_row("r", row)


# -- log_table ------------------------------------------------------------------------


def test_check_table_accepts_equal_columns_and_copies():
    source = {"epoch": [1, 2, 3], "loss": (0.5, 0.25, 0.125), "name": ["a", "b", "c"]}
    result = check_table("t", source)
    assert result == {"epoch": [1, 2, 3], "loss": [0.5, 0.25, 0.125], "name": ["a", "b", "c"]}
    assert result["epoch"] is not source["epoch"]
    assert check_table("t", {"empty": []}) == {"empty": []}


def test_check_table_of_100k_rows():
    column = list(range(100_000))
    result = check_table("t", {"a": column, "b": [float(v) for v in column]})
    assert len(result["a"]) == len(result["b"]) == 100_000


def test_check_table_names_the_columns_that_differ():
    with pytest.raises(
        ConfigError,
        match=r"columns differ in length: 'a' has 3, 'b' has 2, 'c' has 3; give every column",
    ):
        check_table("t", {"a": [1, 2, 3], "b": [1, 2], "c": [1, 2, 3]})


class FrameLike:
    """Stands in for a pandas DataFrame: not a Mapping, but has to_dict()."""

    def to_dict(self, orient="dict"):
        return {}


@pytest.mark.parametrize(
    ("value", "match"),
    [
        ({}, r"log_table\(\) got an empty dict; pass at least one column"),
        ([1, 2], r"value \[1, 2\] is a list; log_table\(\) takes a dict of column name"),
        (FrameLike(), r"value <.*> is a .*FrameLike; .*for a DataFrame pass df\.to_dict\('list'\)"),
        ({"a": 1}, r"column 'a' 1 is an int; log_table\(\) takes a dict.*use log_row\(\)"),
        ({"a": "abc"}, r"column 'a' 'abc' is a str; .*pass \[value\]"),
        ({"a": {"x": 1}}, r"column 'a' .* is a dict; .*nested dicts are not supported"),
        (
            {"a": [1, [2]]},
            r"column 'a' row 1 \[2\] is a list; log_table\(\) columns hold .*flatten",
        ),
        ({"a": [None]}, r"column 'a' row 0 is None"),
        ({1: [1]}, r"column name 1 is an int; log_table\(\) column names are strings"),
        ({"": [1]}, r"column name '' is empty"),
    ],
)
def test_check_table_refusals(value, match):
    with pytest.raises(ConfigError, match=r"^metric 't': " + match):
        check_table("t", value)


# -- confusion matrix -----------------------------------------------------------------


def test_seed_confusion_matrix_passes_as_dict_and_json(confusion_matrix):
    assert check_confusion_matrix("cm", confusion_matrix) == confusion_matrix
    assert check_confusion_matrix("cm", SEED_CONFUSION_MATRIX_JSON) == confusion_matrix


def test_structured_result_is_a_deep_json_safe_copy(confusion_matrix):
    before = copy.deepcopy(confusion_matrix)
    result = check_confusion_matrix("cm", confusion_matrix)
    result["data"]["matrix"][0][0] = 99
    result["data"]["class_labels"].append("x")
    assert confusion_matrix == before
    assert json.loads(json.dumps(result))["schema_type"] == "confusion_matrix"


def test_confusion_matrix_from_numpy_and_integral_floats(confusion_matrix):
    np = pytest.importorskip("numpy")
    value = copy.deepcopy(confusion_matrix)
    value["data"]["matrix"] = np.array(value["data"]["matrix"], dtype=np.int64)
    value["data"]["class_labels"] = np.array(["0", "1", "2", "3"])
    result = check_confusion_matrix("cm", value)
    assert result == confusion_matrix
    assert type(result["data"]["matrix"][0][0]) is int
    assert type(result["data"]["class_labels"][0]) is str
    value["data"]["matrix"] = value["data"]["matrix"].astype(float)
    assert check_confusion_matrix("cm", value)["data"]["matrix"][0][0] == 3


def test_one_element_numpy_label_array_stays_a_list():
    np = pytest.importorskip("numpy")
    value = {
        "schema_type": "confusion_matrix",
        "schema_version": "1.0.0",
        "data": {"class_labels": np.array(["only"]), "matrix": np.array([[4]])},
    }
    assert check_confusion_matrix("cm", value)["data"] == {
        "class_labels": ["only"],
        "matrix": [[4]],
    }


def test_extra_keys_are_kept(confusion_matrix):
    confusion_matrix["data"]["note"] = "from sklearn"
    confusion_matrix["extra"] = [1, {"a": None}]
    result = check_confusion_matrix("cm", confusion_matrix)
    assert result["extra"] == [1, {"a": None}]
    assert result["data"]["note"] == "from sklearn"


def _cm_with(confusion_matrix, **data):
    confusion_matrix["data"].update(data)
    return confusion_matrix


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (
            lambda cm: {k: v for k, v in cm.items() if k != "schema_version"},
            r"value has no 'schema_version'; log_confusion_matrix\(\) takes an object",
        ),
        (
            lambda cm: {"data": cm["data"]},
            r"value has no 'schema_type', 'schema_version'; .*start from \{\"schema_type\": "
            r"\"confusion_matrix\", \"schema_version\": \"1\.0\.0\"",
        ),
        (
            lambda cm: {**cm, "schema_type": "accuracy_table"},
            r"schema_type is 'accuracy_table'; log_confusion_matrix\(\) needs 'confusion_matrix'"
            r"; use log_accuracy_table\(\) for 'accuracy_table'",
        ),
        (
            lambda cm: {**cm, "schema_type": "heatmap"},
            r"schema_type is 'heatmap'; .*; set it to 'confusion_matrix'",
        ),
        (
            lambda cm: {**cm, "schema_version": 1.0},
            r"schema_version 1\.0 is not a version string; set it to a string such as \"1\.0\.0\"",
        ),
        (lambda cm: {**cm, "data": [1]}, r"data \[1\] is a list; it must be an object"),
        (
            lambda cm: {**cm, "data": {"matrix": cm["data"]["matrix"]}},
            r"data has no 'class_labels'; log_confusion_matrix\(\) needs it; "
            r"add data\.class_labels",
        ),
        (
            lambda cm: {**cm, "data": {"class_labels": cm["data"]["class_labels"]}},
            r"data has no 'matrix'",
        ),
        (
            lambda cm: _cm_with(cm, class_labels=[0, 1, 2, 3]),
            r"data\.class_labels\[0\] 0 is an int; class labels are strings; write them as strings",
        ),
        (lambda cm: _cm_with(cm, class_labels="0123"), r"data\.class_labels '0123' is a str"),
        (lambda cm: _cm_with(cm, class_labels=[]), r"data\.class_labels is empty"),
        (
            lambda cm: _cm_with(cm, class_labels=["0", "1", "1", "3"]),
            r"data\.class_labels repeats '1'",
        ),
        (
            lambda cm: _cm_with(cm, matrix=cm["data"]["matrix"][:3]),
            r"data\.matrix = .* has 3 entries; expected 4 \(one row per class label\)",
        ),
        (
            lambda cm: _cm_with(cm, matrix=[[3, 0, 1], [0, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1]]),
            r"data\.matrix\[0\] = \[3, 0, 1\] has 3 entries; expected 4 \(one column per class",
        ),
        (
            lambda cm: _cm_with(cm, matrix=[[3, 0, 1, 0], [0, -1, 0, 1], [0] * 4, [0] * 4]),
            r"data\.matrix\[1\]\[1\] = -1 is negative; counts are whole numbers >= 0",
        ),
        (
            lambda cm: _cm_with(cm, matrix=[[3, 0, 1, 0.5], [0] * 4, [0] * 4, [0] * 4]),
            r"data\.matrix\[0\]\[3\] = 0\.5 is a float; counts are whole numbers",
        ),
        (
            lambda cm: _cm_with(cm, matrix=[[True, 0, 1, 0], [0] * 4, [0] * 4, [0] * 4]),
            r"data\.matrix\[0\]\[0\] = True is a bool",
        ),
        (
            lambda cm: _cm_with(cm, matrix=[[3, 0, 1, "0"], [0] * 4, [0] * 4, [0] * 4]),
            r"data\.matrix\[0\]\[3\] = '0' is a str",
        ),
        (
            lambda cm: _cm_with(cm, matrix=[[3, 0, 1, None], [0] * 4, [0] * 4, [0] * 4]),
            r"data\.matrix\[0\]\[3\] = None is a NoneType",
        ),
        (
            lambda cm: _cm_with(cm, matrix={"0": [3]}),
            r"data\.matrix \{'0': \[3\]\} is a dict; expected a list \(one row per class label\)",
        ),
        (
            lambda cm: _cm_with(cm, labels={1: "a"}),
            r"data\.labels has the key 1, an int; JSON object keys are strings",
        ),
        (
            lambda cm: _cm_with(cm, when=object()),
            r"data\.when <object object at .*> is an object; structured metrics hold only "
            r"numbers, strings, lists and dicts",
        ),
    ],
)
def test_malformed_confusion_matrices(confusion_matrix, mutate, match):
    with pytest.raises(ConfigError, match=r"^metric 'cm': " + match):
        check_confusion_matrix("cm", mutate(confusion_matrix))


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (
            '{"schema_type": "confusion_matrix",',
            r"value .* is not valid JSON: Expecting property name",
        ),
        ("", r"value '' is not valid JSON: Expecting value: line 1 column 1"),
        ("[1, 2]", r"value \[1, 2\] is a list; log_confusion_matrix\(\) takes an object"),
        ('"text"', r"value 'text' is a str; log_confusion_matrix\(\) takes an object"),
        (42, r"value 42 is an int; log_confusion_matrix\(\) takes a dict or a JSON string"),
        (None, r"value None is a NoneType; .*takes a dict or a JSON string"),
        (b"{}", r"value b'\{\}' is a bytes; .*takes a dict or a JSON string"),
        pytest.param(
            "[" * 100_000, r"value '\[+\.\.\.\[+' is not valid JSON", id="deeply-nested-json"
        ),
    ],
)
def test_confusion_matrix_values_that_are_not_objects(value, match):
    with pytest.raises(ConfigError, match=r"^metric 'cm': " + match):
        check_confusion_matrix("cm", value)


def test_self_containing_value_is_refused(confusion_matrix):
    loop: list[object] = []
    loop.append(loop)
    confusion_matrix["data"]["loop"] = loop
    with pytest.raises(ConfigError, match=r"data\.loop\[0\]\[0\].* is nested more than 64 levels"):
        check_confusion_matrix("cm", confusion_matrix)


# -- accuracy table -------------------------------------------------------------------


def test_seed_accuracy_table_passes_as_dict_and_json(accuracy_table):
    assert check_accuracy_table("acc", accuracy_table) == accuracy_table
    assert check_accuracy_table("acc", SEED_ACCURACY_TABLE_JSON) == accuracy_table


def test_accuracy_table_wrong_schema_type_names_the_right_method(confusion_matrix):
    with pytest.raises(ConfigError, match=r"use log_confusion_matrix\(\) for 'confusion_matrix'"):
        check_accuracy_table("acc", confusion_matrix)


def _set_cell(table, key, c, m, cell):
    table["data"][key][c][m] = cell
    return table


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (
            lambda t: _set_cell(t, "probability_tables", 1, 3, [28, 0, 140, 31]),
            r"data\.probability_tables\[1\]\[3\] \(class '1', probability threshold 0\.75\) = "
            r"\[28, 0, 140, 31\]: TP\+FP\+TN\+FN = 199, but 200 at data\.probability_tables\[0\]"
            r"\[0\]; every class and threshold must count the same N samples",
        ),
        (
            lambda t: _set_cell(t, "percentile_tables", 0, 1, [81, 68, 51, 0]),
            r"data\.percentile_tables\[0\]\[1\] \(class '0', percentile threshold 0\.01\) = "
            r"\[81, 68, 51, 0\]: "
            r"TP\+FN = 81, but 82 at data\.probability_tables\[0\]\[0\]; a class has the same "
            r"number of positives at every threshold",
        ),
        (
            lambda t: _set_cell(t, "probability_tables", 0, 0, [82, 118, 0]),
            r"data\.probability_tables\[0\]\[0\] = \[82, 118, 0\] has 3 entries; expected 4 "
            r"\(TP, FP, TN, FN\)",
        ),
        (
            lambda t: _set_cell(t, "probability_tables", 0, 0, [82, 118, 0, -0.5]),
            r"data\.probability_tables\[0\]\[0\]\[3\] = -0\.5 is a float; counts are whole",
        ),
        (
            lambda t: {**t, "data": {**t["data"], "class_labels": ["0", "1"]}},
            r"data\.probability_tables = .* has 3 entries; "
            r"expected 2 \(one table per class label\)",
        ),
        (
            lambda t: {**t, "data": {**t["data"], "probability_thresholds": [0.0, 0.5, 1.0]}},
            r"data\.probability_tables\[0\] = .* has 5 entries; expected 3 \(one row per value of "
            r"data\.probability_thresholds\)",
        ),
        (
            lambda t: {**t, "data": {**t["data"], "percentile_thresholds": []}},
            r"data\.percentile_thresholds is empty",
        ),
        (
            lambda t: {**t, "data": {**t["data"], "percentile_thresholds": [0, 0.1, "x", 1, 1]}},
            r"data\.percentile_thresholds\[2\] = 'x' is a str; percentile_thresholds holds numbers",
        ),
        (
            lambda t: {
                **t,
                "data": {**t["data"], "probability_thresholds": [0.0, float("nan"), 0.5, 0.75, 1]},
            },
            r"data\.probability_thresholds\[1\] = nan is not finite; use finite numbers",
        ),
        (
            lambda t: {**t, "data": {**t["data"], "probability_thresholds": 0.5}},
            r"data\.probability_thresholds 0\.5 is a float; expected a list",
        ),
        (
            lambda t: {
                **t,
                "data": {k: v for k, v in t["data"].items() if k != "percentile_tables"},
            },
            r"data has no 'percentile_tables'; log_accuracy_table\(\) needs it",
        ),
        (
            lambda t: {**t, "schema_version": ""},
            r"schema_version '' is not a version string; .*\"1\.0\.1\"",
        ),
    ],
)
def test_malformed_accuracy_tables(accuracy_table, mutate, match):
    with pytest.raises(ConfigError, match=r"^metric 'acc': " + match):
        check_accuracy_table("acc", mutate(accuracy_table))


def test_accuracy_table_tp_fn_mismatch_message(accuracy_table):
    # Same N, shifted positives: TP+FN changes within class '2'.
    _set_cell(accuracy_table, "percentile_tables", 2, 4, [4, 0, 142, 54])
    _set_cell(accuracy_table, "percentile_tables", 2, 3, [41, 10, 133, 16])
    with pytest.raises(
        ConfigError,
        match=r"percentile_tables\[2\]\[3\] \(class '2', percentile threshold 0\.98\) = "
        r"\[41, 10, 133, 16\]: TP\+FN = 57, but 58 at data\.probability_tables\[2\]\[0\]",
    ):
        check_accuracy_table("acc", accuracy_table)


def test_accuracy_table_invalid_json_names_the_parse_error():
    broken = SEED_ACCURACY_TABLE_JSON.replace("[82, 118, 0, 0],", "[82, 118, 0, 0]", 1)
    with pytest.raises(ConfigError, match=r"is not valid JSON: Expecting ',' delimiter: line 8"):
        check_accuracy_table("acc", broken)


# -- predictions and residuals --------------------------------------------------------


def test_seed_predictions_pass_as_dict_and_json(predictions):
    assert check_predictions("pred", predictions) == predictions
    assert check_predictions("pred", SEED_PREDICTIONS_JSON) == predictions


def test_predictions_allow_nan_for_an_empty_bin(predictions):
    predictions["data"]["bin_averages"] = [0.25, float("nan")]
    predictions["data"]["bin_errors"] = [0.013, float("nan")]
    predictions["data"]["bin_counts"] = [56, 0]
    result = check_predictions("pred", predictions)
    assert math.isnan(result["data"]["bin_averages"][1])
    parsed = check_predictions("pred", json.dumps(predictions))
    assert math.isnan(parsed["data"]["bin_errors"][1])


def _pred(predictions, **data):
    predictions["data"].update(data)
    return predictions


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (
            {"bin_errors": [0.013]},
            r"data\.bin_averages has 2 values, data\.bin_errors 1 and data\.bin_counts 2; give",
        ),
        (
            {"bin_edges": [0.0, 1.0]},
            r"data\.bin_edges has 2 values for 2 bins; it needs one more than data\.bin_counts "
            r"\(3\); bin i spans",
        ),
        (
            {"bin_edges": [0.0, 0.5, 1.0, 1.5]},
            r"data\.bin_edges has 4 values for 2 bins",
        ),
        (
            {"bin_edges": [0.0, 1.0, 0.5]},
            r"data\.bin_edges\[2\] = 0\.5 is below data\.bin_edges\[1\] = 1\.0; bin edges must be "
            r"in increasing order",
        ),
        ({"bin_counts": [56, -1]}, r"data\.bin_counts\[1\] = -1 is negative"),
        ({"bin_errors": [0.013, -0.1]}, r"data\.bin_errors\[1\] = -0\.1 is negative"),
        (
            {"bin_counts": [56, float("nan")]},
            r"data\.bin_counts\[1\] = nan is not finite; use finite numbers",
        ),
        (
            {"bin_averages": [0.25, float("inf")]},
            r"data\.bin_averages\[1\] = inf is not finite; NaN is allowed only for an empty bin",
        ),
        ({"bin_averages": [0.25, "0.75"]}, r"data\.bin_averages\[1\] = '0\.75' is a str"),
        ({"bin_averages": [0.25, True]}, r"data\.bin_averages\[1\] = True is a bool"),
        ({"bin_counts": None}, r"data\.bin_counts None is a NoneType; expected a list"),
        (
            {"bin_averages": [], "bin_errors": [], "bin_counts": [], "bin_edges": [0.0]},
            r"data\.bin_counts is empty; pass at least one bin",
        ),
    ],
)
def test_malformed_predictions(predictions, data, match):
    with pytest.raises(ConfigError, match=r"^metric 'pred': " + match):
        check_predictions("pred", _pred(predictions, **data))


def test_predictions_missing_field(predictions):
    del predictions["data"]["bin_edges"]
    with pytest.raises(
        ConfigError, match=r"data has no 'bin_edges'; .*add data\.bin_edges: a list of numbers"
    ):
        check_predictions("pred", predictions)


def test_seed_residuals_pass_as_dict_and_json(residuals):
    assert check_residuals("res", residuals) == residuals
    assert check_residuals("res", SEED_RESIDUALS_JSON) == residuals


def test_residuals_from_numpy_histogram():
    np = pytest.importorskip("numpy")
    counts, edges = np.histogram(np.array([0.1, 0.2, 0.2, 0.9]), bins=3)
    value = {
        "schema_type": "residuals",
        "schema_version": "1.0.0",
        "data": {"bin_edges": edges, "bin_counts": counts},
    }
    result = check_residuals("res", value)
    assert result["data"]["bin_counts"] == [3, 0, 1]
    json.dumps(result)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (
            {"bin_edges": [50, 100, 200, 300]},
            r"data\.bin_edges has 4 values for 4 bins; it needs one more than data\.bin_counts "
            r"\(5\)",
        ),
        ({"bin_counts": [0.88, -20, 30, 50.99]}, r"data\.bin_counts\[1\] = -20 is negative"),
        ({"bin_edges": [50, 100, float("nan"), 300, 350]}, r"data\.bin_edges\[2\] = nan is not"),
        ({"bin_edges": "50,100"}, r"data\.bin_edges '50,100' is a str; expected a list"),
    ],
)
def test_malformed_residuals(residuals, data, match):
    residuals["data"].update(data)
    with pytest.raises(ConfigError, match=r"^metric 'res': " + match):
        check_residuals("res", residuals)


def test_residuals_given_predictions(predictions):
    with pytest.raises(
        ConfigError,
        match=r"schema_type is 'predictions'; log_residuals\(\) needs 'residuals'; "
        r"use log_predictions\(\)",
    ):
        check_residuals("res", predictions)


# -- images ---------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8


class SavesPng:
    """Any object with savefig(buffer, format='png') is a plot (the edge, not our code)."""

    def __init__(self, payload=PNG, error=None):
        self.payload = payload
        self.error = error
        self.formats: list[str] = []

    def savefig(self, buffer, format):
        self.formats.append(format)
        if self.error is not None:
            raise self.error
        buffer.write(self.payload)


def test_render_anything_with_savefig():
    plot = SavesPng()
    assert render_plot_png("img", plot) == PNG
    assert plot.formats == ["png"]


def test_render_wraps_savefig_failures():
    with pytest.raises(
        ConfigError,
        match=r"^metric 'img': the plot could not be rendered to PNG: RuntimeError: no canvas; "
        r"check that it draws",
    ) as info:
        render_plot_png("img", SavesPng(error=RuntimeError("no canvas")))
    assert isinstance(info.value.__cause__, RuntimeError)


def test_render_refuses_output_that_is_not_png():
    with pytest.raises(ConfigError, match=r"wrote 4 bytes that are not a PNG"):
        render_plot_png("img", SavesPng(payload=b"GIF8"))


class AxesLike:
    def get_figure(self):
        return None


@pytest.mark.parametrize(
    ("plot", "match"),
    [
        (None, r"log_image\(\) got neither a path nor a plot"),
        (json, r"plot is the module 'json', not matplotlib\.pyplot"),
        ("figure.png", r"plot 'figure\.png' is a str; log_image\(\) renders objects with savefig"),
        (
            AxesLike(),
            r"plot <.*AxesLike object at .*> is a .*AxesLike; .*pass its figure: plot=ax\.figure",
        ),
    ],
)
def test_render_refusals(plot, match):
    with pytest.raises(ConfigError, match=r"^metric 'img': " + match):
        render_plot_png("img", plot)


def test_render_matplotlib_figure_and_pyplot():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(2, 2))
    figure.subplots().plot([0, 1], [1, 0])
    assert render_plot_png("img", figure).startswith(b"\x89PNG\r\n\x1a\n")

    import matplotlib.pyplot as plt

    try:
        plt.figure(figsize=(2, 2))
        axes = plt.gca()
        plt.plot([0, 1, 2], [2, 1, 0])
        assert render_plot_png("img", plt).startswith(b"\x89PNG\r\n\x1a\n")
        with pytest.raises(ConfigError, match=r"plot=ax\.figure"):
            render_plot_png("img", axes)
    finally:
        plt.close("all")


def test_image_path_accepts_files_and_binary_streams(tmp_path):
    image = tmp_path / "a b;'.png"
    image.write_bytes(PNG)
    check_image_path("img", str(image))
    check_image_path("img", image)
    check_image_path("img", io.BytesIO(PNG))
    with image.open("rb") as stream:
        check_image_path("img", stream)


def test_image_path_missing_file(tmp_path, monkeypatch):
    with pytest.raises(
        ConfigError,
        match=r"^metric 'img': image file not found: '.*nope\.png'; pass the path of an existing",
    ):
        check_image_path("img", tmp_path / "nope.png")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"file not found: 'nope\.png' \(relative to '.*'\)"):
        check_image_path("img", "nope.png")


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda d: d, r"image path .* is a folder.*upload_folder\(\)"),
        (lambda d: "", r"image path is empty"),
        (lambda d: 42, r"image path 42 is an int; log_image\(\) takes a file path or a binary"),
        (lambda d: io.StringIO("x"), r"image stream .* is a text stream; .*open\(path, 'rb'\)"),
        (lambda d: b"\x89PNG", r"image path b'\\x89PNG' is a bytes"),
    ],
)
def test_image_path_refusals(tmp_path, make, match):
    with pytest.raises(ConfigError, match=r"^metric 'img': " + match):
        check_image_path("img", make(tmp_path))


def test_image_path_closed_stream():
    stream = io.BytesIO(PNG)
    stream.close()
    with pytest.raises(ConfigError, match=r"image stream .* is closed"):
        check_image_path("img", stream)


def test_image_path_that_is_not_a_regular_file():
    if not Path("/dev/null").exists():
        pytest.skip("no /dev/null on this platform")
    with pytest.raises(ConfigError, match=r"image is not a regular file: '/dev/null'"):
        check_image_path("img", "/dev/null")
