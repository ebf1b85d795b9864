"""One round's calls, as the tool loop runs them (``bot.conversation.tools``): concurrently
and bounded, each asked for approval where its server requires it, shown as a step where the
sink can show steps, recorded for accounting (never its arguments or output), cancelled all
together when the user stops the answer. Also the steps of what the endpoint ran itself
(hosted tools, with the sources the answer cites) and of reasoning summaries.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bot.conversation.notes import DENIED_OUTPUT, OUT_OF_TIME_OUTPUT
from bot.conversation.ports import (
    ApprovalRequest,
    Approvals,
    IncomingMessage,
    ReplySink,
    StepSink,
    StepStatus,
    ToolStep,
    TurnStopped,
)
from bot.conversation.tool_ports import (
    OfferedTool,
    StopSignal,
    ToolCallStore,
    ToolOutcome,
    ToolRunner,
    TurnTools,
)
from bot.conversation.tool_round import FunctionCall, ToolRound
from bot.errors import DeliveryError
from bot.i18n import N_, t
from bot.model.types import ModelResult
from storage.errors import StorageError
from storage.records import ToolCallRecord

__all__ = ["APPROVAL_TIMEOUT", "RoundRunner", "ToolCalls", "step_title"]

logger = logging.getLogger(__name__)

APPROVAL_TIMEOUT = 300.0
"""Seconds the asker has to approve a call; no answer is a denial."""
_MAX_TITLE_CHARS = 80
_HOSTED_CALLS = {
    "web_search_call": N_("Searching the web"),
    "file_search_call": N_("Searching files"),
    "code_interpreter_call": N_("Running code"),
}


def step_title(tool: OfferedTool | None, call: FunctionCall) -> str:
    """A short title for a call, made from the tool's name and the model's arguments (never
    from a tool's output): ``orders: lookup_order (order_id: 42)``."""
    name = f"{tool.server}: {tool.title or tool.tool}" if tool else call.name
    args = ""
    if call.arguments:
        first = next(iter(call.arguments.items()))
        value = first[1] if isinstance(first[1], str) else json.dumps(first[1], default=str)
        args = f" ({first[0]}: {value}" + (", …)" if len(call.arguments) > 1 else ")")
    return _short(" ".join((name + args).split()))


def _short(text: str) -> str:
    return text if len(text) <= _MAX_TITLE_CHARS else text[: _MAX_TITLE_CHARS - 1] + "…"


@dataclass(frozen=True, slots=True)
class ToolCalls:
    """How calls are run: the runner, the asker, where calls are recorded, the bounds."""

    runner: ToolRunner | None
    approvals: Approvals
    records: ToolCallStore | None = None
    on_call: Callable[[ToolCallRecord], None] | None = None
    max_parallel: int = 8
    approval_timeout: float = APPROVAL_TIMEOUT
    clock: Callable[[], float] = time.monotonic


class RoundRunner:
    """One turn's tool calls, round by round: each call's steps, approval and record."""

    def __init__(
        self,
        calls: ToolCalls,
        sink: ReplySink,
        message: IncomingMessage,
        turn_id: int,
        tools: TurnTools,
        log_extra: Mapping[str, Any],
    ) -> None:
        self.config = calls
        self.sink = sink
        self.message = message
        self.turn_id = turn_id
        self.tools = tools
        self.log_extra = dict(log_extra)

    async def step(self, step: ToolStep) -> None:
        """Show a step where the sink can; a Slack refusal never fails the turn, a stop
        does (``TurnStopped`` goes on)."""
        if not isinstance(self.sink, StepSink):
            return
        try:
            await self.sink.step(step)
        except DeliveryError as exc:
            logger.warning("could not show a step: %s", exc.code, extra=self.log_extra)

    async def report_output(self, result: ModelResult, show_reasoning: bool) -> None:
        """Steps for what the endpoint did itself (hosted tool calls, with the sources the
        answer cites) and, where enabled, the reasoning summaries."""
        sources = _citations(result.output)
        for item in result.output:
            kind = item.get("type")
            item_id = str(item.get("id") or "")
            if kind in _HOSTED_CALLS and item_id:
                failed = item.get("status") in ("failed", "incomplete")
                await self.step(
                    ToolStep(
                        step_id=item_id,
                        title=_hosted_title(item),
                        status=StepStatus.ERROR if failed else StepStatus.COMPLETE,
                        sources=sources if kind != "code_interpreter_call" else (),
                    )
                )
            elif kind == "reasoning" and show_reasoning and item_id:
                summary = "\n".join(
                    str(part.get("text") or "")
                    for part in item.get("summary") or ()
                    if isinstance(part, Mapping)
                ).strip()
                if summary:
                    await self.step(
                        ToolStep(
                            step_id=item_id,
                            title=_short(summary.splitlines()[0]),
                            status=StepStatus.COMPLETE,
                            details=summary,
                        )
                    )

    async def calls(self, tool_round: ToolRound, deadline: float) -> dict[str, str]:
        """Run the round's calls, none past ``deadline`` (the turn's, on ``config.clock``);
        ``call_id -> output`` for each."""
        gate = asyncio.Semaphore(self.config.max_parallel)
        outcomes: dict[str, tuple[FunctionCall, ToolOutcome]] = {}
        started: dict[str, float] = {}

        async def one(call: FunctionCall) -> None:
            async with gate:
                started[call.call_id] = self.config.clock()
                outcomes[call.call_id] = (call, await self._call(call, deadline))

        stopped = False
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [group.create_task(one(call)) for call in tool_round.calls]
                if isinstance(self.sink, StopSignal):
                    watcher = group.create_task(_raise_when_stopped(self.sink))
                    await asyncio.wait(tasks)
                    watcher.cancel()
        except* TurnStopped:
            # The group cancelled every call still running.
            stopped = True
        if stopped:
            await self._record(
                [
                    self._record_of(call, None, "cancelled", started.get(call.call_id))
                    for call in tool_round.calls
                    if call.call_id not in outcomes
                ]
                + [self._record_of(c, o, o.status, None) for c, o in outcomes.values()]
            )
            raise TurnStopped()
        await self._record([self._record_of(c, o, o.status, None) for c, o in outcomes.values()])
        return {cid: outcome.output for cid, (_, outcome) in outcomes.items()}

    async def _call(self, call: FunctionCall, deadline: float) -> ToolOutcome:
        tool = self.tools.offer.tools.get(call.name)
        title = step_title(tool, call)
        if call.error is not None:
            # The arguments are unusable: the model gets the reason and may try again.
            return ToolOutcome(
                server=tool.server if tool else None,
                tool=tool.tool if tool else None,
                status="rejected",
                output=call.error,
            )
        await self.step(ToolStep(call.call_id, title, StepStatus.IN_PROGRESS))
        approved = False
        if tool is not None and tool.requires_approval:
            approved = await self._ask(call, tool, title)
            if not approved:
                await self.step(ToolStep(call.call_id, title, StepStatus.ERROR, details="denied"))
                return ToolOutcome(tool.server, tool.tool, "denied", DENIED_OUTPUT)
        # Measured after the approval: waiting for the asker counts against the turn's time.
        remaining = deadline - self.config.clock()
        if self.config.runner is None:
            outcome = ToolOutcome(
                None, None, "rejected", f"Error: there is no tool named {call.name!r}."
            )
        elif remaining <= 0:
            outcome = ToolOutcome(
                tool.server if tool else None,
                tool.tool if tool else None,
                "timeout",
                OUT_OF_TIME_OUTPUT,
            )
        else:
            try:
                outcome = await self.config.runner.call(
                    call.name,
                    call.arguments,
                    servers=self.tools.servers,
                    approved=approved,
                    timeout=remaining,
                )
            except Exception:
                # A bug in the runner must not lose the other calls or the turn.
                logger.exception("tool call crashed", extra=self.log_extra)
                outcome = ToolOutcome(
                    tool.server if tool else None,
                    tool.tool if tool else None,
                    "protocol_error",
                    "Error: the tool call failed inside the bot; it may not have run.",
                )
        status = StepStatus.COMPLETE if outcome.status == "ok" else StepStatus.ERROR
        await self.step(ToolStep(call.call_id, title, status))
        return outcome

    async def _ask(self, call: FunctionCall, tool: OfferedTool, title: str) -> bool:
        request = ApprovalRequest(
            message=self.message,
            turn_id=self.turn_id,
            call_id=call.call_id,
            server=tool.server,
            tool=tool.tool,
            title=title,
        )
        try:
            return await self.config.approvals.ask(request, timeout=self.config.approval_timeout)
        except Exception as exc:
            # Could not ask (Slack refused, a bug in the asker), or no answer: a denial, as
            # the Approvals contract says; never a lost turn.
            logger.warning("approval not obtained: %s", type(exc).__name__, extra=self.log_extra)
            return False

    async def record_unrun(self, tool_round: ToolRound, status: str) -> None:
        await self._record([self._record_of(call, None, status, None) for call in tool_round.calls])

    def _record_of(
        self,
        call: FunctionCall,
        outcome: ToolOutcome | None,
        status: str,
        started: float | None,
    ) -> ToolCallRecord:
        tool = self.tools.offer.tools.get(call.name)
        server = (outcome.server if outcome else None) or (tool.server if tool else "")
        name = (outcome.tool if outcome else None) or (tool.tool if tool else call.name)
        if outcome is not None:
            duration = outcome.duration
        elif started is not None:
            duration = max(0.0, self.config.clock() - started)
        else:
            duration = 0.0
        return ToolCallRecord(
            turn_id=self.turn_id,
            team_id=self.message.team_id,
            channel_id=self.message.channel_id,
            server=server[:64],
            tool=name[:128],
            status=status,
            duration_ms=round(duration * 1000),
            output_chars=outcome.output_chars if outcome else 0,
        )

    async def _record(self, records: Sequence[ToolCallRecord]) -> None:
        if not records:
            return
        if self.config.on_call is not None:
            for record in records:
                self.config.on_call(record)
        if self.config.records is None:
            return
        try:
            await self.config.records.record_tool_calls(records)
        except StorageError as exc:
            # Accounting must not cost the user the answer.
            logger.warning("could not record tool calls: %s", exc.code, extra=self.log_extra)


async def _raise_when_stopped(sink: StopSignal) -> None:
    """Raise ``TurnStopped`` in the round's group when the user stops the answer (cancelled
    once every call is done)."""
    await sink.wait_stopped()
    raise TurnStopped()


def _citations(output: Sequence[Mapping[str, Any]]) -> tuple[tuple[str, str], ...]:
    """(title, url) of the ``url_citation`` annotations of the response's message items."""
    found: dict[str, str] = {}
    for item in output:
        if item.get("type") != "message":
            continue
        for part in item.get("content") or ():
            if not isinstance(part, Mapping):
                continue
            for note in part.get("annotations") or ():
                if isinstance(note, Mapping) and note.get("type") == "url_citation":
                    url = note.get("url")
                    if isinstance(url, str) and url.startswith(("https://", "http://")):
                        found.setdefault(url, _short(str(note.get("title") or url)))
    return tuple((title, url) for url, title in found.items())


def _hosted_title(item: Mapping[str, Any]) -> str:
    title = t(_HOSTED_CALLS[str(item.get("type"))])
    action = item.get("action")
    query = action.get("query") if isinstance(action, Mapping) else None
    if query is None:
        queries = item.get("queries")
        query = queries[0] if isinstance(queries, list) and queries else None
    return _short(f"{title}: {query}") if isinstance(query, str) and query else title
