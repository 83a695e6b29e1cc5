"""`jupyter llmchat models | pull REF | use REF`: the machine's GGUFs, downloading one, switching the server's.

`models` and `pull` need no server (they read this machine's caches and the Hub); `use` asks
the running server to switch (`PUT llmchat/api/model`, moderators only) and follows its
progress until the new model answers or the switch fails.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, TextIO

from ..models import ModelError, resolve
from ..models.catalogue import local_models
from ..models.gguf_info import NotGGUF, human_count, human_size, read_info
from ..models.resolve import packaged_file
from .cli_output import print_json, print_table
from .client import ChatClient

JSON_FIELDS = ("reference", "path", "size_bytes", "quantization", "parameters", "context_length", "chat_template")
POLL_SECONDS = 0.5


def add_commands(command: Any) -> None:
    """Declare the three commands on the CLI's sub-parser factory."""
    command("models", "GGUF models already on this machine (packaged, Hugging Face cache, Ollama, LM Studio)")
    pull = command("pull", "download a model (hf:ORG/REPO[:QUANT], …) into the Hugging Face cache")
    pull.add_argument("reference", help="hf:ORG/REPO[:QUANT], hf:ORG/REPO/FILE.gguf, ollama:NAME[:TAG] or a path")
    use = command("use", "switch the running server's model (moderators); waits until it answers")
    use.add_argument("reference", help='"" for the packaged model, a path, hf:… or ollama:…')
    use.add_argument("--no-wait", action="store_true", help="return once the switch has begun")


def models(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    found = local_models(packaged_file)
    if args.json:
        return print_json([{name: getattr(info, name) for name in JSON_FIELDS} for info in found], out)
    rows = [
        [info.reference or '""  (packaged)', human_size(info.size_bytes), info.quantization or "?", human_count(info.parameters),
         info.context_length or "?", "yes" if info.chat_template else "no", info.path]
        for info in found
    ]
    print_table(["REFERENCE", "SIZE", "QUANT", "PARAMS", "CONTEXT", "CHAT TEMPLATE", "PATH"], rows, out)
    print('\nuse one: jupyter llmchat use REFERENCE, or c.LLMChat.model = "REFERENCE"', file=err)
    return 0


def pull(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    bar = _Bar(err)
    try:
        found = resolve(args.reference, bar.update)
    except ModelError as error:
        bar.close()
        print(f"jupyter llmchat: {error}", file=err)
        return 1
    bar.close()
    try:
        info = read_info(Path(found.path) if found.path else packaged_file(), found.reference)
    except NotGGUF as error:
        print(f"jupyter llmchat: {error}", file=err)
        return 1
    if args.json:
        return print_json({name: getattr(info, name) for name in JSON_FIELDS}, out)
    print(f"{info.reference or '(packaged)'}: {info.path}", file=out)
    print(
        f"{human_size(info.size_bytes)}, {info.quantization or '?'}, {human_count(info.parameters)} parameters, "
        f"context {info.context_length or '?'}, chat template: {'yes' if info.chat_template else 'no'}",
        file=out,
    )
    return 0


def use(client: ChatClient, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    model = client.use_model(args.reference)
    if args.no_wait:
        return _print_model(model, args, out)
    shown = ""
    while True:
        line = model.get("detail") or model.get("state", "")
        if line != shown and model.get("state") != "loaded":
            print(f"\r{line[:100]:<100}", end="", file=err, flush=True)
            shown = line
        if model.get("state") == "failed":
            print(f"\njupyter llmchat: switch failed: {model.get('error')}", file=err)
            return 1
        if model.get("state") == "loaded":
            if shown:
                print(file=err)
            if model.get("detail"):  # "could not switch to …": the old model still answers
                print(f"jupyter llmchat: {model['detail']}", file=err)
                return 1
            return _print_model(model, args, out)
        time.sleep(POLL_SECONDS)
        model = client.stats()["model"]


def _print_model(model: dict[str, Any], args: argparse.Namespace, out: TextIO) -> int:
    if args.json:
        return print_json(model, out)
    print(f"model: {model.get('name')} ({model.get('reference') or 'packaged'}, {model.get('state')})", file=out)
    return 0


class _Bar:
    """One tqdm bar for a whole download (all parts of a split GGUF), on stderr."""

    def __init__(self, err: TextIO) -> None:
        self._err = err
        self._bar: Any = None
        self._what = ""

    def update(self, done: int, total: int, what: str) -> None:
        from tqdm import tqdm

        if self._bar is None or what != self._what:
            self.close()
            self._what = what
            self._bar = tqdm(total=total or None, unit="B", unit_scale=True, desc=what, file=self._err, initial=done)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
