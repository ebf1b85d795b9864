"""What an approval question and its outcome say: addressed to the asker, the title escaped
and bounded, Approve / Deny carrying only the question's id, the outcome without buttons."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from bot.slack.approvals import (
    APPROVE_ACTION,
    DENY_ACTION,
    outcome_blocks,
    outcome_text,
    question_blocks,
)
from storage.records import ApprovalRecord, ApprovalStatus

QUESTION = ApprovalRecord(
    id=7,
    team_id="T1",
    channel_id="C1",
    thread_ts="1.000100",
    user_id="U1",
    turn_id=3,
    call_id="call_1",
    server="orders",
    tool="cancel_order",
    title="orders · cancel <https://evil.example|order 42> & notify <!channel>",
    status=ApprovalStatus.PENDING,
    decided_by=None,
    message_ts="1.000200",
    created_at=datetime(2026, 12, 6, tzinfo=UTC),
    decided_at=None,
)


def test_the_question_is_addressed_to_the_asker_with_two_buttons_naming_only_the_question() -> None:
    section, actions = question_blocks(QUESTION)
    text = section["text"]["text"]
    assert text.startswith("<@U1>, ")
    # The title is the model's arguments in part: escaped, so it links and notifies nothing.
    assert "&lt;https://evil.example|order 42&gt; &amp; notify &lt;!channel&gt;" in text
    assert "<!channel>" not in text
    assert [(e["action_id"], e["value"]) for e in actions["elements"]] == [
        (APPROVE_ACTION, "7"),
        (DENY_ACTION, "7"),
    ]
    long = replace(QUESTION, title="x" * 5_000)
    assert len(question_blocks(long)[0]["text"]["text"]) < 400


@pytest.mark.parametrize(
    ("status", "timeout", "expected"),
    [
        (ApprovalStatus.APPROVED, None, "approved by <@U1>."),
        (ApprovalStatus.DENIED, None, "denied by <@U1>, so the call was not run."),
        (ApprovalStatus.EXPIRED, 300.0, "no answer within 5 minutes, so the call was not run."),
        (ApprovalStatus.EXPIRED, 60.0, "no answer within 1 minute, so the call was not run."),
        (ApprovalStatus.EXPIRED, 20.0, "no answer within 20 seconds, so the call was not run."),
        (ApprovalStatus.WITHDRAWN, None, "no longer needed (the answer was stopped)."),
    ],
)
def test_the_outcome_replaces_the_question_without_buttons(
    status: ApprovalStatus, timeout: float | None, expected: str
) -> None:
    record = replace(QUESTION, status=status, decided_by="U1")
    text = outcome_text(record, timeout=timeout)
    assert text.endswith(expected)
    assert text.startswith("*orders · cancel &lt;https://evil.example")
    assert [b["type"] for b in outcome_blocks(text)] == ["section"]
