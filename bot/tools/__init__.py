"""Tools for the model: MCP servers declared by the operator, offered as function tools.

The edge to MCP servers (the official ``mcp`` SDK over streamable HTTP); no Slack types here.
One module per job, imported directly (this package imports nothing, so reading the settings
does not load the SDK):

- ``bot.tools.config``: ``MCP_SERVERS`` parsed and validated; header values resolved at start.
- ``bot.tools.naming``: the model-facing function name of each tool.
- ``bot.tools.connection``: one server's session, owned by a task of its own.
- ``bot.tools.registry``: ``McpToolRegistry``: list tools (cached), call them (bounded).
- ``bot.tools.results``: ``ToolCallResult`` and how an MCP result becomes text for the model.
- ``bot.tools.rounds``: the pure planner: function calls in, ``function_call_output`` items out.
- ``bot.tools.execute``: ``run_round``: one round's calls, concurrently.

See ``docs/tools.md``.
"""
