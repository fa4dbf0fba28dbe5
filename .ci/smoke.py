"""Smoke test of an installed napari-deep-superres (no test dependencies, no napari, no display).

Run by ``.ci/lowest.sh`` in a venv that holds the lowest direct versions the package declares:
upscale a TIFF to ``.ome.zarr`` (read back with ome-zarr-py: NGFF 0.5, scale, translation),
export an ONNX graph with both exporters, export a bioimage.io package and run bioimage.io's
own ``bioimageio test`` command on it.  Exits non-zero on the first failure.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

import numpy as np

PACKAGES = (
    "napari-deep-superres", "numpy", "torch", "torchvision", "tifffile", "dask", "zarr", "ome-zarr",
    "bioimageio.core", "bioimageio.spec", "pydantic", "onnx", "onnxruntime", "onnxscript",
)  # fmt: skip
SCALE = 2
PIXEL_UM = 0.5


def run(*args: str) -> None:
    print("$", " ".join(args), flush=True)
    subprocess.run(args, check=True)


def cli(*args: str) -> None:
    run(sys.executable, "-m", "napari_superres.cli", *args)


def check_ome_zarr(path: Path) -> None:
    """NGFF 0.5 with level 0 at half the input pixel, shifted by a quarter input pixel."""
    import zarr
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Multiscales, Reader

    assert zarr.open_group(str(path), mode="r").metadata.zarr_format == 3, "OME-Zarr 0.5 is zarr v3"
    attrs = dict(zarr.open_group(str(path), mode="r").attrs)
    assert attrs["ome"]["version"] == "0.5", attrs.get("ome", {}).get("version")
    node = next(n for n in Reader(parse_url(str(path)))() if n.load(Multiscales) is not None)
    transforms = node.metadata["coordinateTransformations"][0]
    scale = next(t["scale"] for t in transforms if t["type"] == "scale")
    shift = next(t["translation"] for t in transforms if t["type"] == "translation")
    expected = PIXEL_UM / SCALE, -PIXEL_UM / 2 * (1 - 1 / SCALE)
    assert np.allclose(scale[-2:], expected[0]) and np.allclose(shift[-2:], expected[1]), (scale, shift)
    assert node.data[0].shape[-2:] == (128 * SCALE, 96 * SCALE), node.data[0].shape
    print(f"ome-zarr reader: NGFF 0.5, level-0 shape {node.data[0].shape}, scale {scale}, translation {shift}")


def check_onnx(tmp: Path) -> None:
    import onnxruntime as ort
    import torch

    from napari_superres.engine.infer.onnx_backend import export_onnx
    from napari_superres.engine.registry import default_engine

    net = default_engine().get("superres-x2").net.float().eval()
    x = torch.rand(1, 1, 40, 48)
    with torch.no_grad():
        want = net(x).numpy()
    for exporter in ("legacy", "dynamo"):
        data = export_onnx(net, tmp / f"{exporter}.onnx", exporter=exporter)
        got = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
        assert np.abs(got - want).max() < 1e-4, (exporter, float(np.abs(got - want).max()))
        print(f"ONNX {exporter} exporter: onnxruntime matches torch on a 40x48 tile")


def main() -> int:
    import tifffile

    print("\n".join(f"{p}=={version(p)}" for p in PACKAGES), flush=True)
    with tempfile.TemporaryDirectory(prefix="napari-superres-smoke-") as name:
        tmp = Path(name)
        image = (np.random.default_rng(0).random((128, 96)) * 4000).astype(np.uint16)
        tifffile.imwrite(tmp / "in.tif", image, resolution=(1 / PIXEL_UM, 1 / PIXEL_UM),
                         metadata={"axes": "YX", "unit": "um"}, imagej=True)  # fmt: skip
        cli("upscale", str(tmp / "in.tif"), str(tmp / "out.ome.zarr"), "--model", "superres-x2", "--quiet")
        check_ome_zarr(tmp / "out.ome.zarr")
        check_onnx(tmp)
        cli("export", "superres-x2", "--bioimageio", str(tmp / "x2.zip"))
        run(str(Path(sys.executable).with_name("bioimageio")), "test", str(tmp / "x2.zip"))
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
