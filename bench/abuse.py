"""One user trying to stop everyone else: is the model still there for the others?

Starts one real `jupyter server` with the extension on 127.0.0.1 (tests/servers.py), with
the default settings (a temporary history file), users logged in like browsers
(`ServerProcess.login()`: each login is a distinct user), and prints figures for:

- **(a) a room of huge messages**: 64 posts of 1 MB into a room, then a `Generate`
  there with the default context and one with the room set to "shared" context (every
  recent message is context): their time to first token (TTFT: `Generate` sent -> first
  `Token` with text), beside the same question in an empty room, and the server's RSS
  before the posts, after them and after the answers. Target: TTFT < 2 s, RSS growth from
  the answers < 100 MB. Before prompts were cut by characters and bounded by a budget,
  this froze the engine ~337 s and RSS went 677 MB -> 5.2 GB.
- **(b) over-long prompts**: 4 users each ask an over-long question (8,000 characters,
  more tokens than a prompt's budget); about a second later another user asks a short
  question. Its TTFT against the same question asked on a quiet server (median over
  rounds). Target: <= 3x. Also how the long ones ended (none "context is full") and
  whether they said `truncated`.
- **(c) a flood**: one user sends 100 `Generate`s at once (how many were accepted, how
  many refused with 429), then a second user asks a short question: its TTFT and total
  time against quiet. Target: answered within 3x its quiet TTFT.

Quiet figures are taken just before each loaded one, so that other load on the machine
spreads over both. Loopback only; about 3-5 minutes.

    .venv/bin/python bench/abuse.py                # all three, 3 rounds
    .venv/bin/python bench/abuse.py --only b --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from servers import ServerProcess, running_server  # noqa: E402

SHORT = "What is the capital of Italy?"
MB = 1_000_000
_tags = itertools.count(1)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def tagged(text: str) -> str:
    """A question no earlier one shares a KV prefix with beyond the system prompt."""
    return f"({next(_tags)}) {text}"


@dataclass
class Answer:
    sent: float
    first: float | None = None
    final: dict | None = None
    done: asyncio.Future = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def ttft(self) -> float:
        return (self.first or time.perf_counter()) - self.sent


class Client:
    """One user's WebSocket; answers are tracked by request id, then by message id."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.by_request: dict[str, Answer] = {}
        self.by_message: dict[str, Answer] = {}
        self.replies: dict[str, asyncio.Future] = {}
        self.refused: list[dict] = []
        self.ids = itertools.count()
        self.reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, server: ServerProcess, headers: dict[str, str]) -> Client:
        request = HTTPRequest(server.ws_url, headers=headers)
        conn = await websocket_connect(request, subprotocols=["llmchat.v1"], max_message_size=64 << 20)
        welcome = json.loads(await conn.read_message())
        assert welcome["type"] == "Welcome", welcome
        return cls(conn)

    async def _read(self) -> None:
        while (raw := await self.conn.read_message()) is not None:
            now = time.perf_counter()
            frame = json.loads(raw)
            kind, data, rid = frame["type"], frame.get("data") or {}, frame.get("id")
            if kind == "Token":
                answer = self.by_message.get(data["message_id"])
                if answer is None:
                    continue
                if data["text"] and answer.first is None:
                    answer.first = now
                if data["is_final"]:
                    answer.final = data
                    answer.first = answer.first or now
                    if not answer.done.done():
                        answer.done.set_result(answer)
            elif kind == "Ack" and rid in self.by_request:
                answer = self.by_request.pop(rid)
                self.by_message[data["message_id"]] = answer
            elif kind == "Error" and rid in self.by_request:
                answer = self.by_request.pop(rid)
                self.refused.append(data)
                answer.done.set_exception(RuntimeError(f"{data['code']}: {data['message']}"))
            elif rid in self.replies:
                self.replies.pop(rid).set_result(frame)

    async def call(self, type_: str, data: dict | None = None, room: str | None = None) -> dict:
        rid = f"r{next(self.ids)}"
        self.replies[rid] = asyncio.get_running_loop().create_future()
        await self.send(type_, data, room, rid)
        return await asyncio.wait_for(self.replies[rid], 60)

    async def send(self, type_: str, data: dict | None, room: str | None, rid: str) -> None:
        frame = {"type": type_, "id": rid, "data": data or {}}
        if room:
            frame["room"] = room
        await self.conn.write_message(json.dumps(frame))

    async def ask(self, prompt: str, room: str | None = None, max_tokens: int = 16) -> Answer:
        """Send a `Generate` and return its Answer at once (await `answer.done` for the end)."""
        rid = f"g{next(self.ids)}"
        answer = Answer(time.perf_counter())
        answer.done.add_done_callback(lambda f: f.exception())  # refused answers are counted, not raised
        self.by_request[rid] = answer
        await self.send("Generate", {"prompt": prompt, "config": {"max_tokens": max_tokens, "temperature": 0}}, room, rid)
        return answer

    async def cancel_all(self) -> None:
        for message_id, answer in self.by_message.items():
            if not answer.done.done():
                await self.send("Cancel", {"message_id": message_id}, None, f"c{next(self.ids)}")

    def close(self) -> None:
        self.conn.close()


async def quiet_ttft(client: Client, room: str) -> tuple[float, float]:
    """TTFT and total time of the short question on an idle server, asked in the user's
    room as the widget asks (the room's conversation is kept in the KV cache)."""
    answer = await client.ask(tagged(SHORT), room=room)
    await asyncio.wait_for(answer.done, 120)
    return answer.ttft, time.perf_counter() - answer.sent


async def until_idle(server: ServerProcess, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        model = server.get("llmchat/api/stats")["model"]
        if not model["active_sequences"] and not model["queue_depth"]:
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("the server did not go idle")


# -- (a) ------------------------------------------------------------------------------------------


def post(server: ServerProcess, path: str, body: dict, method: str = "POST") -> int:
    request = urllib.request.Request(
        server.url + path, data=json.dumps(body).encode(), method=method,
        headers={"Authorization": f"token {server.token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


async def huge_room(server: ServerProcess, asker: Client) -> None:
    pid = server.process.pid
    room = "huge"
    await asker.call("Join", {}, "quiet")
    quiet, _ = await timed(asker, "quiet")  # warms the model up too
    quiet, _ = await timed(asker, "quiet")
    rss0 = rss_mib(pid)
    t0 = time.perf_counter()
    posted = 0
    while posted < 64:
        status = post(server, f"llmchat/api/rooms/{room}/messages", {"content": f"post {posted} " + "x" * (MB - 16)})
        if status == 429:  # the per-user rate limit: wait, as a patient attacker would
            await asyncio.sleep(0.2)
            continue
        assert status == 201, status
        posted += 1
    t_post = time.perf_counter() - t0
    rss1 = rss_mib(pid)
    await asker.call("Join", {}, room)
    own, _ = await timed(asker, room)
    assert post(server, f"llmchat/api/rooms/{room}", {"context": "shared"}, "PUT") == 200
    shared, final = await timed(asker, room)
    await asyncio.sleep(0.5)
    rss2 = rss_mib(pid)
    # The same shared context filled by ordinary chatter (64 lines of ~100 characters): what
    # any busy shared room costs, whatever the size of its messages.
    chat = "chatty"
    assert post(server, f"llmchat/api/rooms/{chat}", {"context": "shared"}, "PUT") == 200
    for i in range(64):
        while post(server, f"llmchat/api/rooms/{chat}/messages", {"content": f"note {i}: " + "the results look fine to me, " * 3}) == 429:
            await asyncio.sleep(0.2)
    await asker.call("Join", {}, chat)
    chatty, chatty_final = await timed(asker, chat)
    print(f"(a) 64 posts of 1 MB in {t_post:.1f} s, then a Generate in that room: TTFT {own:.2f} s with the default "
          f"context (target < 2 s; {quiet:.2f} s in an empty room)")
    print(f"    with the room set to shared context: {shared:.2f} s, prompt {final['usage']['prompt_tokens']} tokens, "
          f"truncated={final.get('truncated', False)}; a shared room of 64 short notes: {chatty:.2f} s, "
          f"prompt {chatty_final['usage']['prompt_tokens']} tokens")
    print(f"    server RSS {rss0:.0f} MiB before the posts, {rss1:.0f} after them (+{rss1 - rss0:.0f}), "
          f"{rss2:.0f} after the two answers (+{rss2 - rss1:.0f} from the Generates; target < 100)")


async def timed(client: Client, room: str) -> tuple[float, dict]:
    answer = await client.ask(tagged(SHORT), room=room)
    await asyncio.wait_for(answer.done, 600)
    return answer.ttft, answer.final


# -- (b) ------------------------------------------------------------------------------------------


def over_long(i: int) -> str:
    body = " ".join(f"Line {i}.{k}: the quick brown fox jumps over the lazy dog." for k in range(160))
    return tagged(body[:7900] + "\nSummarise the lines above.")


async def long_prompts(server: ServerProcess, rounds: int) -> None:
    longs = [await Client.open(server, server.login()) for _ in range(4)]
    other = await Client.open(server, server.login())
    await other.call("Join", {}, "other-b")
    quiet, loaded, endings, engine_ttft = [], [], [], []
    for _ in range(rounds):
        await until_idle(server)
        quiet.append((await quiet_ttft(other, "other-b"))[0])
        running = [await c.ask(over_long(i), max_tokens=64) for i, c in enumerate(longs)]
        await asyncio.sleep(1.0)  # the four are being evaluated
        answer = await other.ask(tagged(SHORT), room="other-b")
        await asyncio.wait_for(answer.done, 600)
        loaded.append(answer.ttft)
        engine_ttft.append(answer.final["timings"]["ttft_ms"] / 1000)
        for a in running:
            try:
                await asyncio.wait_for(a.done, 600)
                endings.append((a.final["finish_reason"], a.final.get("truncated", False), a.final.get("error")))
            except RuntimeError as error:
                endings.append(("refused", False, str(error)))
    q, l = statistics.median(quiet), statistics.median(loaded)
    print(f"(b) 4 over-long prompts (~8,000 characters each, 4 users) running, another user's short question:")
    print(f"    TTFT {l:.2f} s loaded vs {q:.2f} s quiet: {l / q:.1f}x (target <= 3x); "
          f"loaded {', '.join(f'{x:.2f}' for x in loaded)} (the engine's own: "
          f"{', '.join(f'{x:.2f}' for x in engine_ttft)}); quiet {', '.join(f'{x:.2f}' for x in quiet)}")
    print(f"    the long ones: {sum(e[1] for e in endings)} of {len(endings)} said truncated; endings "
          f"{ {r: sum(e[0] == r for e in endings) for r in sorted({e[0] for e in endings})} }"
          f"{'; errors: ' + '; '.join(str(e[2]) for e in endings if e[2]) if any(e[2] for e in endings) else ''}")
    for c in (*longs, other):
        c.close()


# -- (c) ------------------------------------------------------------------------------------------


async def flood(server: ServerProcess, rounds: int) -> None:
    flooder = await Client.open(server, server.login())
    other = await Client.open(server, server.login())
    await other.call("Join", {}, "other-c")
    quiet, loaded, totals, quiet_totals, accepted = [], [], [], [], []
    for _ in range(rounds):
        await until_idle(server)
        q, q_total = await quiet_ttft(other, "other-c")
        quiet.append(q)
        quiet_totals.append(q_total)
        flooder.refused.clear()
        flood_answers = [await flooder.ask(tagged("Write a long story about a dragon."), max_tokens=256) for _ in range(100)]
        await asyncio.sleep(0.5)
        accepted.append(100 - len(flooder.refused))
        answer = await other.ask(tagged(SHORT), room="other-c")
        await asyncio.wait_for(answer.done, 600)
        loaded.append(answer.ttft)
        totals.append(time.perf_counter() - answer.sent)
        refusal = flooder.refused[0]["message"] if flooder.refused else ""
        await flooder.cancel_all()
        await asyncio.gather(*(a.done for a in flood_answers), return_exceptions=True)
    q, l = statistics.median(quiet), statistics.median(loaded)
    print(f"(c) one user floods 100 Generates: {', '.join(map(str, accepted))} accepted per round, the rest refused:")
    print(f"    \"{refusal}\"")
    print(f"    another user's short question: TTFT {l:.2f} s vs {q:.2f} s quiet: {l / q:.1f}x (target <= 3x); "
          f"answered in {statistics.median(totals):.2f} s vs {statistics.median(quiet_totals):.2f} s quiet")
    flooder.close()
    other.close()


async def main(server: ServerProcess, only: str, rounds: int) -> None:
    model = server.wait_for_model(120)
    print(f"model {model['name']}: n_ctx {model['n_ctx']}, parallel {model['parallel']}, "
          f"prompt budget {model.get('prompt_budget', '?')} tokens, threads {model.get('threads')}")
    if "a" in only:
        asker = await Client.open(server, server.login())
        await huge_room(server, asker)
        asker.close()
    if "b" in only:
        await long_prompts(server, rounds)
    if "c" in only:
        await flood(server, rounds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="abc", help="which parts: any of a, b, c")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with running_server(Path(tmp), [f"--LLMChat.history_path={Path(tmp) / 'h.sqlite'}"]) as server:
            asyncio.run(main(server, args.only, args.rounds))
