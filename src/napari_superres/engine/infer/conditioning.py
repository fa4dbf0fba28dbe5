"""The degradation a conditioned network is told: estimated from the image, or given by the user.

``upscale(..., degradation=...)`` accepts

* ``"auto"`` (the default, also ``None``): estimate the image's noise and blur once per image
  (once per channel along a ``C`` axis) on the image normalised as the network sees it;
* ``"clean"``: a clean, sharp image (no estimate);
* a :class:`~napari_superres.engine.nets.conditioning.DegradationCondition`: exactly that;
* a dict of some of ``blur_sigma`` (low-res px), ``peak_photons`` (photons at the normalised
  intensity 1), ``read_noise`` (normalised units), ``noise_gain``, ``noise_offset``: those values,
  the rest estimated (an override of the estimate, as the CLI's ``--blur`` / ``--noise`` and the
  widget's fields give);
* a training :class:`~napari_superres.engine.train.degradation.DegradationConfig`: the middle of its
  ranges, as the low-res image it makes from a sharp, clean high-res image.

Blind networks (``cond_channels == 0``) ignore it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..nets.conditioning import (
    CLEAN,
    PIXEL_BLUR_SIGMA,
    DegradationCondition,
    estimate_condition,
    inference_condition,
    low_res_condition,
)

#: Keys a degradation dict may hold.
DEGRADATION_KEYS = ("blur_sigma", "peak_photons", "read_noise", "noise_gain", "noise_offset")
#: Strings ``degradation=`` accepts.
DEGRADATION_MODES = ("auto", "clean")


@dataclass(frozen=True)
class DegradationRequest:
    """What the caller fixed (``fixed``: fields of :class:`DegradationCondition`) and whether the
    rest is estimated from the image (``estimate``)."""

    fixed: Mapping[str, float] = field(default_factory=dict)
    estimate: bool = True

    @classmethod
    def parse(cls, spec: Any) -> DegradationRequest:
        """Read ``degradation=`` (see the module docstring); ``ValueError`` naming what is accepted."""
        if isinstance(spec, DegradationRequest):
            return spec
        if spec is None or (isinstance(spec, str) and spec.lower() == "auto"):
            return cls()
        if isinstance(spec, str):
            if spec.lower() == "clean":
                return cls(fixed=_fields(CLEAN), estimate=False)
            raise ValueError(
                f"degradation must be one of {DEGRADATION_MODES}, a dict or a DegradationCondition; got {spec!r}"
            )
        if isinstance(spec, DegradationCondition):
            return cls(fixed=_fields(spec), estimate=False)
        if isinstance(spec, Mapping):
            return cls(fixed=_fields_from_mapping(spec), estimate=True)
        if type(spec).__name__ == "DegradationConfig":
            return cls(fixed=_fields(_from_training_config(spec)), estimate=False)
        raise ValueError(
            f"degradation must be 'auto', 'clean', a dict of {list(DEGRADATION_KEYS)} or a DegradationCondition; "
            f"got {type(spec).__name__}"
        )

    @property
    def needs_image(self) -> bool:
        """Whether :meth:`resolve` has to look at the image."""
        return self.estimate and len(self.fixed) < 3

    def resolve(self, planes: Callable[[], Sequence[np.ndarray]]) -> DegradationCondition:
        """The condition: the fixed values over the estimate of ``planes()`` (normalised 2-D planes)."""
        if not self.needs_image:
            return DegradationCondition(**{**_fields(CLEAN), **self.fixed})
        estimated = inference_condition(estimate_condition(planes()))
        return DegradationCondition(**{**_fields(estimated), **self.fixed})

    def to_dict(self) -> dict[str, Any]:
        return {"fixed": dict(self.fixed), "estimate": self.estimate}


def _fields(c: DegradationCondition) -> dict[str, float]:
    return {"noise_gain": c.noise_gain, "noise_offset": c.noise_offset, "blur_sigma": c.blur_sigma}


def _number(key: str, value: Any, minimum: float = 0.0, strict: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"degradation {key} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < minimum or (strict and v <= minimum):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise ValueError(f"degradation {key} must be a finite number {bound}, got {value!r}")
    return v


def _fields_from_mapping(spec: Mapping[str, Any]) -> dict[str, float]:
    unknown = sorted(set(spec) - set(DEGRADATION_KEYS))
    if unknown:
        raise ValueError(f"unknown degradation keys {unknown}; use some of {list(DEGRADATION_KEYS)}")
    out: dict[str, float] = {}
    if spec.get("blur_sigma") is not None:
        out["blur_sigma"] = _number("blur_sigma", spec["blur_sigma"])
    if spec.get("peak_photons") is not None:
        out["noise_gain"] = 1.0 / _number("peak_photons", spec["peak_photons"], strict=True)
    if spec.get("noise_gain") is not None:
        out["noise_gain"] = _number("noise_gain", spec["noise_gain"])
    if spec.get("read_noise") is not None:
        out["noise_offset"] = _number("read_noise", spec["read_noise"]) ** 2
    if spec.get("noise_offset") is not None:
        out["noise_offset"] = _number("noise_offset", spec["noise_offset"])
    return out


def _from_training_config(cfg: Any) -> DegradationCondition:
    params: dict[str, float] = {}
    if cfg.blur_sigma is not None and cfg.blur_prob > 0:
        params["blur_sigma"] = 0.5 * (cfg.blur_sigma[0] + cfg.blur_sigma[1])
    if cfg.noise_poisson is not None and cfg.noise_prob > 0:
        params["poisson_peak"] = math.sqrt(cfg.noise_poisson[0] * cfg.noise_poisson[1])
    if cfg.noise_gaussian is not None and cfg.noise_prob > 0:
        params["gaussian_sigma"] = 0.5 * (cfg.noise_gaussian[0] + cfg.noise_gaussian[1])
    sharp = DegradationCondition(blur_sigma=PIXEL_BLUR_SIGMA)
    return low_res_condition(sharp, params, cfg.scale)


#: How :func:`describe_condition` marks a blur at the widest the model was trained on.
AT_WIDEST_NOTE = " (the widest the model knows)"


def describe_condition(c: DegradationCondition, widest: float | None = None) -> str:
    """One line for a person: ``"blur σ 1.1 px, ~600 photons peak, read noise 0.004"``.

    ``widest``: the widest blur the model was trained on
    (:func:`~napari_superres.engine.infer.blur_check.trained_blur_ceiling`); a blur at it is marked
    (:data:`AT_WIDEST_NOTE`): the image's own blur read wider or could not be read (very noisy or very smooth
    images), and the model is told the widest it knows (:func:`~.blur_check.within_trained_blur`)."""
    photons = f"~{c.peak_photons:,.0f} photons peak" if c.peak_photons else "no shot noise"
    read = f", read noise {c.read_noise:.3g}" if c.noise_offset > 0 else ""
    at_widest = AT_WIDEST_NOTE if widest is not None and math.isclose(c.blur_sigma, widest, rel_tol=1e-6) else ""
    return f"blur σ {c.blur_sigma:.2f} px{at_widest}, {photons}{read}"


__all__ = ["AT_WIDEST_NOTE", "DEGRADATION_KEYS", "DEGRADATION_MODES", "DegradationRequest", "describe_condition"]
