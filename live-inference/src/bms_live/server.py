"""Command line: ``uv run live-inference/server.py --host 127.0.0.1 --port 8000`` (or ``bms-live``)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bms-live",
        description="BMS-Flux live inference: an HTTP service over the latest registered models "
        "(OpenAPI docs at /docs).",
    )
    parser.add_argument("--host", default=None, help="bind address (default 127.0.0.1, loopback only)")
    parser.add_argument("--port", type=int, default=None, help="TCP port (default 8000)")
    parser.add_argument("--workspace", default=None, help="BMS workspace holding models/ (default: BMS_WORKSPACE)")
    parser.add_argument(
        "--poll-seconds",
        type=float,
        default=None,
        help="how often to check for new model versions (default 3; 0 = only on /v1/models/reload)",
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.add_argument("--access-log", action="store_true", help="log every request (off by default: it costs time)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.workspace:
        os.environ["BMS_WORKSPACE"] = str(Path(args.workspace).expanduser().resolve())
    from bms_schema.runtime import limit_threads

    limit_threads()
    logging.basicConfig(
        level=args.log_level.upper(), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    import uvicorn

    from .app import create_app
    from .settings import Settings

    settings = Settings.from_env(host=args.host, port=args.port, poll_seconds=args.poll_seconds)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=args.log_level,
        access_log=args.access_log,
        ws_per_message_deflate=False,  # WS /v1/stream: no per-client zlib on the ingest machine
        timeout_graceful_shutdown=5,  # a stuck stream client must not hold the shutdown
    )


if __name__ == "__main__":
    main()
