"""napari glue: sample data, the per-viewer engine and the widgets (Qt and napari imports live here)."""
