"""The SSE decoder gets the same events however the bytes are framed and chunked."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.errors import StreamProtocolError
from bot.model.sse import SSEDecoder, SSEEvent, decode_json


def decode_all(*chunks: bytes) -> tuple[list[SSEEvent], SSEDecoder]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    events += decoder.flush()
    return events, decoder


def datas(events: list[SSEEvent]) -> list[str]:
    return [e.data for e in events]


OPENAI_STYLE = (
    b'event: response.created\ndata: {"type":"response.created"}\n\n'
    b"event: response.output_text.delta\n"
    b'data: {"type":"response.output_text.delta","delta":"h\xc3\xa9"}\n\n'
    b'event: response.completed\ndata: {"type":"response.completed"}\n\n'
)


def test_openai_framing_gives_event_name_and_data() -> None:
    events, _ = decode_all(OPENAI_STYLE)
    assert [e.event for e in events] == [
        "response.created",
        "response.output_text.delta",
        "response.completed",
    ]
    assert decode_json(events[1])["delta"] == "hé"


def test_event_line_after_data_line_still_belongs_to_the_frame() -> None:
    # Bedrock's order: legal SSE, and it breaks parsers that pair "event:" with the next "data:".
    events, _ = decode_all(b'data: {"type":"a"}\nevent: a\n\ndata: {"type":"b"}\nevent: b\n\n')
    assert [(e.event, e.data) for e in events] == [("a", '{"type":"a"}'), ("b", '{"type":"b"}')]


def test_comments_and_missing_event_lines_and_done_sentinel() -> None:
    # OpenRouter: a processing comment, no event: lines, and [DONE] at the end.
    body = b': OPENROUTER PROCESSING\n\ndata: {"type":"x"}\n\n: keep-alive\ndata: [DONE]\n\n'
    events, decoder = decode_all(body)
    assert [(e.event, e.data) for e in events] == [(None, '{"type":"x"}')]
    assert decoder.done


def test_nothing_after_done_is_dispatched() -> None:
    events, decoder = decode_all(b'data: [DONE]\n\ndata: {"type":"late"}\n\n')
    assert events == []
    assert decoder.done
    assert decoder.feed(b'data: {"type":"later"}\n\n') == []


@pytest.mark.parametrize("newline", [b"\r\n", b"\r", b"\n"])
def test_every_sse_line_ending(newline: bytes) -> None:
    body = OPENAI_STYLE.replace(b"\n", newline)
    events, _ = decode_all(body)
    assert len(events) == 3
    assert all(not e.data.endswith("\r") for e in events)


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    events, _ = decode_all(b'data: {"a":1}\r', b"\n\r", b"\n")
    assert datas(events) == ['{"a":1}']


def test_multi_line_data_is_joined_with_newline() -> None:
    events, _ = decode_all(b"data: first\ndata: second\ndata:third\n\n")
    assert datas(events) == ["first\nsecond\nthird"]


def test_one_leading_space_is_stripped_and_others_kept() -> None:
    events, _ = decode_all(b"data:  two spaces\n\n")
    assert datas(events) == [" two spaces"]


def test_last_event_without_blank_line_is_dispatched_at_end() -> None:
    events, _ = decode_all(b'data: {"type":"response.completed"}\n')
    assert datas(events) == ['{"type":"response.completed"}']
    events, _ = decode_all(b'data: {"type":"response.completed"}')
    assert datas(events) == ['{"type":"response.completed"}']


def test_utf8_character_split_across_chunks() -> None:
    body = 'data: {"delta":"日本"}\n\n'.encode()
    cut = body.index("本".encode()) + 1
    events, _ = decode_all(body[:cut], body[cut:])
    assert decode_json(events[0]) == {"delta": "日本"}


def test_byte_order_mark_and_unknown_fields_are_ignored() -> None:
    events, _ = decode_all(b'\xef\xbb\xbfretry: 100\nid: 7\nfoo: bar\ndata: {"a":1}\n\n')
    assert events == [SSEEvent(data='{"a":1}', event=None, id="7")]


def test_blank_lines_without_data_dispatch_nothing() -> None:
    events, _ = decode_all(b"\n\n\nevent: ping\n\n")
    assert events == []


def test_a_line_over_the_limit_is_a_protocol_error() -> None:
    decoder = SSEDecoder(max_line_bytes=10)
    with pytest.raises(StreamProtocolError):
        decoder.feed(b"data: " + b"x" * 20)


@pytest.mark.parametrize("data", ["not json", "[1, 2]", '"text"'])
def test_decode_json_rejects_non_objects(data: str) -> None:
    with pytest.raises(StreamProtocolError):
        decode_json(SSEEvent(data=data))


@settings(max_examples=60, deadline=None, database=None)
@given(
    cuts=st.lists(st.integers(min_value=0, max_value=len(OPENAI_STYLE)), max_size=12),
    newline=st.sampled_from([b"\n", b"\r\n", b"\r"]),
)
def test_any_chunking_gives_the_same_events(cuts: list[int], newline: bytes) -> None:
    body = OPENAI_STYLE.replace(b"\n", newline)
    points = sorted({min(c, len(body)) for c in cuts})
    chunks = [body[a:b] for a, b in zip([0, *points], [*points, len(body)], strict=True)]
    whole, _ = decode_all(body)
    pieces, _ = decode_all(*chunks)
    assert pieces == whole
    assert len(whole) == 3


def test_byte_by_byte_feeding() -> None:
    body = OPENAI_STYLE.replace(b"\n", b"\r\n")
    events, _ = decode_all(*(body[i : i + 1] for i in range(len(body))))
    assert events == decode_all(body)[0]
