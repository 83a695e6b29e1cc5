"""`@name` on the kernel side: listing the namespace's variables cheaply and describing the
ones a question mentions (jupyter_llmchat.kernel.namespace).

The fast tests use plain dicts as namespaces; the last one runs a real ipykernel and talks to
a `ChatWidget` in it over its comm, as the widget's front end does.
"""

from __future__ import annotations

import os
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest

from jupyter_llmchat.kernel import namespace
from jupyter_llmchat.kernel.context import MAX_ATTACHMENTS, summarize
from jupyter_llmchat.kernel.namespace import describe_mentions, describe_reply, list_variables, variables_reply


class Watched:
    """Records whether listing touched it beyond its type (repr, len, attributes)."""

    touched: list[str] = []

    def __repr__(self) -> str:
        Watched.touched.append("repr")
        return "Watched()"

    def __len__(self) -> int:
        Watched.touched.append("len")
        return 1

    def __getattr__(self, name: str) -> Any:
        Watched.touched.append(name)
        raise AttributeError(name)


class Broken:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


def _fail() -> ZeroDivisionError:
    try:
        1 / 0
    except ZeroDivisionError as error:
        return error
    raise AssertionError("unreachable")


@pytest.fixture
def no_last_error(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("last_exc", "last_value", "last_type", "last_traceback"):
        monkeypatch.delattr(sys, name, raising=False)


@pytest.fixture
def last_error(monkeypatch: pytest.MonkeyPatch, no_last_error: None) -> ZeroDivisionError:
    error = _fail()
    monkeypatch.setattr(sys, "last_exc", error, raising=False)
    monkeypatch.setattr(sys, "last_value", error, raising=False)
    return error


def _namespace() -> dict[str, Any]:
    return {
        "df_rows": list(range(12)),
        "Data": {"a": 1},
        "text": "hello",
        "one": (1,),
        "_private": 1,
        "np": types,  # a module
        "f": len,  # a builtin function
        "g": lambda: 1,
        "Klass": int,  # a class
        "In": [],
        "Out": {},
        "exit": object(),
        "__builtins__": {},
    }


@pytest.mark.fast
def test_lists_data_only_by_name_with_kinds_and_sizes(no_last_error: None) -> None:
    items, truncated = list_variables(_namespace())
    assert not truncated
    assert items == [
        {"name": "Data", "kind": "object", "label": "dict, 1 item"},
        {"name": "df_rows", "kind": "object", "label": "list, 12 items"},
        {"name": "one", "kind": "object", "label": "tuple, 1 item"},
        {"name": "text", "kind": "object", "label": "str, 5 chars"},
    ]


@pytest.mark.fast
def test_hidden_names_are_the_shells_own_unless_rebound(no_last_error: None) -> None:
    marker = object()
    ns = {"shell_thing": marker, "mine": 1}
    assert [v["name"] for v in list_variables(ns, {"shell_thing": marker})[0]] == ["mine"]
    ns["shell_thing"] = 2  # the user rebound it: now it is theirs
    assert [v["name"] for v in list_variables(ns, {"shell_thing": marker})[0]] == ["mine", "shell_thing"]


@pytest.mark.fast
def test_a_namespace_with_odd_keys_still_lists(no_last_error: None) -> None:
    ns: dict[Any, Any] = {1: "int key", ("t",): 2, "ok": 3, "not an identifier": 4, "x" * 101: 5}
    assert list_variables(ns)[0] == [{"name": "ok", "kind": "object", "label": "int"}]


@pytest.mark.fast
def test_prefix_and_limit(no_last_error: None) -> None:
    ns = {f"v{i:03}": i for i in range(500)} | {"other": 1}
    items, truncated = list_variables(ns)
    assert truncated and len(items) == namespace.MAX_VARIABLES and items[0]["name"] == "other"
    items, truncated = list_variables(ns, prefix="V49")
    assert not truncated and [v["name"] for v in items] == [f"v{i}" for i in range(490, 500)]


@pytest.mark.fast
def test_listing_never_reprs_or_measures_an_unknown_object(no_last_error: None) -> None:
    Watched.touched = []
    items, _ = list_variables({"w": Watched(), "b": Broken()})
    assert items == [{"name": "b", "kind": "object", "label": "Broken"}, {"name": "w", "kind": "object", "label": "Watched"}]
    assert Watched.touched == []


@pytest.mark.fast
def test_listing_a_huge_frame_and_array_costs_their_shape_only(no_last_error: None) -> None:
    np = pytest.importorskip("numpy")
    pd = pytest.importorskip("pandas")
    big = np.zeros((2000, 1000))
    frame = pd.DataFrame({"a": np.arange(1_000_000), "b": 0.5})
    started = time.perf_counter()
    items, _ = list_variables({"big": big, "frame": frame, "col": frame["a"]})
    elapsed = time.perf_counter() - started
    assert items == [
        {"name": "big", "kind": "ndarray", "label": "ndarray float64 (2000, 1000)"},
        {"name": "col", "kind": "dataframe", "label": "Series 1000000 int64"},
        {"name": "frame", "kind": "dataframe", "label": "DataFrame 1000000×2"},
    ]
    assert elapsed < 0.5, elapsed  # a generous bound: describing them would take far longer


@pytest.mark.fast
def test_error_is_listed_first_when_something_failed_and_no_variable_has_that_name(last_error: ZeroDivisionError) -> None:
    items, _ = list_variables({"x": 1})
    assert items[0] == {"name": "error", "kind": "error", "label": "ZeroDivisionError"}
    assert [v["name"] for v in list_variables({"x": 1}, prefix="x")[0]] == ["x"]
    mine = list_variables({"error": "my own"})[0]
    assert mine == [{"name": "error", "kind": "object", "label": "str, 6 chars"}]


@pytest.mark.fast
def test_mentions_of_variables_become_attachments_named_after_them(last_error: ZeroDivisionError) -> None:
    done = describe_mentions(_namespace(), {}, ["df_rows", "nobody", "np", "f", "_private", "In", "error", "df_rows"])
    assert done["attached"] == ["df_rows", "error"] and done["skipped"] == []
    rows, error = done["attachments"]
    assert (rows["kind"], rows["label"]) == ("object", "df_rows (list, 12 items)")
    assert rows["text"].startswith("list, 12 items:\n[0, 1, 2")
    assert (error["kind"], error["label"]) == ("error", "ZeroDivisionError")
    assert error["text"].endswith("ZeroDivisionError: division by zero")


@pytest.mark.fast
def test_names_are_looked_up_never_evaluated(no_last_error: None, tmp_path: Path) -> None:
    touched = tmp_path / "touched"
    code = f"__import__('pathlib').Path({str(touched)!r}).touch()"
    done = describe_mentions({"df": 1}, {}, [code, "df.__class__", "df[0]", 42, None, "x" * 101])
    assert done == {"attachments": [], "attached": [], "skipped": []}
    assert not touched.exists()


@pytest.mark.fast
def test_at_most_eight_attachments_the_rest_stay_text(no_last_error: None) -> None:
    ns = {f"v{i}": i for i in range(12)}
    done = describe_mentions(ns, {}, [f"v{i}" for i in range(12)])
    assert len(done["attachments"]) == MAX_ATTACHMENTS
    assert done["skipped"] == ["v8", "v9", "v10", "v11"]


@pytest.mark.fast
def test_describing_a_broken_object_still_attaches_it(no_last_error: None) -> None:
    done = describe_mentions({"b": Broken()}, {}, ["b"])
    assert done["attachments"][0]["label"] == "b (Broken)"
    assert "<Broken instance at 0x" in done["attachments"][0]["text"]
    assert summarize(Broken()) == ("object", "Broken")


@pytest.mark.fast
def test_replies_to_malformed_requests_are_empty_not_errors(monkeypatch: pytest.MonkeyPatch, no_last_error: None) -> None:
    monkeypatch.setattr(namespace, "user_namespace", lambda: ({"x": 1}, {}))
    assert variables_reply({"id": "v1", "prefix": 5}) == {
        "kind": "variables", "id": "v1", "items": [{"name": "x", "kind": "object", "label": "int"}], "truncated": False,
    }
    assert describe_reply({"names": "x"}) == {"kind": "described", "id": "", "attachments": [], "attached": [], "skipped": []}
    monkeypatch.setattr(namespace, "user_namespace", lambda: None)  # outside a notebook
    assert variables_reply({"id": "v2"})["items"] == []
    assert describe_reply({"id": "v3", "names": ["x"]})["attachments"] == []

    class Unreadable(dict):
        def items(self) -> Any:
            raise RuntimeError("dictionary changed size during iteration")

    monkeypatch.setattr(namespace, "user_namespace", lambda: (Unreadable(x=1), {}))
    assert variables_reply({"id": "v4"}) == {"kind": "variables", "id": "v4", "items": [], "truncated": False}


def test_a_real_kernel_lists_and_describes_over_the_widget_comm(tmp_path: Path) -> None:
    """The front end's two requests, as comm messages to a ChatWidget in a real ipykernel."""
    from jupyter_client.manager import start_new_kernel

    manager, client = start_new_kernel(kernel_name="python3", env=_env(tmp_path))
    try:
        setup = (
            "import numpy as np, pandas as pd\n"
            "from jupyter_llmchat import ChatWidget\n"
            "df = pd.DataFrame({'a': range(200), 'b': 1.5})\n"
            "arr = np.zeros((3, 4))\n"
            "_hidden = 1\n"
            "def helper(): pass\n"
            "w = ChatWidget(room='vars')\n"
            "print(w.comm.comm_id)\n"
        )
        comm_id = _execute(client, setup).strip().splitlines()[-1]
        _execute(client, "values = [1, 2, 3]\nvalues[10]", allow_error=True)

        listed = _custom(client, comm_id, {"kind": "variables", "id": "v1", "prefix": ""})
        assert listed["kind"] == "variables" and listed["truncated"] is False
        assert [(v["name"], v["kind"], v["label"]) for v in listed["items"]] == [
            ("error", "error", "IndexError"),
            ("arr", "ndarray", "ndarray float64 (3, 4)"),
            ("df", "dataframe", "DataFrame 200×2"),
            ("values", "object", "list, 3 items"),
            ("w", "object", "ChatWidget"),
        ]
        narrowed = _custom(client, comm_id, {"kind": "variables", "id": "v2", "prefix": "D"})
        assert [v["name"] for v in narrowed["items"]] == ["df"]

        described = _custom(client, comm_id, {"kind": "describe", "id": "d1", "names": ["df", "np", "exit", "nobody", "error"]})
        assert described["kind"] == "described" and described["attached"] == ["df", "error"]
        frame, error = described["attachments"]
        assert frame["label"] == "df (DataFrame 200×2)" and "200 rows × 2 columns" in frame["text"]
        assert error["label"] == "IndexError" and "values[10]" in error["text"]
        assert error["text"].endswith("IndexError: list index out of range")
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "IPYTHONDIR": str(tmp_path / "ipython"), "LLMCHAT_URL": "", "LLMCHAT_TOKEN": ""}


def _execute(client: Any, code: str, allow_error: bool = False) -> str:
    out: list[str] = []

    def collect(message: dict[str, Any]) -> None:
        if message["msg_type"] == "stream":
            out.append(message["content"]["text"])

    reply = client.execute_interactive(code, timeout=60, output_hook=collect)
    assert allow_error or reply["content"]["status"] == "ok", reply["content"]
    return "".join(out)


def _custom(client: Any, comm_id: str, content: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Send an anywidget custom message to the widget's comm; its custom reply with the same id."""
    message = client.session.msg("comm_msg", {"comm_id": comm_id, "data": {"method": "custom", "content": content}})
    client.shell_channel.send(message)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = client.get_iopub_msg(timeout=max(deadline - time.monotonic(), 0.1))
        data = reply["content"].get("data", {}) if reply["msg_type"] == "comm_msg" else {}
        sent = data.get("content") if data.get("method") == "custom" else None
        if isinstance(sent, dict) and sent.get("id") == content["id"]:
            return sent
    raise AssertionError(f"no reply to {content} within {timeout} s")
