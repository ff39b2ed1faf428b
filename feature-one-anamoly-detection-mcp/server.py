"""Entry point: ``cd feature-one-anamoly-detection-mcp && uv run server.py`` serves the tools over stdio."""

from bms_anomaly.server import main

if __name__ == "__main__":
    main()
