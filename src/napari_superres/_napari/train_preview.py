"""The Train widget's ``training preview`` layer (a mixin of :class:`~.train_widget.TrainWidget`).

The model's output on the validation crop is drawn over the region of the high-res layer it
comes from, updated in place after each validation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .train_plan import Plan

#: Name of the layer showing the model's output on the preview crop at validation steps.
PREVIEW_LAYER = "training preview"


class TrainPreview:
    """Where and how the preview layer is drawn; mixed into the Train widget (needs its ``viewer`` and
    ``preview_layer``)."""

    def preview_transform(self, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
        """``(scale, translate)`` (Y, X) of the preview layer: on the high-res layer's grid, at its source region."""
        scale = np.asarray(plan.hr_scale[-2:], float)
        translate = np.asarray(plan.hr_translate[-2:], float)
        if plan.preview_origin is None:
            raise ValueError("the training data did not say where its preview crop lies")
        y, x = plan.preview_origin[-2:]
        return scale, translate + np.asarray((y, x), float) * scale

    def _update_preview(self, image: np.ndarray, plan: Plan) -> None:
        """Show the model's output on the preview crop, in place, over the region it comes from."""
        rgb = image.ndim == 3
        scale, translate = self.preview_transform(plan)
        layer = self.preview_layer
        if layer is not None and layer in self.viewer.layers and layer.rgb == rgb:
            layer.data = image
            if not (np.allclose(layer.scale, scale) and np.allclose(layer.translate, translate)):
                layer.scale, layer.translate = scale, translate  # a new run on another layer
            return
        if layer is not None and layer in self.viewer.layers:
            self.viewer.layers.remove(layer)
        kwargs: dict[str, Any] = {
            "name": PREVIEW_LAYER,
            "scale": tuple(scale),
            "translate": tuple(translate),
            "rgb": rgb,
            "metadata": {"napari_superres": "training preview (model output on a validation crop)"},
        }
        if not rgb:
            kwargs["contrast_limits"] = (0.0, 1.0)
            if plan.colormap is not None:
                kwargs["colormap"] = plan.colormap
        self.preview_layer = self.viewer.add_image(image, **kwargs)


__all__ = ["PREVIEW_LAYER", "TrainPreview"]
