"""bms_agent: the BMS-Flux pipeline over MCP, an Ollama agent over every tool, MCP client configuration.

Public API (everything else is internal):

- ``bms_agent.cli_pipeline.run_pipeline(options, workspace, resume=None, specs=None, quiet=False)``
  -> ``PipelineResult`` (``.ok``, ``.exit_code``, ``.failed_stage``, ``.error``, ``.state``, ``.report_md``,
  ``.report_html``); ``bms_agent.state.PipelineOptions`` holds the options.
- ``bms_agent.stages.STAGES`` / ``STAGE_NAMES``: the declared stages (server, tool, arguments).
- ``bms_agent.connections.ServerPool`` / ``ToolCallError``: MCP stdio connections with timeouts.
- ``bms_agent.agent.loop.Agent`` and ``bms_agent.agent.tools.build_catalogue``: the Ollama tool loop.
- ``bms_agent.mcp_config.server_entries`` / ``client_config``: MCP host configuration.
"""
