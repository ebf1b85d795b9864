"""Slack's AI-app surface (the assistant pane), at the Slack edge.

- ``store``: Bolt's thread context store over our database (every replica sees the context)
- ``titles``: a pane thread's title after its first answer, taken from the question
- ``context``: what the model is told about where the person is, and "summarise this channel"

The listeners are in ``bot.slack.listeners.assistant`` (pane threads started, context changes)
and ``bot.slack.listeners.feedback`` (the feedback buttons every answer ends with).
"""
