"""The Train widget starts from the CLI's defaults (one source: engine/options.py TRAIN_DEFAULTS)."""

from __future__ import annotations

import argparse

import pytest

from napari_superres.cli.train_cmd import add_parser, build_config
from napari_superres.engine.options import TRAIN_DEFAULTS

pytestmark = pytest.mark.gui
PLUGIN = "napari-deep-superres"
WAIT_MS = 600_000  # generous: PyTorch loads off the GUI thread, slowly on a loaded machine
#: TrainConfig fields a user can set in both front ends.
SHARED = ("scale", "preset", "steps", "seconds", "init", "batch_size", "patch_size", "lr", "schedule", "grad_clip",
          "ema", "seed", "device", "val_every", "net", "normalization", "degradation")  # fmt: skip


@pytest.fixture
def widget(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _dock, w = viewer.window.add_plugin_dock_widget(PLUGIN, "Train")
    qtbot.waitUntil(lambda: w.ready, timeout=WAIT_MS)
    yield w
    worker = w.worker
    if worker is not None:
        assert w.stop(wait=True, timeout=WAIT_MS / 1000)


def cli_config():
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    return build_config(parser.parse_args(["train", "--hr", "hr.tif", "--lr", "lr.tif", "--out", "m.safetensors"]))


def test_widget_defaults_are_the_cli_defaults(widget, tmp_path):
    ours = widget._config(2, tmp_path / "run.ckpt")
    cli = cli_config()
    assert {k: getattr(ours, k) for k in SHARED} == {k: getattr(cli, k) for k in SHARED}
    assert ours.resolved_weights() == cli.resolved_weights()
    assert ours.init == TRAIN_DEFAULTS.init == "builtin" and ours.net == {}


def test_setting_a_network_shape_trains_a_new_network(widget, tmp_path):
    widget.channels_spin.value = 8
    assert widget.init_combo.value == "none"
    assert widget._config(2, tmp_path / "run.ckpt").net["channels"] == 8


def test_a_few_steps_from_the_builtin_model(widget, qtbot):
    viewer = widget.viewer
    viewer.open_sample(PLUGIN, "fluorescence_pair")
    widget.hr_combo.value = viewer.layers["high-res"]
    widget.lr_combo.value = viewer.layers["low-res (×2)"]
    widget.steps_spin.value, widget.batch_spin.value, widget.val_spin.value = 2, 2, 0
    widget.device_combo.value = "cpu"
    worker = widget.start()
    assert worker is not None, widget.status.value
    qtbot.waitUntil(lambda: widget.worker is None, timeout=WAIT_MS)
    trainer = widget.trainer
    assert trainer is not None and trainer.step == 2
    assert trainer.started_from is not None and trainer.started_from.endswith("superres-x2.safetensors")
