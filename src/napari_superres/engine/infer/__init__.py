"""Inference: tiling, the upscale pipeline (normalise, tiles, network, output dtype) and lazy (dask) upscaling."""
