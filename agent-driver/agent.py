"""Ask the Ollama agent: ``uv run agent-driver/agent.py "which cells will fail?"`` (see --help)."""

import sys

from bms_agent.cli_agent import main

if __name__ == "__main__":
    sys.exit(main())
