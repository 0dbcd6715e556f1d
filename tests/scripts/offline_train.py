"""A training script tried with plain `python offline_train.py`: the offline run.

Prints one line `RESULT {json}` at the end with what the run answers in-process.
"""

import json

from runner import Run

run = Run.get_context()
for epoch in range(3):
    run.log("loss", 1.0 / (epoch + 1))
run.log("acc", 0.9)
run.tag("stage", "try")
run.add_properties({"author": "me"})
child = run.child_run("fold-0")
child.log("fold_acc", 0.8)
child.complete()
result = {
    "id": run.id,
    "type": type(run).__name__,
    "metrics": run.get_metrics(),
    "tags": run.get_tags(),
    "properties": run.get_properties(),
    "children": [c.id for c in run.get_children()],
    "recursive": run.get_metrics(recursive=True),
    "same_object": Run.get_context() is run,
}
run.complete()
print("RESULT " + json.dumps(result))
