"""How :func:`~napari_superres.engine.train.adapt.adapt` spends its time budget: the steps, patches per step and
precision of its two fine-tunes, and the step counts a budget in seconds plans (:func:`planned_steps`).

The figures beside each constant are what chose it (2 CPU cores; held-out low-photon images, x2, gain over the
built-in model); :mod:`~napari_superres.engine.train.adapt` re-exports them.
"""

from __future__ import annotations

from ..infer.precision import cpu_support
from ..options import ADAPT_SECONDS

#: Self-pair fine-tuning steps of the default route (cosine schedule).  Longer self-pair fine-tuning
#: moves the network towards the self-supervised task's own optimum, which is not the real task's:
#: measured (``adapt`` alone, mix 1.0) on two held-out low-photon synthetic fields, x2, gain over the
#: start +0.16 / +1.09 dB after 25 steps, -0.67 / +0.77 after 50, -1.43 / -0.05 after 100, -2.57 /
#: -0.58 after 400 (over-sharpened: blurring its output by sigma 1 px gained 1.6 dB).  Averaged with the
#: start (mix 0.5), over the same two and two HeLa and one EM image: 40 steps +0.68 / +1.05 / +0.29 /
#: +0.08 / +0.04, **60 steps +0.68 / +1.22 / +0.35 / +0.10 / +0.03**, 80 steps +0.63 / +1.22 / +0.33 /
#: +0.11 / +0.03, 100 steps +0.58 / +1.16 (synthetic), 400 steps (what 30 s bought on 2 quiet cores,
#: the default before) +0.43 / +1.03.  60 steps take 4-6 s on 2 cores at any image size (patches).
SELF_PAIR_STEPS = 60

#: The default route's self-pair phase ends after its steps or this share of the time left after its set-up
#: (``adapt._Run.share_of_rest``), whichever first; the blind-spot phase has the rest.  60 steps take 4-6 s of the 30.
SELF_PAIR_TIME_SHARE = 1.0 / 3.0

#: Patches per step and high-res patch edge (px) of the self-supervised pairs.
ADAPT_BATCH = 8
ADAPT_PATCH = 48

#: With the microscope's blur given (``adapt(image, blur_sigma=...)``): blind-spot consistency at the image's
#: own scale (:mod:`~napari_superres.engine.train.blind_spot`) for this many steps, on low-res patches of this
#: edge (px), the fine-tuned network returned alone (mix 1.0).  Measured (``benchmarks/quality.py --your-data``,
#: x2, low-photon protocol, its PSF told, four held-out images per kind), gain over the built-in: synthetic
#: fields +1.69 / +2.03 / +1.77 / +1.01 dB, fluorescence +0.71 / +0.23 / +0.43 / +0.38 (paired training on four
#: matching pairs, 1000 steps: +0.20 / +0.17 / +0.23 / +0.16), EM +0.20 / +0.21 / +0.13 / +0.16; every image
#: gained; 21-23 s each on 2 cores.  Mix 0.5 measured a little lower (fluorescence +0.61 / +0.26 / +0.34 / +0.31).
#: More steps help a little and slowly: with the PSF told, 450 steps +0.73 dB over the built-in on seven held-out
#: low-photon images (four fluorescence, a synthetic field, the nuclei scene, EM) against +0.61 at 150; the
#: default route (60 self-pair steps, then 450 blind-spot) +0.28 against +0.19, no image lower, in 72 s instead
#: of 27.  Neither the rate (1.5e-4: +0.65; 4e-4: +0.50) nor the mask grid (2: +0.64; 4: +0.49) moved it.
#: These were float32 steps of 8 patches; since float32 steps take 4 (:data:`BLIND_SPOT_BATCH`), the default
#: 30 s plans 200 of them, and where adapt fine-tunes in bf16 (:data:`ADAPT_CPU_BF16`) the same time plans
#: :data:`BLIND_SPOT_STEPS_BF16` of 8.
BLIND_SPOT_STEPS = 200

#: Blind-spot steps (of ``BLIND_SPOT_BATCH_BF16`` patches) that ``ADAPT_SECONDS`` plans in bf16.
#: Measured (2 cores, AMX; the default route on the seven held-out low-photon images above, gain over the
#: built-in, seconds per image): float32 150 steps +0.252 dB, 25.6 s; bf16 150 steps +0.244, 13.1 s (the
#: blind-spot step alone 2.3x float32's rate: 14.9 against 6.3 it/s, channels-last float32 8.5); bf16 350
#: steps +0.322, 28.8 s (fluorescence +0.74 / +0.23 / +0.06 / +0.30 against +0.67 / +0.20 / +0.01 / +0.19).
BLIND_SPOT_STEPS_BF16 = 300

#: Patches per blind-spot step in float32 and in bf16.  In float32 on 2 AVX2 cores, steps of 8 ran at ~5 it/s and
#: the 30 s budget ended the phase after 79-119 of 150; steps of 4 run all 200 in 22-30 s.  Default route, seven
#: held-out low-photon images, gain over the built-in: 8 x 150 +0.458 dB on average (HeLa 2 -0.51), 4 x 200 +0.575
#: (HeLa 2 +0.17); told the PSF +0.905 against +0.876, within a run's spread (docs/models.md, "adapt in float32").
BLIND_SPOT_BATCH = 4
BLIND_SPOT_BATCH_BF16 = ADAPT_BATCH
#: Edge (low-res px) of the blind-spot patches.
BLIND_SPOT_PATCH = 32

#: The default route (nothing stated): ``SELF_PAIR_STEPS`` self-pair steps, then ``BLIND_SPOT_STEPS`` blind-spot
#: steps from the start through the forward blur fitted to the start's own output
#: (:func:`~napari_superres.engine.train.blind_spot.fit_forward_blur`, floored at half what the estimate
#: implies), within ``ADAPT_SECONDS``; ``steps=`` splits in the same ratio.
ADAPT_STEPS = SELF_PAIR_STEPS + BLIND_SPOT_STEPS

#: Both fine-tunes run their forward passes in bf16 (``torch.autocast``, weights and loss float32) where the CPU has
#: native bf16 (:func:`~napari_superres.engine.infer.precision.cpu_support`); elsewhere float32.  Either way on
#: channels-last tensors (:data:`BLIND_SPOT_MEMORY_FORMAT`).
ADAPT_CPU_BF16 = True


def cpu_bf16() -> bool:
    """Whether :func:`adapt` fine-tunes in bf16 on this CPU (:data:`ADAPT_CPU_BF16` and native bf16)."""
    return ADAPT_CPU_BF16 and cpu_support("bf16")[0]


def planned_steps(seconds: float | None, *, self_pairs: bool, blind_spot: bool, bf16: bool = False) -> tuple[int, int]:
    """``(self-pair steps, blind-spot steps)`` that a ``seconds`` budget plans for, for a route with those phases.

    ``ADAPT_SECONDS`` (or ``None``: no time limit) plans the defaults, ``SELF_PAIR_STEPS`` and
    ``BLIND_SPOT_STEPS`` (``bf16``: fine-tuning in bf16, :func:`cpu_bf16`: ``BLIND_SPOT_STEPS_BF16``); another
    budget scales them in proportion (2 CPU cores' rate), except that self-pair steps never exceed
    ``SELF_PAIR_STEPS`` (longer self-pair fine-tuning moves away from the real task).  A phase that is not in
    the route gets 0.
    """
    share = 1.0 if seconds is None else float(seconds) / ADAPT_SECONDS
    pairs = max(1, round(SELF_PAIR_STEPS * min(share, 1.0))) if self_pairs else 0
    spot_steps = BLIND_SPOT_STEPS_BF16 if bf16 else BLIND_SPOT_STEPS
    spot = max(1, round(spot_steps * share)) if blind_spot else 0
    return pairs, spot


def blind_spot_batch(bf16: bool) -> int:
    """Patches per blind-spot step when fine-tuning in bf16 (:func:`cpu_bf16`) or float32."""
    return BLIND_SPOT_BATCH_BF16 if bf16 else BLIND_SPOT_BATCH


__all__ = [
    "ADAPT_BATCH",
    "ADAPT_CPU_BF16",
    "ADAPT_PATCH",
    "ADAPT_STEPS",
    "BLIND_SPOT_BATCH",
    "BLIND_SPOT_BATCH_BF16",
    "BLIND_SPOT_PATCH",
    "BLIND_SPOT_STEPS",
    "BLIND_SPOT_STEPS_BF16",
    "SELF_PAIR_STEPS",
    "SELF_PAIR_TIME_SHARE",
    "blind_spot_batch",
    "cpu_bf16",
    "planned_steps",
]
