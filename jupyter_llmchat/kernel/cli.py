"""`jupyter llmchat`: status, stats, rooms, history, broadcasts, questions and settings from a shell.

Finds the server as the kernel client does (docs/kernel-client.md); outside a kernel,
with several servers running, it takes the newest and says so on stderr. Human tables
by default, `--json` for scripts. Exit status: 0 ok, 1 the server refused or could not
be reached (message on stderr), 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import codecs
import sys
from datetime import datetime
from typing import Any, Callable, Sequence, TextIO

from .._version import __version__
from . import model_commands
from .cli_output import print_json as _json, print_table as _table
from .client import ChatClient
from .discovery import ServerInfo, find_server, running_servers, running_services
from .errors import ExtensionNotStarted, LLMChatClientError

CONTENT_WIDTH = 72
# Under an answer whose prompt was cut, as the widget says it (docs/context.md).
TRUNCATED_NOTE = "note: part of the conversation was left out to fit the model's context"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter llmchat",
        description="Talk to the llmchat rooms of a running Jupyter server.",
        epilog="Server discovery: --url/--token, else LLMCHAT_URL/LLMCHAT_TOKEN, else the server that "
        "started this process (in a kernel), else the only (or newest) running Jupyter server, else the "
        "running llmchat service (`jupyter llmchat serve`).",
    )
    parser.add_argument("--version", action="version", version=f"jupyter-llmchat {__version__}")
    _add_common(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        _add_common(sub, suppress=True)
        return sub

    command("status", "the server found, the extension and the model")
    command("stats", "live server and model figures")
    command("rooms", "rooms with their member counts and head seq")
    command("servers", "running Jupyter servers and llmchat services, and which one would be used")
    history = command("history", "a room's stored messages, oldest first")
    history.add_argument("room")
    history.add_argument("--limit", type=int, default=50, help="at most this many messages (default 50)")
    history.add_argument("--since", type=int, default=None, help="only messages after this seq")
    broadcast = command("broadcast", "post a message into a room, as a bot")
    broadcast.add_argument("room")
    broadcast.add_argument("text", help='the message; "-" reads it from stdin')
    broadcast.add_argument("--name", default=None, help='author name shown (default "notebook")')
    ask = command("ask", "ask the shared model in a room and print the streamed answer")
    ask.add_argument("room")
    ask.add_argument("prompt")
    ask.add_argument("--max-tokens", type=int, default=None)
    ask.add_argument("--temperature", type=float, default=None)
    clear = command("clear", "delete a room's stored messages, for everyone (asks first)")
    clear.add_argument("room")
    clear.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    export = command("export", "a room's whole transcript, deleted messages left out (moderators)")
    export.add_argument("room")
    export.add_argument("--format", choices=("md", "json"), default="md", help="Markdown (default) or JSON")
    export.add_argument("--output", "-o", default="-", help="file to write (default: stdout)")
    command("config", "every LLMChat setting with its type, default and help (needs no server)")
    model_commands.add_commands(command)
    serve_help = "run the llmchat service without a Jupyter server, on 127.0.0.1 (docs/kernel-client.md)"
    serve = commands.add_parser("serve", help=serve_help, description=serve_help)  # no --url/--token: it is the server
    serve.add_argument("--port", type=int, default=0, help="TCP port; 0 (default) takes a free one")
    serve.add_argument("--idle-timeout", type=float, default=600, help="exit after this many idle seconds (default 600; 0: never)")
    serve.epilog = "Settings as for the extension: c.LLMChat.* in jupyter_server_config, or --LLMChat.<name>=<value>."
    return parser


def _add_common(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The same options before or after the command (`--json rooms` and `rooms --json`)."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--url", default=default(None), help="server URL, e.g. http://localhost:8888/")
    parser.add_argument("--token", default=default(None), help="Jupyter token for that server")
    parser.add_argument("--json", action="store_true", default=default(False), help="machine-readable output")
    parser.add_argument("--timeout", type=float, default=default(60.0), help="seconds to wait for the server (default 60)")


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"] and not {"-h", "--help"} & set(argv):
        from ..server.standalone import main as serve  # imports the server: only for this command

        serve(argv[1:])
        return 0
    args = build_parser().parse_args(argv)
    command = args.command or "status"
    try:
        if command == "servers":
            return _servers(args, out)
        if command == "config":
            return _config(args, out)
        if command in ("models", "pull"):
            return getattr(model_commands, command)(args, out, err)
        server = find_server(args.url, args.token, newest=True)
        if (not args.json and command != "status") or server.found_by.startswith("the newest"):
            print(f"server: {server.describe()}", file=err)  # say which, above all when it was a guess
        client = ChatClient(server, timeout=args.timeout)
        if command == "clear" and not args.yes:
            question = f"Delete every stored message of room {args.room!r} on {server.url}, for everyone? [y/N] "
            if not _confirm(question, err):
                print("not cleared", file=err)
                return 1
        return COMMANDS[command](client, args, out, err)
    except LLMChatClientError as error:
        print(f"jupyter llmchat: {type(error).__name__}: {error}", file=err)
        return 1
    except KeyboardInterrupt:
        print(file=err)
        return 130


# -- commands


def _status(client: ChatClient, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        stats = client.stats()
    except ExtensionNotStarted as error:
        return _not_started(client.server, error.message, args, out)
    server, model = client.server, stats.get("model", {})
    status = {
        "url": server.url,
        "pid": server.pid,
        "found_by": server.found_by,
        "extension": "enabled",
        "model": model,
        "active_connections": stats.get("active_connections"),
        "rooms": stats.get("rooms", {}).get("count"),
        "uptime_seconds": stats.get("uptime_seconds"),
    }
    if args.json:
        return _json(status, out)
    state = "loaded" if model.get("loaded") else f"failed: {model['error']}" if model.get("error") else model.get("detail") or "loading"
    _pairs(
        [
            ("server", server.describe()),
            ("llmchat", "enabled"),
            ("model", f"{model.get('name', '?')} ({state}, n_ctx {model.get('n_ctx')}, parallel {model.get('parallel')})"),
            ("connections", stats.get("active_connections")),
            ("live rooms", stats.get("rooms", {}).get("count")),
            ("uptime", f"{stats.get('uptime_seconds', 0):.0f} s"),
        ],
        out,
    )
    return 0


def _not_started(server: ServerInfo, reason: str, args: argparse.Namespace, out: TextIO) -> int:
    """The extension is enabled but a setting stopped it: say which, and that a restart follows the fix."""
    if args.json:
        _json({"url": server.url, "pid": server.pid, "found_by": server.found_by, "extension": "not started", "error": reason}, out)
        return 1
    _pairs(
        [
            ("server", server.describe()),
            ("llmchat", "not started"),
            ("why", reason.removeprefix("llmchat is not started: ")),
            ("fix", "correct that setting (jupyter llmchat config lists them all), then restart the server"),
        ],
        out,
    )
    return 1


def _stats(client: ChatClient, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    stats = client.stats()
    if args.json:
        return _json(stats, out)
    _pairs(list(_flatten(stats)), out)
    return 0


def _rooms(client: ChatClient, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    rooms = client.rooms()
    if args.json:
        return _json(rooms, out)
    _table(["ROOM", "MEMBERS", "HEAD_SEQ"], [[r["room"], r["members"], r["head_seq"]] for r in rooms], out)
    return 0


def _history(client: ChatClient, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    messages = client.history(args.room, since=args.since, limit=args.limit)
    if args.json:
        return _json(messages, out)
    rows = []
    for message in messages:
        data = message["data"]
        author = data.get("author", {})
        who = f"{author.get('name')} ({author.get('kind')})"
        rows.append([message["seq"], _time(data.get("created", "")), who, _line(data.get("content", ""))])
    _table(["SEQ", "TIME", "AUTHOR", "CONTENT"], rows, out)
    return 0


def _broadcast(client: ChatClient, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    text = sys.stdin.read() if args.text == "-" else args.text
    posted = client.broadcast(args.room, text, author_name=args.name)
    if args.json:
        return _json(posted, out)
    print(f"posted to {args.room} as seq {posted['seq']} ({posted['message_id']})", file=out)
    return 0


def _ask(client: ChatClient, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    config = {"max_tokens": args.max_tokens, "temperature": args.temperature}
    with client.ask(args.room, args.prompt, **config) as answer:
        for piece in answer:
            if not args.json:
                out.write(piece)
                out.flush()
    if args.json:
        result = {"message_id": answer.message_id, "text": "".join(answer.parts), "finish_reason": answer.finish_reason}
        return _json({**result, "truncated": answer.truncated, "usage": answer.usage}, out)
    out.write("\n")
    if answer.truncated:  # on stderr, as the other notes: stdout stays the answer
        print(TRUNCATED_NOTE, file=err)
    return 0


def _clear(client: ChatClient, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    result = client.clear(args.room)
    if args.json:
        return _json(result, out)
    deleted = result.get("deleted") if isinstance(result, dict) else None
    print(f"cleared {args.room}: {deleted if deleted is not None else 'its'} messages deleted", file=out)
    return 0


def _export(client: ChatClient, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from .export import export

    if args.output == "-":
        out.flush()
        target = getattr(out, "buffer", None)
        if target is None:  # a text stream without bytes underneath (tests): decode as it comes
            written = export(client, args.room, args.format, _TextSink(out))
        else:
            written = export(client, args.room, args.format, target)
            target.flush()
    else:
        with open(args.output, "wb") as handle:
            written = export(client, args.room, args.format, handle)
    print(f"exported {args.room}: {written} bytes ({args.format})", file=err)
    return 0


class _TextSink:
    """Bytes to a text stream without a buffer underneath (a captured stdout), decoded as they come."""

    def __init__(self, out: TextIO) -> None:
        self.out, self.decoder = out, codecs.getincrementaldecoder("utf-8")()

    def write(self, chunk: bytes) -> None:
        self.out.write(self.decoder.decode(chunk))


def _confirm(question: str, err: TextIO) -> bool:
    """Ask on stderr (stdout may be a pipe), read stdin; no answer (EOF) is no."""
    err.write(question)
    err.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def _config(args: argparse.Namespace, out: TextIO) -> int:
    from ..server.config_help import format_settings, settings  # imports the server: only for this command

    items = settings()
    if args.json:
        return _json(items, out)
    print(format_settings(items), file=out)
    return 0


def _servers(args: argparse.Namespace, out: TextIO) -> int:
    servers = running_servers() + running_services()  # Jupyter servers, then `jupyter llmchat serve`
    chosen: ServerInfo | None
    try:
        chosen = find_server(args.url, args.token, newest=True)
    except LLMChatClientError:
        chosen = None
    if args.json:
        chosen_pid = chosen.pid if chosen is not None else None
        rows = [{"url": s.url, "pid": s.pid, "root_dir": s.root_dir, "service": s.service, "chosen": s.pid == chosen_pid} for s in servers]
        return _json(rows, out)
    _table(
        ["", "URL", "PID", "ROOT_DIR"],
        [["*" if chosen is not None and s.pid == chosen.pid else "", s.url, s.pid, s.root_dir or ("(llmchat service)" if s.service else "")] for s in servers],
        out,
    )
    if chosen is not None:
        print(f"\n* would be used: {chosen.describe()}", file=out)
    return 0


# Each command writes its result to `out` and any note about it to `err`.
COMMANDS: dict[str, Callable[[ChatClient, argparse.Namespace, TextIO, TextIO], int]] = {
    "status": _status,
    "stats": _stats,
    "rooms": _rooms,
    "history": _history,
    "broadcast": _broadcast,
    "ask": _ask,
    "clear": _clear,
    "export": _export,
    "use": model_commands.use,
}


# -- output


def _pairs(pairs: list[tuple[str, Any]], out: TextIO) -> None:
    width = max((len(key) for key, _ in pairs), default=0)
    for key, value in pairs:
        print(f"{key:<{width}}  {value}", file=out)


def _flatten(value: Any, prefix: str = "") -> Any:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flatten(item, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, value


def _line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= CONTENT_WIDTH else text[: CONTENT_WIDTH - 1] + "…"


def _time(created: str) -> str:
    try:
        return datetime.fromisoformat(created.replace("Z", "+00:00")).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return created


if __name__ == "__main__":
    sys.exit(main())
