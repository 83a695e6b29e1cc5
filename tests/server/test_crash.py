"""`kill -9` of a real `jupyter server` while an answer streams and posts arrive: after a
restart on the same history file, nothing acknowledged or delivered is lost, and the
answer is kept as far as it got (stored about once a second), marked interrupted."""

from __future__ import annotations

import json
import threading
import time

import websocket

from support.servers import running_server

# The small base model often answers these at length, but not always: tried in turn, with
# new seeds, until one answer streams long enough (a short one costs a second or two).
PROMPTS = (
    "Write a Python program of 80 lines that prints a calendar.",
    "Tell me a long story about a dragon who learns to program in Python.",
    "List one hundred animals, one per line, numbered.",
    "Write a long poem of twenty verses about the sea.",
)


def _stream_for(ws: websocket.WebSocket, seconds: float, texts: list[str]) -> tuple[str, list[tuple[float, str]]]:
    """Ask for long answers until one has streamed for `seconds`; (its id, [(time, text so far)]).

    The packaged base model often ends an answer after a sentence, however long the request,
    and which answers run long depends on the llama.cpp build: eight questions go together
    (decoded in one batch, so each streams several times slower than alone), round after round.
    """
    for round_ in range(4):
        for k in range(8):
            take = round_ * 8 + k
            config = {"max_tokens": 1000, "temperature": 0.8, "seed": 11 + take}
            ws.send(json.dumps({"type": "Generate", "id": f"g{take}", "room": "crash",
                                "data": {"prompt": PROMPTS[take % len(PROMPTS)], "new_thread": True, "config": config}}))
        streamed: dict[str, str] = {}
        so_far: dict[str, list[tuple[float, str]]] = {}
        started: dict[str, float] = {}
        ended = 0
        while ended < 8:
            frame = json.loads(ws.recv())
            if frame["type"] == "Text":
                texts.append(frame["data"]["message_id"])
            if frame["type"] != "Token":
                continue
            mid = frame["data"]["message_id"]
            if frame["data"]["is_final"]:
                ended += 1
                continue
            now = time.monotonic()
            streamed[mid] = streamed.get(mid, "") + frame["data"]["text"]
            started.setdefault(mid, now)
            so_far.setdefault(mid, []).append((now, streamed[mid]))
            if now - started[mid] >= seconds:
                return mid, so_far[mid]
    raise AssertionError("the model never streamed a long answer")


def test_kill_9_keeps_every_acknowledged_post_and_the_answer_so_far(tmp_path):
    args = [f"--LLMChat.history_path={tmp_path / 'chat.sqlite'}", "--LLMChat.rate_limit=0", "--LLMChat.n_ctx=4096",
            "--LLMChat.max_answers_per_user=0"]
    acknowledged: list[str] = []
    delivered: list[str] = []
    with running_server(tmp_path, args) as server:
        assert server.wait_for_model()["loaded"]
        ws = websocket.create_connection(server.ws_url, header=[f"Authorization: token {server.token}"], timeout=60)
        ws.recv()  # Welcome
        ws.send(json.dumps({"type": "Join", "room": "crash", "data": {}}))
        stop = threading.Event()

        def post() -> None:
            for i in range(10_000):
                if stop.is_set():
                    return
                try:
                    acknowledged.append(server.post("llmchat/api/rooms/crash/messages", {"content": f"post {i}"})["message_id"])
                except OSError:
                    return  # the server is gone: this post was never acknowledged
                time.sleep(0.05)

        poster = threading.Thread(target=post)
        poster.start()
        try:
            answer_id, so_far = _stream_for(ws, 3.0, delivered)
            killed = time.monotonic()
            server.process.kill()  # SIGKILL: no shutdown code runs
            server.process.wait(timeout=10)
        finally:
            stop.set()
            poster.join(timeout=20)
        ws.close()
    assert len(acknowledged) > 10
    with running_server(tmp_path, args) as server:
        history = server.get("llmchat/api/rooms/crash/messages?since=0&limit=500")["messages"]
    by_id = {m["data"]["message_id"]: m["data"] for m in history}
    assert len(by_id) == len(history)  # shown once
    assert set(acknowledged) <= set(by_id) and set(delivered) <= set(by_id)
    answer = by_id[answer_id]
    assert answer["finish_reason"] == "error" and "interrupted" in answer["error"]
    older = [text for at, text in so_far if at <= killed - 1.5][-1]  # streamed well before the kill
    assert so_far[-1][1].startswith(answer["content"]) and answer["content"].startswith(older)
