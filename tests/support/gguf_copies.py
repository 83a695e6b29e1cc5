"""Copies of a GGUF with some metadata changed, written with the `gguf` package.

The packaged Gemma 3 270M stands in for other models this way: the same weights with a
ChatML or Llama-3 chat template, or with some of its unused control tokens renamed to
another family's markers. Like gguf's own `gguf_new_metadata`, every key-value is read
with `GGUFReader` and written again with `GGUFWriter`; the tensor data is copied as bytes.
Reading the header walks the 262,144-entry vocabulary element by element, so one read
serves every copy, and it reads a plain array over the file (`_Reader`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable, Mapping

# A new value, or a function of the old one (e.g. renaming a few entries of an array).
Change = Any | Callable[[Any], Any]


def _reader(path: Path) -> Any:
    """`gguf.GGUFReader` over a plain ndarray view of its memory map: numpy's `memmap`
    subclass costs four fifths of the time of the millions of small reads (35 s -> 7 s)."""
    import gguf
    import numpy as np

    class _Reader(gguf.GGUFReader):
        @property
        def data(self) -> Any:
            return self._plain

        @data.setter
        def data(self, value: Any) -> None:
            self._plain = value.view(np.ndarray)

    return _Reader(path)


def copy_with_metadata(src: Path, outputs: Mapping[Path, Mapping[str, Change]]) -> None:
    """Write each output path as `src` with its changes: `{key: value or f(old value)}`.

    A new key is written as a string; an existing key keeps its type.
    """
    import gguf

    reader = _reader(src)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    fields = [f for f in reader.fields.values() if f.name != gguf.Keys.General.ARCHITECTURE and not f.name.startswith("GGUF.")]
    values = {f.name: f.contents() for f in fields}
    for dst, changes in outputs.items():
        writer = gguf.GGUFWriter(dst, arch)
        assert writer.data_alignment == reader.alignment
        for field in fields:
            vtype = field.types[0]
            sub_type = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
            value = values[field.name]
            if field.name in changes:
                change = changes[field.name]
                value = change(value) if callable(change) else change
            writer.add_key_value(field.name, value, vtype, sub_type=sub_type)
        for key, value in changes.items():
            if key not in values:
                writer.add_key_value(key, value, gguf.GGUFValueType.STRING)
        offset = 0
        for tensor in reader.tensors:
            # the same layout as the source's, so its data block can be copied unchanged
            assert tensor.data_offset - reader.data_offset == offset, tensor.name
            writer.add_tensor_info(tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes, tensor.tensor_type)
            offset += gguf.GGUFWriter.ggml_pad(int(tensor.n_bytes), writer.data_alignment)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        out = writer.fout[0]
        writer.write_padding(out, out.tell())
        with open(src, "rb") as fh:
            fh.seek(reader.data_offset)
            shutil.copyfileobj(fh, out, 16 << 20)
        writer.close()


def renamed(names: Mapping[str, str]) -> Callable[[list[str]], list[str]]:
    """A change of `tokenizer.ggml.tokens`: the named tokens get other texts."""

    def change(tokens: list[str]) -> list[str]:
        missing = set(names) - set(tokens)
        assert not missing, f"no such tokens: {missing}"
        return [names.get(t, t) for t in tokens]

    return change
