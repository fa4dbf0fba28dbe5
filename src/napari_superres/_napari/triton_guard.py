"""Keep torch's optional triton import from crashing a process that already shows a napari canvas.

napari's OpenGL canvas on Mesa (llvmpipe under Xvfb, radeonsi...) loads the system
``libLLVM`` into the process; triton's ``libtriton`` then binds to those LLVM symbols and
crashes the interpreter (SIGSEGV) when imported, which happens on the first
``import torchvision`` (torchvision.ops -> torch._dynamo -> triton).  Every widget calls
:func:`guard_triton_import` (through :func:`~napari_superres._napari.engine_access.get_engine`)
before torch code runs.
"""

from __future__ import annotations


def guard_triton_import() -> bool:
    """Block ``import triton`` when a system LLVM is already loaded; returns whether it blocked it.

    napari's OpenGL canvas on Mesa (llvmpipe under Xvfb, radeonsi...) loads the system
    ``libLLVM`` into the process; triton's ``libtriton`` then binds to those LLVM symbols
    and crashes the interpreter (SIGSEGV) when imported, which happens on the first
    ``import torchvision`` (torchvision.ops -> torch._dynamo -> triton).  Marking triton as
    absent makes torch run without it (no ``torch.compile`` Triton kernels, which could not
    load in this process anyway).  Linux only; a no-op when triton is already imported.
    """
    import sys

    if "triton" in sys.modules:
        return False
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            llvm_loaded = "libLLVM" in f.read()
    except OSError:
        return False
    if llvm_loaded:
        sys.modules["triton"] = None  # type: ignore[assignment]  # import triton -> ImportError
    return llvm_loaded
