"""Single-stream speed over the WebSocket beside raw llama-cpp-python decoding.

Starts a real `jupyter server` with the extension, sends one private `Generate` at a time
and times the `Token` frames as a client receives them; after each answer, with the
server idle, decodes the same prompt with raw llama-cpp-python and the same thread count.

    .venv/bin/python bench/ws_stream.py --threads 1 --tokens 128 --repeat 3

Prints tokens/s of both, their ratio (target >= 0.95), and the time from `Generate`
sent to first `Token` received. Client tokens/s counts tokens (the final frame's
`usage.completion_tokens`) from the first `Token` with text to the final one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import websocket

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from raw_decode import raw_tokens_per_second  # noqa: E402
from support.servers import running_server  # noqa: E402

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
RAW_PROMPT = f"<start_of_turn>user\n{PROMPT}<end_of_turn>\n<start_of_turn>model\n"


def one_stream(ws: websocket.WebSocket, n_tokens: int, run: int, prompt: str = PROMPT) -> tuple[float, float, int, float]:
    """(client tokens/s, ms to first token, tokens, server-reported tokens/s)."""
    config = {"max_tokens": n_tokens, "temperature": 0, "repeat_penalty": 1.0}
    sent = time.perf_counter()
    ws.send(json.dumps({"type": "Generate", "id": f"bench-{run}", "data": {"prompt": prompt, "config": config}}))
    first = last = 0.0
    while True:
        frame = json.loads(ws.recv())
        if frame["type"] != "Token":
            continue
        now = time.perf_counter()
        if frame["data"]["text"]:
            first = first or now
        if frame["data"]["is_final"]:
            last = now
            final = frame["data"]
            break
    # Tokens, not frames: a token whose text is held back (a possible stop string, part of
    # a UTF-8 character) goes out with the next one, so frames undercount tokens (~116
    # frames for 128 tokens here). The final frame carries the last token's text.
    n = final["usage"]["completion_tokens"]
    decode_rate = (n - 1) / (last - first) if n > 1 and last > first else 0.0
    return decode_rate, (first - sent) * 1000, n, final["timings"]["tokens_per_second"]


def parse_args(doc: str) -> argparse.Namespace:
    """The options of a single-stream bench (this one and bench/openai_backend.py), described
    by the first paragraph of its docstring `doc`."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--repeat", type=int, default=3)
    return parser.parse_args()


def main() -> None:
    args = parse_args(__doc__)

    with tempfile.TemporaryDirectory() as tmp:
        server_args = [
            f"--LLMChat.n_threads={args.threads}",
            "--LLMChat.system_prompt=",
            f"--LLMChat.history_path={tmp}/bench.sqlite",
        ]
        with running_server(Path(tmp), server_args) as server:
            server.wait_for_model()
            ws = websocket.create_connection(server.ws_url, header=[f"Authorization: token {server.token}"], timeout=120)
            ws.recv()  # Welcome
            one_stream(ws, 8, -1)  # warm-up
            # Interleaved: raw decoding runs in this process while the server is idle, so
            # that load from other processes on the machine hits both alike.
            runs, raw = [], []
            for run in range(args.repeat):
                runs.append(one_stream(ws, args.tokens, run))
                raw.append(raw_tokens_per_second(RAW_PROMPT, args.tokens, args.threads))
            ws.close()

    ws_rate = statistics.median(r[0] for r in runs)
    server_rate = statistics.median(r[3] for r in runs)
    ttft = statistics.median(r[1] for r in runs)
    raw_rate = statistics.median(raw)
    print(
        f"n_threads={args.threads} max_tokens={args.tokens} repeat={args.repeat} (medians; "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)"
    )
    print(f"  tokens per answer             {[r[2] for r in runs]}")
    print(f"  raw llama-cpp-python decode   {raw_rate:7.1f} tok/s")
    print(f"  over the WebSocket (client)   {ws_rate:7.1f} tok/s   ratio {ws_rate / raw_rate:.3f}")
    print(f"  server-reported decode        {server_rate:7.1f} tok/s   ratio {server_rate / raw_rate:.3f}")
    print(f"  Generate sent -> first Token  {ttft:7.1f} ms")


if __name__ == "__main__":
    main()
