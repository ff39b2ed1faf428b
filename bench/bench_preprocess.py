"""Full preprocessing of a 1M-row raw packet CSV vs pyarrow read + write of the same file. Prints JSON.

Measured in the same run, each step in its own subprocess (so peak memory is that step's):

* ``pyarrow_read_write_input_s``: pyarrow reads the input CSV and writes it back out as CSV; the goal
  (issue 14) is ``preprocess_s <= 3 x`` this (``ratio``); also reported, pyarrow reading the input
  and writing the (wider) output table (``pyarrow_read_write_s``, ``ratio_to_pyarrow``);
* ``preprocess_s``: ``preprocess_battery_data_tool``'s engine (clean, MICE impute, features, scale,
  CSV out) streaming with ``--chunksize`` rows; ``preprocess_peak_rss_mb`` its peak memory;
* ``seed_iterative_imputer_100k_s``: the seed's approach (scikit-learn IterativeImputer over every
  numeric column) on the first 100k rows, next to our MICE imputation of the same rows.

Usage: uv run python bench/bench_preprocess.py [--rows 1000000] [--chunksize 200000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from packet_data import build_packet_csv  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _measure(code: str) -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line; add the child's peak RSS (MB)."""
    wrapper = textwrap.dedent(code) + textwrap.dedent("""
        import json as _j, resource as _r
        RESULT["peak_rss_mb"] = round(_r.getrusage(_r.RUSAGE_SELF).ru_maxrss / 1024, 1)
        print(_j.dumps(RESULT))
    """)
    done = subprocess.run(
        [sys.executable, "-c", wrapper],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**__import__("os").environ, "BMS_LOG_LEVEL": "WARNING"},
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunksize", type=int, default=200_000)
    parser.add_argument("--seed-rows", type=int, default=100_000, help="0 skips the seed comparison")
    args = parser.parse_args()
    path = build_packet_csv(args.rows, Path(__file__).resolve().parent / "out" / f"packets_{args.rows}.csv")
    work = Path(tempfile.mkdtemp(prefix="bench-preprocess-"))

    ours = _measure(f"""
        import time
        from pathlib import Path
        from bms_preprocess.engine import PreprocessOptions, run_preprocess
        t = time.perf_counter()
        r = run_preprocess(Path({str(path)!r}), Path({str(work / "out.csv")!r}),
                           PreprocessOptions(impute="mice", chunksize={args.chunksize}))
        RESULT = {{"seconds": time.perf_counter() - t, "rows": r.rows, "columns": len(r.columns),
                  "chunks": r.chunks, "imputed": sum(r.imputed_counts.values()), "mice_quality": r.mice_quality,
                  "timings": r.timings, "output_mb": round(Path({str(work / "out.csv")!r}).stat().st_size / 1e6, 1)}}
    """)
    arrow = _measure(f"""
        import time, pyarrow.csv as pacsv
        from pathlib import Path
        from bms_schema.reader import first_lines
        header, first = first_lines(Path({str(path)!r}))
        t = time.perf_counter()
        table = pacsv.read_csv({str(path)!r}, read_options=pacsv.ReadOptions(column_names=header[:len(first)],
                                                                               skip_rows=1))
        read_s = time.perf_counter() - t
        t = time.perf_counter()
        pacsv.write_csv(table, {str(work / "arrow.csv")!r})
        write_input_s = time.perf_counter() - t
        del table
        output = pacsv.read_csv({str(work / "out.csv")!r})
        t = time.perf_counter()
        pacsv.write_csv(output, {str(work / "arrow.csv")!r})
        write_output_s = time.perf_counter() - t
        RESULT = {{"seconds": read_s + write_output_s, "read_s": read_s, "write_output_s": write_output_s,
                  "read_write_input_s": read_s + write_input_s}}
    """)
    seed = (
        {"seconds": None, "numeric_columns": None, "ours_mice_s": None}
        if args.seed_rows <= 0
        else _measure(f"""
        import time, numpy as np, pandas as pd
        from sklearn.experimental import enable_iterative_imputer  # noqa: F401
        from sklearn.impute import IterativeImputer
        frame = pd.read_csv({str(path)!r}, nrows={args.seed_rows})
        numeric = frame.select_dtypes("number")
        numeric = numeric.loc[:, numeric.notna().any()]
        numeric = numeric.mask(numeric.isin([65.535, 65535.0, 59.749]))  # sentinels as gaps
        t = time.perf_counter()
        IterativeImputer(max_iter=10, random_state=0).fit_transform(numeric)
        seed_s = time.perf_counter() - t
        from bms_schema.clean import clean_readings
        from bms_preprocess.mice import MiceImputer
        cleaned, _ = clean_readings(frame)
        t = time.perf_counter()
        MiceImputer(random_state=0).fit_transform(cleaned)
        RESULT = {{"seconds": seed_s, "numeric_columns": numeric.shape[1], "ours_mice_s": time.perf_counter() - t}}
    """)
    )
    ratio = ours["seconds"] / arrow["read_write_input_s"]
    print(
        json.dumps(
            {
                "benchmark": "preprocess_full_chain",
                "rows": ours["rows"],
                "file_mb": round(path.stat().st_size / 1e6, 1),
                "chunksize": args.chunksize,
                "chunks": ours["chunks"],
                "output_columns": ours["columns"],
                "output_mb": ours["output_mb"],
                "values_imputed": ours["imputed"],
                "pyarrow_read_write_s": round(arrow["seconds"], 2),
                "pyarrow_read_s": round(arrow["read_s"], 2),
                "pyarrow_write_output_s": round(arrow["write_output_s"], 2),
                "pyarrow_read_write_input_s": round(arrow["read_write_input_s"], 2),
                "preprocess_s": round(ours["seconds"], 2),
                "preprocess_stages_s": ours["timings"],
                "ratio": round(ratio, 2),
                "goal_ratio": 3.0,
                "goal_ratio_met": ratio <= 3.0,
                "ratio_to_pyarrow": round(ours["seconds"] / arrow["seconds"], 2),
                "preprocess_peak_rss_mb": ours["peak_rss_mb"],
                "goal_peak_rss_mb": 3072,
                "goal_memory_met": ours["peak_rss_mb"] <= 3072,
                "mice_quality": ours["mice_quality"],
                "seed_iterative_imputer_rows": args.seed_rows,
                "seed_iterative_imputer_numeric_columns": seed["numeric_columns"],
                "seed_iterative_imputer_s": None if seed["seconds"] is None else round(seed["seconds"], 2),
                "ours_mice_same_rows_s": None if seed["ours_mice_s"] is None else round(seed["ours_mice_s"], 2),
            },
            indent=1,
        )
    )
    for name in ("arrow.csv", "out.csv"):
        (work / name).unlink(missing_ok=True)
    work.rmdir()


if __name__ == "__main__":
    main()
