"""Tools for the model: MCP servers declared by the operator, offered as function tools.

The edge to MCP servers (the official ``mcp`` SDK over streamable HTTP); no Slack types here.
One module per job, imported directly (this package imports nothing, so reading the settings
does not load the SDK):

- ``bot.tools.config``: ``MCP_SERVERS`` parsed and validated; header values resolved at start.
- ``bot.tools.naming``: the model-facing function name of each tool.
- ``bot.tools.connection``: one server's session, owned by a task of its own.
- ``bot.tools.registry``: ``McpToolRegistry``: list tools (cached), call them (bounded).
- ``bot.tools.results``: ``ToolCallResult`` and how an MCP result becomes text for the model.

The tool loop itself (rounds, parallel calls, approval, steps) is in the core
(``bot.conversation.tools``, with its pure planner ``bot.conversation.tool_round``);
``bot.tool_runner.McpToolRunner`` hands it the registry as its ``ToolRunner`` port.

See ``docs/tools.md``.
"""
