"""What the desktop takes from a browser: each message type's schema, and clear, content-free
refusals for everything else (desktop_proxy/messages.py)."""

from __future__ import annotations

import json
import logging

import pytest

from desktop_proxy.messages import INPUT, MAX_DEPTH, SIGNALLING, DropCounter, Rejected

SECRET = "s3cr3t-content"  # what a message holds must never appear in a refusal or a log line


@pytest.mark.parametrize("message", [
    {"v": 1, "type": "pointer", "x": 0, "y": 1},
    {"v": 1, "type": "pointer", "x": 0.25, "y": 0.5},
    {"v": 1, "type": "button", "button": 4, "down": False},
    {"v": 1, "type": "wheel", "dy": -1},
    {"v": 1, "type": "wheel", "dx": 1, "dy": 0},
    {"v": 1, "type": "key", "keysym": 0x1000000 + ord("你"), "down": True},
    {"v": 1, "type": "text", "text": "你好世界 grüße"},
    {"v": 1, "type": "text", "text": "字" * 128},  # desktop.js's chunk: 384 bytes of UTF-8
    {"v": 1, "type": "release-all"},
])
def test_what_the_page_sends_on_the_input_channel_is_taken(message):
    assert INPUT.parse(json.dumps(message)) == message
    assert INPUT.parse(json.dumps(message).encode()) == message


@pytest.mark.parametrize("message", [
    {"type": "offer", "sdp": "v=0\r\n"},
    {"type": "resize", "width": 1920, "height": 1080, "scale": 1.25},
    {"type": "preset", "name": "sharp"},
])
def test_what_the_page_sends_on_the_signalling_socket_is_taken(message):
    assert SIGNALLING.parse(json.dumps(message)) == message


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


REFUSED_INPUT = [
    ("not JSON", f"{{{SECRET}"),
    ("not JSON", b"\xff\xfe" + SECRET.encode()),
    ("not text", None),
    ("longer than 1024 bytes", json.dumps({"v": 1, "type": "key", "keysym": 65, "down": True, "pad": SECRET * 80000})),
    ("longer than 1024 bytes", "é" * 600),  # 600 characters, 1200 bytes
    ("nested deeper than", nested(500)),  # as deep as fits the channel's 1024 bytes
    ("nested deeper than", json.dumps({"v": 1, "type": "pointer", "x": [[[0]]], "y": 0})),
    ("not a JSON object", json.dumps([SECRET])),
    ("not a JSON object", "1e999"),  # a float that overflows is not a number either: no object anyway
    ("NaN is not a number", '{"v": 1, "type": "pointer", "x": NaN, "y": 0}'),
    ("Infinity is not a number", '{"v": 1, "type": "wheel", "dy": Infinity}'),
    ("-Infinity is not a number", '{"v": 1, "type": "wheel", "dy": -Infinity}'),
    ("field 'x' must be a number in [0, 1]", '{"v": 1, "type": "pointer", "x": 1e999, "y": 0}'),
    ("field 'x' must be a number in [0, 1]", json.dumps({"v": 1, "type": "pointer", "x": 2, "y": 0})),
    ("field 'x' must be a number in [0, 1]", json.dumps({"v": 1, "type": "pointer", "x": True, "y": 0})),
    ("field 'x' must be a number in [0, 1]", json.dumps({"v": 1, "type": "pointer", "x": SECRET, "y": 0})),
    ("field 'down' must be true or false", json.dumps({"v": 1, "type": "key", "keysym": 65, "down": "false"})),
    ("field 'down' must be true or false", json.dumps({"v": 1, "type": "button", "button": 0, "down": 0})),
    ("field 'keysym' must be an integer", json.dumps({"v": 1, "type": "key", "keysym": 65.5, "down": True})),
    ("field 'keysym' must be an integer", json.dumps({"v": 1, "type": "key", "keysym": 2 ** 64, "down": True})),
    ("field 'button' must be an integer", json.dumps({"v": 1, "type": "button", "button": -1, "down": True})),
    ("unknown type", json.dumps({"v": 1, "type": SECRET})),
    ("unknown type", json.dumps({"v": 1, "type": ["key"]})),
    ("unknown type", json.dumps({"v": 1})),
    ("not version 1", json.dumps({"v": 2, "type": "release-all"})),
    ("not version 1", json.dumps({"v": True, "type": "release-all"})),
    ("not version 1", json.dumps({"v": 1.0, "type": "release-all"})),
    ("not version 1", json.dumps({"type": "release-all"})),
    ("unknown field for 'release-all'", json.dumps({"v": 1, "type": "release-all", SECRET: 1})),
    ("'key' needs 'down'", json.dumps({"v": 1, "type": "key", "keysym": 65})),
    ("field 'text' must be a string of at most 128", json.dumps({"v": 1, "type": "text", "text": "a" * 129})),
    ("field 'text' must be a string of at most 128", json.dumps({"v": 1, "type": "text", "text": 5})),
]


@pytest.mark.parametrize("reason, raw", REFUSED_INPUT)
def test_anything_else_on_the_input_channel_is_refused_with_a_reason_that_quotes_nothing(reason, raw):
    with pytest.raises(Rejected) as refused:
        INPUT.parse(raw)
    assert refused.value.reason.startswith(reason), refused.value.reason
    assert SECRET not in refused.value.reason and SECRET not in str(refused.value)


@pytest.mark.parametrize("reason, raw", [
    ("longer than 131072 bytes", json.dumps({"type": "offer", "sdp": "a" * (1 << 20)})),  # 1 MB
    ("nested deeper than", nested(10_000)),
    ("nested deeper than", json.dumps({"type": "offer", "sdp": {"nested": {"deeper": SECRET}}})),
    ("field 'sdp' must be a string of at most 65536 characters", json.dumps({"type": "offer", "sdp": 5})),
    ("field 'width' must be a number in [1, 16384]", json.dumps({"type": "resize", "width": 0, "height": 1,
                                                               "scale": 1})),
    ("field 'scale' must be a number in [0.1, 8]", json.dumps({"type": "resize", "width": 10, "height": 10,
                                                             "scale": 1e308})),
    ("'resize' needs 'scale'", json.dumps({"type": "resize", "width": 10, "height": 10})),
    ("field 'name' must be a string of at most 64 characters", json.dumps({"type": "preset", "name": SECRET * 10})),
    ("unknown type", json.dumps({"type": "answer", "sdp": ""})),
])
def test_anything_else_on_the_signalling_socket_is_refused(reason, raw):
    with pytest.raises(Rejected) as refused:
        SIGNALLING.parse(raw)
    assert refused.value.reason.startswith(reason), refused.value.reason
    assert SECRET not in refused.value.reason


def test_a_message_nested_ten_thousand_deep_is_refused_without_a_recursion_error():
    deep = '{"type": "offer", "sdp": ' + "[" * 10_000 + "]" * 10_000 + "}"
    with pytest.raises(Rejected, match=f"nested deeper than {MAX_DEPTH}"):
        SIGNALLING.parse(deep)
    with pytest.raises(Rejected, match="longer than"):  # the input channel refuses it for its size first
        INPUT.parse(deep)


def test_drops_are_counted_and_logged_at_most_once_a_second_without_their_content(caplog):
    log = logging.getLogger("test-drops")
    drops = DropCounter("input", log, interval=3600)
    with caplog.at_level(logging.WARNING, logger="test-drops"):
        for raw in (["{", "[]", '{"type": "x"}'] * 400)[:1000]:
            try:
                INPUT.parse(raw)
            except Rejected as e:
                drops.drop(e.reason)
    assert drops.total == 1000
    assert len(caplog.records) == 1, [r.getMessage() for r in caplog.records]
    assert "input: dropped 1 message (1 not JSON); 1 since the start" == caplog.records[0].getMessage()
    drops.interval, drops._logged = 0, 0  # the next one, a second later, sums up what came meanwhile
    with caplog.at_level(logging.WARNING, logger="test-drops"):
        drops.drop("not JSON")
    assert caplog.records[-1].getMessage() == (
        "input: dropped 1000 messages (334 not JSON, 333 not a JSON object, 333 unknown type); 1001 since the start")
