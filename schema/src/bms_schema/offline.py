"""Offline assets: HTML the tools write loads its JavaScript from a file shipped with a package.

``plotly_js_beside(folder)`` copies the plotly.js bundle of the installed ``plotly`` package
into ``folder`` once (atomically); an HTML page in that folder then uses
``<script src="plotly.min.js">`` and works without network. Nothing is fetched at run time.
"""

from __future__ import annotations

from pathlib import Path

PLOTLY_JS = "plotly.min.js"


def plotly_js_beside(folder: str | Path) -> Path:
    """``<folder>/plotly.min.js`` from the installed plotly package, written once per folder."""
    from .atomic import atomic_write_text

    target = Path(folder) / PLOTLY_JS
    if not target.exists():
        from plotly.offline import get_plotlyjs

        atomic_write_text(target, get_plotlyjs())
    return target
