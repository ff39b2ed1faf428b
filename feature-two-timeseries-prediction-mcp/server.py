"""Entry point: ``cd feature-two-timeseries-prediction-mcp && uv run server.py`` serves the tools over stdio."""

from bms_forecast.server import main

if __name__ == "__main__":
    main()
