"""Context from the kernel: what the model is told about live objects, within a budget.

Pure: real pandas, NumPy and raised exceptions, no server.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from jupyter_llmchat import protocol
from jupyter_llmchat.kernel.context import (
    DEFAULT_BUDGET_CHARS,
    MAX_TEXT_CHARS,
    TRACEBACK_FRAMES,
    describe,
    describe_all,
    describe_last_error,
)

pytestmark = pytest.mark.fast
pd = pytest.importorskip("pandas")
TRUNCATED = re.compile(r"… \[truncated: ([\d,]+) more characters\]")


@pytest.fixture
def sales() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "region": [f"region-{i % 7}" for i in range(200)],
            "units": np.arange(200, dtype="int64"),
            "price": np.linspace(1.5, 99.5, 200),
            "day": pd.date_range("2026-01-01", periods=200, freq="D"),
            "returned": [i % 10 == 0 for i in range(200)],
        }
    )


def _raise_in(depth: int) -> None:
    if depth == 0:
        ratio = 1 / depth  # the line a reader must see
        print(ratio)
    _raise_in(depth - 1)


def _caught(function, *args) -> BaseException:
    try:
        function(*args)
    except BaseException as error:  # noqa: BLE001  the very object a user would pass
        return error
    raise AssertionError("did not raise")


def test_a_dataframe_is_shape_dtypes_and_first_rows(sales):
    described = describe(sales)
    assert (described["kind"], described["label"]) == ("dataframe", "DataFrame 200×5")
    text = described["text"]
    assert "200 rows × 5 columns" in text
    for column, dtype in [("region", ""), ("units", "int64"), ("price", "float64"), ("day", "datetime64"), ("returned", "bool")]:
        assert re.search(rf"^\s+{column}\s+\S*{dtype}", text, re.M), f"{column} {dtype} missing:\n{text}"
    assert "region-0" in text and "region-4" in text and "2026-01-05" in text  # the first five rows
    assert "region-5" not in text and "2026-01-06" not in text  # and only those
    assert len(text) < 1000  # compact: a small model has a small context


def test_a_wide_frame_lists_its_columns_and_says_how_many_are_left_out():
    wide = pd.DataFrame(np.zeros((3, 60)), columns=[f"c{i}" for i in range(60)])
    described = describe(wide)
    assert described["label"] == "DataFrame 3×60"
    assert "c0" in described["text"] and "c39" in described["text"] and "… and 20 more columns" in described["text"]
    assert "(first 12 columns)" in described["text"]


def test_a_series_is_described_as_data(sales):
    described = describe(sales["price"])
    assert (described["kind"], described["label"]) == ("dataframe", "Series 200 float64")
    assert "'price'" in described["text"] and "1.5" in described["text"]


def test_a_polars_frame_is_recognised():
    pl = pytest.importorskip("polars")
    frame = pl.DataFrame({"name": ["ada", "bob"], "score": [9.5, 7.0]})
    described = describe(frame)
    assert (described["kind"], described["label"]) == ("dataframe", "DataFrame 2×2")
    assert "polars DataFrame" in described["text"] and "ada" in described["text"] and "Float64" in described["text"]


def test_an_array_is_shape_dtype_figures_and_a_sample():
    described = describe(np.arange(12, dtype="float64").reshape(3, 4))
    assert (described["kind"], described["label"]) == ("ndarray", "ndarray float64 (3, 4)")
    assert "shape (3, 4), dtype float64, 12 elements" in described["text"]
    assert "min 0, max 11, mean 5.5" in described["text"]
    assert "[ 8.  9. 10. 11.]" in described["text"]


def test_a_big_array_is_summarised_not_printed():
    big = np.random.default_rng(0).normal(size=(1000, 1000))
    big[0, 0] = np.nan
    described = describe(big)
    assert described["label"] == "ndarray float64 (1000, 1000)"
    assert "1 NaN/inf" in described["text"] and "..." in described["text"]
    assert len(described["text"]) < 1000


def test_a_raised_exception_is_type_message_and_traceback():
    error = _caught(_raise_in, 0)
    described = describe(error)
    assert (described["kind"], described["label"]) == ("error", "ZeroDivisionError")
    text = described["text"]
    assert text.startswith("Traceback (most recent call last):")
    assert text.endswith("ZeroDivisionError: division by zero")
    assert "in _raise_in" in text and "ratio = 1 / depth  # the line a reader must see" in text


def test_a_deep_traceback_keeps_the_innermost_frames():
    error = _caught(_raise_in, 40)
    text = describe(error)["text"]
    # 12 frames: 11 recursive calls (Python prints 3 and counts the rest) and the innermost.
    assert TRACEBACK_FRAMES == 12 and text.count('File "') == 4 and "[Previous line repeated 8 more times]" in text
    assert "ratio = 1 / depth" in text and text.endswith("ZeroDivisionError: division by zero")
    assert "in _caught" not in text  # the outermost frame went


def test_a_chained_exception_shows_both():
    def load() -> None:
        try:
            {}["missing"]
        except KeyError as error:
            raise ValueError("config is incomplete") from error

    text = describe(_caught(load))["text"]
    assert "KeyError: 'missing'" in text and "direct cause" in text and text.endswith("ValueError: config is incomplete")


def test_any_other_object_is_its_type_and_a_short_repr():
    described = describe({"alpha": 1, "beta": [1, 2, 3]})
    assert (described["kind"], described["label"]) == ("object", "dict, 2 items")  # a built-in's size in its label
    assert "{'alpha': 1, 'beta': [1, 2, 3]}" in described["text"]
    huge = describe(list(range(1_000_000)))
    assert huge["label"] == "list, 1,000,000 items" and huge["text"].startswith("list, 1,000,000 items:\n") and len(huge["text"]) < 400

    class Broken:
        def __repr__(self) -> str:
            raise RuntimeError("no repr today")

    broken = describe(Broken())  # a broken __repr__ does not stop the question
    assert broken["label"] == "Broken" and "<Broken instance at 0x" in broken["text"]


def test_describing_never_fails_the_question_whatever_the_object_does():
    class SurrogateRepr:
        def __repr__(self) -> str:
            return "file \udcff.csv"  # a name decoded with surrogateescape

    class Uncountable(list):
        def __len__(self) -> int:
            raise RuntimeError("no len today")

    class Hopeless(list):
        def __len__(self) -> int:
            raise RuntimeError("no len today")

        def __repr__(self) -> str:
            raise RuntimeError("no repr either")

    described = describe_all([SurrogateRepr(), "text \ud800 alone", Uncountable([1, 2]), Hopeless()])
    frame = protocol.client_frame("Generate", {"prompt": "what are these?", "attachments": described})  # as ask() sends it
    sent = json.loads(frame)["data"]["attachments"]
    assert "file \\udcff.csv" in sent[0]["text"] and "text \\ud800 alone" == sent[1]["text"]
    assert sent[2]["label"] == "Uncountable" and "[1, 2]" in sent[2]["text"]
    assert sent[3]["label"] == "Hopeless" and "<Hopeless instance at 0x" in sent[3]["text"]


def test_a_string_is_given_as_it_is():
    assert describe("Column units is per week.\nprice is in EUR.")["text"] == "Column units is per week.\nprice is in EUR."


def test_one_description_fits_its_budget_and_says_what_was_cut():
    text = describe("x" * 5000, budget_chars=300)["text"]
    assert len(text) <= 300
    (left_out,) = TRUNCATED.findall(text)
    assert int(left_out.replace(",", "")) == 5000 - text.count("x")
    assert describe("y" * 100_000, budget_chars=10**9)["text"].count("y") < MAX_TEXT_CHARS  # the protocol's cap


def test_a_cut_traceback_keeps_its_end():
    text = describe(_caught(_raise_in, 40), budget_chars=400)["text"]
    assert len(text) <= 400 and TRUNCATED.search(text)
    assert text.startswith("Traceback") and text.endswith("ZeroDivisionError: division by zero")


def test_several_objects_share_the_budget_and_the_largest_is_cut_first(sales):
    error = _caught(_raise_in, 0)
    notes = "q" * 20_000
    objects = [sales, error, {"k": 1}, notes]
    parts = describe_all(objects, budget_chars=2000)
    assert [part["kind"] for part in parts] == ["dataframe", "error", "object", "object"]
    assert sum(len(part["text"]) for part in parts) <= 2000
    assert parts[:3] == [describe(sales), describe(error), describe({"k": 1})]  # the small ones untouched
    (left_out,) = TRUNCATED.findall(parts[3]["text"])
    assert int(left_out.replace(",", "")) == 20_000 - parts[3]["text"].count("q")
    # Two large parts are cut to the same size; all fits the default budget otherwise.
    first, second = describe_all(["a" * 9000, "b" * 9000], budget_chars=3000)
    assert len(first["text"]) == len(second["text"]) <= 1500
    assert describe_all([sales, error]) == [describe(sales), describe(error)]
    assert DEFAULT_BUDGET_CHARS == 6000  # ~1,500 tokens


def test_more_than_eight_objects_are_refused():
    with pytest.raises(ValueError, match="at most 8"):
        describe_all(range(9))


def test_the_last_error_comes_from_sys_last(monkeypatch):
    monkeypatch.delattr(sys, "last_exc", raising=False)
    monkeypatch.delattr(sys, "last_value", raising=False)
    monkeypatch.delattr(sys, "last_type", raising=False)
    monkeypatch.delattr(sys, "last_traceback", raising=False)
    assert describe_last_error() is None
    error = _caught(_raise_in, 0)
    monkeypatch.setattr(sys, "last_type", type(error), raising=False)
    monkeypatch.setattr(sys, "last_value", error, raising=False)
    monkeypatch.setattr(sys, "last_traceback", error.__traceback__, raising=False)
    assert describe_last_error() == describe(error)


def test_the_last_error_of_an_ipython_cell(tmp_path):
    """A failed IPython cell: its error without IPython's own frames, with the cell's code."""
    script = textwrap.dedent(
        """
        import json
        from traitlets.config import Config
        from IPython.core.interactiveshell import InteractiveShell
        config = Config()
        config.HistoryManager.enabled = False
        shell = InteractiveShell.instance(config=config)
        shell.run_cell("def mean(xs):\\n    return sum(xs) / len(xs)\\nmean([])")
        from jupyter_llmchat.kernel.context import describe_last_error
        print(json.dumps(describe_last_error()))
        """
    )
    env = {**os.environ, "IPYTHONDIR": str(tmp_path / "ipython")}  # never the user's profile
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    described = json.loads(done.stdout.strip().splitlines()[-1])
    assert (described["kind"], described["label"]) == ("error", "ZeroDivisionError")
    assert "return sum(xs) / len(xs)" in described["text"] and "in mean" in described["text"]
    assert "interactiveshell" not in described["text"]
    assert described["text"].endswith("ZeroDivisionError: division by zero")


def test_describing_imports_nothing_heavy():
    code = (
        "import sys\n"
        "from jupyter_llmchat.kernel.context import describe, describe_all\n"
        "describe_all([{'a': 1}, 'text', ValueError('x')])\n"
        "heavy = [m for m in ('pandas', 'polars', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
