"""What the Train widget guards against before and during a run (a mixin of :class:`~.train_widget.TrainWidget`).

* a model is never replaced silently: automatic names are numbered when taken, a typed
  taken name asks first;
* the VGG-16 weights of the perceptual loss: a file check at once, and whether they can be
  downloaded (a probe of their host in a thread), so the message says what *Start* will do;
* a layer the run trains on is deleted: the run stops after its step.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from napari.utils.notifications import show_warning
from qtpy.QtWidgets import QMessageBox

from .train_plan import offline, vgg_weights_problem

#: Seconds the probe of the VGG-16 weights' host waits for an answer.
VGG_PROBE_S = 2.0


class TrainGuards:
    """Model names, VGG-16 weights and deleted layers; mixed into the Train widget (needs its attributes)."""

    def run_name(self, resume: bool = False) -> str:
        """The name this run registers its model under; raises ``ValueError`` when the user keeps a taken name.

        Empty name field: '<high-res layer> x<scale>', numbered ``(2)``, ``(3)``... when another model
        has it (a resumed run keeps its own name).  A typed name of a registered model asks first
        (:meth:`confirm_replace`): no model is ever replaced silently.
        """
        assert self.engine is not None
        typed = self.name_edit.value.strip()
        if resume and self._last_name is not None and typed in ("", self._last_name):
            return self._last_name
        if not typed:
            return self.engine.unique_name(self.model_name())
        if typed in self.engine.names() and not self.confirm_replace(typed):
            raise ValueError(f"A model named {typed!r} is already registered; choose another model name.")
        return typed

    def confirm_replace(self, name: str) -> bool:
        """Ask whether the registered model ``name`` may be replaced by this run's (a dialog)."""
        answer = QMessageBox.question(
            self, "Replace a model?",
            f"A model named {name!r} is already registered (listed in the Upscale widget).\n"
            "Replace it with the model this run trains?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, QMessageBox.StandardButton.No,
        )  # fmt: skip
        return answer == QMessageBox.StandardButton.Yes

    def _check_vgg(self, *_: Any) -> str | None:
        """Warn as soon as the settings need VGG-16 weights that are not on disk, saying what Start will do.

        Whether they can be downloaded is probed once, in a thread (a TCP connection to their
        host, never a download); the message follows when the answer comes.
        """
        problem = vgg_weights_problem(self._weights(), self._vgg_reachable)
        if problem is not None and self._vgg_reachable is None and not offline() and not self._vgg_probing:
            self._vgg_probing = True
            ref = weakref.ref(self)

            def probe() -> None:
                from ..engine.nets.vgg import weights_host_reachable

                reachable = weights_host_reachable(VGG_PROBE_S)
                widget = ref()
                if widget is not None:
                    try:
                        widget.vgg_probed.emit(reachable)  # queued to the GUI thread
                    except RuntimeError:  # the widget is already deleted
                        pass

            threading.Thread(target=probe, name="vgg-weights-probe", daemon=True).start()
        self.vgg_label.value = problem or ""
        self.vgg_label.setVisible(problem is not None)
        return problem

    def _on_vgg_probed(self, reachable: bool) -> None:
        self._vgg_reachable, self._vgg_probing = bool(reachable), False
        if self.ready:
            self._check_vgg()

    def on_source_deleted(self, layer: Any) -> None:
        """A layer the run trains on was deleted: stop after this step (the model so far is kept, as with Stop)."""
        message = f"{layer.name!r} was deleted: stopping after this step (the model trained so far is kept)."
        self._runner.cancel(message)
        show_warning(message)
