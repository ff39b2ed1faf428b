"""Entry point: ``cd load-preprocessdata-mcp && uv run server.py`` serves the tools over stdio."""

from bms_preprocess.server import main

if __name__ == "__main__":
    main()
