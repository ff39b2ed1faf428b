"""Import SDV without torch; attach torch only when a neural synthesizer is fitted.

``import sdv`` imports every synthesizer and metric package: ``sdmetrics.single_table.bayesian_network``
(``try: import torch``), ``ctgan`` and ``deepecho`` (torch at the top). That is about 1.8 CPU-s (3-4 s
under load) of start-up of every process that generates, evaluates or plots synthetic data, for nothing
the default GaussianCopula, the quality/diagnostic reports or the plots use.

:func:`import_sdv` therefore imports SDV, the first time in a process without torch, under a meta-path
finder that makes ``import torch`` fail: SDV and sdmetrics catch that ``ModuleNotFoundError`` (their
CTGAN/TVAE/PAR classes then hold ``None``; the half-imported ``ctgan``/``deepecho`` modules are dropped).
:func:`attach_torch`, called before a CTGAN, TVAE or PAR fit, imports torch, ``ctgan`` and ``deepecho``
normally and puts them where SDV looks them up at call time, so those fits are exactly as before.
"""

from __future__ import annotations

import sys

_HELD_BACK = ("torch", "ctgan", "deepecho")


def import_sdv() -> None:
    """Import ``sdv`` (once per process); without torch unless torch is already imported."""
    if "sdv" in sys.modules:
        return
    if "torch" in sys.modules:
        import sdv  # noqa: F401

        return
    from bms_schema.runtime import torch_blocked

    with torch_blocked("SDV loads (bms_datagen.sdv_import)", lambda m: m.split(".", 1)[0] in _HELD_BACK):
        import sdv  # noqa: F401


def attach_torch() -> None:
    """Give SDV what :func:`import_sdv` held back (torch, ctgan, deepecho); a no-op when nothing was."""
    import_sdv()
    ctgan_module = sys.modules.get("sdv.single_table.ctgan")
    if ctgan_module is not None and getattr(ctgan_module, "CTGAN", None) is None:
        from ctgan import CTGAN, TVAE

        ctgan_module.CTGAN, ctgan_module.TVAE = CTGAN, TVAE  # type: ignore[attr-defined]
        ctgan_module.import_error = None  # type: ignore[attr-defined]
    par_module = sys.modules.get("sdv.sequential.par")
    if par_module is not None and getattr(par_module, "PARModel", None) is None:
        from deepecho import PARModel
        from deepecho.sequences import assemble_sequences

        par_module.PARModel, par_module.assemble_sequences = PARModel, assemble_sequences  # type: ignore[attr-defined]
        par_module.import_error = None  # type: ignore[attr-defined]
    network = sys.modules.get("sdmetrics.single_table.bayesian_network")
    if network is not None and getattr(network, "torch", None) is None:
        import torch

        network.torch = torch  # type: ignore[attr-defined]
