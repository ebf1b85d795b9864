"""The tool loop's rules, on the real ``ConversationService`` over in-memory fakes: function
calls run and answered, rounds and time bounded, the chain head moved only by the turn's last
response, approval asked, steps shown, a stop cancelling running calls, every call recorded.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.conversation import STOPPED_NOTE, TurnOutcome
from bot.conversation.notes import (
    DENIED_OUTPUT,
    OUT_OF_TIME_OUTPUT,
    ROUND_LIMIT_NOTE,
    ROUND_LIMIT_OUTPUT,
)
from bot.conversation.ports import ApprovalRequest, StepStatus, ToolStep, TurnStopped
from bot.conversation.tool_ports import OfferedTool, ToolOffer, ToolOutcome
from bot.errors import ModelServerError
from bot.model.types import Completed, ModelResult, TextDelta, Usage
from storage.records import ToolCallRecord
from tests.conversation.conftest import Core
from tests.conversation.fakes import RecordingSink, Step, answer, message

WAIT = 1.0


def calls(response_id: str, *specs: tuple[str, str, Any], text: str = "") -> list[Step]:
    """A response that asks for ``(call_id, name, arguments)`` calls."""
    output: list[dict[str, Any]] = []
    if text:
        output.append(
            {"type": "message", "content": [{"type": "output_text", "text": text}], "id": "m"}
        )
    output += [
        {
            "type": "function_call",
            "id": f"fc_{cid}",
            "call_id": cid,
            "name": name,
            "arguments": args if isinstance(args, str) else json.dumps(args),
            "status": "completed",
        }
        for cid, name, args in specs
    ]
    steps: list[Step] = [TextDelta(text)] if text else []
    usage = Usage(input_tokens=100, output_tokens=10)
    steps.append(
        Completed(
            ModelResult(response_id=response_id, text=text, usage=usage, output=tuple(output))
        )
    )
    return steps


@dataclass
class FakeRunner:
    """The tools of server ``orders``; ``slow`` calls wait for ``release``."""

    approval: frozenset[str] = frozenset()
    fail: frozenset[str] = frozenset()
    slow: frozenset[str] = frozenset()
    crash: frozenset[str] = frozenset()
    release: asyncio.Event = field(default_factory=asyncio.Event)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    two_running: asyncio.Event = field(default_factory=asyncio.Event)
    calls: list[tuple[str, dict[str, Any], bool]] = field(default_factory=list)
    cancelled: int = 0
    running: int = 0
    most_running: int = 0
    offered_for: list[tuple[str, ...]] = field(default_factory=list)
    timeouts: list[float | None] = field(default_factory=list)
    delay: float = 0.0

    async def offer(self, servers: Collection[str]) -> ToolOffer:
        self.offered_for.append(tuple(servers))
        names = ("lookup", "refund", "slow", "broken", "crashy")
        return ToolOffer(
            definitions=tuple(
                {"type": "function", "name": f"orders__{n}", "parameters": {"type": "object"}}
                for n in names
            ),
            tools={
                f"orders__{n}": OfferedTool(
                    name=f"orders__{n}",
                    server="orders",
                    tool=n,
                    requires_approval=n in self.approval,
                )
                for n in names
            },
        )

    async def call(
        self,
        name: str,
        arguments: Mapping[str, Any] | None,
        *,
        servers: Collection[str],
        approved: bool,
        timeout: float | None,
    ) -> ToolOutcome:
        tool = name.removeprefix("orders__")
        self.calls.append((tool, dict(arguments or {}), approved))
        self.timeouts.append(timeout)
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        self.started.set()
        if self.running >= 2:
            self.two_running.set()
        try:
            if tool in self.crash:
                raise RuntimeError("a bug")
            if tool in self.slow:
                await self.release.wait()
            else:
                await asyncio.sleep(self.delay)  # a tool that takes this long
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.running -= 1
        if tool in self.fail:
            return ToolOutcome("orders", tool, "tool_error", "The tool reported an error: down")
        return ToolOutcome("orders", tool, "ok", f"{tool} says {json.dumps(arguments)}", 0.01, 7)


@dataclass
class Records:
    rows: list[ToolCallRecord] = field(default_factory=list)

    async def record_tool_calls(self, records: Sequence[ToolCallRecord]) -> None:
        self.rows.extend(records)


@dataclass
class Approvals:
    answer: bool
    asked: list[ApprovalRequest] = field(default_factory=list)

    async def ask(self, request: ApprovalRequest, *, timeout: float) -> bool:
        self.asked.append(request)
        assert timeout == 300.0
        return self.answer


class StepSink(RecordingSink):
    """A sink that shows steps, and whose user can press stop at any time."""

    steps: list[ToolStep]
    stopped: asyncio.Event

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.steps = []
        self.stopped = asyncio.Event()

    async def step(self, step: ToolStep) -> None:
        self.steps.append(step)

    async def wait_stopped(self) -> None:
        await self.stopped.wait()
        raise TurnStopped()


def tooled(core: Core, runner: FakeRunner, **options: Any) -> Records:
    records = Records()
    core.settings.channel["mcp_servers"] = ("orders",)
    core.rebuild(tool_runner=runner, tool_calls=records, **options)
    return records


def outputs(core: Core, call: int) -> list[tuple[str, str]]:
    items = core.model.requests[call].input
    assert isinstance(items, list)
    return [(i["call_id"], i["output"]) for i in items if i.get("type") == "function_call_output"]


async def test_one_call_is_run_and_its_output_chained_to_the_response_that_asked(
    core: Core,
) -> None:
    runner = FakeRunner()
    records = tooled(core, runner)
    core.model.then(
        calls("resp_1", ("c1", "orders__lookup", {"order_id": "A1"}), text="Looking."),
        answer("A1 shipped.", "resp_2"),
    )
    assert await core.handle(message("1.0", "where is A1?")) is TurnOutcome.COMPLETED

    first, second = core.model.requests
    assert first.tools is not None
    assert [t["name"] for t in first.tools][:1] == ["orders__lookup"]
    assert second.previous_response_id == "resp_1"
    assert second.tools == first.tools  # tools are sent on every round
    assert outputs(core, 1) == [("c1", 'lookup says {"order_id": "A1"}')]
    assert runner.calls == [("lookup", {"order_id": "A1"}, False)]
    # The head is the turn's last response; both rounds' text and tokens count.
    assert core.store.head("1.0") == "resp_2"
    (sink,) = core.sinks.opened
    assert sink.final == "Looking.\n\nA1 shipped."
    assert "".join(sink.deltas) == "Looking.\n\nA1 shipped."
    (turn,) = core.store.turns.values()
    assert (turn.usage.input_tokens, turn.usage.output_tokens) == (110, 15)
    assert [(r.server, r.tool, r.status, r.output_chars) for r in records.rows] == [
        ("orders", "lookup", "ok", 7)
    ]
    assert runner.offered_for == [("orders",)]


async def test_parallel_calls_run_together_and_are_answered_in_the_models_order(
    core: Core,
) -> None:
    runner = FakeRunner(slow=frozenset({"slow"}))
    tooled(core, runner)
    core.model.then(
        calls(
            "resp_1",
            ("c1", "orders__slow", {"n": 1}),
            ("c2", "orders__slow", {"n": 2}),
            ("c3", "orders__lookup", {"n": 3}),
        ),
        answer("done", "resp_2"),
    )
    task = asyncio.create_task(core.handle(message("1.0")))
    async with asyncio.timeout(WAIT):
        await runner.two_running.wait()
    runner.release.set()
    assert await task is TurnOutcome.COMPLETED
    assert runner.most_running == 3
    assert [cid for cid, _ in outputs(core, 1)] == ["c1", "c2", "c3"]


async def test_the_round_limit_asks_once_more_without_tools(core: Core) -> None:
    runner = FakeRunner()
    records = tooled(core, runner, max_tool_rounds=2)
    core.model.then(
        calls("resp_1", ("c1", "orders__lookup", {})),
        calls("resp_2", ("c2", "orders__lookup", {})),
        calls("resp_3", ("c3", "orders__lookup", {})),
        answer("Here is what I found.", "resp_4"),
    )
    assert await core.handle(message("1.0")) is TurnOutcome.COMPLETED
    assert len(runner.calls) == 2  # the third call was not run
    last = core.model.requests[3]
    assert last.tool_choice == "none"
    assert outputs(core, 3) == [("c3", ROUND_LIMIT_OUTPUT)]
    assert core.store.head("1.0") == "resp_4"
    assert [r.status for r in records.rows] == ["ok", "ok", "rejected"]
    assert core.sinks.opened[0].final == "Here is what I found."


async def test_an_endpoint_that_calls_tools_anyway_is_asked_without_tools_then_cut_short(
    core: Core,
) -> None:
    tooled(core, FakeRunner(), max_tool_rounds=1)
    core.model.then(
        calls("resp_1", ("c1", "orders__lookup", {}), text="Step one."),
        calls("resp_2", ("c2", "orders__lookup", {})),
        calls("resp_3", ("c3", "orders__lookup", {})),
        calls("resp_4", ("c4", "orders__lookup", {})),
    )
    assert await core.handle(message("1.0")) is TurnOutcome.COMPLETED
    requests = core.model.requests
    assert len(requests) == 4
    assert (requests[2].tool_choice, requests[2].tools is not None) == ("none", True)
    assert (requests[3].tool_choice, requests[3].tools) == (None, None)
    assert core.sinks.opened[0].final == f"Step one.\n\n{ROUND_LIMIT_NOTE}"


async def test_failing_and_crashing_tools_are_outputs_for_the_model(core: Core) -> None:
    runner = FakeRunner(fail=frozenset({"broken"}), crash=frozenset({"crashy"}))
    records = tooled(core, runner)
    core.model.then(
        calls(
            "resp_1",
            ("c1", "orders__broken", {}),
            ("c2", "orders__crashy", {}),
            ("c3", "orders__nope", {}),
            ("c4", "orders__lookup", "{not json"),
        ),
        answer("Sorry, the tools failed.", "resp_2"),
    )
    assert await core.handle(message("1.0")) is TurnOutcome.COMPLETED
    got = dict(outputs(core, 1))
    assert got["c1"] == "The tool reported an error: down"
    assert got["c2"] == "Error: the tool call failed inside the bot; it may not have run."
    assert "not valid JSON" in got["c4"]
    assert [t for t, _, _ in runner.calls] == ["broken", "crashy", "nope"]
    assert {r.tool: r.status for r in records.rows} == {
        "broken": "tool_error",
        "crashy": "protocol_error",
        "nope": "ok",  # the fake runner answers any name; the registry rejects unknown ones
        "lookup": "rejected",
    }


async def test_a_model_failure_mid_loop_leaves_the_head_at_the_last_good_response(
    core: Core,
) -> None:
    tooled(core, FakeRunner())
    core.model.then(answer("first", "resp_1"))
    assert await core.handle(message("1.0")) is TurnOutcome.COMPLETED
    core.model.then(
        calls("resp_2", ("c1", "orders__lookup", {})),
        [ModelServerError("upstream down", status_code=502)],
    )
    follow = message("1.1", "more", thread_ts="1.0", mentions_bot=False)
    assert await core.handle(follow) is TurnOutcome.FAILED
    assert core.store.head("1.0") == "resp_1"
    # The thread is still usable: the next message chains on resp_1.
    core.model.then(answer("fine again", "resp_4"))
    again = message("1.2", "again", thread_ts="1.0", mentions_bot=False)
    assert await core.handle(again) is TurnOutcome.COMPLETED
    assert core.model.requests[-1].previous_response_id == "resp_1"
    assert core.store.head("1.0") == "resp_4"


async def test_approval_is_asked_and_a_yes_runs_the_call(core: Core) -> None:
    runner = FakeRunner(approval=frozenset({"refund"}))
    approvals = Approvals(answer=True)
    tooled(core, runner, approvals=approvals)
    core.model.then(
        calls("resp_1", ("c1", "orders__refund", {"order_id": "A1"})), answer("ok", "resp_2")
    )
    assert await core.handle(message("1.0", user_id="U7")) is TurnOutcome.COMPLETED
    (asked,) = approvals.asked
    assert (asked.message.user_id, asked.call_id, asked.server, asked.tool) == (
        "U7",
        "c1",
        "orders",
        "refund",
    )
    assert asked.title == "orders: refund (order_id: A1)"
    assert runner.calls == [("refund", {"order_id": "A1"}, True)]


async def test_a_denial_or_no_answer_is_sent_to_the_model_and_nothing_runs(core: Core) -> None:
    runner = FakeRunner(approval=frozenset({"refund"}))
    records = tooled(core, runner, approvals=Approvals(answer=False))
    core.model.then(calls("resp_1", ("c1", "orders__refund", {})), answer("ok", "resp_2"))
    assert await core.handle(message("1.0")) is TurnOutcome.COMPLETED
    assert runner.calls == []
    assert outputs(core, 1) == [("c1", DENIED_OUTPUT)]
    assert [r.status for r in records.rows] == ["denied"]


async def test_without_a_way_to_ask_every_approval_is_denied(core: Core) -> None:
    runner = FakeRunner(approval=frozenset({"refund"}))
    tooled(core, runner)  # no approvals given: the default denies
    core.model.then(calls("resp_1", ("c1", "orders__refund", {})), answer("ok", "resp_2"))
    assert await core.handle(message("1.0")) is TurnOutcome.COMPLETED
    assert runner.calls == []
    assert outputs(core, 1) == [("c1", DENIED_OUTPUT)]


async def test_steps_show_each_call_and_the_sources_of_hosted_searches(core: Core) -> None:
    runner = FakeRunner(fail=frozenset({"broken"}))
    tooled(core, runner)
    core.sinks.factory = StepSink
    search = {
        "type": "web_search_call",
        "id": "ws_1",
        "status": "completed",
        "action": {"type": "search", "query": "order tracking"},
    }
    cited = {
        "type": "message",
        "id": "m2",
        "content": [
            {
                "type": "output_text",
                "text": "See the docs.",
                "annotations": [
                    {"type": "url_citation", "url": "https://docs.example/t", "title": "Docs"}
                ],
            }
        ],
    }
    core.model.then(
        calls("resp_1", ("c1", "orders__lookup", {"order_id": "A1"}), ("c2", "orders__broken", {})),
        [
            TextDelta("See the docs."),
            Completed(ModelResult("resp_2", "See the docs.", output=(search, cited))),
        ],
    )
    assert await core.handle(message("1.0")) is TurnOutcome.COMPLETED
    sink = core.sinks.opened[0]
    assert isinstance(sink, StepSink)
    seen = [(s.step_id, s.status) for s in sink.steps]
    assert seen.index(("c1", StepStatus.IN_PROGRESS)) < seen.index(("c1", StepStatus.COMPLETE))
    assert ("c2", StepStatus.ERROR) in seen
    assert sink.steps[0].title in ("orders: lookup (order_id: A1)", "orders: broken")
    hosted = next(s for s in sink.steps if s.step_id == "ws_1")
    assert hosted.title == "Searching the web: order tracking"
    assert hosted.sources == (("Docs", "https://docs.example/t"),)


async def test_a_stop_during_a_tool_call_cancels_it_and_keeps_the_head(core: Core) -> None:
    runner = FakeRunner(slow=frozenset({"slow"}))
    records = tooled(core, runner)
    core.sinks.factory = StepSink
    core.model.then(calls("resp_1", ("c1", "orders__slow", {})), answer("never", "resp_2"))
    task = asyncio.create_task(core.handle(message("1.0")))
    async with asyncio.timeout(WAIT):
        await runner.started.wait()
    sink = core.sinks.opened[0]
    assert isinstance(sink, StepSink)
    sink.stopped.set()
    assert await task is TurnOutcome.STOPPED
    assert runner.cancelled == 1
    assert len(core.model.requests) == 1  # nothing more was asked
    assert core.store.head("1.0") is None
    assert sink.failure is not None
    assert sink.failure[0] == STOPPED_NOTE
    assert [r.status for r in records.rows] == ["cancelled"]


async def test_transcript_mode_sends_the_calls_and_their_outputs_itself(core: Core) -> None:
    tooled(core, FakeRunner())
    core.settings.channel["conversation_state"] = "transcript"
    core.model.then(
        calls("resp_1", ("c1", "orders__lookup", {"id": 1}), text="Checking."),
        answer("done", "resp_2"),
    )
    assert await core.handle(message("1.0", "question")) is TurnOutcome.COMPLETED
    second = core.model.requests[1]
    assert second.previous_response_id is None
    assert isinstance(second.input, list)
    kinds = [i.get("type") or i.get("role") for i in second.input]
    assert kinds == ["user", "assistant", "function_call", "function_call_output"]
    assert second.input[2]["call_id"] == second.input[3]["call_id"] == "c1"


async def test_hosted_tools_pass_through_in_the_request(core: Core) -> None:
    core.settings.channel.update(
        hosted_tools=("web_search", "file_search", "code_interpreter"),
        vector_store_ids=("vs_1",),
    )
    core.model.then(answer("ok", "resp_1"))
    assert await core.handle(message("1.0")) is TurnOutcome.COMPLETED
    assert core.model.requests[0].tools == [
        {"type": "web_search"},
        {"type": "file_search", "vector_store_ids": ["vs_1"]},
        {"type": "code_interpreter", "container": {"type": "auto"}},
    ]


async def test_without_tools_enabled_nothing_is_offered(core: Core) -> None:
    runner = FakeRunner()
    core.rebuild(tool_runner=runner)
    core.model.then(answer("ok", "resp_1"))
    assert await core.handle(message("1.0")) is TurnOutcome.COMPLETED
    assert core.model.requests[0].tools is None
    assert runner.offered_for == []


@dataclass
class SlowApprovals:
    """An asker whose wait runs out inside it: the time-out escapes as ``TimeoutError``."""

    async def ask(self, request: ApprovalRequest, *, timeout: float) -> bool:
        async with asyncio.timeout(0):
            await asyncio.Event().wait()
        return True


async def test_no_answer_in_time_is_a_denial(core: Core) -> None:
    runner = FakeRunner(approval=frozenset({"refund"}))
    records = tooled(core, runner, approvals=SlowApprovals())
    core.model.then(calls("resp_1", ("c1", "orders__refund", {})), answer("ok", "resp_2"))
    assert await core.handle(message("1.0")) is TurnOutcome.COMPLETED
    assert runner.calls == []
    assert outputs(core, 1) == [("c1", DENIED_OUTPUT)]
    assert [r.status for r in records.rows] == ["denied"]


async def test_the_turns_time_for_tools_bounds_each_call_and_then_the_rounds(core: Core) -> None:
    runner = FakeRunner(delay=0.05)
    records = tooled(core, runner, tool_turn_timeout=0.03)
    core.model.then(
        calls("resp_1", ("c1", "orders__lookup", {})),
        calls("resp_2", ("c2", "orders__lookup", {})),
        answer("With what I have: …", "resp_3"),
    )
    assert await core.handle(message("1.0")) is TurnOutcome.COMPLETED
    (timeout,) = runner.timeouts  # the second call was never run
    assert timeout is not None
    assert 0 < timeout <= 0.03
    assert core.model.requests[1].tool_choice == "none"  # time spent: answer without tools
    assert outputs(core, 2) == [("c2", OUT_OF_TIME_OUTPUT)]
    assert [r.status for r in records.rows] == ["ok", "timeout"]
