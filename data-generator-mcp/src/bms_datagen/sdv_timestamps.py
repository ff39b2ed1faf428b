"""Timestamps with a UTC offset (``2025-01-01T00:15:00+00:00``, ``...Z``): modelled as UTC, written back as they came.

Canonical BMS tables carry tz-aware timestamps, which pandas writes as ``+00:00`` and pyarrow as
``...000000000Z``. SDV 2.0 mixes such values with its own naive datetimes in places, and its
``%z`` output is ``+0000`` - neither what came in nor what the rest of the pipeline writes. So a
timestamp column whose every value carries an offset is, for modelling, replaced by naive UTC text
(``%Y-%m-%dT%H:%M:%S``: SDV only ever sees naive datetimes), and after sampling rendered again in the
learned :class:`TimestampStyle`: same date/time layout and separator, same number of fraction digits,
same offset notation (``Z``, ``+00:00`` or ``+0000``) and, when the real values share one offset,
that offset (``+05:30`` stays local time); several offsets are written in UTC.

Everything here is vectorised, and works on the distinct values of a column (readings of one instant
repeat for every cell), mapped back to the rows by their factorized codes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

#: A trailing UTC offset after a digit: ``Z``, ``+00:00``, ``+0000``, ``-05:30``.
OFFSET_PATTERN = r"(?<=\d)(?P<offset>Z|[+-]\d{2}:?\d{2})$"
_SPLIT = r"^(?P<body>.*?\d)(?P<offset>Z|[+-]\d{2}:?\d{2})$"
_ISO_BODY = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?$"
_FRACTION = r"\.(\d{1,9})$"
_HAS_FRACTION = r"\.\d{1,9}$"
#: Format of the naive UTC text the synthesizers see (``.%f`` appended when the data has fractions).
MODEL_FORMAT = "%Y-%m-%dT%H:%M:%S"
_OFFSET_DIRECTIVES = ("%z", "%Z", "%:z", "Z")


@dataclass
class TimestampStyle:
    """How one column's timestamps are written (JSON-serialisable, stored in the registry's prep.json)."""

    body_format: str  # strftime of the date and time without fraction or offset
    fraction_digits: int  # 0 = no fraction; 3 = milliseconds; 9 = pyarrow nanoseconds
    offset_notation: str  # "Z", "colon" (+00:00) or "plain" (+0000)
    offset_minutes: int  # the offset written back (0 = UTC)
    model_format: str  # format of the naive UTC text used for modelling

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TimestampStyle":
        return cls(**data)

    @property
    def offset_text(self) -> str:
        if self.offset_notation == "Z" and self.offset_minutes == 0:
            return "Z"
        sign = "-" if self.offset_minutes < 0 else "+"
        hours, minutes = divmod(abs(self.offset_minutes), 60)
        return (
            f"{sign}{hours:02d}:{minutes:02d}" if self.offset_notation != "plain" else f"{sign}{hours:02d}{minutes:02d}"
        )


def _text(values: pd.Series) -> pd.Series:
    return values.astype("string")


def _split(values: pd.Series) -> pd.DataFrame:
    """``body`` and ``offset`` text of every value (NA where a value has no trailing offset)."""
    return _text(values).str.extract(_SPLIT)


def _offset_minutes(offsets: pd.Series) -> pd.Series:
    """Offsets as signed minutes (``Z`` = 0); NA stays NA (computed once per distinct offset)."""
    codes, uniques = pd.factorize(offsets, use_na_sentinel=True)
    per_offset = np.array(
        [
            0.0 if text == "Z" else (-1.0 if text[0] == "-" else 1.0) * (int(text[1:3]) * 60 + int(text[-2:]))
            for text in uniques
        ],
        dtype=float,
    )
    minutes = np.full(len(offsets), np.nan)
    minutes[codes >= 0] = per_offset[codes[codes >= 0]]
    return pd.Series(minutes, index=offsets.index)


def _per_distinct(values: pd.Series, convert: Any, missing: Any) -> pd.Series:
    """``convert`` applied to the distinct values only, spread back to the rows (missing -> ``missing``)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    converted = convert(pd.Series(uniques, dtype=object)).to_numpy()
    if len(converted) == 0:
        return pd.Series(np.full(len(values), missing), index=values.index)
    out = converted[np.maximum(codes, 0)]
    out[codes < 0] = missing
    return pd.Series(out, index=values.index)


def _iso_text(naive: pd.Series, separator: str, digits: int) -> pd.Series:
    """ISO text of naive datetimes (``numpy.datetime_as_string``: C speed); NaT -> None."""
    stamps = pd.to_datetime(naive).to_numpy(dtype="datetime64[ns]")
    text = pd.Series(np.datetime_as_string(stamps, unit="ns" if digits else "s"), index=naive.index, dtype=object)
    if digits:
        text = text.str.slice(0, 20 + digits)
    if separator != "T":
        text = text.str.replace("T", separator, n=1, regex=False)
    return text.where(~np.isnat(stamps), None)


def _strip_offset_directive(fmt: str) -> str:
    for directive in _OFFSET_DIRECTIVES:
        if fmt.endswith(directive):
            return fmt[: -len(directive)]
    return fmt


def learn_style(values: pd.Series, datetime_format: str | None) -> TimestampStyle | None:
    """The style of a timestamp column whose every present value ends with an offset; else ``None``.

    Columns without offsets (naive text), with offsets on only some rows, or already parsed to
    datetimes are left to the synthesizer unchanged.
    """
    if pd.api.types.is_datetime64_any_dtype(values) or pd.api.types.is_numeric_dtype(values):
        return None
    present = pd.Series(values.dropna().unique(), dtype=object)
    if present.empty:
        return None
    parts = _split(present)
    if parts["offset"].isna().any():
        return None
    bodies, offsets = parts["body"], parts["offset"]
    fraction = bodies.str.extract(_FRACTION)[0]
    digits = int(fraction.str.len().mode().iloc[0]) if fraction.notna().any() else 0
    if bodies.str.match(_ISO_BODY).all():
        separator = bodies.str.slice(10, 11).mode().iloc[0]
        body_format = f"%Y-%m-%d{separator}%H:%M:%S"
    elif datetime_format and _strip_offset_directive(datetime_format) != datetime_format:
        body_format = _strip_offset_directive(datetime_format)
        body_format = body_format[: -len(".%f")] if body_format.endswith(".%f") else body_format
        if _parse_bodies(bodies, body_format).isna().any():
            return None
    else:
        return None
    notation = np.where(offsets == "Z", "Z", np.where(offsets.str.contains(":", regex=False), "colon", "plain"))
    minutes = _offset_minutes(offsets)
    single = minutes.nunique() == 1
    return TimestampStyle(
        body_format=body_format,
        fraction_digits=digits,
        offset_notation=str(pd.Series(notation).mode().iloc[0]),
        offset_minutes=int(minutes.iloc[0]) if single else 0,
        model_format=MODEL_FORMAT + (".%f" if digits else ""),
    )


def _parse_bodies(bodies: pd.Series, body_format: str) -> pd.Series:
    """Naive wall-clock datetimes of the offset-free text (fractions of any length accepted)."""
    if body_format in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        return pd.to_datetime(bodies, format="ISO8601", errors="coerce")
    has_fraction = bodies.str.contains(_HAS_FRACTION, regex=True, na=False)
    whole = pd.to_datetime(bodies.where(~has_fraction), format=body_format, errors="coerce")
    if not has_fraction.any():
        return whole
    fractional = pd.to_datetime(bodies.where(has_fraction), format=body_format + ".%f", errors="coerce")
    return whole.where(~has_fraction, fractional)


def _to_utc(values: pd.Series, style: TimestampStyle) -> pd.Series:
    parts = _split(values)
    local = _parse_bodies(parts["body"], style.body_format)
    return local - pd.to_timedelta(_offset_minutes(parts["offset"]), unit="min")


def to_utc(values: pd.Series, style: TimestampStyle) -> pd.Series:
    """Naive UTC datetimes of offset text (each value's own offset applied); unparseable -> NaT."""
    return pd.to_datetime(_per_distinct(values, lambda u: _to_utc(u, style), np.datetime64("NaT", "ns")))


def to_model_text(values: pd.Series, style: TimestampStyle) -> pd.Series:
    """Offset text -> naive UTC text in ``style.model_format`` (what the synthesizer is fitted on)."""
    digits = 6 if style.model_format.endswith(".%f") else 0
    return _per_distinct(values, lambda u: _iso_text(_to_utc(u, style), "T", digits), None)


def _render(values: pd.Series, style: TimestampStyle) -> pd.Series:
    utc = pd.to_datetime(_text(values), format=style.model_format, errors="coerce")
    local = utc + pd.Timedelta(minutes=style.offset_minutes)
    if style.body_format in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"):
        text = _iso_text(local, style.body_format[8], style.fraction_digits)
    else:
        text = local.dt.strftime(style.body_format).astype(object)
        if style.fraction_digits:
            nanos = (local.dt.microsecond * 1000 + local.dt.nanosecond).astype("Int64").astype("string")
            text = text + "." + nanos.str.zfill(9).str.slice(0, style.fraction_digits).astype(object)
    return (text + style.offset_text).where(local.notna(), None)


def from_model_text(values: pd.Series, style: TimestampStyle) -> pd.Series:
    """Naive UTC text sampled by the synthesizer -> text in the learned style (missing stays missing)."""
    return _per_distinct(values, lambda u: _render(u, style), None).astype(object)


def wall_time(values: pd.Series) -> pd.Series:
    """Naive local wall-clock datetimes, ignoring any offset (what ``Date``/``Time`` columns show)."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return values.dt.tz_localize(None) if values.dt.tz is not None else values
    body = _text(values).str.replace(OFFSET_PATTERN, "", regex=True)
    return pd.to_datetime(body, errors="coerce")
