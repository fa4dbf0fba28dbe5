"""How streamed work is computed: :class:`ComputeRunner` runs dask work on local threads or a
``dask.distributed`` client, with a progress bar.  Writers (:mod:`.writers`) receive one; this
module imports none of the formats, so every format can name it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

#: Name prefix of dask's task that stores one chunk (``dask.array.store``).
STORE_TASK_PREFIX = "store-map"


class ComputeRunner:
    """Computes dask work locally (threads) or on a ``dask.distributed`` client, with a tqdm bar."""

    def __init__(self, client: Any = None, *, quiet: bool = False, workers: int = 1) -> None:
        self.client = client
        self.quiet = quiet
        self.workers = workers

    def _bar(self, total: int, unit: str) -> Any:
        from tqdm import tqdm

        return tqdm(total=total, unit=unit, disable=self.quiet, file=sys.stderr, dynamic_ncols=True)

    def compute_blocks(self, written: Any) -> None:
        """Compute a dask array of per-chunk write tasks; the bar counts chunks."""
        blocks = written.to_delayed().ravel().tolist()
        with self._bar(len(blocks), "chunk") as bar:
            if self.client is not None:
                from distributed import as_completed

                futures = self.client.compute(blocks)
                for future in as_completed(futures):
                    future.result()  # re-raise a task's error here
                    bar.update(1)
                return
            import dask
            from dask.callbacks import Callback

            name = written.name

            def posttask(key, result, dsk, state, worker_id):
                if isinstance(key, tuple) and key and key[0] == name:
                    bar.update(1)

            with Callback(posttask=posttask):
                dask.compute(*blocks, scheduler="threads", num_workers=self.workers)

    def compute_stores(self, stores: list[Any]) -> None:
        """Compute dask store work (``da.to_zarr(..., compute=False)``, e.g. one per OME-Zarr level) in one graph.

        Shared inputs (the network's output chunks feeding every pyramid level) are computed
        once.  Locally the bar counts dask's per-chunk ``store-map`` tasks; on a client, stores.
        """
        if self.client is not None:
            from distributed import as_completed

            with self._bar(len(stores), "level") as bar:
                for future in as_completed(self.client.compute(stores)):
                    future.result()
                    bar.update(1)
            return
        import dask
        from dask.callbacks import Callback

        def is_store(key: Any) -> bool:
            name = key[0] if isinstance(key, tuple) else key
            return isinstance(name, str) and name.startswith(STORE_TASK_PREFIX)

        total = len({k for s in stores if dask.is_dask_collection(s) for k in s.__dask_graph__() if is_store(k)})
        with self._bar(total, "chunk") as bar:

            def posttask(key, result, dsk, state, worker_id):
                if is_store(key):
                    bar.update(1)

            with Callback(posttask=posttask):
                dask.compute(*stores, scheduler="threads", num_workers=self.workers)

    def compute_in_order(self, groups: list[tuple[Any, int]]) -> Iterator[Any]:
        """Compute ``(dask array, planes in it)`` one after the other, yielding numpy results in order."""
        import dask

        with self._bar(sum(n for _, n in groups), "plane") as bar:
            for group, n in groups:
                if self.client is not None:
                    block = self.client.compute(group).result()
                else:
                    (block,) = dask.compute(group, scheduler="threads", num_workers=self.workers)
                bar.update(n)
                yield block


__all__ = ["ComputeRunner"]
