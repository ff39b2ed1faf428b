"""The Ollama agent: every MCP tool of the five servers offered to a local model."""
