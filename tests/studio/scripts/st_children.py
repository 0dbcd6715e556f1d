"""A run with two child runs, each logging ``score``; all end Completed."""

from runner import Run

run = Run.get_context()
for i in range(2):
    child = run.child_run(name=f"fold {i}")
    child.log("score", float(i))
    child.complete()
print("children done")
