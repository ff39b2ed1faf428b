"""Entry point: ``uv run live-inference/server.py --host 127.0.0.1 --port 8000``."""

from bms_live.server import main

if __name__ == "__main__":
    main()
