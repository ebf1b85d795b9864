"""A turn's answer as the user watches it: status at once, then text that grows, then the
exact whole answer, split over several messages only when one cannot hold it.

The model is never made to wait for Slack: ``delta`` only adds to the text, and one delivery
task per answer (the pump, ``sink``) shows it, one Slack call at a time, each waiting for its
slot in the workspace's rate budget (``bot.slack.budget``) at the priority of what it carries:

1. the **first visible text** goes as soon as the first delta arrives (``Priority.FIRST``);
2. **intermediate updates** follow at most once per ``flush_interval``, each asking for a slot
   at ``Priority.UPDATE`` and sending the LATEST text when the slot comes, so under load every
   message gets its fair share of what the budget has left, down to none;
3. the **final text** (``Priority.FINAL``) replaces a pending update; a 429 is waited out
   until ``final_deadline`` (10 minutes by default). If the message cannot be finished by then,
   the rest of the answer goes in a new message. ``finish`` returns only once Slack holds the
   whole answer.

Two ways to show growing text (``messages``):
- Slack's native streaming (``chat.startStream`` / ``appendStream`` / ``stopStream``), chosen
  per answer only when the Tier-2 budget has a start slot now and a stop slot for every stream
  open (``RateBudget.try_open_stream``), so neither call is refused for rate; a refused or
  expired stream continues in the fallback without losing or repeating text;
- the fallback: ``chat.postMessage`` then ``chat.update`` with the whole message each time.

Every message is a chunk of the one splitter (``render.chunk_markdown``, kept by ``draft``):
an answer of ``n`` characters takes at most ``ceil(n / limit) + 2`` messages, whatever the
model writes. Text is sent only up to where a broadcast mention could still be completed by
the next delta (``render.stream_safe_length``); the client neutralises the mentions themselves.

The answer's *steps* (tool calls, reasoning summaries: ``StepSink.step``) ride in the same
calls (``steps``): task cards (``task_update`` chunks) in a native stream, a context block of
compact lines above the text of a posted message; coalesced like the text, so several changes
between two calls go as one call with each step's latest state. A message opened for steps
alone takes the first text at once (``Priority.FIRST``).

While the final text is delivered, the sink notes each message it opens in a
``DeliveryJournal`` (the turn's row, ``journal``), so that after a restart
``bot.slack.resume`` can finish the same messages instead of posting the answer twice.

A finished answer's last message carries the answer's *endings* (the feedback buttons,
``endings``): in ``chat.stopStream`` or its final ``chat.postMessage`` / ``chat.update``, so
they cost no call of their own; where Slack refuses one ending's blocks the next is tried, and
the answer is never lost to its buttons. Notes (``fail``) carry none. The thread status
(``indicator``) is cleared explicitly whatever the outcome.

Every Slack failure leaves as ``DeliveryError`` (``calls``, over ``bot.slack.failures``).

Modules: ``sink`` (the ``ReplySink`` and its pump), ``draft`` (the text and what Slack shows
of it), ``messages`` (open, grow, finish, rewrite), ``calls`` (one Slack call and what its
failure means here), ``steps``, ``endings``, ``indicator``, ``journal``.
"""

from bot.slack.reply.draft import EMPTY_ANSWER
from bot.slack.reply.indicator import LOADING_MESSAGES, REASONING_STATUS, THINKING_STATUS
from bot.slack.reply.journal import DeliveryJournal, ResumeState
from bot.slack.reply.sink import LiveReplySink, LiveReplySinks

__all__ = [
    "EMPTY_ANSWER",
    "LOADING_MESSAGES",
    "REASONING_STATUS",
    "THINKING_STATUS",
    "DeliveryJournal",
    "LiveReplySink",
    "LiveReplySinks",
    "ResumeState",
]
