"""Every slide of every deck fits the screen, and its Chinese renders with the bundled font.

Chromium opens each deck built by `make slides` (bnlib.slides: English and zh-TW) from disk at
1280x720 and at 1920x1080, goes to every slide after reveal.js's layout, MathJax and the fit
script, and compares what the slide shows with the slide's box: nothing may stick out, and
nothing may sit in a box that scrolls or clips it. A tiny deck with a slide too big to fit shows
the check can fail.
"""

import shutil
import time
from pathlib import Path

import nbformat
import pytest
from _chromium import chromium_or_skip, launch
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from bnlib import slides

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SIZES = [(1280, 720), (1920, 1080)]
TOLERANCE = 2  # px on screen: sub-pixel rounding of a scaled slide
FONT = slides.FONT_FAMILY

# Goes to every slide in turn (by its URL hash, which any reveal.js deck follows) and lists the
# slides whose content is bigger than the slide, or clipped inside a box.
MEASURE_JS = """
async ([tolerance]) => {
  const frame = () => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const tops = [...document.querySelectorAll('.reveal .slides > section')];
  const slides = [];
  tops.forEach((top, h) => {
    const subs = [...top.querySelectorAll(':scope > section')];
    if (subs.length) subs.forEach((s, v) => slides.push([h, v, s])); else slides.push([h, 0, top]);
  });
  const bad = [];
  for (const [h, v, sec] of slides) {
    location.hash = `#/${h}/${v}`;
    for (let i = 0; i < 50 && !sec.classList.contains('present'); i++) await frame();
    await frame();
    const box = document.querySelector('.reveal .slides').getBoundingClientRect();
    const view = {left: 0, top: 0, right: innerWidth, bottom: innerHeight};
    const out = {left: box.left, top: box.top, right: box.right, bottom: box.bottom};
    const clipped = [];
    const grow = r => {
      if (r.width === 0 || r.height === 0) return;
      out.left = Math.min(out.left, r.left); out.top = Math.min(out.top, r.top);
      out.right = Math.max(out.right, r.right); out.bottom = Math.max(out.bottom, r.bottom);
    };
    // Speaker notes, and MathJax's copy for screen readers (clipped to 1 px on purpose).
    const skip = n => n.closest('aside, script, style, .MJX_Assistive_MathML');
    // Text that runs out of its box: a box's rectangle does not grow with it, the text's does.
    const texts = document.createTreeWalker(sec, NodeFilter.SHOW_TEXT);
    const range = document.createRange();
    for (let n = texts.nextNode(); n; n = texts.nextNode()) {
      if (!n.data.trim() || skip(n.parentElement)) continue;
      range.selectNodeContents(n);
      grow(range.getBoundingClientRect());
    }
    for (const el of sec.querySelectorAll('*')) {
      if (skip(el)) continue;
      const r = el.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) continue;
      grow(r);
      const cs = getComputedStyle(el);
      const hides = o => o !== 'visible';
      if ((hides(cs.overflowY) && el.scrollHeight > el.clientHeight + 1) ||
          (hides(cs.overflowX) && el.scrollWidth > el.clientWidth + 1)) {
        clipped.push(`${el.tagName.toLowerCase()}.${String(el.className).split(' ')[0]}`);
      }
    }
    const over = {
      right: out.right - Math.min(box.right, view.right),
      bottom: out.bottom - Math.min(box.bottom, view.bottom),
      left: Math.max(box.left, view.left) - out.left,
      top: Math.max(box.top, view.top) - out.top,
    };
    const worst = Object.entries(over).filter(([, d]) => d > tolerance);
    if (worst.length || clipped.length) {
      const title = (sec.querySelector('h1, h2, h3, h4') || sec).textContent.trim();
      bad.push({slide: `${h}/${v}`, title: title.slice(0, 60),
                over: Object.fromEntries(worst.map(([k, d]) => [k, Math.round(d)])),
                clipped: clipped.slice(0, 3)});
    }
  }
  return {slides: slides.length, bad};
}
"""

# The deck's Chinese: every CJK character must be covered by a loaded face of the bundled font,
# loaded from the deck's vendor folder, and be drawn with it (its element's font-family lists the
# font first).
FONT_JS = """
async ([family]) => {
  const cjk = /[\\u2e80-\\u9fff\\uf900-\\ufaff\\ufe30-\\ufe4f\\uff00-\\uffef]/u;
  const walker = document.createTreeWalker(document.querySelector('.reveal .slides'),
                                          NodeFilter.SHOW_TEXT);
  const nodes = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (cjk.test(n.data) && !n.parentElement.closest('script, style')) nodes.push(n);
  }
  const chars = [...new Set(nodes.map(n => [...n.data].filter(c => cjk.test(c))).flat())];
  await document.fonts.load(`16px "${family}"`, chars.join(''));
  await document.fonts.ready;
  const faces = [...document.fonts].filter(f => f.family.replace(/"/g, '') === family);
  const inRange = (cp, range) => range.split(',').some(part => {
    const [a, b] = part.trim().replace(/^U\\+/i, '').split('-').map(x => parseInt(x, 16));
    return cp >= a && cp <= (b === undefined || isNaN(b) ? a : b);
  });
  const uncovered = chars.filter(c => !faces.some(
      f => f.status === 'loaded' && inRange(c.codePointAt(0), f.unicodeRange)));
  const notFirst = [...new Set(nodes.map(n => getComputedStyle(n.parentElement).fontFamily)
      .filter(ff => !ff.replace(/"/g, '').startsWith(family)))];
  return {
    nodes: nodes.length, chars: chars.length, faces: faces.length,
    loaded: faces.filter(f => f.status === 'loaded').length,
    check: document.fonts.check(`16px "${family}"`, chars.join('') || '批次正規化'),
    uncovered, notFirst,
  };
}
"""


def open_deck(page, deck, timeout=40_000):
    """Load a deck from disk without transitions; wait for reveal.js, MathJax and the fit."""
    page.goto(deck.as_uri() + "?transition=none&backgroundTransition=none")
    page.wait_for_selector(".reveal.ready", timeout=timeout)
    page.wait_for_function(
        "document.documentElement.dataset.bnFit === 'done' && window.MathJax"
        " && MathJax.Hub && MathJax.Hub.queue.pending === 0",
        timeout=timeout,
    )


def overflowing_slides(page, deck):
    """(number of slides, the slides that do not fit) for one deck at the page's viewport."""
    open_deck(page, deck)
    found = page.evaluate(MEASURE_JS, [TOLERANCE])
    return found["slides"], found["bad"]


@pytest.fixture(scope="module")
def decks(tmp_path_factory):
    """Every lesson's deck, built once as `make slides` does, into a tmp folder."""
    if shutil.which("npm") is None and not (slides.SRC / "node_modules").is_dir():
        pytest.skip("slides: npm not found (install Node.js and npm to build the decks)")
    out = tmp_path_factory.mktemp("slides")
    started = time.monotonic()
    built = slides.build(None, out)
    print(f"built {len(built)} decks in {time.monotonic() - started:.1f} s")
    return built


@pytest.fixture(scope="module")
def browser():
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p, executable)
        yield b
        b.close()


def _page(browser, size):
    page = browser.new_page(viewport={"width": size[0], "height": size[1]})
    page.route("http*://**", lambda route: route.abort())
    return page


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_every_slide_fits(decks, browser, size):
    page = _page(browser, size)
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    report, total = [], 0
    try:
        for deck in decks:
            n, bad = overflowing_slides(page, deck)
            total += n
            report += [f"{deck.name} #/{b['slide']} {b['title']!r}: {b}" for b in bad]
    finally:
        page.close()
    assert total > 100, f"only {total} slides in {len(decks)} decks"
    assert any(d.name.endswith(".zh-TW.slides.html") for d in decks), "no zh-TW deck was checked"
    assert not report, f"{len(report)} of {total} slides do not fit at {size}:\n" + "\n".join(
        report
    )
    assert not errors, f"JavaScript errors: {errors}"


def test_chinese_renders_with_the_bundled_font(decks, browser):
    page = _page(browser, SIZES[0])
    try:
        results, fetched = {}, []
        page.on("requestfinished", lambda r: fetched.append(r.url))
        for deck in decks:
            fetched.clear()
            open_deck(page, deck)
            results[deck.name] = page.evaluate(FONT_JS, [FONT])
            font_dir = (deck.parent / "vendor" / slides.FONT_DIR).as_uri()
            results[deck.name]["files"] = [
                u for u in fetched if u.startswith(font_dir) and u.endswith(".woff2")
            ]
    finally:
        page.close()
    review = results["06_exam_review.slides.html"]
    assert review["nodes"] > 100, f"lesson 6 has hardly any Chinese: {review}"
    for name, r in results.items():
        if not r["nodes"]:
            continue
        assert r["check"], f"{name}: {FONT} is not ready for the deck's Chinese: {r}"
        assert not r["uncovered"], f"{name}: no bundled glyph for {''.join(r['uncovered'])}"
        assert not r["notFirst"], f"{name}: Chinese set in {r['notFirst']}, not {FONT} first"
        assert r["files"], f"{name}: no font file was loaded from vendor/: {r}"
    sizes = sum(f.stat().st_size for f in (decks[0].parent / "vendor").rglob("*.woff2"))
    fonts = decks[0].parent / "vendor" / slides.FONT_DIR
    assert sizes == sum(f.stat().st_size for f in fonts.glob("*.woff2"))
    assert sizes < 2_000_000, f"the CJK font files weigh {sizes / 1e6:.1f} MB"


def _too_big_notebook(path):
    """A deck whose second slide cannot fit: one unbreakable 3,000-character output line."""
    wide = new_code_cell("print('x' * 3000)")
    wide.outputs = [new_output("stream", name="stdout", text="x" * 3000 + "\n")]
    tall = new_code_cell("for i in range(200): print(i)")
    tall.outputs = [new_output("stream", name="stdout", text="\n".join(map(str, range(200))))]
    ok = new_markdown_cell("## Fits\n\nOne short line.")
    nb = new_notebook(cells=[ok, wide, tall])
    for cell in nb.cells:
        cell.metadata["slideshow"] = {"slide_type": "slide"}
    nbformat.write(nb, path)
    return path


def test_the_fit_check_catches_a_slide_that_does_not_fit(decks, browser):
    """A line too long to wrap, and an output taller than two slides at the scale floor."""
    out = decks[0].parent  # beside the lessons' decks, to use their vendor folder
    deck = slides.export_deck(_too_big_notebook(out / "too_big.ipynb"), out)
    page = _page(browser, SIZES[0])
    try:
        n, bad = overflowing_slides(page, deck)
    finally:
        page.close()
        deck.unlink()
    assert n >= 3
    assert "0/0" not in [b["slide"] for b in bad], f"the short slide does not fit: {bad}"
    assert [sorted(b["over"]) for b in bad] == [["right"], ["bottom"]], bad


CONTINUED_JS = """() => Array.from(document.querySelectorAll('.reveal .bn-continued'),
  h => getComputedStyle(h, '::after').content)"""


def test_a_continued_slide_is_labelled_in_the_deck_language(decks, browser):
    """The fit script's continuation pages repeat their heading, marked "(cont.)" in English
    and "（續）" in the zh-TW decks (the template's CSS follows <html lang>)."""
    page = _page(browser, SIZES[0])
    labels = {}
    try:
        for name in ("06_exam_review.slides.html", "06_exam_review.zh-TW.slides.html"):
            deck = next(d for d in decks if d.name == name)
            open_deck(page, deck)
            labels[name] = set(page.evaluate(CONTINUED_JS))
    finally:
        page.close()
    assert labels == {
        "06_exam_review.slides.html": {'" (cont.)"'},
        "06_exam_review.zh-TW.slides.html": {'"（續）"'},
    }, labels
