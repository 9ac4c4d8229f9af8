"""The console's message catalogs against its modules: every key the JavaScript passes to ``t("…")`` or
index.html names in ``data-i18n`` exists in both zh-CN and en, the two catalogs hold the same keys, and
every placeholder a message uses is one its other-language twin uses too."""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

import pytest

STATIC = Path(str(resources.files("zhisuan.console").joinpath("static")))
LANGUAGES = ("en", "zh-CN")
# t("nav.fleet") or t("jobs.note", {...}): a literal dotted key (the house rule: no computed keys).
T_CALL = re.compile(r"""\bt\(\s*["']([a-z][a-z0-9_]*(?:\.[a-z0-9_]+)+)["']""")
T_COMPUTED = re.compile(r"""\bt\(\s*(?!["'])[^)]""")
STATIC_KEY = re.compile(r'data-i18n(?:-label)?="([^"]+)"')
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def modules() -> list[Path]:
    return sorted(path for path in STATIC.rglob("*.js") if "vendor" not in path.parts)


def used_keys() -> set[str]:
    keys = {key for path in modules() for key in T_CALL.findall(path.read_text(encoding="utf-8"))}
    return keys | set(STATIC_KEY.findall((STATIC / "index.html").read_text(encoding="utf-8")))


def catalog(language: str) -> dict[str, str]:
    return json.loads((STATIC / "i18n" / f"{language}.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def test_the_parser_finds_the_modules_and_their_keys() -> None:
    names = {path.relative_to(STATIC).as_posix() for path in modules()}
    assert {"console.js", "lib/i18n.js", "pages/jobs.js", "pages/fleet.js"} <= names
    keys = used_keys()
    assert {"nav.fleet", "jobs.note", "login.submit", "app.title"} <= keys and len(keys) > 200


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_key_used_is_in_the_catalog(language: str) -> None:
    missing = sorted(used_keys() - set(catalog(language)))
    assert not missing, f"{language}.json lacks {missing}"


def test_the_catalogs_hold_the_same_keys_and_no_unused_ones() -> None:
    en, zh = catalog("en"), catalog("zh-CN")
    assert set(en) == set(zh), sorted(set(en) ^ set(zh))
    assert not set(en) - used_keys(), sorted(set(en) - used_keys())


def test_placeholders_match_between_languages_and_messages_are_translated() -> None:
    en, zh = catalog("en"), catalog("zh-CN")
    for key, text in en.items():
        assert set(PLACEHOLDER.findall(text)) == set(PLACEHOLDER.findall(zh[key])), key
    assert all(text.strip() for text in [*en.values(), *zh.values()])
    # zh-CN is a translation, not a copy: most messages differ and hold CJK characters.
    translated = [key for key in en if en[key] != zh[key] and re.search(r"[\u4e00-\u9fff]", zh[key])]
    assert len(translated) > 0.9 * len(en), sorted(set(en) - set(translated))


def test_no_module_computes_a_key() -> None:
    """A computed key (t(prefix + state)) would escape the check above. lib/i18n.js defines t and
    translates index.html's data-i18n keys, which the check above reads from index.html itself."""
    computed = [f"{path.name}: {match.group(0)}" for path in modules() if path.name != "i18n.js"
                for match in T_COMPUTED.finditer(path.read_text(encoding="utf-8"))]
    assert not computed, computed
