"""`make slides` (bnlib.slides): reveal.js decks that present with no network.

A deck may link to papers (<a href>), but everything the browser loads by itself (scripts, style
sheets, images, frames, module imports, CSS @import/url()) must be a file inside the output
folder. The browser test opens lesson 1's deck from disk with every http(s) request aborted.
"""

import re
import shutil
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import nbformat
import pytest
from _chromium import chromium_or_skip, launch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from bnlib import slides

ROOT = Path(__file__).resolve().parents[1]
LESSON = ROOT / "notebooks" / "01_bn_formulas.ipynb"

# Attributes whose URL the browser fetches on its own.
LOADED = {
    ("script", "src"),
    ("link", "href"),
    ("img", "src"),
    ("iframe", "src"),
    ("source", "src"),
    ("video", "src"),
    ("audio", "src"),
    ("embed", "src"),
    ("object", "data"),
}
CSS_URL = re.compile(r"""@import\s+(?:url\()?\s*['"]?([^'")\s;]+)|url\(\s*['"]?([^'")]+)""")
JS_IMPORT = re.compile(r"""\bimport\s*(?:[\w{}\s,*]+\s+from\s+)?\(?\s*['"]([^'"]+)['"]""")


class _Refs(HTMLParser):
    """Every URL the page loads by itself: attributes, <style> CSS, <script type=module> imports."""

    def __init__(self):
        super().__init__()
        self.urls, self._in = [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.urls += [attrs[a] for t, a in LOADED if t == tag and attrs.get(a)]
        self.urls += [m[0] or m[1] for m in CSS_URL.findall(attrs.get("style") or "")]
        if tag == "style" or (tag == "script" and attrs.get("type") == "module"):
            self._in = tag

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in == "style":
            self.urls += [m[0] or m[1] for m in CSS_URL.findall(data)]
        elif self._in == "script":
            self.urls += JS_IMPORT.findall(data)


def loaded_urls(html):
    parser = _Refs()
    parser.feed(html)
    return [u for u in parser.urls if not u.startswith("data:")]


def _is_remote(url):
    return urlsplit(url).scheme in ("http", "https") or url.startswith("//")


def _local_target(deck, url):
    return (deck.parent / unquote(urlsplit(url).path)).resolve()


def _tiny_notebook(path):
    """Two slides: a formula, a widget output (saved state, PNG fallback), hidden cells."""
    png = (  # a 1x1 PNG
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    )
    widget = new_code_cell("w", outputs=[])
    widget.outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={
                "application/vnd.jupyter.widget-view+json": {
                    "model_id": "abc",
                    "version_major": 2,
                    "version_minor": 0,
                },
                "image/png": png,
                "text/plain": "BNExplorer(...)",
            },
        )
    ]
    hidden = new_code_cell("quiz(answer='SECRET-ANSWER')")
    hidden.metadata["jupyter"] = {"source_hidden": True}
    tagged = new_code_cell("print('SECRET-TOO')", metadata={"tags": ["hide-input"]})
    removed = new_markdown_cell("SECRET-CELL", metadata={"tags": ["remove-cell"]})
    nb = new_notebook(
        cells=[
            new_markdown_cell("# Title\n\n$y = \\gamma \\hat{x} + \\beta$"),
            widget,
            new_markdown_cell("## Second"),
            hidden,
            tagged,
            removed,
        ]
    )
    for cell, kind in zip(nb.cells, ["slide", "-", "slide", "-", "-", "-"], strict=True):
        cell.metadata["slideshow"] = {"slide_type": kind}
    nb.metadata["widgets"] = {
        "application/vnd.jupyter.widget-state+json": {
            "state": {"abc": {"model_name": "ImageModel", "state": {}}},
            "version_major": 2,
            "version_minor": 0,
        }
    }
    nbformat.write(nb, path)
    return path


@pytest.mark.parametrize(
    "lesson",
    sorted((ROOT / "notebooks").glob("*.ipynb"))
    + sorted((ROOT / "notebooks").glob("zh-TW/*.ipynb")),
    ids=lambda p: str(p.relative_to(ROOT / "notebooks")),
)
def test_every_lesson_is_cut_into_slides(lesson):
    """Without slideshow metadata a deck is one endless slide."""
    nb = nbformat.read(lesson, as_version=4)
    kinds = [c.metadata.get("slideshow", {}).get("slide_type") for c in nb.cells]
    assert kinds.count("slide") >= 2, f"{lesson.name}: fewer than two cells start a slide"


def test_loaded_urls_finds_every_kind_of_reference():
    html = """<html><head><script src="https://cdn/x.js"></script><link href="a.css">
    <style>@import url(https://fonts/f.css); .x { background: url('img/b.png') }</style>
    <script type="module">import m from 'https://cdn/m.mjs';</script></head>
    <body><img src="data:image/png;base64,AAAA"><a href="https://arxiv.org/abs/1">paper</a></body>
    </html>"""
    assert loaded_urls(html) == [
        "https://cdn/x.js",
        "a.css",
        "https://fonts/f.css",
        "img/b.png",
        "https://cdn/m.mjs",
    ]


def test_export_drops_widget_state_and_cdn_urls(tmp_path):
    """No npm needed: one deck's HTML, without the vendor files."""
    deck = slides.export_deck(_tiny_notebook(tmp_path / "tiny.ipynb"), tmp_path / "out")
    html = deck.read_text(encoding="utf-8")
    assert deck.name == "tiny.slides.html"
    assert html.count("<section") >= 2, "the two slides are missing"
    assert "widget-state+json" not in html and "html-manager" not in html
    assert "data:image/png;base64,iVBOR" in html, "the widget's PNG fallback is not shown"
    remote = [u for u in loaded_urls(html) if _is_remote(u)]
    assert not remote, f"the deck loads from the network: {remote}"
    assert "mermaid" not in html.lower()
    assert "SECRET" not in html, "a hidden input or removed cell shows on a slide"


def test_an_edition_deck_is_named_and_marked_by_its_language(tmp_path):
    """notebooks/zh-TW/NN.ipynb -> NN.zh-TW.slides.html with <html lang="zh-TW">, beside NN's."""
    english = _tiny_notebook(tmp_path / "tiny.ipynb")
    (tmp_path / "zh-TW").mkdir()
    chinese = _tiny_notebook(tmp_path / "zh-TW" / "tiny.ipynb")
    assert slides.deck_name(english) == "tiny.slides.html"
    assert slides.deck_name(chinese) == "tiny.zh-TW.slides.html"
    out = tmp_path / "out"
    assert '<html lang="en">' in slides.export_deck(english, out).read_text(encoding="utf-8")
    deck = slides.export_deck(chinese, out)
    assert deck == out / "tiny.zh-TW.slides.html"
    assert '<html lang="zh-TW">' in deck.read_text(encoding="utf-8")


def test_the_default_build_covers_both_editions(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(slides, "ensure_node_modules", lambda: tmp_path)
    monkeypatch.setattr(slides, "install_vendor", lambda out, modules: None)
    monkeypatch.setattr(slides, "install_cjk_font", lambda out, modules, decks: None)
    monkeypatch.setattr(slides, "export_deck", lambda n, out: seen.append(n) or n)
    slides.build(None, tmp_path)
    names = {str(n.relative_to(ROOT / "notebooks")) for n in seen}
    assert "01_bn_formulas.ipynb" in names and "zh-TW/01_bn_formulas.ipynb" in names
    assert len(names) == 2 * len(list((ROOT / "notebooks").glob("*.ipynb")))


def test_build_errors(tmp_path, monkeypatch):
    with pytest.raises(slides.SlidesError, match="no such notebook"):
        slides.build([tmp_path / "missing.ipynb"], tmp_path / "out")
    with pytest.raises(slides.SlidesError, match="package-lock.json is missing"):
        slides.ensure_node_modules(tmp_path)
    (tmp_path / "package-lock.json").write_text("{}")
    monkeypatch.setattr(slides.shutil, "which", lambda name: None)
    with pytest.raises(slides.SlidesError, match="npm not found"):
        slides.ensure_node_modules(tmp_path)
    assert slides.main([str(tmp_path / "missing.ipynb"), "--out", str(tmp_path)]) == 1


@pytest.fixture(scope="module")
def lesson_deck(tmp_path_factory):
    """Lesson 1's deck with its vendor files, built as `make slides` does, into a tmp folder."""
    if shutil.which("npm") is None and not (slides.SRC / "node_modules").is_dir():
        pytest.skip("slides: npm not found (install Node.js and npm to build the decks)")
    out = tmp_path_factory.mktemp("slides")
    started = time.monotonic()
    (deck,) = slides.build([LESSON], out)
    print(f"built {deck.name} in {time.monotonic() - started:.1f} s")
    return deck


def test_lesson_deck_loads_only_local_files(lesson_deck):
    html = lesson_deck.read_text(encoding="utf-8")
    urls = loaded_urls(html)
    assert not [u for u in urls if _is_remote(u)], "the deck loads from the network"
    for required in ("reveal.js/dist/reveal.css", "requirejs/require.js", "MathJax.js"):
        assert any(required in u for u in urls), f"the deck does not load {required}"
    missing = [u for u in urls if not _local_target(lesson_deck, u).is_file()]
    assert not missing, f"the deck refers to files that were not installed: {missing}"
    # reveal.js itself is loaded by require.js from a script, not by a tag.
    vendor = lesson_deck.parent / "vendor"
    for path in ("reveal.js/dist/reveal.js", "reveal.js/plugin/notes/notes.js"):
        assert (vendor / path).is_file(), f"{path} is missing"
    assert html.count("<section") > 5, "lesson 1's deck has hardly any slides"


@pytest.mark.browser
def test_lesson_deck_presents_offline(lesson_deck, tmp_path):
    """Chromium opens the deck from disk with every http(s) request aborted; reveal.js and MathJax
    run, the arrow key moves to the next slide."""
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p, executable)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        remote, failed, errors = [], [], []
        page.route("http*://**", lambda route: (remote.append(route.request.url), route.abort()))
        page.on("requestfailed", lambda r: failed.append(f"{r.url}: {r.failure}"))
        page.on("pageerror", lambda e: errors.append(str(e)))
        try:
            page.goto(lesson_deck.as_uri())
            page.wait_for_selector(".reveal.ready", timeout=20_000)
            page.wait_for_function(
                "window.MathJax && MathJax.Hub && MathJax.Hub.queue.pending === 0"
                " && document.querySelectorAll('.MathJax_CHTML').length > 0",
                timeout=30_000,
            )
            title = page.locator("section.present h1").first.inner_text()
            page.keyboard.press("ArrowRight")
            # reveal.js is an AMD module here (no global); its history mode shows the index.
            page.wait_for_function("location.hash.startsWith('#/1')", timeout=5_000)
        except Exception as e:
            shot = tmp_path / "slides-failure.png"
            page.screenshot(path=str(shot))
            raise AssertionError(f"{e}\nscreenshot: {shot}") from e
        finally:
            browser.close()
    assert not remote, f"the deck asked the network for {remote}"
    assert not failed, f"requests failed: {failed}"
    assert not errors, f"JavaScript errors: {errors}"
    assert "lesson 1" in title.lower()  # the theme capitalizes headings


def test_font_unicode_range_round_trip():
    """The CJK font's style sheet declares each woff2 file for exactly the characters used."""
    used = {ord(c) for c in "批次正規化（小批次）"} | {0x20000}
    css = slides._unicode_range(used)
    assert css.startswith("U+") and " " not in css
    assert slides._parse_unicode_range(css) == used
    assert slides._parse_unicode_range("U+4e00-4e02,U+ff08") == {0x4E00, 0x4E01, 0x4E02, 0xFF08}
    assert slides._is_cjk(ord("批")) and slides._is_cjk(ord("（"))
    assert not any(slides._is_cjk(ord(c)) for c in "Aa1·—×≈→ε")
