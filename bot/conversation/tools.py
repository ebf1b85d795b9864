"""The tool loop: while the model's completed response asks for function calls, run them and
send their outputs back, until it answers with a message.

Rules (each relied on by a test in ``tests/conversation/test_tool_loop.py`` or
``tests/e2e/test_tools.py``):

- **Rounds.** One round = one response's calls, run concurrently (at most ``max_parallel`` at
  once), every call answered in the model's order. At most ``max_rounds`` rounds per turn; when
  the model asks for more, those calls are answered "not run: limit reached" and the model is
  asked once more with ``tool_choice: "none"`` so it answers with what it has. An endpoint that
  still asks for calls ends the turn with the text so far and ``ROUND_LIMIT_NOTE``.
- **Time.** Each call is bounded by its server's timeout, never beyond what is left of the
  turn's ``turn_timeout``; once that is spent, calls are answered "not run: out of time" and
  the model is asked to answer without tools.
- **Failures are outputs.** A failed, timed-out, unknown, denied or unusable call becomes a
  ``function_call_output`` the model reads; nothing here fails the turn for it.
- **Chain.** Chain mode sends the outputs with ``previous_response_id`` = the response that
  asked; transcript mode re-sends the whole input so far plus the calls and their outputs. The
  intermediate response ids never become the thread's head: the caller completes the turn with
  the last response only, and a failure mid-loop closes it at the last good head.
- **Stop.** ``TurnStopped`` from the sink (a step shown, or ``StopSignal``) cancels every
  running call; the calls are recorded as ``cancelled``.
- **Approval.** A tool whose server requires approval runs only after
  ``Approvals.ask(...)`` said yes; a no, a time-out or a failure to ask is the output
  ``DENIED_OUTPUT`` and the status ``denied``.
- **Untrusted output.** Outputs go to the model as data and nowhere else: step titles come from
  the tool's name and the model's arguments, never from the output; the bot fetches nothing a
  tool names.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from bot.channel_settings import EffectiveSettings
from bot.conversation.notes import OUT_OF_TIME_OUTPUT, ROUND_LIMIT_OUTPUT
from bot.conversation.ports import ApprovalRequest, Approvals, IncomingMessage, ReplySink
from bot.conversation.tool_calls import APPROVAL_TIMEOUT, RoundRunner, ToolCalls
from bot.conversation.tool_ports import ToolCallStore, ToolOffer, ToolRunner, TurnTools
from bot.conversation.tool_round import plan_round
from bot.model.types import ModelResult, ResponseRequest, Usage
from bot.text_safety import scrub
from storage.records import ToolCallRecord

__all__ = [
    "APPROVAL_TIMEOUT",
    "DenyingApprovals",
    "ToolLoop",
    "TurnTools",
    "hosted_tool_definitions",
]

logger = logging.getLogger(__name__)


class DenyingApprovals:
    """The approvals used until Slack can ask (``bot.slack`` provides the real one): every
    call that needs approval is denied, and the model is told so."""

    async def ask(self, request: ApprovalRequest, *, timeout: float) -> bool:
        logger.warning(
            "tool call needs approval but no way to ask is wired; denied",
            extra={"mcp_server": request.server, "tool": request.tool, "turn_id": request.turn_id},
        )
        return False


def hosted_tool_definitions(
    names: Sequence[str] | None, vector_store_ids: Sequence[str] | None
) -> tuple[dict[str, Any], ...]:
    """The request's entries for the hosted tools a channel enabled. ``file_search`` without
    vector stores is left out (the endpoint refuses it) and logged by the caller."""
    tools: list[dict[str, Any]] = []
    for name in names or ():
        if name == "web_search":
            tools.append({"type": "web_search"})
        elif name == "file_search" and vector_store_ids:
            tools.append({"type": "file_search", "vector_store_ids": list(vector_store_ids)})
        elif name == "code_interpreter":
            tools.append({"type": "code_interpreter", "container": {"type": "auto"}})
    return tuple(tools)


class ToolLoop:
    """Runs the tool rounds of turns (see the module docstring). One per service."""

    def __init__(
        self,
        *,
        runner: ToolRunner | None,
        approvals: Approvals,
        records: ToolCallStore | None = None,
        on_call: Callable[[ToolCallRecord], None] | None = None,
        max_rounds: int = 8,
        turn_timeout: float = 300.0,
        max_parallel: int = 8,
        approval_timeout: float = APPROVAL_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_rounds < 1 or max_parallel < 1:
            raise ValueError("max_rounds and max_parallel must be at least 1")
        self._runner = runner
        self._calls = ToolCalls(
            runner=runner,
            approvals=approvals,
            records=records,
            on_call=on_call,
            max_parallel=max_parallel,
            approval_timeout=approval_timeout,
            clock=clock,
        )
        self._max_rounds = max_rounds
        self._turn_timeout = turn_timeout
        self._clock = clock

    async def tools_for(
        self, settings: EffectiveSettings, log_extra: Mapping[str, Any]
    ) -> TurnTools:
        """The tools a turn offers under its channel's settings."""
        servers = tuple(getattr(settings, "mcp_servers", None) or ())
        hosted_names = tuple(getattr(settings, "hosted_tools", None) or ())
        stores = tuple(getattr(settings, "vector_store_ids", None) or ())
        hosted = hosted_tool_definitions(hosted_names, stores)
        if "file_search" in hosted_names and not stores:
            logger.warning(
                "file_search enabled without vector_store_ids; not offered", extra=dict(log_extra)
            )
        offer = ToolOffer()
        if servers and self._runner is not None:
            offer = await self._runner.offer(servers)
            for server, reason in offer.unavailable.items():
                logger.warning(
                    "mcp server unavailable for this turn: %s",
                    reason,
                    extra={**log_extra, "mcp_server": server},
                )
        return TurnTools(servers=servers, offer=offer, hosted=hosted)

    async def run(
        self,
        *,
        model_call: Callable[[ResponseRequest], Awaitable[ModelResult]],
        sink: ReplySink,
        message: IncomingMessage,
        turn_id: int,
        tools: TurnTools,
        request: ResponseRequest,
        result: ModelResult,
        transcript: bool,
        show_reasoning: bool,
        log_extra: Mapping[str, Any],
    ) -> tuple[ModelResult, bool]:
        """Follow ``result`` (the answer to ``request``) through its tool rounds; returns the
        turn's result (the last response, every round's text and usage) and whether the round
        limit cut it short. ``model_call(request)`` streams one more response into the
        turn's reply and returns its ``ModelResult``."""
        run = RoundRunner(self._calls, sink, message, turn_id, tools, log_extra)
        deadline = self._clock() + self._turn_timeout
        results = [result]
        sent: list[dict[str, Any]] = list(request.input) if isinstance(request.input, list) else []
        rounds = 0
        forced = 0  # 1: asked with tool_choice "none"; 2: asked without tools
        cut_short = False
        while True:
            await run.report_output(result, show_reasoning)
            tool_round = plan_round(result.output)
            if not tool_round.has_calls:
                break
            if forced == 2:
                # Asked without tools and it still calls them: stop with what it said.
                cut_short = True
                break
            rounds += 1
            remaining = deadline - self._clock()
            if forced == 1 or rounds > self._max_rounds or remaining <= 0:
                # Out of rounds or time: answered "not run", then asked with tool_choice
                # "none"; an endpoint that ignores that is asked once more without tools.
                spent = remaining <= 0 and rounds <= self._max_rounds
                text = OUT_OF_TIME_OUTPUT if spent else ROUND_LIMIT_OUTPUT
                outputs = {c.call_id: text for c in tool_round.calls}
                await run.record_unrun(tool_round, "timeout" if spent else "rejected")
                forced += 1
            else:
                outputs = await run.calls(tool_round, deadline)
                if deadline - self._clock() <= 0:
                    forced = 1
            answers = tool_round.input_items(outputs)
            if transcript:
                sent += _message_items(result.output) + tool_round.call_items() + answers
                next_input, previous = list(sent), None
            else:
                next_input, previous = answers, result.response_id
            request = replace(
                request,
                input=scrub(next_input),
                previous_response_id=previous,
                tool_choice="none" if forced == 1 else None,
                tools=None if forced == 2 else request.tools,
            )
            result = await model_call(request)
            results.append(result)
        return _combined(results), cut_short


def _message_items(output: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """What the model said before its calls, as input items (transcript mode)."""
    items = []
    for item in output:
        if item.get("type") == "message":
            text = "".join(
                str(part.get("text") or "")
                for part in item.get("content") or ()
                if isinstance(part, Mapping)
            )
            if text:
                items.append({"role": "assistant", "content": text})
    return items


def _combined(results: Sequence[ModelResult]) -> ModelResult:
    """The turn's result: the last response (its id becomes the head), the text of every
    round, and usage summed over all of them (budgets count every round)."""
    last = results[-1]
    if len(results) == 1:
        return last
    text = "\n\n".join(r.text for r in results if r.text)
    usage = Usage(
        input_tokens=sum(r.usage.input_tokens for r in results),
        cached_tokens=sum(r.usage.cached_tokens for r in results),
        output_tokens=sum(r.usage.output_tokens for r in results),
        reasoning_tokens=sum(r.usage.reasoning_tokens for r in results),
        total_tokens=sum(r.usage.total_tokens for r in results),
    )
    return replace(last, text=text, usage=usage)
