"""Entry point: ``cd data-generator-mcp && uv run server.py`` serves the tools over stdio."""

from bms_datagen.server import main

if __name__ == "__main__":
    main()
