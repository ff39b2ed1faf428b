"""Entry point: ``cd feature-three-failure-prediction-mcp && uv run server.py`` serves the tools over stdio."""

from bms_failure.server import main

if __name__ == "__main__":
    main()
