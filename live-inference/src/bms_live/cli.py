"""``bms``: the operator's command line.

    bms setup [--generate-data]          workspace, database migrations, first models
    bms start [--demo] [--host H --port P]  the live service (with --demo: a replay of the fleet)
    bms analyze --device-id D --cell-number N   one cell's story from the store
    bms status                           service, database, models, last data
    bms cleanup --days N                 delete stored data older than N days
    bms replay [--url U --speed S]       feed a simulated fleet into /v1/ingest

Answers go to stdout (JSON with ``--json``, else readable text); logs go to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("bms")


def _workspace(args: argparse.Namespace) -> Path:
    if getattr(args, "workspace", None):
        os.environ["BMS_WORKSPACE"] = str(Path(args.workspace).expanduser().resolve())
    from bms_schema.paths import workspace

    return workspace()


def _out(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    sys.stdout.write((json.dumps(data, indent=2, default=str) if args.json else text) + "\n")


def _store(args: argparse.Namespace) -> Any:
    from .store import Store

    return Store(url=args.database_url, workspace=_workspace(args))


# -- setup ------------------------------------------------------------------------------------
def cmd_setup(args: argparse.Namespace) -> int:
    from bms_schema.registry import ModelRegistry

    from .bootstrap import first_fleet, train_first_models

    ws = _workspace(args)
    store = _store(args)
    described = store.describe()
    store.close()
    registry = ModelRegistry(ws / "models")
    result: dict[str, Any] = {"workspace": str(ws), "database": described, "models": {}}
    raw = None
    if args.generate_data:
        from bms_schema.reader import write_table

        raw = first_fleet()
        path = write_table(raw, ws / "data" / "simulated_fleet.csv")
        result["data"] = {"path": str(path), "rows": len(raw)}
    have = {name: registry.latest_version(name) for name in ("anomaly_hybrid", "failure_classifier", "forecaster")}
    wanted = tuple(
        key
        for key, name in (("anomaly", "anomaly_hybrid"), ("failure", "failure_classifier"), ("forecast", "forecaster"))
        if args.retrain or have[name] is None
    )
    if wanted and not args.no_models:
        result["models"] = train_first_models(registry, raw, wanted, progress=lambda m: log.info("%s", m))
    result["models_present"] = {name: registry.latest_version(name) for name in have}
    lines = [f"workspace: {ws}", f"database: {described['url']} (schema {described['revision']})"]
    if "data" in result:
        lines.append(f"simulated fleet: {result['data']['rows']} rows -> {result['data']['path']}")
    for name, version in result["models_present"].items():
        trained = " (trained now)" if name in result["models"] else ""
        lines.append(f"model {name}: {version or 'none'}{trained}")
    lines.append("next: bms start --demo")
    _out(args, result, "\n".join(lines))
    return 0


# -- start ------------------------------------------------------------------------------------
def cmd_start(args: argparse.Namespace) -> int:
    _workspace(args)
    from bms_schema.runtime import limit_threads

    limit_threads()
    import uvicorn

    from .app import create_app
    from .settings import Settings

    if args.database_url:
        os.environ["BMS_DATABASE_URL"] = args.database_url
    settings = Settings.from_env(host=args.host, port=args.port)
    app = create_app(settings)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level=args.log_level,
            access_log=False,
            # WS /v1/stream: no per-client zlib (it cost ~10 % of ingest throughput with 10 clients)
            ws_per_message_deflate=False,
            # a stream client that stopped reading keeps its socket from closing: do not wait for it forever
            timeout_graceful_shutdown=5,
        )
    )
    if args.demo:
        thread = threading.Thread(target=_demo, args=(server, settings, args), name="bms-demo-replay", daemon=True)
        thread.start()
    server.run()
    return 0


def _demo(server: Any, settings: Any, args: argparse.Namespace) -> None:
    from .replay import http_poster, replay, simulated_fleet

    while not server.started:
        if server.should_exit:
            return
        time.sleep(0.1)
    url = f"http://{settings.host}:{settings.port}"
    raw = simulated_fleet(devices=args.demo_devices, days=args.demo_days, interval_minutes=15)
    log.info(
        "demo: replaying %d readings of %d strings into %s/v1/ingest at %gx",
        len(raw),
        args.demo_devices,
        url,
        args.speed,
    )
    stats = replay(http_poster(url, settings.api_key), raw, speed=args.speed)
    log.info("demo replay finished: %s", json.dumps(stats.summary()))


# -- analyze ----------------------------------------------------------------------------------
def _offline_service(args: argparse.Namespace) -> Any:
    from .service import LiveService
    from .settings import Settings

    ws = _workspace(args)
    if args.database_url:
        os.environ["BMS_DATABASE_URL"] = args.database_url
    service = LiveService(Settings.from_env(workspace=ws, poll_seconds=0))
    service.hub.refresh()
    return service


def cmd_analyze(args: argparse.Namespace) -> int:
    from .stored import analyze

    service = _offline_service(args)
    try:
        story = analyze(service, args.device_id, args.cell_number, steps=args.steps)
    finally:
        service.stop()
    _out(args, story, _story_text(story))
    return 0


def _story_text(story: dict[str, Any]) -> str:
    lines = [
        f"cell {story['cell_id']}: last reading {story['last_reading']}, "
        f"{story['readings_last_24h']} readings in the 24 h before it"
    ]
    latest = story.get("latest") or {}
    if latest:
        lines.append("latest: " + ", ".join(f"{k}={'n/a' if v is None else round(v, 4)}" for k, v in latest.items()))
    lines.append(
        f"operating state: {story.get('state') or 'unknown'}"
        + (f" ({story['state_note']})" if story.get("state_note") else "")
    )
    anomalies = story.get("anomalies") or []
    lines.append(f"anomalies stored: {len(anomalies)} (newest first)")
    for a in anomalies[:10]:
        lines.append(f"  {a['timestamp']}  {a['label']}  score={a['score']}  {a['reason'] or ''}".rstrip())
    forecast = story.get("forecast") or {}
    if "unknown" in forecast:
        lines.append(f"forecast: unknown ({forecast['unknown']})")
    else:
        rows = forecast.get("forecast", [])
        for target in dict.fromkeys(r["Target"] for r in rows):
            mine = [r for r in rows if r["Target"] == target]
            end = mine[-1]
            lines.append(
                f"forecast {target}: {mine[0]['Forecast']:.4g} next, {end['Forecast']:.4g} at step "
                f"{end['Step']} ({end['Timestamp']}), interval {end['Lower']:.4g} .. {end['Upper']:.4g}"
            )
    risk = story.get("risk") or {}
    if "unknown" in risk:
        lines.append(f"failure risk: unknown ({risk['unknown']})")
    else:
        for r in risk.get("results", []):
            p = r["FailureProbability"]
            lines.append(
                f"failure risk within {risk.get('horizon_days')} days: "
                f"{'n/a' if p is None else f'{p:.3f}'} ({r['RiskBand']}"
                f"{', ALARM' if r['alarm'] else ''}); " + "; ".join(r["reasons"])
            )
    return "\n".join(lines)


# -- status -----------------------------------------------------------------------------------
def cmd_status(args: argparse.Namespace) -> int:
    from bms_schema.registry import ModelRegistry

    ws = _workspace(args)
    out: dict[str, Any] = {"workspace": str(ws)}
    try:
        store = _store(args)
        out["database"] = store.status()
        store.close()
    except Exception as exc:  # report, do not crash: status is what an operator runs when things are wrong
        out["database"] = {"error": f"{type(exc).__name__}: {exc}"}
    registry = ModelRegistry(ws / "models")
    out["models"] = {
        name: registry.latest_version(name) for name in ("anomaly_hybrid", "failure_classifier", "forecaster")
    }
    url = args.url or f"http://{os.environ.get('BMS_LIVE_HOST', '127.0.0.1')}:{os.environ.get('BMS_LIVE_PORT', '8000')}"
    try:
        import httpx

        health = httpx.get(url.rstrip("/") + "/health", timeout=2.0)
        out["service"] = {"url": url, "status": health.status_code, **health.json()}
    except Exception as exc:
        out["service"] = {"url": url, "status": "not running", "error": f"{type(exc).__name__}: {exc}"}
    db = out["database"]
    lines = [f"workspace: {ws}"]
    if "error" in db:
        lines.append(f"database: ERROR {db['error']}")
    else:
        rows = db["rows"]
        lines.append(f"database: {db['url']} (schema {db['revision']}, head {db['head']})")
        lines.append(
            f"  {rows['readings']} readings of {rows['cells']} cells, {rows['predictions']} predictions, "
            f"{rows['alerts']} alerts, {rows['feedback']} feedback"
        )
        lines.append(f"  last reading {db['last_reading']}, last ingest {db['last_ingest']}")
    lines.append("models: " + ", ".join(f"{k} {v or 'none'}" for k, v in out["models"].items()))
    service = out["service"]
    lines.append(f"service {url}: " + ("up" if service.get("status") == 200 else str(service.get("status"))))
    _out(args, out, "\n".join(lines))
    return 0


# -- cleanup ----------------------------------------------------------------------------------
def cmd_cleanup(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        now = None
        if args.from_latest:
            last = store.status()["last_reading"]
            if last is None:
                _out(args, {"deleted": {}}, "nothing stored")
                return 0
            import pandas as pd

            now = int(pd.Timestamp(last).value // 1000)
        result = store.cleanup(args.days, now=now)
    finally:
        store.close()
    deleted = result["deleted"]
    _out(
        args,
        result,
        f"deleted data from before {result['before']}: " + ", ".join(f"{v} {k}" for k, v in deleted.items()),
    )
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from .replay import run

    return run(args)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="bms", description="BMS-Flux: battery monitoring with ML, from the command line")
    top.add_argument("--version", action="version", version="bms 0.1.0")
    sub = top.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--workspace", default=None, help="workspace folder (default: BMS_WORKSPACE)")
        p.add_argument(
            "--database-url", default=None, help="database (default: BMS_DATABASE_URL, else SQLite in the workspace)"
        )
        p.add_argument("--json", action="store_true", help="print JSON")
        return p

    p = common(sub.add_parser("setup", help="workspace, database, first models"))
    p.add_argument("--generate-data", action="store_true", help="also write the simulated fleet to data/")
    p.add_argument("--retrain", action="store_true", help="train new model versions even if some exist")
    p.add_argument("--no-models", action="store_true", help="do not train models")
    p.set_defaults(func=cmd_setup)

    p = common(sub.add_parser("start", help="run the live service"))
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--demo", action="store_true", help="replay a simulated fleet into the service")
    p.add_argument("--speed", type=float, default=3600.0, help="demo: data seconds per wall second")
    p.add_argument("--demo-devices", type=int, default=3)
    p.add_argument("--demo-days", type=float, default=2.0)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(func=cmd_start)

    p = common(sub.add_parser("analyze", help="one cell's state, anomalies, forecast and risk"))
    p.add_argument("--device-id", required=True)
    p.add_argument("--cell-number", type=int, required=True)
    p.add_argument("--steps", type=int, default=25, help="forecast steps")
    p.set_defaults(func=cmd_analyze)

    p = common(sub.add_parser("status", help="service, database, models, last data"))
    p.add_argument("--url", default=None, help="the live service (default http://127.0.0.1:8000)")
    p.set_defaults(func=cmd_status)

    p = common(sub.add_parser("cleanup", help="delete stored data older than N days"))
    p.add_argument("--days", type=float, required=True)
    p.add_argument(
        "--from-latest",
        action="store_true",
        help="count the days back from the newest stored reading instead of from now",
    )
    p.set_defaults(func=cmd_cleanup)

    from .replay import add_arguments

    p = sub.add_parser("replay", help="feed a simulated fleet into /v1/ingest")
    add_arguments(p)
    p.set_defaults(func=cmd_replay)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from bms_schema.errors import BMSError

    try:
        return int(args.func(args) or 0)
    except BMSError as exc:
        sys.stderr.write(f"bms {args.command}: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
