"""Physical pixel sizes: read from TIFF tags, ImageJ and OME metadata; scaled for an upscaled image."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from typing import Any

#: length units -> micrometres (TIFF resolution tags only know inch and centimetre)
UM_PER_UNIT = {
    "µm": 1.0, "um": 1.0, "micron": 1.0, "micrometer": 1.0, "micrometre": 1.0, "\\u00B5m": 1.0,
    "nm": 1e-3, "nanometer": 1e-3, "mm": 1e3, "millimeter": 1e3, "cm": 1e4, "centimeter": 1e4,
    "m": 1e6, "meter": 1e6, "inch": 25400.0, "in": 25400.0,
}  # fmt: skip


#: NGFF unit names -> the symbols our PixelSize and OME-TIFF use.
UNIT_SYMBOLS = {
    "micrometer": "µm", "nanometer": "nm", "millimeter": "mm", "centimeter": "cm", "meter": "m",
    "picometer": "pm", "angstrom": "Å", "inch": "in",
}  # fmt: skip


def unit_symbol(unit: str | None) -> str | None:
    """Our symbol for an NGFF unit name (``"micrometer"`` -> ``"µm"``); other strings unchanged."""
    return UNIT_SYMBOLS.get(unit, unit) if unit else unit


@dataclass(frozen=True)
class PixelSize:
    """Physical pixel size; ``x``/``y``/``z`` in ``unit`` (``None``: unknown)."""

    x: float | None = None
    y: float | None = None
    z: float | None = None
    unit: str | None = None

    def upscaled(self, scale: int) -> PixelSize:
        """Pixel size after upscaling Y and X by ``scale`` (Z unchanged)."""
        return replace(
            self,
            x=None if self.x is None else self.x / scale,
            y=None if self.y is None else self.y / scale,
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if v is not None}


def pixel_size_from_tiff(tif: Any) -> PixelSize:
    """Pixel size of an open ``tifffile.TiffFile``: OME ``PhysicalSize*``, else ImageJ/resolution tags."""
    if tif.is_ome and tif.ome_metadata:
        try:
            root = ET.fromstring(tif.ome_metadata)
        except ET.ParseError:
            root = None
        pixels = next((el for el in root.iter() if el.tag.endswith("Pixels")), None) if root is not None else None
        if pixels is not None:

            def num(name: str) -> float | None:
                v = pixels.get(name)
                try:
                    return float(v) if v not in (None, "") else None
                except ValueError:
                    return None

            return PixelSize(num("PhysicalSizeX"), num("PhysicalSizeY"), num("PhysicalSizeZ"),
                             pixels.get("PhysicalSizeXUnit", "µm"))  # fmt: skip
    page = tif.series[0].keyframe
    try:
        xres, yres = page.resolution
    except (AttributeError, TypeError, ValueError):
        xres = yres = 0.0
    unit_code = int(getattr(page, "resolutionunit", 1))
    z = None
    unit = None
    if tif.is_imagej and tif.imagej_metadata:
        unit = tif.imagej_metadata.get("unit")
        z = tif.imagej_metadata.get("spacing")
        if unit == "\\u00B5m":
            unit = "µm"
    if unit is None:
        if unit_code == 3:  # centimetre: report micrometres
            return PixelSize(1e4 / xres if xres else None, 1e4 / yres if yres else None, z, "µm")
        if unit_code == 2:  # inch
            return PixelSize(25400.0 / xres if xres else None, 25400.0 / yres if yres else None, z, "µm")
        if xres in (0, 1) and yres in (0, 1):
            return PixelSize(z=z)
    return PixelSize(1.0 / xres if xres else None, 1.0 / yres if yres else None, z, unit)


def pixel_size_from_attrs(attrs: dict[str, Any]) -> PixelSize | None:
    """Our zarr attribute ``pixel_size`` (``{"x", "y", "z", "unit"}``), or ``None`` when absent."""
    raw = attrs.get("pixel_size")
    if not isinstance(raw, dict):
        return None
    return PixelSize(**{k: raw.get(k) for k in ("x", "y", "z", "unit")})


__all__ = ["UM_PER_UNIT", "UNIT_SYMBOLS", "PixelSize", "pixel_size_from_attrs", "pixel_size_from_tiff", "unit_symbol"]
