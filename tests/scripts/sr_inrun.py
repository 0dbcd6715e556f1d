"""Inside a submitted run: every logging, tag, property, file and child call, then report.

usage: sr_inrun.py OUT_JSON   (child_src/sr_child.py must be in the snapshot)
"""

import os
import sys

from sr_common import record_pid, write_json

from runner import Run, ScriptRunConfig

record_pid("inrun")
out_path = sys.argv[1]
run = Run.get_context(allow_offline=False)
report = {"id": run.id, "type": type(run).__name__, "parent": run.parent and run.parent.id}

run.log("loss", 0.5)
run.log("loss", 0.25)
run.log("epoch_loss", 1.0, step=1)
run.log_list("acc", [0.1, 0.2, 0.3])
run.log_row("table", x=1, y=2)
run.log_row("table", x=2, y=4)
run.log_table("cols", {"a": [1, 2], "b": ["p", "q"]})
run.tag("stage", "train")
run.set_tags({"a": "1", "bare": None})
run.remove_tags(["a"])
run.add_properties({"prop": "value"})
with open("note.txt", "w") as f:
    f.write("uploaded from the run")
run.upload_file("uploads/note.txt", "note.txt")
os.makedirs("folder/deeper", exist_ok=True)
for name in ("folder/a.txt", "folder/deeper/b.txt", "one.txt", "two.txt"):
    with open(name, "w") as f:
        f.write("content of " + name)
run.upload_files(["many/one.txt", "many/two.txt"], ["one.txt", "two.txt"])
run.upload_folder("tree", "folder")
with open("pixel.png", "wb") as f:
    f.write(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32)
run.log_image("picture", path="pixel.png")
run.log_confusion_matrix(
    "cm",
    {
        "schema_type": "confusion_matrix",
        "schema_version": "1.0.0",
        "data": {"class_labels": ["0", "1"], "matrix": [[3, 1], [0, 2]]},
    },
)
run.log_residuals(
    "res",
    {
        "schema_type": "residuals",
        "schema_version": "1.0.0",
        "data": {"bin_edges": [0, 1, 2], "bin_counts": [4, 5]},
    },
)
run.display_name = "shown name"
run.description = "set from inside"
report["files_seen"] = sorted(run.get_file_names())
run.download_file("tree/deeper/b.txt", "downloaded.txt")
with open("downloaded.txt") as f:
    report["downloaded"] = f.read()
report["secret"] = run.get_secret("sr-token")

os.makedirs("child_out", exist_ok=True)
with open("child_out/c.txt", "w") as f:
    f.write("child output")
with run.child_run(name="inner", outputs="child_out") as inner:
    inner.log("inner_metric", 7)
    report["inner_parent"] = inner.parent.id
    report["inner_id"] = inner.id
batch = run.create_children(count=2)
for i, kid in enumerate(batch):
    kid.log("k", i)
    kid.complete()
folds = run.create_children(tag_key="fold", tag_values=["0", "1"])
for kid in folds:
    kid.complete()

src = ScriptRunConfig("child_src", "sr_child.py", arguments=["--x", 3, "two words"])
src.run_config.environment_variables = {"SR_VAR_CHILD": "for the child only"}
child = run.submit_child(src, tags={"kind": "submitted"})
details = child.wait_for_completion(raise_on_error=False)
report["submitted"] = {"id": child.id, "status": details["status"]}
report["children"] = sorted(c.id for c in run.get_children())
print("in-run client done")
write_json(out_path, report)
