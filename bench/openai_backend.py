"""Single-stream speed through `model_backend = "openai"` beside the model server itself
and beside the in-process llama backend, at the same thread count.

Starts llama-cpp-python's model server with the packaged model (tests/support/model_server.py),
a `jupyter server` whose answers come from it, and a second one with the model in-process;
then, in turn, one answer at a time: straight from the model server with the `openai`
client, through our WebSocket from the OpenAI backend, and through our WebSocket from the
in-process engine. Only one of the three works at a time (the others sit idle).

    .venv/bin/python bench/openai_backend.py --threads 1 --tokens 128 --repeat 3

Prints tokens/s of each (medians), the OpenAI backend's ratio to the model server
(target >= 0.9) and to the in-process engine, and the time to the first token. Tokens/s
counts pieces of text from the first to the last (`(n - 1) / (last - first)`), as
bench/ws_stream.py does.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import openai
import websocket

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from support.model_server import MODEL_ALIAS, running_model_server  # noqa: E402
from support.servers import ServerProcess, running_server  # noqa: E402
from ws_stream import one_stream, parse_args  # noqa: E402

# A question both formats answer at length (128 tokens at temperature 0), so that all three
# stream the same number of tokens: the in-process engine ends most answers much earlier.
PROMPT = "Write a long essay about the history of Rome."
SAMPLING = {"temperature": 0, "repeat_penalty": 1.0}  # as ws_stream.one_stream asks


def direct_stream(client: openai.OpenAI, n_tokens: int) -> tuple[float, float, int]:
    """(tokens/s, ms to first token, tokens) of one answer asked of the model server itself."""
    sent = time.perf_counter()
    first = last = 0.0
    n = 0
    stream = client.chat.completions.create(
        model=MODEL_ALIAS,
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        max_tokens=n_tokens,
        temperature=SAMPLING["temperature"],
        extra_body={"repeat_penalty": SAMPLING["repeat_penalty"]},
    )
    with stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                last = time.perf_counter()
                first = first or last
                n += 1
    rate = (n - 1) / (last - first) if n > 1 and last > first else 0.0
    return rate, (first - sent) * 1000, n


def rss_mib(pid: int) -> float:
    """Resident memory of a process (Linux), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def socket_to(server: ServerProcess) -> websocket.WebSocket:
    ws = websocket.create_connection(server.ws_url, header=[f"Authorization: token {server.token}"], timeout=300)
    ws.recv()  # Welcome
    return ws


def main() -> None:
    args = parse_args(__doc__)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "openai").mkdir()
        (root / "llama").mkdir()
        common = ["--LLMChat.system_prompt=", "--LLMChat.few_shot=[]"]  # the same bare question for both
        with running_model_server(root, n_threads=args.threads) as model_server:
            remote_args = [
                *common, "--LLMChat.model_backend=openai", f"--LLMChat.openai_base_url={model_server.base_url}",
                f"--LLMChat.history_path={tmp}/openai.sqlite",
            ]
            local_args = [*common, f"--LLMChat.n_threads={args.threads}", f"--LLMChat.history_path={tmp}/llama.sqlite"]
            env = {"OPENAI_API_KEY": model_server.api_key}
            with running_server(root / "openai", remote_args, env=env) as remote, running_server(root / "llama", local_args) as local:
                assert remote.wait_for_model()["loaded"] and local.wait_for_model()["loaded"]
                client = openai.OpenAI(base_url=model_server.base_url, api_key=model_server.api_key, max_retries=0)
                remote_ws, local_ws = socket_to(remote), socket_to(local)
                direct_stream(client, 8)  # warm-ups
                one_stream(remote_ws, 8, -1, PROMPT)
                one_stream(local_ws, 8, -2, PROMPT)
                # Interleaved, so that load from other processes on the machine hits all alike.
                direct, through, inproc = [], [], []
                cpu = {"jupyter": 0.0, "model server": 0.0, "in-process": 0.0}  # during their answers
                for run in range(args.repeat):
                    direct.append(direct_stream(client, args.tokens))
                    before = cpu_seconds(remote.process.pid), cpu_seconds(model_server.process.pid)
                    through.append(one_stream(remote_ws, args.tokens, run, PROMPT)[:3])
                    cpu["jupyter"] += cpu_seconds(remote.process.pid) - before[0]
                    cpu["model server"] += cpu_seconds(model_server.process.pid) - before[1]
                    before_local = cpu_seconds(local.process.pid)
                    inproc.append(one_stream(local_ws, args.tokens, 100 + run, PROMPT)[:3])
                    cpu["in-process"] += cpu_seconds(local.process.pid) - before_local
                remote_ws.close()
                local_ws.close()
                client.close()
                memory = {name: rss_mib(proc.pid) for name, proc in
                          [("model server", model_server.process), ("openai", remote.process), ("llama", local.process)]}

    def median(rows: list[tuple[float, float, int]], i: int) -> float:
        return statistics.median(row[i] for row in rows)

    d, t, p = median(direct, 0), median(through, 0), median(inproc, 0)
    print(
        f"n_threads={args.threads} max_tokens={args.tokens} repeat={args.repeat} (medians; "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)"
    )
    print(f"  tokens per answer: model server {[r[2] for r in direct]}, "
          f"openai backend {[r[2] for r in through]}, in-process {[r[2] for r in inproc]}")
    print(f"  model server, openai client direct      {d:7.1f} tok/s   first token {median(direct, 1):7.1f} ms")
    print(f"  openai backend, over our WebSocket      {t:7.1f} tok/s   first token {median(through, 1):7.1f} ms   "
          f"ratio to direct {t / d:.3f} (target >= 0.9)")
    print(f"  in-process llama, over our WebSocket    {p:7.1f} tok/s   first token {median(inproc, 1):7.1f} ms   "
          f"openai backend / in-process {t / p:.3f}")
    print(f"  per run, openai backend / direct: {[round(b[0] / a[0], 3) for a, b in zip(direct, through)]}")
    n = sum(r[2] for r in through)
    print(f"  CPU per token of the openai backend's answers: Jupyter server {cpu['jupyter'] / n * 1000:.2f} ms, "
          f"model server {cpu['model server'] / n * 1000:.2f} ms; "
          f"the in-process engine's answers: {cpu['in-process'] / sum(r[2] for r in inproc) * 1000:.2f} ms")
    print(f"  resident memory: Jupyter server with model_backend=openai {memory['openai']:.0f} MiB, "
          f"with the model in-process {memory['llama']:.0f} MiB; the model server {memory['model server']:.0f} MiB")


if __name__ == "__main__":
    main()
