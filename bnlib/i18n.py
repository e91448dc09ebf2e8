"""The course's two languages: messages a learner reads at run time, in the notebook's language.

Code holds English messages; their Traditional Chinese (Taiwan) translations live in a gettext
catalogue, `bnlib/locale/zh-TW.po` (open it with any PO editor, e.g. Poedit, or polib). A
notebook of the zh-TW edition starts with `bnlib.i18n.set_language("zh-TW")` (written by the
generator); everything bnlib prints or shows after that (check feedback, quizzes, widget labels)
is looked up in the catalogue. Numbers and code identifiers stay as they are.

- `_(message)` translates a message now (call it where the text is shown, not at import time);
- `gettext(message, language)` translates it into a given language, whatever the current one
  (for files written for a language, e.g. the exercises `bnlib assign` writes);
- `N_(message)` marks a module-level constant for the catalogue without translating it (translate
  it with `_` where it is shown);
- formatted messages translate the template, then format: `_("{n} of {m} passed").format(...)`.

A message without a translation (or with one marked fuzzy, i.e. stale) is shown in English.
"""

from __future__ import annotations

import os
import threading
from functools import cache
from pathlib import Path

__all__ = ["LANGUAGES", "N_", "_", "catalogue_path", "get_language", "gettext", "set_language"]

LANGUAGES = {"en": "English", "zh-TW": "繁體中文（台灣）"}
_LOCALE_DIR = Path(__file__).with_name("locale")
_state = threading.local()  # `bnlib grade` grades several notebooks at once, one per thread
_default = os.environ.get("BNLIB_LANG", "en")


def catalogue_path(language):
    """The PO file holding `language`'s translations of bnlib's messages."""
    return _LOCALE_DIR / f"{language}.po"


def set_language(language):
    """Show bnlib's messages in `language` ("en" or "zh-TW") from now on (in this thread and,
    when called from the main thread, by default in all threads)."""
    global _default
    if language not in LANGUAGES:
        raise ValueError(
            f"set_language: language must be one of {sorted(LANGUAGES)}, got {language!r}"
        )
    _state.language = language
    if threading.current_thread() is threading.main_thread():
        _default = language


def get_language():
    """The language bnlib's messages are shown in: "en" or "zh-TW"."""
    return getattr(_state, "language", _default)


@cache
def _translations(language):
    path = catalogue_path(language)
    if language == "en" or not path.exists():
        return {}
    import polib

    return {
        e.msgid: e.msgstr
        for e in polib.pofile(str(path))
        if e.msgstr and not e.obsolete and "fuzzy" not in e.flags
    }


def gettext(message, language=None):
    """`message` in `language` (default: the current one; itself when there is no translation).
    For text written for another language than the running one, e.g. by `bnlib assign`."""
    if language is not None and language not in LANGUAGES:
        raise ValueError(f"gettext: language must be one of {sorted(LANGUAGES)}, got {language!r}")
    return _translations(language or get_language()).get(message, message)


def _(message):
    """`message` in the current language (itself when there is no translation)."""
    return gettext(message)


def N_(message):
    """Mark `message` for translation without translating it (for module-level constants)."""
    return message
