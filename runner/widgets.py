"""The RunDetails notebook widget (v1: ``azureml.widgets``).

``RunDetails(run).show()`` returns at once, as in v1. In Jupyter with ipywidgets it
displays a summary (status, a metrics table, the last lines of the driver log) that a
background thread refreshes until the run reaches a terminal status; elsewhere (a script,
a terminal, no ipywidgets) it prints the same summary once, as text::

    from runner.widgets import RunDetails

    RunDetails(run).show()

ipywidgets (and IPython) are optional and imported only when a notebook is detected.
"""

from __future__ import annotations

import html
import importlib
import sys
import threading
from typing import TYPE_CHECKING, Any

from runner.errors import ConfigError
from runner.run import Run
from runner.status import RunStatus

if TYPE_CHECKING:
    from runner.run import Run

__all__ = ["RunDetails"]

#: How often the widget's thread reads the run again.
REFRESH_S = 1.0
#: How many lines of the driver log the summary shows.
LOG_LINES = 20


def _in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython with a kernel attached)."""
    ipython = sys.modules.get("IPython")  # not imported yet: no notebook here
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _short(value: Any) -> str:
    """A metric value as one table cell: the last value of a vector, with its length."""
    if isinstance(value, list):
        return f"{value[-1]!r} (last of {len(value)})" if value else "[]"
    if isinstance(value, dict):
        return "table: " + ", ".join(map(str, value))
    return repr(value)


class RunDetails:
    """Shows the progress of a run in a notebook, or as text elsewhere (v1: azureml.widgets).

    Args:
        run_instance: The Run to show.

    Example:
        >>> RunDetails(run).show()  # doctest: +SKIP
    """

    def __init__(self, run_instance: Run) -> None:

        if not isinstance(run_instance, Run):
            raise ConfigError(
                f"RunDetails takes a Run, got {type(run_instance).__name__}; pass the run "
                "that experiment.submit() returned or Run(experiment, run_id)"
            )
        self.run = run_instance
        self._widget: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def get_widget_data(self, widget_settings: dict[str, Any] | None = None) -> dict[str, Any]:
        """What the widget shows, as a dict: ``runId``, ``experimentName``, ``status``,
        ``startTimeUtc``/``endTimeUtc`` when known, ``metrics`` (run.get_metrics()) and
        ``logLines`` (the last lines of the driver log). ``widget_settings`` is accepted for
        v1 compatibility and unused."""
        details = self.run.get_details()
        data: dict[str, Any] = {
            "runId": self.run.id,
            "experimentName": self.run.experiment.name,
            "status": details["status"],
        }
        for key in ("startTimeUtc", "endTimeUtc"):
            if key in details:
                data[key] = details[key]
        data["metrics"] = self.run.get_metrics()
        tail = self.run._log_tail(LOG_LINES)
        data["logLines"] = tail.splitlines() if tail else []
        return data

    def show(self) -> None:
        """Display the summary and return at once.

        In a Jupyter kernel with ipywidgets: a widget that refreshes every second until
        the run ends. Otherwise: the summary printed once as text.
        """
        if _in_notebook():
            try:
                widget = self.widget()
            except ConfigError:
                pass  # no ipywidgets: the text below, as v1 falls back to a link
            else:
                # Through import_module: IPython is untyped where it is installed.
                display: Any = importlib.import_module("IPython.display").display
                display(widget)
                return
        print(self.text())  # noqa: T201 - the text mode of show()

    def text(self) -> str:
        """The summary as plain text (what ``show()`` prints outside a notebook)."""
        return _render_text(self.get_widget_data())

    def widget(self) -> Any:
        """The ipywidgets widget, refreshed by a background thread until the run ends.

        Raises ConfigError naming ``pip install ipywidgets`` when it is missing.
        """
        if self._widget is not None:
            return self._widget
        try:
            import ipywidgets
        except ImportError as exc:
            raise ConfigError(
                f"the RunDetails widget needs the ipywidgets package ({exc})",
                hint="pip install ipywidgets",
            ) from exc
        self._widget = ipywidgets.VBox(
            [ipywidgets.HTML(), ipywidgets.HTML(), ipywidgets.HTML()],
            layout=ipywidgets.Layout(border="1px solid #ccc", padding="4px"),
        )
        data = self._refresh()
        if not RunStatus(data["status"]).is_terminal:
            self._thread = threading.Thread(
                target=self._keep_fresh, name=f"RunDetails {self.run.id}", daemon=True
            )
            self._thread.start()
        return self._widget

    @property
    def refreshing(self) -> bool:
        """True while the widget's thread still reads the run."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop refreshing the widget (it stops by itself when the run ends)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _refresh(self) -> dict[str, Any]:
        """Read the run once and put what it shows into the widget."""
        data = self.get_widget_data()
        status, metrics, logs = self._widget.children
        status.value = (
            f"<b>Run</b> {html.escape(data['runId'])} &middot; <b>experiment</b> "
            f"{html.escape(data['experimentName'])} &middot; <b>status</b> "
            f"<span class='runner-status'>{html.escape(data['status'])}</span>"
        )
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{html.escape(_short(value))}</td></tr>"
            for name, value in data["metrics"].items()
        )
        metrics.value = f"<table><tr><th>metric</th><th>value</th></tr>{rows}</table>"
        logs.value = "<pre>" + html.escape("\n".join(data["logLines"])) + "</pre>"
        return data

    def _keep_fresh(self) -> None:
        # Ends with one refresh after the run is terminal, so the final state shows.
        while not self._stop.wait(REFRESH_S):
            if RunStatus(self._refresh()["status"]).is_terminal:
                return


def _render_text(data: dict[str, Any]) -> str:
    """The text summary of get_widget_data()."""
    lines = [f"Run {data['runId']} (experiment {data['experimentName']}): {data['status']}"]
    for key, label in (("startTimeUtc", "started"), ("endTimeUtc", "ended")):
        if key in data:
            lines.append(f"  {label} {data[key]}")
    metrics = data["metrics"]
    if metrics:
        width = max(map(len, metrics))
        lines.append("Metrics:")
        lines += [f"  {name:<{width}}  {_short(value)}" for name, value in metrics.items()]
    else:
        lines.append("Metrics: none yet")
    if data["logLines"]:
        lines.append(f"Last {len(data['logLines'])} log lines:")
        lines += ["  " + line for line in data["logLines"]]
    return "\n".join(lines)
