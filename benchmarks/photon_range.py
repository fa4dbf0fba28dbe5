"""The built-ins across photon counts: gain over bicubic and the blur they are told, low-photon protocol.

The quality benchmark's low-photon protocol (``quality.py``: PSF sigma 1.15 low-res px, area binning, Poisson
noise, offset and read noise; CARE-style scoring against a sharper, brighter reference) at several peak photon
counts, on the held-out images of ``scripts/prepare_data.py`` (four fluorescence planes, four synthetic fields, the
four generator cells, two EM images), x2 and x4.  Per scale and photon count it prints the mean and smallest gain
of the built-in over bicubic and how often the told blur sits at the pixel's own blur (the estimate's floor) or at
the model's trained maximum (``infer.blur_check.within_trained_blur``): below ~50 photons the blur estimate is
mostly unreadable, and what the model is then told decides the result.

    python benchmarks/photon_range.py --data ../shared/data        # ~4 min on 2 cores

Writes ``results/photon_range.md`` and ``.json`` (``--out`` changes the stem).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "scripts")]

import quality as q  # noqa: E402
from prepare_data import heldout_sets  # noqa: E402

#: Peak photon counts measured (the low-photon protocol's default is 800).
PEAKS = (800, 100, 50, 30, 10)


def held_out_images(data: Path) -> list:
    sets = heldout_sets(data, synthetic=True)
    fluorescence = [i for i in sets["fluorescence"] if i.array.ndim == 2][:4]
    return fluorescence + sets["synthetic"][:4] + sets["cells"][:4] + sets["EM"][:2]


def measure(data: Path, scales: tuple[int, ...], peaks: tuple[int, ...]) -> list[dict]:
    from napari_superres import Engine, upscale
    from napari_superres.engine.infer.blur_check import trained_blur_ceiling
    from napari_superres.engine.nets.conditioning import PIXEL_BLUR_SIGMA

    engine = Engine(device="cpu", builtins=True)
    images = held_out_images(data)
    rows = []
    default_peak = q.LOWPHOTON_PEAK_PHOTONS
    try:
        for scale in scales:
            model = f"superres-x{scale}"
            ceiling = trained_blur_ceiling(engine.get(model))
            for peak in peaks:
                q.LOWPHOTON_PEAK_PHOTONS = peak
                for seed, image in enumerate(images):
                    hr = q.modcrop(image.array, scale)
                    lr = q.make_low_res(hr, scale, "lowphoton", seed=seed)
                    ref = q.reference(hr, scale, "lowphoton", seed=seed)
                    bicubic = q.psnr(*q.care_comparable(q.upscale_pil(lr, scale, "bicubic"), ref, scale))
                    told = engine.estimate_degradation(lr, model).blur_sigma
                    psnr = q.psnr(*q.care_comparable(upscale(lr, model, engine=engine), ref, scale))
                    rows.append({
                        "scale": scale, "peak_photons": peak, "image": image.name, "bicubic_psnr": bicubic,
                        "gain": psnr - bicubic, "told_blur": told,
                        "at_floor": bool(abs(told - PIXEL_BLUR_SIGMA) < 1e-6),
                        "at_ceiling": bool(ceiling is not None and abs(told - ceiling) < 1e-6),
                    })  # fmt: skip
                    print(
                        f"x{scale} {peak:4d} photons {image.name[:30]:30s} {psnr - bicubic:+.2f} dB, told {told:.2f} px"
                    )
    finally:
        q.LOWPHOTON_PEAK_PHOTONS = default_peak
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "# The built-ins across photon counts",
        "",
        f"Low-photon protocol (PSF sigma {q.LOWPHOTON_BLUR_LR} low-res px) at several peak photon counts, "
        f"{len({r['image'] for r in rows})} held-out images; gain of the built-in over bicubic (dB, CARE scoring); "
        "how many images were told the pixel's own blur (the estimate's floor) or the model's trained maximum.",
        "",
        "| scale | peak photons | mean gain | smallest gain | told the floor | told the maximum |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for scale in sorted({r["scale"] for r in rows}):
        for peak in sorted({r["peak_photons"] for r in rows}, reverse=True):
            sel = [r for r in rows if r["scale"] == scale and r["peak_photons"] == peak]
            gains = np.array([r["gain"] for r in sel])
            floor, top = sum(r["at_floor"] for r in sel), sum(r["at_ceiling"] for r in sel)
            lines.append(
                f"| x{scale} | {peak} | {gains.mean():+.2f} | {gains.min():+.2f} | {floor}/{len(sel)} | {top}/{len(sel)} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the shared data folder (../shared/data)")
    parser.add_argument("--scales", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--peaks", type=int, nargs="+", default=list(PEAKS))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "photon_range")
    args = parser.parse_args(argv)
    rows = measure(args.data, tuple(args.scales), tuple(args.peaks))
    text = markdown(rows)
    from napari_superres.engine.nets.model_file import atomic_write_bytes

    atomic_write_bytes(args.out.with_suffix(".json"), (json.dumps(rows, indent=1) + "\n").encode())
    atomic_write_bytes(args.out.with_suffix(".md"), text.encode())
    print(text)


if __name__ == "__main__":
    main()
