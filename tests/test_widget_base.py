"""The dock widgets' base, by example: a minimal widget on :class:`JobWidget` that doubles an image layer.

The widget holds only what is its own (its buttons, its check of the request, its work
function and what it does with the result); loading, Run/Cancel state, progress, refusals,
failure notifications and deleted layers are the base's.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from magicgui.widgets import PushButton
from napari.components import ViewerModel

import napari_superres._napari.widget_base as widget_base
from napari_superres._napari.jobs import ENGINE_MODULES, describe_error
from napari_superres._napari.ui import button_row, dock_layout
from napari_superres._napari.widget_base import JobWidget
from napari_superres.engine.errors import InvalidRequestError

pytestmark = pytest.mark.gui
WAIT_MS = 30_000


class DoubleWidget(JobWidget):
    """Doubles an image layer in a worker, ``steps`` small steps long; adds ``"<name> ×2"``."""

    def __init__(self, viewer, steps: int = 5, fail: BaseException | None = None) -> None:
        super().__init__(viewer)
        self.steps, self.fail = steps, fail
        self.run_button = PushButton(text="Run", enabled=False)
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        dock_layout(self, [button_row(self.run_button, self.cancel_button), self.panel])
        self.run_button.changed.connect(lambda *_: self.run())
        self.cancel_button.changed.connect(lambda *_: self.cancel())
        self.load_then(ENGINE_MODULES)

    def run(self, layer=None):
        if not self.can_start("Already doubling; cancel it first."):
            return None
        layer = self.viewer.layers.selection.active if layer is None else layer
        data = self.prepared(lambda: self._check(layer))
        if data is None:
            return None
        steps, fail = self.steps, self.fail

        def work(ctx):
            for step in range(steps):
                ctx.check()  # Cancel, a deleted layer, a closed dock: stop here
                ctx.progress(step + 1, steps)
                time.sleep(0.01)
            if fail is not None:
                raise fail
            return data * 2

        return self.start_job(
            work, description=f"doubling {layer.name!r}", total=steps, sources=(layer,),
            failure=f"Doubling {layer.name!r} failed",
            on_done=lambda doubled: self.viewer.add_image(doubled, name=f"{layer.name} ×2"),
        )  # fmt: skip

    @staticmethod
    def _check(layer):
        if layer is None:
            raise InvalidRequestError("Choose an image layer to double.")
        return np.asarray(layer.data)


@pytest.fixture
def errors(monkeypatch):
    """Messages sent to napari's error notifications by the base."""
    messages: list[str] = []
    monkeypatch.setattr(widget_base, "show_error", lambda message: messages.append(str(message)))
    return messages


def open_widget(qtbot, **kwargs):
    viewer = ViewerModel()
    widget = DoubleWidget(viewer, **kwargs)
    qtbot.addWidget(widget)
    qtbot.waitUntil(lambda: widget.ready, timeout=WAIT_MS)
    return viewer, widget


def finish(qtbot, widget):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)


def test_a_job_runs_in_a_worker_and_the_widget_ends_idle(qtbot, errors):
    viewer, widget = open_widget(qtbot)
    viewer.add_image(np.ones((4, 4), np.float32), name="cells")
    assert widget.run_button.enabled and not widget.cancel_button.enabled
    progress = []
    widget.progressed.connect(lambda done, total: progress.append((done, total)))

    assert widget.run() is not None
    assert not widget.run_button.enabled and widget.cancel_button.enabled  # running
    finish(qtbot, widget)

    np.testing.assert_array_equal(viewer.layers["cells ×2"].data, 2)
    assert widget.run_button.enabled and not widget.cancel_button.enabled and errors == []
    assert progress and progress[-1][1] == widget.steps


def test_a_refused_request_is_a_notification_and_no_job(qtbot, errors):
    _viewer, widget = open_widget(qtbot)

    assert widget.run() is None  # no layer chosen
    assert errors == ["Choose an image layer to double."] and widget.status.value == errors[0]
    assert widget.worker is None and widget.run_button.enabled


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (InvalidRequestError("the layer is too small; use 8 px or more"), "the layer is too small; use 8 px or more"),
        (ZeroDivisionError("division by zero"), "ZeroDivisionError: division by zero"),  # a bug: its type too
    ],
)
def test_a_failed_job_is_a_notification_naming_what_failed(qtbot, errors, error, shown):
    viewer, widget = open_widget(qtbot, fail=error)
    viewer.add_image(np.ones((4, 4), np.float32), name="cells")

    widget.run()
    finish(qtbot, widget)

    assert errors == [f"Doubling 'cells' failed: {shown}"] and describe_error(error) == shown
    assert "cells ×2" not in viewer.layers and widget.run_button.enabled


def test_cancel_stops_the_job_within_a_second_and_adds_nothing(qtbot, errors):
    viewer, widget = open_widget(qtbot, steps=100_000)
    viewer.add_image(np.ones((4, 4), np.float32), name="cells")
    widget.run()
    qtbot.waitUntil(lambda: widget.panel.bar.value() > 0, timeout=WAIT_MS)

    start = time.monotonic()
    widget.cancel_button.changed.emit(True)  # as a click
    finish(qtbot, widget)

    assert time.monotonic() - start < 1.0
    assert widget.status.value == "cancelled" and len(viewer.layers) == 1 and errors == []
    assert widget.run_button.enabled and not widget.cancel_button.enabled


def test_deleting_the_source_layer_stops_the_job(qtbot, errors):
    viewer, widget = open_widget(qtbot, steps=100_000)
    layer = viewer.add_image(np.ones((4, 4), np.float32), name="cells")
    widget.run()
    qtbot.waitUntil(lambda: widget.panel.bar.value() > 0, timeout=WAIT_MS)

    viewer.layers.remove(layer)
    finish(qtbot, widget)

    assert len(viewer.layers) == 0 and widget.run_button.enabled and errors == []
