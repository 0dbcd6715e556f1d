"""A run that logs the other metric kinds: an image per step (a gallery), a table, a
row, a list and a confusion matrix, and a scalar; then ends."""

import json
import struct
import sys
import zlib
from pathlib import Path

from runner import Run


def png(shade: int) -> bytes:
    """A 16x16 grey PNG, written by hand (no imaging library in the run)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + bytes([shade]) * 16 for _ in range(16))
    header = struct.pack(">IIBBBBB", 16, 16, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


run = Run.get_context()
work = Path(sys.argv[1])
for step in range(3):
    path = work / f"sample_{step}.png"
    path.write_bytes(png(60 + 80 * step))
    run.log_image("samples", path=str(path), description=f"step {step}")
run.log_table(
    "curve", {"epoch": [1, 2, 3, 4], "acc": [0.5, 0.7, 0.8, 0.85], "loss": [1.0, 0.6, 0.4, 0.3]}
)
run.log_row("per_class", cls=0, f1=0.8)
run.log_row("per_class", cls=1, f1=0.6)
run.log_list("accuracies", [0.1, 0.4, 0.7, 0.9])
run.log_confusion_matrix(
    "confusion",
    {
        "schema_type": "confusion_matrix",
        "schema_version": "1.0.0",
        "data": {"class_labels": ["cat", "dog"], "matrix": [[5, 1], [2, 7]]},
    },
)
run.log_residuals(
    "residuals",
    {
        "schema_type": "residuals",
        "schema_version": "1.0.0",
        "data": {"bin_edges": [-1.0, -0.5, 0.0, 0.5, 1.0], "bin_counts": [2, 10, 12, 3]},
    },
)
run.log_predictions(
    "predictions",
    {
        "schema_type": "predictions",
        "schema_version": "1.0.0",
        "data": {
            "bin_averages": [0.1, 0.4, 0.8],
            "bin_errors": [0.05, 0.1, 0.05],
            "bin_counts": [5, 9, 4],
            "bin_edges": [0.0, 0.3, 0.6, 1.0],
        },
    },
)
run.log_accuracy_table(
    "roc",
    {
        "schema_type": "accuracy_table",
        "schema_version": "1.0.1",
        "data": {
            "probability_tables": [
                [[6, 4, 0, 0], [5, 1, 3, 1], [0, 0, 4, 6]],
                [[4, 6, 0, 0], [3, 2, 4, 1], [0, 0, 6, 4]],
            ],
            "percentile_tables": [
                [[6, 4, 0, 0], [5, 1, 3, 1], [0, 0, 4, 6]],
                [[4, 6, 0, 0], [3, 2, 4, 1], [0, 0, 6, 4]],
            ],
            "probability_thresholds": [0.0, 0.5, 1.0],
            "percentile_thresholds": [0.0, 0.5, 1.0],
            "class_labels": ["cat", "dog"],
        },
    },
)
run.log("loss", 0.25)
note = work / "note.txt"
note.write_text("résumé")
run.upload_file("notes/résumé ü.txt", str(note))
page = work / "page.html"
page.write_text("<script>alert(1)</script>")
run.upload_file("outputs/page.html", str(page))
# The page shows an environment lock where the supervisor stores one (a venv or conda
# build); this run has none of its own, so it stores one under the same name.
lock = work / "requirements.lock"
lock.write_text("# python: 3.12.3\nsix==1.16.0 --hash=sha256:8abb\n")
run.upload_file("azureml-environment/requirements.lock", str(lock))
print(json.dumps({"done": True}))
