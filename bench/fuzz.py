"""Every frame answered: random and mutated frames against a real server.

Starts a real `jupyter server` with the extension and the real model, then sends fuzz
frames (tests/support/fuzzing.py: invalid JSON, wrong types, huge numbers, deep nesting, NUL and
lone surrogates, unknown types, binary, oversized and non-UTF-8 frames, bogus since/epoch,
thousands of room names, absurd generation settings) over many sockets of several users,
with odd REST calls among them.

    .venv/bin/python bench/fuzz.py --frames 100000 --connections 16

Prints the frames sent and their rate, the Error codes and close codes seen, and the
findings: 500s, 1006 closes, Errors without the request's id, REST 5xx, tracebacks in the
server log; the server's RSS before, after, and after the rooms were dropped; and whether
a normal Generate is still answered afterwards. Exits 1 on any finding.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from support import fuzzing  # noqa: E402
from support.servers import running_server  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--logins", type=int, default=3, help="cookie users besides the token user")
    parser.add_argument("--rate-limit", type=float, default=0.0, help="LLMChat.rate_limit (0: every frame is parsed in full)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1, help="runs of --frames each (new seeds): RSS after each shows growth or a plateau")
    args = parser.parse_args()
    size_limit = 256 * 1024
    with tempfile.TemporaryDirectory() as tmp, running_server(Path(tmp), [
        f"--LLMChat.history_path={tmp}/history.sqlite", "--LLMChat.n_threads=1", "--LLMChat.max_tokens=4",
        f"--LLMChat.rate_limit={args.rate_limit}", f"--LLMChat.message_size_limit={size_limit}",
        "--LLMChat.room_cleanup_delay=2", "--LLMChat.ping_interval=0",
    ]) as server:
        server.wait_for_model()
        token = {"Authorization": f"token {server.token}"}
        users = [token, *(server.login() for _ in range(args.logins))]
        assert server.process is not None
        pid = server.process.pid
        warm, _ = fuzzing.ask(server.ws_url, token)
        rss_before = fuzzing.rss_mb(pid)
        started = time.monotonic()
        rss_rounds = []
        for round_ in range(args.rounds):
            found = fuzzing.run(server.ws_url, users, args.frames, connections=args.connections, seed=args.seed + round_, size_limit=size_limit)
            rss_rounds.append(fuzzing.rss_mb(pid))
            if found.problems:
                break
        took = time.monotonic() - started
        rss_after = rss_rounds[-1]
        time.sleep(4)  # empty rooms are dropped after room_cleanup_delay
        rss_settled = fuzzing.rss_mb(pid)
        model = server.get("llmchat/api/stats")["model"]
        try:
            finish, answer_s = fuzzing.ask(server.ws_url, token)
        except Exception as error:
            finish, answer_s = f"not answered: {error!r}", float("nan")
        log = server.log_path.read_text(errors="replace")
    tracebacks = fuzzing.tracebacks(log)
    frames = found.frames + args.frames * (len(rss_rounds) - 1)
    print(f"frames        {frames} in {took:.1f} s ({frames / took:.0f}/s) over {args.connections} sockets, {len(users)} users")
    print("(counts below: the last round)" if len(rss_rounds) > 1 else "", end="\n" if len(rss_rounds) > 1 else "")
    print(f"Error codes   {dict(sorted(found.errors.items()))}")
    print(f"close codes   {dict(found.closes)}")
    print(f"REST status   {dict(sorted(found.rest.items()))}")
    print(f"no reply      {found.silent} frames (room events only, e.g. a Text or a Cancel)")
    rounds = ", ".join(f"{rss:.0f}" for rss in rss_rounds)
    print(f"RSS (MB)      before {rss_before:.0f}, after each round {rounds} ({rss_after / rss_before:.2f}x), settled {rss_settled:.0f} ({rss_settled / rss_before:.2f}x)")
    print(f"model after   {model}")
    print(f"normal answer {finish} in {answer_s:.2f} s (warm-up: {warm})")
    print(f"tracebacks    {len(tracebacks)} {sorted(set(tracebacks))[:5]}")
    print(f"findings      {len(found.problems)}")
    for problem in found.problems[:20]:
        print("   ", problem)
    return 1 if found.problems or tracebacks or finish not in ("stop", "length") else 0


if __name__ == "__main__":
    sys.exit(main())
