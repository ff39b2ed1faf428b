"""What the MCP layer offers besides tools: pictures, resources and prompts.

- Plots a tool wrote come back as MCP content a host can show: a small PNG ``image`` block
  (downscaled, a few hundred kB at most) and a ``resource_link`` to the full file, which the
  server serves through ``resources/read`` under ``bms://runs/<run_id>/<step>/<file>``.
- Resources: the data dictionary (``bms://data-dictionary``, from :mod:`bms_schema.columns`),
  the latest pipeline report (``bms://reports/latest``), and each model's card
  (``bms://models/<name>/card``: its ``metadata.json`` and ``card.md`` when present).
- Prompts for the common jobs: review the fleet's health, investigate one cell, explain an alarm.

Everything here is plain functions over the workspace; :mod:`bms_schema.mcp_server` wires
them into the MCP handlers. Nothing heavy is imported at module level.
"""

from __future__ import annotations

import base64
import io
import json
import mimetypes
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Longest side of the PNG shown inline; the full file is behind the resource link.
THUMBNAIL_PX = 800
#: Inline images at most this large (base64 grows by a third).
MAX_INLINE_BYTES = 400_000
#: At most this many plots of one result are shown inline.
MAX_INLINE_IMAGES = 3

RUNS_PREFIX = "bms://runs/"
DATA_DICTIONARY_URI = "bms://data-dictionary"
LATEST_REPORT_URI = "bms://reports/latest"


class ResourceNotFound(LookupError):
    """``resources/read`` of a URI this server does not have (the message says what exists)."""


# -- plots as content ------------------------------------------------------------------
def run_file_uri(path: str | Path) -> str | None:
    """``bms://runs/<relative path>`` of a file inside the workspace's runs folder, else None."""
    from .paths import runs_dir

    try:
        relative = Path(path).resolve().relative_to(runs_dir())
    except (OSError, ValueError):
        return None
    return RUNS_PREFIX + relative.as_posix()


def thumbnail_png(path: Path, max_px: int = THUMBNAIL_PX) -> bytes | None:
    """A downscaled PNG of ``path`` (None when it cannot be read or stays too large)."""
    try:
        from PIL import Image
    except ImportError:  # no Pillow in this server: inline the file itself when small
        data = path.read_bytes()
        return data if len(data) <= MAX_INLINE_BYTES else None
    try:
        with Image.open(path) as image:
            image.load()
            picture = image.convert("RGBA") if image.mode not in ("RGB", "RGBA", "L", "P") else image.copy()
        picture.thumbnail((max_px, max_px))
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG", optimize=True)
    except (OSError, ValueError):
        return None
    data = buffer.getvalue()
    return data if len(data) <= MAX_INLINE_BYTES else None


def plot_content(artifacts: list[dict[str, Any]]) -> list[Any]:
    """Image blocks and resource links for the PNG/HTML plots among a result's artifacts."""
    import mcp_types as types

    blocks: list[Any] = []
    shown = 0
    for artifact in artifacts:
        path = Path(str(artifact.get("path", "")))
        kind = artifact.get("kind")
        suffix = path.suffix.lower()
        if kind not in ("plot", "html") or suffix not in (".png", ".html", ".svg") or not path.is_file():
            continue
        uri = run_file_uri(path)
        description = str(artifact.get("description") or path.name)
        if suffix == ".png" and shown < MAX_INLINE_IMAGES:
            small = thumbnail_png(path)
            if small is not None:
                blocks.append(types.ImageContent(data=base64.b64encode(small).decode("ascii"), mime_type="image/png"))
                shown += 1
        if uri is not None:
            blocks.append(
                types.ResourceLink(
                    uri=uri,
                    name=path.name,
                    title=description,
                    description=f"{description} (full file: {path})",
                    mime_type=_mime(path),
                    size=path.stat().st_size,
                )
            )
    return blocks


def _mime(path: Path) -> str:
    return mimetypes.guess_type(path.name)[0] or "application/octet-stream"


# -- resources -------------------------------------------------------------------------
@dataclass(frozen=True)
class ResourceInfo:
    uri: str
    name: str
    title: str
    description: str
    mime_type: str


def data_dictionary_markdown() -> str:
    """The canonical table's columns, units, aliases, sentinels and (when available) features."""
    from . import columns as c

    lines = [
        "# BMS-Flux data dictionary",
        "",
        (c.__doc__ or "").strip(),
        "",
        "## Accepted input names",
        "",
        "| canonical column | unit | accepted names (first match wins) |",
        "|---|---|---|",
    ]
    for name, aliases in c.ALIASES.items():
        lines.append(f"| `{name}` | {c.UNITS.get(name, '') or '-'} | {', '.join(f'`{a}`' for a in aliases)} |")
    lines += ["", "## Register sentinels (0xFFFF: no reading)", ""]
    lines += [f"- `{name}` = {value:g} becomes missing, flagged `sentinel`" for name, value in c.SENTINELS.items()]
    lines += [
        "",
        f"Label columns passed through untouched: {', '.join(f'`{n}`' for n in c.LABEL_COLUMNS)}.",
        f"Schema version {c.SCHEMA_VERSION}.",
    ]
    try:
        from .features import FEATURE_COLUMNS  # type: ignore[attr-defined]
    except ImportError:
        FEATURE_COLUMNS = ()
    if FEATURE_COLUMNS:
        lines += ["", "## Engineered features", "", ", ".join(f"`{f}`" for f in FEATURE_COLUMNS)]
    return "\n".join(lines) + "\n"


def latest_report() -> Path | None:
    """The newest ``report.md`` of any run in the workspace (run ids sort by time)."""
    from .paths import runs_dir

    reports = sorted(runs_dir().glob("*/report.md"))
    return reports[-1] if reports else None


def list_resources(model_names: list[str]) -> list[ResourceInfo]:
    """The resources this server offers now (the dictionary always; reports and cards when they exist)."""
    from .registry import ModelRegistry

    out = [
        ResourceInfo(
            DATA_DICTIONARY_URI,
            "data-dictionary",
            "BMS-Flux data dictionary",
            "Canonical readings table: columns, units, dtypes, accepted input names, sentinels",
            "text/markdown",
        )
    ]
    report = latest_report()
    if report is not None:
        out.append(
            ResourceInfo(
                LATEST_REPORT_URI,
                "latest-report",
                "Latest pipeline report",
                f"report.md of run {report.parent.name}",
                "text/markdown",
            )
        )
    registry = ModelRegistry()
    for name in sorted(set(model_names) | set(registry.names())):
        version = registry.latest_version(name)
        if version is None:
            continue
        out.append(
            ResourceInfo(
                f"bms://models/{name}/card",
                f"{name}-card",
                f"Model card: {name} {version}",
                f"metrics, features, training data and versions of {name} {version}",
                "text/markdown",
            )
        )
    return out


def read_resource(uri: str) -> tuple[str | bytes, str]:
    """The contents and MIME type of ``uri``; :class:`ResourceNotFound` with what exists otherwise."""
    if uri == DATA_DICTIONARY_URI:
        return data_dictionary_markdown(), "text/markdown"
    if uri == LATEST_REPORT_URI:
        report = latest_report()
        if report is None:
            raise ResourceNotFound("no pipeline report yet: run the pipeline (bms-pipeline) first")
        return report.read_text(encoding="utf-8"), "text/markdown"
    if uri.startswith("bms://models/") and uri.endswith("/card"):
        return model_card(uri[len("bms://models/") : -len("/card")]), "text/markdown"
    if uri.startswith(RUNS_PREFIX):
        path = _run_file(uri[len(RUNS_PREFIX) :])
        mime = _mime(path)
        if mime.startswith("text/") or mime in ("application/json",):
            return path.read_text(encoding="utf-8", errors="replace"), mime
        return path.read_bytes(), mime
    raise ResourceNotFound(
        f"unknown resource '{uri}': this server offers {DATA_DICTIONARY_URI}, "
        f"{LATEST_REPORT_URI}, bms://models/<name>/card and bms://runs/<run_id>/<file>"
    )


def _run_file(relative: str) -> Path:
    from .paths import runs_dir

    root = runs_dir()
    path = (root / relative).resolve()
    if not path.is_relative_to(root) or ".." in Path(relative).parts:
        raise ResourceNotFound(f"'{relative}' is not inside the workspace's runs folder")
    if not path.is_file():
        raise ResourceNotFound(f"no file '{relative}' in the workspace's runs folder {root}")
    return path


def model_card(name: str, version: str = "latest") -> str:
    """A readable card of one registered model: headline facts, then card.md, then the metadata."""
    from .errors import BMSError
    from .registry import ModelRegistry

    try:
        model = ModelRegistry().load(name, version, verify=False)
    except BMSError as exc:
        raise ResourceNotFound(str(exc)) from exc
    meta = dict(model.metadata)
    meta.pop("files", None)
    lines = [f"# Model card: {name} {model.version}", ""]
    for key in ("created", "schema_version", "training_data_fingerprint", "features"):
        if key in meta:
            value = meta[key]
            shown = ", ".join(map(str, value)) if isinstance(value, list) else value
            lines.append(f"- **{key.replace('_', ' ')}**: {shown}")
    card = model.dir / "card.md"
    if card.is_file():
        lines += ["", card.read_text(encoding="utf-8").strip()]
    lines += ["", "## Metadata", "", "```json", json.dumps(meta, indent=1, default=str)[:20_000], "```"]
    return "\n".join(lines) + "\n"


# -- prompts ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PromptInfo:
    name: str
    title: str
    description: str
    arguments: tuple[tuple[str, str, bool], ...]  # (name, description, required)
    template: str

    def render(self, arguments: dict[str, str] | None) -> str:
        given = {k: v for k, v in (arguments or {}).items() if v}
        missing = [n for n, _, required in self.arguments if required and n not in given]
        if missing:
            raise ValueError(f"prompt '{self.name}' needs the argument(s) {', '.join(missing)}")
        values = {n: given.get(n, "unknown") for n, _, _ in self.arguments}
        values["data"] = (
            f"the readings in {given['data_path']}"
            if given.get("data_path")
            else "the fleet's readings (simulate the default fleet with datagen simulate_bms_fleet if you have no data)"
        )
        return self.template.format(**values).strip()


_DATA_ARG = ("data_path", "CSV or Parquet readings in the workspace (default: simulate the default fleet)", False)

PROMPTS: tuple[PromptInfo, ...] = (
    PromptInfo(
        "review-fleet-health",
        "Review my fleet's health",
        "Health review of every cell: dead cells, cells at risk with remaining life and why, abnormal "
        "behaviour, data quality, what to do.",
        (_DATA_ARG,),
        """
Review the health of my battery fleet from {data}.
1. Preprocess the readings (preprocess_battery_data_tool) and note the data-quality figures.
2. Detect anomalies (detect_anomalies) on the preprocessed table.
3. Predict cell failure (predict_cell_failure), giving it the anomaly table.
Answer first, in this order: which cells are dead; which living cells are at risk, each with its risk,
remaining life when known and the reason in full; living cells with abnormal behaviour; data quality in
one line per problem; what to do next (replace, inspect, re-test). Name cells by their CellID.
Then give the evidence (tool messages and file paths) briefly.
""",
    ),
    PromptInfo(
        "investigate-cell",
        "Investigate one cell",
        "Everything about one cell: its readings, anomalies, failure risk and forecast.",
        (("cell_id", "the cell's CellID, e.g. 'D-7' (device D, cell 7)", True), _DATA_ARG),
        """
Investigate battery cell {cell_id} in {data}.
Preprocess the readings if they are raw, detect anomalies, predict its failure risk
(predict_cell_failure) and forecast its readings (predict_cell_timeseries for cell {cell_id}).
Say whether {cell_id} is dead, at risk (risk, remaining life, reason) or healthy; describe its
abnormal readings (when, which measurement, how far from its peers); and what to do about it.
Quote the numbers the tools returned; say "unknown" where a tool could not tell.
""",
    ),
    PromptInfo(
        "explain-alarm",
        "Why did this alarm fire?",
        "Explain an anomaly or failure alarm on one cell: which readings and rules triggered it.",
        (
            ("cell_id", "the cell's CellID, e.g. 'D-7'", True),
            ("time", "when the alarm fired (ISO 8601, UTC), if known", False),
            _DATA_ARG,
        ),
        """
An alarm fired for battery cell {cell_id} (time: {time}) on {data}.
Find the readings behind it: run detect_anomalies and look at the rows of {cell_id} near that time
(AnomalyKind, AnomalyReason, the detector scores), and predict_cell_failure for its risk reasons.
Explain in plain words which measurement was abnormal, by how much compared with its own history and
its string's peers, whether it looks like a sensor fault (0xFFFF dropout, impossible value) or a real
battery problem, and what the operator should check. If the data cannot tell, say so.
""",
    ),
)


def get_prompt(name: str) -> PromptInfo:
    for prompt in PROMPTS:
        if prompt.name == name:
            return prompt
    raise ResourceNotFound(f"unknown prompt '{name}': this server has {', '.join(p.name for p in PROMPTS)}")
