"""Real vs synthetic plots of one column: a PNG (matplotlib) and an interactive HTML (plotly).

Exporting plotly figures to PNG needs a browser (kaleido/Chrome) this machine lacks, so the PNG
is drawn with matplotlib. The HTML files load plotly.js from ``plotly.min.js`` at the root of
the run folder, written once per run, instead of embedding 3.5 MB in every file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from bms_schema.atomic import atomic_savefig, atomic_write_text
from bms_schema.errors import InputError

PLOTLY_JS = "plotly.min.js"
MAX_CATEGORIES = 30
BINS = 40


def column_kind(sdtype: str | None, values: pd.Series) -> str:
    if sdtype == "datetime":
        return "datetime"
    if sdtype == "numerical" or (sdtype is None and pd.api.types.is_numeric_dtype(values)):
        return "numerical"
    return "categorical"


def _numeric(values: pd.Series, kind: str) -> np.ndarray:
    if kind == "datetime":
        stamp = pd.to_datetime(values, errors="coerce", format="mixed", utc=True).dt.tz_localize(None)
        return stamp.dropna().to_numpy()
    return pd.to_numeric(values, errors="coerce").dropna().to_numpy(dtype=float)


def _frequencies(real: pd.Series, synthetic: pd.Series) -> pd.DataFrame:
    r = real.astype(str).value_counts(normalize=True)
    s = synthetic.astype(str).value_counts(normalize=True)
    table = pd.DataFrame({"real": r, "synthetic": s}).fillna(0.0)
    return table.sort_values("real", ascending=False).head(MAX_CATEGORIES)


def ensure_plotly_js(run_dir: Path) -> Path:
    """``plotly.min.js`` at the run folder root, written once (atomically) per run."""
    from bms_schema.offline import plotly_js_beside

    return plotly_js_beside(run_dir)


def plot_column(
    real: pd.Series,
    synthetic: pd.Series,
    sdtype: str | None,
    title: str,
    png_path: Path,
    html_path: Path,
    plotly_src: str,
) -> dict[str, Any]:
    """Write the PNG and HTML comparison of one column; return what was plotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import plotly.graph_objects as go

    kind = column_kind(sdtype, real)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    figure = go.Figure()
    summary: dict[str, Any] = {
        "kind": kind,
        "real_count": int(real.notna().sum()),
        "synthetic_count": int(synthetic.notna().sum()),
    }
    if kind in ("numerical", "datetime"):
        r, s = _numeric(real, kind), _numeric(synthetic, kind)
        if len(r) == 0:
            plt.close(fig)
            raise InputError(f"column '{real.name}' has no values to plot in the real data")
        if kind == "datetime":
            r_num, s_num = r.astype("datetime64[s]").astype("int64"), s.astype("datetime64[s]").astype("int64")
        else:
            r_num, s_num = r, s
        both = np.concatenate([r_num, s_num]) if len(s_num) else r_num
        edges = np.histogram_bin_edges(both, bins=BINS).tolist()
        ax.hist(r_num, bins=edges, density=True, alpha=0.55, label="real", color="#1f77b4")
        if len(s_num):
            ax.hist(s_num, bins=edges, density=True, alpha=0.55, label="synthetic", color="#ff7f0e")
        ax.set_ylabel("density")
        figure.add_trace(go.Histogram(x=r, name="real", histnorm="probability density", opacity=0.6, nbinsx=BINS))
        figure.add_trace(go.Histogram(x=s, name="synthetic", histnorm="probability density", opacity=0.6, nbinsx=BINS))
        figure.update_layout(barmode="overlay")
        if kind == "numerical":
            summary.update(
                real_mean=float(np.mean(r)),
                synthetic_mean=float(np.mean(s)) if len(s) else None,
                real_std=float(np.std(r)),
                synthetic_std=float(np.std(s)) if len(s) else None,
            )
    else:
        table = _frequencies(real, synthetic)
        x = np.arange(len(table))
        ax.bar(x - 0.2, table["real"], width=0.4, label="real", color="#1f77b4")
        ax.bar(x + 0.2, table["synthetic"], width=0.4, label="synthetic", color="#ff7f0e")
        ax.set_xticks(x)
        ax.set_xticklabels([str(i)[:18] for i in table.index], rotation=45, ha="right", fontsize=8)
        ax.set_ylabel("share of rows")
        figure.add_trace(go.Bar(x=list(table.index), y=table["real"], name="real"))
        figure.add_trace(go.Bar(x=list(table.index), y=table["synthetic"], name="synthetic"))
        figure.update_layout(barmode="group")
        summary["categories"] = {
            str(k): {"real": float(v["real"]), "synthetic": float(v["synthetic"])} for k, v in table.head(10).iterrows()
        }
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    atomic_savefig(fig, png_path)
    figure.update_layout(title=title, template="plotly_white")
    html = figure.to_html(include_plotlyjs=plotly_src, full_html=True)
    atomic_write_text(html_path, html)
    return summary
