"""The Dask engine switch: run a step partition by partition on a Dask cluster.

``BMS_DASK_SCHEDULER=tcp://host:port`` (or a tool's ``scheduler`` argument) selects it; without
either, :func:`scheduler_address` is ``None``, the servers take their single-process path and
nothing of Dask is imported (this module imports ``distributed`` only inside :func:`client_for`).

Unit of work: **one device** (a battery string: all its cells, all its days). Why not device x
day: every step of the data core is per cell or per string, but several are not bounded in time
- interpolation fills a gap from the next valid reading however far ahead, ``ResistanceProxy`` is
carried forward since the last current step, the operating state's current-noise estimate is the
string's whole-history median, the anomaly detector's dead-cell recognition looks back days. A
day partition plus a fixed overlap (``HISTORY_REACH`` readings for the causal anomaly baselines)
would be exact for the rolling features only; by device every step is exact, and a device's
history is small (24 cells x 1 reading/min x 30 days = 1M rows). The ``day=`` level of the
layout lets the simulator write in parallel and a reader prune by date.

Each task reads its device's files itself (workers must see the dataset path: a shared
filesystem or object storage mounted at the same path), writes its result rows as its own
partition of an output dataset, and returns a small summary; the client only merges summaries
(quality counts, scaler moments, per-cell tables). No step gathers the table.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .errors import InputError

log = logging.getLogger("bms.distributed")

SCHEDULER_ENV = "BMS_DASK_SCHEDULER"

T = TypeVar("T")

_CLIENTS: dict[str, Any] = {}


def scheduler_address(explicit: str | None = None) -> str | None:
    """The scheduler to use: the tool argument, else ``$BMS_DASK_SCHEDULER``, else ``None`` (single process)."""
    address = (explicit or os.environ.get(SCHEDULER_ENV) or "").strip()
    if not address:
        return None
    if "://" not in address:
        raise InputError(
            f"Dask scheduler address {address!r} has no protocol: use tcp://host:port "
            f"(in the scheduler argument or {SCHEDULER_ENV})"
        )
    return address


def enabled(explicit: str | None = None) -> bool:
    return scheduler_address(explicit) is not None


def client_for(address: str) -> Any:
    """A ``distributed.Client`` connected to ``address`` (one per address and process, reused)."""
    client = _CLIENTS.get(address)
    if client is not None and client.status == "running":
        return client
    try:
        from distributed import Client
    except ImportError as exc:  # the optional extra is not installed
        raise InputError(
            f"{SCHEDULER_ENV} is set but Dask is not installed: install bms-schema[dask] "
            "(dask[dataframe] and distributed), or unset it to run in one process"
        ) from exc
    try:
        client = Client(address, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise InputError(f"cannot reach the Dask scheduler at {address}: {exc} (is the cluster running?)") from exc
    _CLIENTS[address] = client
    return client


def map_partitions(
    address: str | None,
    func: Callable[..., T],
    items: Sequence[Any],
    *args: Any,
    progress: Callable[[float, str], None] | None = None,
    label: str = "partitions",
    **kwargs: Any,
) -> list[T]:
    """``[func(item, *args, **kwargs) for item in items]`` on the cluster, one task per item, in item order.

    ``args``/``kwargs`` are scattered once (a fitted model or scaler goes to each worker once,
    not once per task). Results must be small (summaries): the rows stay in files.
    ``address=None`` runs the same tasks one after the other in this process (no Dask imported):
    the single-process, partition-at-a-time baseline of the benchmark.
    """
    if not items:
        return []
    if address is None:
        out = []
        for done, item in enumerate(items, start=1):
            out.append(func(item, *args, **kwargs))
            if progress is not None:
                progress(done / len(items), f"{done} of {len(items)} {label}")
        return out
    client = client_for(address)
    shared_args = [client.scatter(a, broadcast=True, hash=False) if _is_big(a) else a for a in args]
    shared_kwargs = {k: client.scatter(v, broadcast=True, hash=False) if _is_big(v) else v for k, v in kwargs.items()}
    futures = [client.submit(func, item, *shared_args, pure=False, **shared_kwargs) for item in items]
    position = {f.key: i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    from distributed import as_completed

    for done, (future, result) in enumerate(
        as_completed(futures, with_results=True, raise_errors=True, loop=client.loop), start=1
    ):
        if isinstance(result, BaseException):
            raise result
        results[position[future.key]] = result
        if progress is not None:
            progress(done / len(futures), f"{done} of {len(futures)} {label}")
    return results


def _is_big(value: Any) -> bool:
    return not isinstance(value, (str, int, float, bool, type(None), tuple, list, dict))


def close_clients() -> None:
    for client in _CLIENTS.values():
        try:
            client.close()
        except Exception:  # noqa: BLE001 - closing a dead connection
            pass
    _CLIENTS.clear()


def require_dataset(path: Any) -> None:
    """Refuse one file on the Dask path: the engine reads a dataset folder partitioned by device."""
    from pathlib import Path

    from .dataset import list_partitions

    path = Path(path)
    if not path.is_dir():
        raise InputError(
            f"{path.name} is one file: the Dask engine ({SCHEDULER_ENV} or the scheduler argument) reads a "
            "dataset folder partitioned by device (write one with the simulator's dataset option or "
            "bms_schema.dataset.write_partitions), or unset it to process the file in one process"
        )
    list_partitions(path)
