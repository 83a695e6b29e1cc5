"""The wire format is typed both ways, in one place: `jupyter_llmchat.protocol`.

The TypeScript types the widget reads frames with are generated from the Python structs
(js/src/wire.ts; `npm test` type-checks the widget against them), the structs write the
bytes the integration tests pin, and the kernel side builds its frames through `protocol`.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from jupyter_llmchat import protocol
from jupyter_llmchat.protocol import Author, Person, Text, Timings, Token, Usage

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parent.parent


def load_generator():
    spec = importlib.util.spec_from_file_location("gen_wire_ts", ROOT / "scripts" / "gen_wire_ts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_checked_in_typescript_is_what_the_structs_generate_now():
    generator = load_generator()
    assert generator.OUT == ROOT / "js" / "src" / "wire.ts"
    assert generator.OUT.read_text(encoding="utf-8") == generator.render(), (
        "js/src/wire.ts is stale: run `.venv/bin/python scripts/gen_wire_ts.py`, then `cd js && npm test`"
    )


def test_the_typescript_says_which_fields_may_be_absent_or_null():
    wire = load_generator().render()
    # A field with a default is optional; omit_defaults structs never write it as null...
    assert "  finish_reason?: \"cancelled\" | \"error\" | \"length\" | \"stop\";\n" in wire
    # ...while a required field is always written, null included.
    assert re.search(r"export interface History \{\n  messages: Record<string, unknown>\[\];\n  head_seq: number;\n"
                     r"  epoch: string \| null;\n\}", wire)
    assert f"export const PROTOCOL = {json.dumps(protocol.PROTOCOL)};" in wire
    assert "export const ROOM_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$/;" in wire
    for type_, struct in protocol.SERVER_TYPES.items():
        assert f"  {type_}: {struct.__name__};" in wire


def test_token_frames_carry_the_final_fields_only_on_the_last_token():
    piece = protocol.encode("Token", Token("m-1", 0, "Hi", False), room="r", seq=7)
    assert piece == b'{"type":"Token","room":"r","seq":7,"data":{"message_id":"m-1","index":0,"text":"Hi","is_final":false}}'
    final = Token("m-1", 1, "", True, "cancelled", Usage(3, 0), Timings(0.4, 61.0, 57.9))
    assert json.loads(protocol.encode("Token", final, id="g1"))["data"] == {
        "message_id": "m-1", "index": 1, "text": "", "is_final": True, "finish_reason": "cancelled",
        "usage": {"prompt_tokens": 3, "completion_tokens": 0},  # a 0 is written: only None is left out
        "timings": {"queue_ms": 0.4, "ttft_ms": 61.0, "tokens_per_second": 57.9},
    }


def test_optional_fields_are_left_out_and_required_ones_written_even_when_null():
    ada = Author("ada", "Ada", "user")
    assert protocol.encode("Text", Text("m-1", "hi", ada, "T"), room="r", seq=1) == (
        b'{"type":"Text","room":"r","seq":1,"data":{"message_id":"m-1","content":"hi",'
        b'"author":{"username":"ada","name":"Ada","kind":"user"},"created":"T"}}'
    )
    gone = protocol.Presence([], [Person("ada", "Ada")], 0)
    assert protocol.encode("Presence", gone, room="r", seq=0) == (
        b'{"type":"Presence","room":"r","seq":0,"data":{"joined":[],"left":[{"username":"ada","name":"Ada"}],"count":0}}'
    )
    assert protocol.encode("History", protocol.History([], 0, None)) == (
        b'{"type":"History","data":{"messages":[],"head_seq":0,"epoch":null}}'
    )
    assert protocol.encode("Pong", protocol.Pong(), id="p") == b'{"type":"Pong","id":"p","data":{}}'


def test_client_frames_are_what_the_server_decodes():
    for type_, data, expected in [
        ("Join", protocol.JoinData(), protocol.JoinData()),
        ("Cancel", protocol.CancelData("m-1"), protocol.CancelData("m-1")),
        ("Ping", protocol.EmptyData(), protocol.EmptyData()),
        ("Generate", {"prompt": "Grüße", "config": {"max_tokens": 2}},
         protocol.GenerateData("Grüße", protocol.GenerateConfig(max_tokens=2))),
    ]:
        raw = protocol.client_frame(type_, data, id="k-1", room="general")
        envelope = protocol.decode_envelope(raw)
        assert (envelope.type, envelope.id, envelope.room) == (type_, "k-1", "general")
        assert protocol.decode_data(envelope) == expected
    assert protocol.client_frame("Join", protocol.JoinData(), id="j") == b'{"type":"Join","id":"j","data":{}}'


def test_one_protocol_constant_and_no_frame_built_by_hand_on_the_kernel_side():
    package = ROOT / "jupyter_llmchat"
    sources = [*package.rglob("*.py"), *(ROOT / "js" / "src").glob("*.ts")]
    spelled = [p for p in sources if '"llmchat.v1"' in p.read_text(encoding="utf-8")]
    assert sorted(p.relative_to(ROOT).as_posix() for p in spelled) == ["js/src/wire.ts", "jupyter_llmchat/protocol/__init__.py"]
    for path in (package / "kernel").glob("*.py"):
        assert not re.search(r'\{\s*"type"\s*:', path.read_text(encoding="utf-8")), f"{path.name} builds a frame by hand"
