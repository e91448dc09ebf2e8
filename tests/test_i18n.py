"""bnlib.i18n: the language of bnlib's run-time messages, and their look-up in a catalogue."""

import threading

import polib
import pytest

from bnlib import i18n
from bnlib.i18n import N_, _, get_language, gettext, set_language


@pytest.fixture
def catalogue(tmp_path, monkeypatch):
    """A zh-TW PO file of its own: one translated entry, one fuzzy (stale), one untranslated,
    one obsolete. The cache of catalogues is emptied before and after."""
    po = polib.POFile()
    po.metadata = {"Content-Type": "text/plain; charset=UTF-8", "Language": "zh_TW"}
    po.append(polib.POEntry(msgid="PASS", msgstr="通過"))
    po.append(polib.POEntry(msgid="Check", msgstr="舊的翻譯", flags=["fuzzy"]))
    po.append(polib.POEntry(msgid="Reset", msgstr=""))
    po.append(polib.POEntry(msgid="Gone", msgstr="已刪除", obsolete=True))
    path = tmp_path / "zh-TW.po"
    po.save(str(path))
    monkeypatch.setattr(i18n, "catalogue_path", lambda language: tmp_path / f"{language}.po")
    monkeypatch.setattr(i18n, "_default", "en")
    i18n._translations.cache_clear()
    yield path
    i18n._translations.cache_clear()
    set_language("en")


def test_gettext_translates_into_the_language_asked_for(catalogue):
    assert gettext("PASS", "zh-TW") == "通過"
    assert gettext("PASS", "en") == "PASS"
    assert gettext("PASS") == "PASS" and get_language() == "en"  # the current one: English
    set_language("zh-TW")
    assert gettext("PASS") == _("PASS") == "通過"
    assert gettext("PASS", "en") == "PASS"  # a language given wins over the current one
    assert get_language() == "zh-TW"  # and gettext never changes the current one


def test_a_message_without_a_usable_translation_is_shown_in_english(catalogue):
    set_language("zh-TW")
    assert _("Check") == "Check"  # fuzzy: a stale translation is not shown
    assert _("Reset") == "Reset"  # untranslated
    assert _("Gone") == "Gone"  # obsolete
    assert _("not in the catalogue") == "not in the catalogue"


def test_n_marks_without_translating(catalogue):
    set_language("zh-TW")
    assert N_("PASS") == "PASS" and _(N_("PASS")) == "通過"


def test_a_missing_catalogue_means_english(tmp_path, monkeypatch):
    monkeypatch.setattr(i18n, "catalogue_path", lambda language: tmp_path / "none.po")
    i18n._translations.cache_clear()
    try:
        assert gettext("PASS", "zh-TW") == "PASS"
    finally:
        i18n._translations.cache_clear()


@pytest.mark.parametrize("language", ["fr", "zh_TW", "zh-tw", "", None, "EN"])
def test_an_unknown_language_is_refused_clearly(language):
    with pytest.raises(ValueError, match=r"language must be one of \['en', 'zh-TW'\], got"):
        set_language(language)
    assert get_language() in i18n.LANGUAGES  # unchanged
    if language:  # gettext(message, None) is the current language
        with pytest.raises(ValueError, match=r"gettext: language must be one of"):
            gettext("PASS", language)


def test_the_language_is_per_thread_and_the_main_threads_is_the_default(catalogue):
    seen = {}

    def worker(name, language=None):
        if language:
            set_language(language)
        seen[name] = (get_language(), _("PASS"))

    # a thread that sets its language changes neither the main thread's nor the default
    thread = threading.Thread(target=worker, args=("worker", "zh-TW"))
    thread.start()
    thread.join()
    assert seen["worker"] == ("zh-TW", "通過")
    assert get_language() == "en" and _("PASS") == "PASS"
    # the main thread's choice is every new thread's default (bnlib grade's threads)
    set_language("zh-TW")
    thread = threading.Thread(target=worker, args=("after",))
    thread.start()
    thread.join()
    assert seen["after"] == ("zh-TW", "通過")
    # threads at once, each in its own language, each sees only its own
    barrier, results = threading.Barrier(4), {}

    def both(index, language):
        set_language(language)
        barrier.wait()  # all four have set their language before any looks a message up
        results[index] = [(get_language(), _("PASS"), gettext("PASS", "en")) for n in range(50)]

    threads = [
        threading.Thread(target=both, args=(i, "zh-TW" if i % 2 else "en")) for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(4):
        want = ("zh-TW", "通過", "PASS") if i % 2 else ("en", "PASS", "PASS")
        assert set(results[i]) == {want}, i
