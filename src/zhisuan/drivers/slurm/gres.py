"""Slurm GPU gres types (``gpu:h100:8``) ↔ catalog accelerator models (``h100-sxm``). Pure.

A site names its gres types freely and usually shortly (``h100``, ``a100``, ``l40s``), while the
catalog's keys are precise (``h100-sxm``, ``a100-sxm4-80gb``). The rule, used in both directions:

1. the catalog resolves the gres type (key or alias, case/punctuation/vendor-blind) to the model; else
2. the gres type's words are the leading words of the model's key or of one of its aliases, ignoring a
   leading vendor word: ``h100`` ↔ ``h100-sxm`` / ``nvidia-h100-sxm5-80g`` (words, not characters, so
   ``h10`` matches neither ``h100`` nor ``h100-sxm``).

When several catalog models fit a gres type (``h100`` fits ``h100-sxm`` and ``h100-pcie``) the first in
catalog order wins; a site that needs otherwise passes an explicit ``{gres type: model key}`` mapping.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from zhisuan.catalog.loader import VENDOR_PREFIXES, Catalog, normalise_name


def name_words(name: str) -> tuple[str, ...]:
    """``"NVIDIA H100 SXM5-80G"`` → ``("h100", "sxm5", "80g")``: lower-case words, one leading vendor word dropped."""
    words = tuple(w for w in re.split(r"[^0-9a-z]+", name.casefold()) if w)
    if len(words) > 1 and words[0] in VENDOR_PREFIXES:
        return words[1:]
    return words


# A typeless gres ("gpu:8") names no model: it must not match a catalog alias like "GPU-series-1".
GENERIC_WORDS = frozenset({"gpu", "gpus", "npu", "accelerator"})


def leading_words_match(gres_type: str, names: Iterable[str]) -> bool:
    """Are the gres type's words the first words of any of ``names``? (Never for a generic word.)"""
    wanted = name_words(gres_type)
    if not wanted or (len(wanted) == 1 and wanted[0] in GENERIC_WORDS):
        return False
    return any(name_words(n)[: len(wanted)] == wanted for n in names)


def model_for_gres_type(gres_type: str, catalog: Catalog, overrides: Mapping[str, str] | None = None) -> str:
    """The catalog key for a site's gres type, or the gres type itself when no model fits."""
    if overrides and gres_type in overrides:
        return overrides[gres_type]
    resolved = catalog.resolve(gres_type)
    if resolved is not None:
        return resolved.key
    for model in catalog:
        if leading_words_match(gres_type, (model.key, *model.aliases)):
            return model.key
    return gres_type


def gres_type_for_model(model_key: str, gres_types: Iterable[str], catalog: Catalog,
                        overrides: Mapping[str, str] | None = None) -> str | None:
    """Which of the site's gres types holds devices of ``model_key`` (None when none does).

    Exact first (an override, or the gres type mapping back to this very key), then the leading-words
    rule against the key and its aliases — so a key the catalog does not know still matches.
    """
    types = list(dict.fromkeys(gres_types))
    for gres_type in types:
        if model_for_gres_type(gres_type, catalog, overrides) == model_key:
            return gres_type
    model = catalog.resolve(model_key)
    names = (model_key, *(model.aliases if model else ()))
    for gres_type in types:
        if normalise_name(gres_type) == normalise_name(model_key) or leading_words_match(gres_type, names):
            return gres_type
    return None
