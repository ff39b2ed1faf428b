"""Run the whole BMS-Flux pipeline over MCP: ``uv run agent-driver/run_full_pipeline.py`` (see --help)."""

import sys

from bms_agent.cli_pipeline import main

if __name__ == "__main__":
    sys.exit(main())
