"""``agent-driver`` with subcommands: ``pipeline``, ``ask``, ``config``."""

from __future__ import annotations

import sys

COMMANDS = {
    "pipeline": ("bms_agent.cli_pipeline", "run the full pipeline over MCP (bms-pipeline)"),
    "ask": ("bms_agent.cli_agent", "ask the Ollama agent a question (bms-agent)"),
    "config": ("bms_agent.mcp_config", "print MCP client configuration JSON (bms-mcp-config)"),
}


def main(argv: list[str] | None = None) -> int:
    import importlib

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        lines = ["usage: agent-driver COMMAND [options]", ""]
        lines += [f"  {name:<9} {text}" for name, (_, text) in COMMANDS.items()]
        lines += ["", "'agent-driver COMMAND --help' for a command's options."]
        stream = sys.stderr if argv and argv[0] not in ("-h", "--help") else sys.stdout
        stream.write("\n".join(lines) + "\n")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return int(module.main(argv[1:]))


if __name__ == "__main__":
    sys.exit(main())
