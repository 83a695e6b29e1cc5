"""Random and mutated llmchat.v1 frames, sent over real sockets, each checked for its answer.

Used by bench/fuzz.py (the long run) and tests/server/test_fuzz.py (a short one). Every
fuzz frame is followed by a `Ping` whose `Pong` (or `Error 429`) closes the frame's reply
window: the `Error`s in that window are the frame's. A finding is a 500, a socket that ends
without a close frame (1006) or with an unexpected code, an `Error` that lacks an id the
frame carried, or a REST reply >= 500 (503 while the model loads excepted).
"""

from __future__ import annotations

import base64
import http.client
import json
import random
import socket
import struct
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import websocket

CLIENT_TYPES = ["Join", "Leave", "Text", "Generate", "Cancel", "History", "Stats", "Ping", "Custom", "Binary", "Audio", "RoomSettings"]
HUGE = [2**31, 2**53 + 1, 2**62, 2**63 - 1, 2**63, 2**64, -(2**63) - 1, 10**30, 10**400, -1, 0, 1e308, -1e308, 1.5, "1e999"]
ODD_STRINGS = ["", "\u0000", "a\u0000b", "\\ud800", "\\udfff", "\\ud83d", "x" * 129, "general\n", "é" * 40, "𝄞", "null", " ", "../..", "<script>"]
JUNK = '{}[]",:\\ 0123456789.-+eEtruefalsnul\n\t\u0000abc"'


@dataclass
class Sent:
    """A fuzz frame: its payload, how it is sent, and what the server must do with it."""

    payload: str | bytes
    binary: bool = False  # a binary frame (else text)
    expected_id: str | None = None  # every Error for it must carry this id
    expect_close: int | None = None  # 1009 oversized, 1007 not UTF-8


def readable_id(payload: str | bytes) -> str | None:
    """The frame's id if a strict JSON parser can read it (the oracle, independent of the server)."""
    try:
        text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
        value = json.loads(text, parse_constant=_reject)
    except (ValueError, RecursionError):
        return None
    request_id = value.get("id") if isinstance(value, dict) else None
    if not isinstance(request_id, str) or len(request_id) > 128:
        return None
    try:
        request_id.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: not a string the server can echo
        return None
    return request_id


def _reject(constant: str) -> Any:
    raise ValueError(constant)


class FrameMaker:
    """Makes fuzz frames; `rooms` bounds the distinct room names it uses."""

    def __init__(self, rng: random.Random, size_limit: int, rooms: int = 5000) -> None:
        self.rng = rng
        self.size_limit = size_limit
        self.rooms = [f"fz-{n}" for n in range(rooms)]
        self.ids = 0

    def room(self) -> Any:
        r = self.rng.random()
        if r < 0.8:
            return self.rng.choice(self.rooms[:8] if self.rng.random() < 0.5 else self.rooms)
        return self.rng.choice([*ODD_STRINGS, 5, None, ["a"], {"a": 1}, "r" * 128])

    def value(self, depth: int = 0) -> Any:
        r = self.rng.random()
        if r < 0.25:
            return self.rng.choice(HUGE)
        if r < 0.5:
            return self.rng.choice(ODD_STRINGS)
        if r < 0.6 and depth < 3:
            return [self.value(depth + 1) for _ in range(self.rng.randrange(4))]
        if r < 0.7 and depth < 3:
            return {self.rng.choice(["a", "id", "type", "prompt"]): self.value(depth + 1)}
        return self.rng.choice([None, True, False, "word", 1, 3.5])

    def maybe(self, good: Any) -> Any:
        return good if self.rng.random() < 0.6 else self.value()

    def data(self, kind: str) -> Any:
        rng, maybe = self.rng, self.maybe
        if kind == "Join":
            return {"since": maybe(rng.randrange(50)), "epoch": maybe(rng.choice(["e-1", "x" * 300]))} if rng.random() < 0.5 else {}
        if kind == "Text":
            return {"content": maybe("hello " * rng.randrange(1, 50))}
        if kind == "Generate":
            sane = {"max_tokens": 3, "temperature": 0.7, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "repeat_penalty": 1.1, "seed": 7, "stop": ["\n"]}
            config = {name: maybe(sane[name]) for name in rng.sample(sorted(sane), rng.randrange(4))}
            if rng.random() < 0.3:
                config = {"max_tokens": rng.choice([10**9, 2**63, 1, 0]), "temperature": rng.choice([1e308, 5, 0]), "top_k": 2**62, "stop": ["x" * 64] * 8}
            return {"prompt": maybe("Say hi."), "config": maybe(config), "new_thread": maybe(True), "reply_to": maybe("m-x"),
                    "attachments": maybe([{"kind": "df", "text": "a" * rng.randrange(100)}] * rng.randrange(10))}
        if kind == "Cancel":
            return {"message_id": maybe("m-" + str(rng.randrange(100)))}
        if kind == "History":
            return {"before_seq": maybe(rng.choice(HUGE)), "limit": maybe(rng.choice([1, 500, 501, 2**63]))}
        if kind == "Custom":
            return {"kind": maybe("cursor"), "payload": self.value()}
        if kind == "Binary":
            blob = base64.b64encode(rng.randbytes(rng.randrange(64))).decode()
            return {"data": maybe(blob), "mime_type": maybe("image/png")}
        if kind == "RoomSettings":
            return {"system_prompt": maybe("Be brief."), "context": maybe(rng.choice(["own", "shared", "all"]))}
        if kind == "Audio":
            return {"data": "AAAA"}
        return self.value() if rng.random() < 0.2 else {}

    def next_id(self) -> str:
        self.ids += 1
        return f"f{self.ids}"

    def structured(self) -> dict[str, Any]:
        rng = self.rng
        kind = rng.choice(CLIENT_TYPES) if rng.random() < 0.9 else rng.choice(["Dance", "", "ping", "__class__", "_on_ping", 5, None])
        frame: dict[str, Any] = {"type": kind, "id": self.next_id() if rng.random() < 0.9 else self.value()}
        if rng.random() < (0.4 if kind == "Generate" else 0.8):
            frame["room"] = self.room()
        if rng.random() < 0.05:
            frame["seq"] = rng.choice(HUGE)
        frame["data"] = self.data(kind) if isinstance(kind, str) else self.value()
        return frame

    def mutate(self, text: str) -> str:
        rng = self.rng
        for _ in range(rng.randrange(1, 6)):
            if not text:
                break
            at = rng.randrange(len(text))
            choice = rng.random()
            if choice < 0.3:
                text = text[:at] + rng.choice(JUNK) + text[at + 1 :]
            elif choice < 0.5:
                text = text[:at] + text[at + rng.randrange(1, 20) :]
            elif choice < 0.7:
                text = text[:at] + "".join(rng.choice(JUNK) for _ in range(rng.randrange(1, 10))) + text[at:]
            elif choice < 0.8:
                text = text[:at]
            else:
                end = min(len(text), at + rng.randrange(1, 30))
                text = text[:at] + text[at:end] * rng.randrange(2, 50) + text[end:]
        return text

    def nested(self) -> str:
        depth = self.rng.choice([100, 1000, 5000, 50_000, min(200_000, self.size_limit // 3)])
        opener, closer = self.rng.choice([("[", "]"), ('{"a":', "}")])
        deep = opener * depth + "1" + closer * depth
        where = self.rng.choice(["data", "id", "type", "room", "config"])
        if where == "config":
            return json.dumps({"type": "Generate", "id": self.next_id(), "data": {"prompt": "x", "config": "@"}}).replace('"@"', deep)
        head = {"type": "Text", "id": self.next_id(), "room": "fz-0", "data": "@"}
        head[where] = "@"
        return json.dumps(head).replace('"@"', deep, 1)

    def make(self) -> Sent:
        rng = self.rng
        r = rng.random()
        if r < 0.45:
            payload: str | bytes = json.dumps(self.structured())
        elif r < 0.75:
            payload = self.mutate(json.dumps(self.structured()))
        elif r < 0.8:
            payload = self.nested()
        elif r < 0.85:
            payload = "".join(rng.choice(JUNK) for _ in range(rng.randrange(1, 200)))
        elif r < 0.9:
            raw = json.dumps(self.structured()).encode() if rng.random() < 0.5 else rng.randbytes(rng.randrange(1, 300))
            return Sent(raw, binary=True, expected_id=readable_id(raw))
        elif r < 0.94:  # surrogates, NUL and control characters escaped inside JSON strings
            frame = self.structured()
            frame["data"] = {"content": rng.choice(["\ud800", "a\udfffb", "\u0000", "\x01\x1f"]), "prompt": "\ud83d"}
            payload = json.dumps(frame)
        elif r < 0.97:  # thousands of room names
            payload = json.dumps({"type": rng.choice(["Join", "Leave", "History"]), "id": self.next_id(), "room": rng.choice(self.rooms), "data": {}})
        elif r < 0.985:
            return Sent(self.mutate(json.dumps(self.structured())).encode("utf-8") + b"\xed\xa0\x80\xff", expect_close=1007)
        elif r < 0.995:
            payload = json.dumps({"type": "Text", "id": self.next_id(), "room": "fz-0", "data": {"content": "y" * (self.size_limit + 10)}})
            return Sent(payload, expect_close=1009)
        else:
            payload = json.dumps({"type": "Ping", "id": self.next_id(), "data": {}})
        return Sent(payload, expected_id=readable_id(payload))


@dataclass
class Findings:
    frames: int = 0
    errors: Counter = field(default_factory=Counter)  # Error codes seen
    closes: Counter = field(default_factory=Counter)  # close codes seen (expected ones too)
    silent: int = 0  # frames with no reply at all in their window
    problems: list[str] = field(default_factory=list)
    rest: Counter = field(default_factory=Counter)  # REST status codes
    lock: threading.Lock = field(default_factory=threading.Lock)

    def problem(self, text: str) -> None:
        with self.lock:
            if len(self.problems) < 200:
                self.problems.append(text)


class Peer:
    """One socket of the fuzzer, reopened when the server closes it."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.url, self.headers = url, headers
        self.ws: websocket.WebSocket | None = None
        self.syncs = 0

    def open(self) -> None:
        self.ws = websocket.create_connection(
            self.url, header=[f"{k}: {v}" for k, v in self.headers.items()], subprotocols=["llmchat.v1"], timeout=60,
            sockopt=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],  # two small writes, then a read: no 40 ms Nagle wait
        )
        welcome = json.loads(self.ws.recv())
        assert welcome["type"] == "Welcome", welcome

    def exchange(self, sent: Sent, found: Findings) -> None:
        """Send one fuzz frame and a sync Ping; check what comes back until the sync reply."""
        if self.ws is None:
            self.open()
        ws = self.ws
        assert ws is not None
        self.syncs += 1
        sync = f"sync-{self.syncs}"
        try:
            ws.send(sent.payload, opcode=websocket.ABNF.OPCODE_BINARY if sent.binary else websocket.ABNF.OPCODE_TEXT)
            if sent.expect_close is None:
                ws.send(json.dumps({"type": "Ping", "id": sync, "data": {}}))
        except (OSError, websocket.WebSocketException) as error:
            self._closed(sent, None, found, f"send failed: {error!r}")
            return
        replies = 0
        while True:
            try:
                opcode, data = ws.recv_data(control_frame=True)
            except websocket.WebSocketTimeoutException:
                found.problem(f"no reply in 60 s to {_show(sent.payload)}")
                self._drop()
                return
            except (OSError, websocket.WebSocketException):
                self._closed(sent, 1006, found, "no close frame")
                return
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                self._closed(sent, code, found, data[2:].decode("utf-8", "replace"))
                return
            if opcode != websocket.ABNF.OPCODE_TEXT:
                continue
            frame = json.loads(data)
            if frame.get("id") == sync:
                if frame["type"] == "Error":
                    found.errors[frame["data"]["code"]] += 1
                break
            if frame["type"] != "Error":
                replies += frame.get("id") is not None
                continue
            replies += 1
            code = frame["data"]["code"]
            with found.lock:
                found.errors[code] += 1
            if code >= 500 and code not in (501, 503):
                found.problem(f"Error {code} {frame['data']['message']!r} for {_show(sent.payload)}")
            if sent.expected_id is not None and frame.get("id") != sent.expected_id:
                found.problem(f"Error without the id {sent.expected_id!r}: {frame} for {_show(sent.payload)}")
        with found.lock:
            found.frames += 1
            found.silent += replies == 0

    def _closed(self, sent: Sent, code: int | None, found: Findings, reason: str) -> None:
        with found.lock:
            found.frames += 1
            found.closes[code] += 1
        if code != sent.expect_close and not (code == 1009 and len(sent.payload) > 1000):
            found.problem(f"closed {code} ({reason}) after {_show(sent.payload)}")
        self._drop()

    def _drop(self) -> None:
        if self.ws is not None:
            try:
                self.ws.close(timeout=1)
            except Exception:
                pass
        self.ws = None


def _show(payload: str | bytes) -> str:
    text = repr(payload)
    return text if len(text) < 160 else f"{text[:150]}... ({len(payload)} long)"


def rest_fuzz(host: str, port: int, headers: dict[str, str], rng: random.Random, maker: FrameMaker, found: Findings) -> None:
    """One odd REST call; any status >= 500 other than 503 is a finding."""
    room = rng.choice([*maker.rooms[:4], "bad room", "%00", "x" * 200, "general%0A", "a/b"])
    room_path = urllib.parse.quote(room, safe="%")
    method, path, body = rng.choice([
        ("GET", f"/llmchat/api/rooms/{room_path}/messages?since={rng.choice(HUGE)}&limit={rng.choice(HUGE)}", None),
        ("GET", f"/llmchat/api/rooms/{room_path}?offset={rng.choice(HUGE)}&limit={rng.choice(HUGE)}", None),
        ("POST", f"/llmchat/api/rooms/{room_path}/messages", maker.mutate(json.dumps({"content": "hi", "author_name": maker.value()}))),
        ("POST", f"/llmchat/api/rooms/{room_path}/generate", json.dumps({"prompt": maker.value(), "config": maker.data("Generate").get("config")})),
        ("PUT", f"/llmchat/api/rooms/{room_path}", maker.mutate(json.dumps(maker.data("RoomSettings")))),
        ("GET", "/llmchat/api/stats", None),
    ])
    connection = http.client.HTTPConnection(host, port, timeout=60)
    try:
        connection.request(method, path, body=body, headers={**headers, "Content-Type": "application/json"})
        status = connection.getresponse().status
    except (OSError, http.client.HTTPException) as error:
        found.problem(f"REST {method} {path}: {error!r}")
        return
    finally:
        connection.close()
    with found.lock:
        found.rest[status] += 1
    if status >= 500 and status != 503:
        found.problem(f"REST {status} for {method} {path} {body!r:.100}")


def run(
    ws_url: str, users: list[dict[str, str]], frames: int, *, connections: int = 8, seed: int = 1,
    size_limit: int = 1024 * 1024, rest_every: int = 50,
) -> Findings:
    """Send `frames` fuzz frames over `connections` sockets (spread over `users`' headers)."""
    found = Findings()
    parsed = urllib.parse.urlparse(ws_url)
    per_peer = frames // connections

    def worker(n: int) -> None:
        rng = random.Random(seed * 1000 + n)
        maker = FrameMaker(rng, size_limit)
        headers = users[n % len(users)]
        peer = Peer(ws_url, headers)
        for i in range(per_peer):
            if rest_every and i % rest_every == 0:
                rest_fuzz(parsed.hostname or "127.0.0.1", parsed.port or 80, headers, rng, maker, found)
            try:
                peer.exchange(maker.make(), found)
            except Exception as error:  # the fuzzer's own trouble must show, not hang the run
                found.problem(f"fuzzer: {error!r}")
                peer._drop()
        peer._drop()

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return found


def ask(ws_url: str, headers: dict[str, str], prompt: str = "Say hello.", timeout: float = 120.0) -> tuple[str, float]:
    """A normal Generate on a fresh socket: (the answer's finish reason, seconds to its end)."""
    ws = websocket.create_connection(ws_url, header=[f"{k}: {v}" for k, v in headers.items()], subprotocols=["llmchat.v1"], timeout=timeout)
    try:
        started = time.monotonic()
        ws.recv()  # Welcome
        request_id = f"normal-{time.monotonic_ns()}"  # a reused id would get the first Ack back, not a new answer
        ws.send(json.dumps({"type": "Generate", "id": request_id, "data": {"prompt": prompt, "config": {"max_tokens": 8}}}))
        seen: list[str] = []
        while True:
            try:
                frame = json.loads(ws.recv())
            except websocket.WebSocketTimeoutException:
                return f"no final Token in {timeout:g} s; got {seen[-5:]}", time.monotonic() - started
            seen.append(f"{frame['type']} {str(frame.get('data'))[:80]}")
            if frame["type"] == "Error":
                return f"Error {frame['data']['code']}: {frame['data']['message']}", time.monotonic() - started
            if frame["type"] == "Token" and frame["data"]["is_final"]:
                return frame["data"]["finish_reason"], time.monotonic() - started
    finally:
        ws.close()


def tracebacks(log_text: str) -> list[str]:
    """The tracebacks a server log holds (their last line each)."""
    lines = log_text.splitlines()
    found = []
    for n, line in enumerate(lines):
        if line.startswith("Traceback"):
            tail = next((later for later in lines[n + 1 :] if later and not later.startswith((" ", "Traceback"))), "?")
            found.append(tail)
    return found


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0
