"""Build each lesson's reveal.js slide deck, one self-contained folder that presents offline.

    python -m bnlib.slides [NOTEBOOK ...] [--out DIR]      (`make slides` builds every lesson)

A lesson is also its slides: its cells carry `slideshow.slide_type` metadata (slide, subslide,
fragment, skip). nbconvert's SlidesExporter turns `notebooks/NN_name.ipynb` into
`slides/NN_name.slides.html` from the outputs stored in the notebook (nothing is executed). Open
the file in a browser from disk; `s` opens the speaker view, `Esc` the overview.

The Traditional Chinese edition's lessons, `notebooks/zh-TW/NN_name.ipynb` (bnlib.translate),
become `slides/NN_name.zh-TW.slides.html`, beside the English decks and sharing their vendor
folder; the page's language (`<html lang>`) is the edition's, so browsers pick Taiwan's glyphs.

nbconvert's reveal template fetches six things from CDNs. Here each is a local copy or removed:

- reveal.js, require.js (which loads reveal.js), jQuery and MathJax 2 (which typesets the
  formulas; the template drives MathJax 2's API) are npm packages pinned in
  slides-src/package.json and package-lock.json. The build runs `npm ci` there when
  slides-src/node_modules is missing or older than the lock, copies the files a deck needs into
  `<out>/vendor/`, and points the deck at them with relative URLs, so the folder can be copied or
  zipped as a whole. The reveal theme is `white`, whose fonts ship with reveal.js (`simple`, the
  exporter's default, imports Google Fonts).
- mermaid: the template imports it from cdnjs on every page load. The lessons draw no mermaid
  diagrams, so the template in slides-src/template/ drops that import.
- Jupyter widgets: to render the widget state saved in a notebook, the template loads
  @jupyter-widgets/html-manager from unpkg. Without a kernel the sliders could not redraw
  anything, so the build drops the saved state and each widget shows its static fallback
  instead (the explorer's figure as a PNG, the quiz as HTML).

What JupyterLab hides stays hidden: a cell whose input is collapsed (`jupyter.source_hidden`) or
tagged `hide-input`/`remove-input` shows only its output (a quiz's source holds its answers),
collapsed outputs are left out, and a cell tagged `remove-cell` is left out entirely.

Every slide fits the screen, with nothing cut off and no scroll box. The slide is 1280x720 (16:9;
reveal.js scales it to the window), code and outputs wrap at spaces instead of running off the
right edge (never inside a number), and a figure is at most 600 px high. What is still too big is
fitted in the browser by the template's script (slides-src/template/bnlib-reveal/index.html.j2),
once MathJax has typeset and the fonts have loaded, before reveal.js starts:

- a slide that would have to shrink below 75 % to fit is cut into pages, at a block boundary (a
  cell, a cell's input and its output, a paragraph, a list item, a table row); a continuation page
  repeats the slide's heading, marked "(cont.)" (in a zh-TW deck "（續）": the label follows
  `<html lang>`), and follows as the next (sub)slide;
- a page still too tall or too wide (one long code block, a wide table) is scaled down to fit,
  never below 50 %; content that would need less stays cut off, so the fit test fails on it.

A slide is filled to 4 px short of its height (a margin for sub-pixel rounding when reveal.js
scales it to the screen). The pages are measured at the slide's own size, so the cut is the same
on every screen. The lessons' metadata is not touched; the same rules fit tomorrow's content.

Chinese (lesson 6, the course map) renders with Noto Sans TC (SIL OFL) from the pinned npm package
@fontsource/noto-sans-tc: the build ships only the woff2 files that hold a CJK character the
decks use, and declares each for exactly those characters (unicode-range), so the Latin text keeps
the theme's fonts. No system CJK font is needed.

Node.js and npm are needed to build (not to present); without them the build stops with a message.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = [
    "SlidesError",
    "build",
    "deck_language",
    "deck_name",
    "export_deck",
    "install_vendor",
    "install_cjk_font",
    "ensure_node_modules",
]

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "slides-src"  # package.json, package-lock.json, template/
OUT = ROOT / "slides"
VENDOR = "vendor"  # under the output folder; the decks' URLs are relative to it

# What a deck loads, per npm package: paths inside the package, copied to <out>/vendor/<package>/.
VENDOR_FILES = {
    "reveal.js": ["dist", "plugin/notes"],
    "requirejs": ["require.js"],
    "jquery": ["dist/jquery.min.js"],
    # MathJax 2 with its combined TeX-AMS_CHTML-full configuration: TeX in, CommonHTML out.
    # 73 MB installed, 8 MB of it is needed here (other fonts and outputs stay behind).
    "mathjax": [
        "MathJax.js",
        "config/TeX-AMS_CHTML-full.js",
        "config/Safe.js",
        "extensions",
        "jax/element",
        "jax/input/TeX",
        "jax/output/CommonHTML",
        "fonts/HTML-CSS/TeX/woff",
        "localization/en",
    ],
}

# The CJK web font: one weight (400; headings get the browser's synthetic bold), woff2 only.
FONT_PACKAGE = "@fontsource/noto-sans-tc"
FONT_FAMILY = "Noto Sans TC"
FONT_CSS = "400.css"  # @font-face rules of the package: one per woff2 subset, with unicode-range
FONT_DIR = "noto-sans-tc"  # under <out>/vendor/: the woff2 files the decks use and their CSS
# Code points that the web font draws: CJK radicals and symbols through the unified ideographs,
# compatibility ideographs, vertical and fullwidth forms, and the supplementary ideographs.
CJK_RANGES = [
    (0x2E80, 0x9FFF),
    (0xF900, 0xFAFF),
    (0xFE30, 0xFE4F),
    (0xFF00, 0xFFEF),
    (0x20000, 0x3FFFF),
]

# Cells whose input a deck leaves out, besides those collapsed in JupyterLab (Jupyter Book's tags).
HIDE_INPUT_TAGS = {"hide-input", "remove-input"}

EXPORTER_CONFIG = {
    "reveal_url_prefix": f"{VENDOR}/reveal.js",
    "reveal_theme": "white",
    # 16:9, the shape of projectors and of the 1280x720 and 1920x1080 screens the test checks.
    "reveal_width": "1280",
    "reveal_height": "720",
    # nbconvert's scroll box is sized before reveal scales the slide, so its end is out of reach;
    # the template fits each slide instead (module docstring).
    "reveal_scroll": False,
    "require_js_url": f"{VENDOR}/requirejs/require.js",
    "jquery_url": f"{VENDOR}/jquery/dist/jquery.min.js",
    "mathjax_url": f"{VENDOR}/mathjax/MathJax.js?config=TeX-AMS_CHTML-full,Safe",
    "exclude_input_prompt": True,
    "exclude_output_prompt": True,
}


class SlidesError(RuntimeError):
    """The decks cannot be built here (no npm, a failed install, a missing notebook)."""


def _npm():
    npm = shutil.which("npm")
    if npm is None:
        raise SlidesError(
            "bnlib.slides: npm not found; install Node.js (Debian: apt-get install npm) to build "
            "the slides. Presenting them needs no Node.js."
        )
    return npm


def ensure_node_modules(src=SRC):
    """Install slides-src's pinned npm packages (`npm ci`) unless they are already up to date.

    npm writes node_modules/.package-lock.json on every install; when it is older than
    package-lock.json, the pins changed since. Returns the node_modules path.
    """
    lock, modules = src / "package-lock.json", src / "node_modules"
    if not lock.is_file():
        raise SlidesError(f"bnlib.slides: {lock} is missing (run from a checkout of the course)")
    stamp = modules / ".package-lock.json"
    if not stamp.is_file() or stamp.stat().st_mtime < lock.stat().st_mtime:
        cmd = [_npm(), "ci", "--no-audit", "--no-fund", "--loglevel=error"]
        done = subprocess.run(cmd, cwd=src, capture_output=True, text=True)
        if done.returncode != 0:
            raise SlidesError(f"bnlib.slides: `npm ci` in {src} failed:\n{done.stderr.strip()}")
    return modules


def install_vendor(out_dir, node_modules):
    """Copy the files of VENDOR_FILES from node_modules to out_dir/vendor/. Returns that folder."""
    vendor = Path(out_dir) / VENDOR
    for package, parts in VENDOR_FILES.items():
        for part in parts:
            source, target = node_modules / package / part, vendor / package / part
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True)
            elif source.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
            else:
                raise SlidesError(f"bnlib.slides: {source} is missing; reinstall with `npm ci`")
    return vendor


def _is_cjk(codepoint):
    return any(lo <= codepoint <= hi for lo, hi in CJK_RANGES)


def _unicode_range(codepoints):
    """CSS unicode-range for a set of code points: U+4e00,U+4e8c-4e8d, ..."""
    spans, points = [], sorted(codepoints)
    for cp in points:
        if spans and cp == spans[-1][1] + 1:
            spans[-1][1] = cp
        else:
            spans.append([cp, cp])
    return ",".join(f"U+{a:x}" if a == b else f"U+{a:x}-{b:x}" for a, b in spans)


def _parse_unicode_range(text):
    points = set()
    for part in text.split(","):
        first, _, last = part.strip().removeprefix("U+").removeprefix("u+").partition("-")
        points.update(range(int(first, 16), int(last or first, 16) + 1))
    return points


def install_cjk_font(out_dir, node_modules, decks):
    """Copy the web font's woff2 files that hold a CJK character used in `decks` to
    out_dir/vendor/noto-sans-tc/, with a style sheet declaring each file for those characters only.

    Returns the style sheet's path. Fontsource cuts the font into ~100 files by frequency; a deck
    in Chinese needs a few dozen of them.
    """
    import re

    package = node_modules / FONT_PACKAGE
    css_path = package / FONT_CSS
    if not css_path.is_file():
        raise SlidesError(f"bnlib.slides: {css_path} is missing; reinstall with `npm ci`")
    used = {ord(ch) for deck in decks for ch in Path(deck).read_text(encoding="utf-8")}
    used = {cp for cp in used if _is_cjk(cp)}
    target = Path(out_dir) / VENDOR / FONT_DIR
    if target.is_dir():
        shutil.rmtree(target)  # files of an earlier build that the decks no longer need
    target.mkdir(parents=True)
    rules = []
    for block in re.findall(r"@font-face\s*{([^}]*)}", css_path.read_text(encoding="utf-8")):
        woff2 = re.search(r"url\(\./files/([^)]+\.woff2)\)", block)
        ranges = re.search(r"unicode-range:\s*([^;]+);", block)
        if not (woff2 and ranges):
            continue
        # NB: the package's subsets also cover Latin letters and punctuation; declare each file
        # for the CJK characters the decks use, so Latin text keeps the theme's fonts.
        wanted = used & _parse_unicode_range(ranges.group(1))
        if not wanted:
            continue
        shutil.copy2(package / "files" / woff2.group(1), target / woff2.group(1))
        rules.append(
            "@font-face {\n"
            f"  font-family: '{FONT_FAMILY}';\n"
            "  font-style: normal;\n  font-weight: 400;\n  font-display: block;\n"
            f"  src: url(./{woff2.group(1)}) format('woff2');\n"
            f"  unicode-range: {_unicode_range(wanted)};\n}}\n"
        )
    shutil.copy2(package / "LICENSE", target / "LICENSE")
    css = target / f"{FONT_DIR}.css"
    header = f"/* {FONT_FAMILY} (SIL OFL 1.1, see LICENSE) from {FONT_PACKAGE}; bnlib.slides */\n"
    css.write_text(header + "\n".join(rules), encoding="utf-8")
    return css


def _editions():
    """The languages of the course's other editions (folders under notebooks/): ["zh-TW"]."""
    from bnlib.i18n import LANGUAGES

    return [language for language in LANGUAGES if language != "en"]


def deck_language(notebook):
    """The language of a lesson: its edition's folder (notebooks/zh-TW/ -> "zh-TW"), else "en"."""
    folder = Path(notebook).parent.name
    return folder if folder in _editions() else "en"


def deck_name(notebook):
    """<stem>.slides.html, or <stem>.<language>.slides.html for another edition's lesson."""
    language = deck_language(notebook)
    suffix = "" if language == "en" else f".{language}"
    return f"{Path(notebook).stem}{suffix}.slides.html"


def export_deck(notebook, out_dir):
    """Write one notebook's deck to out_dir/`deck_name(notebook)` (vendor files not included)."""
    import nbformat
    from nbconvert import SlidesExporter
    from traitlets.config import Config

    notebook = Path(notebook)
    nb = nbformat.read(notebook, as_version=4)
    # NB: without the saved widget state, nbconvert shows each widget output's next-best MIME
    # type (image/png, text/html, text/plain) and omits the script that would fetch the renderer.
    nb.metadata.pop("widgets", None)
    nb.cells = [c for c in nb.cells if "remove-cell" not in c.metadata.get("tags", [])]
    for cell in nb.cells:
        # What JupyterLab hides stays hidden (see the module docstring).
        hidden = cell.metadata.get("jupyter", {})
        if hidden.get("source_hidden") or HIDE_INPUT_TAGS & set(cell.metadata.get("tags", [])):
            cell.metadata["transient"] = {"remove_source": True}
        if hidden.get("outputs_hidden") and cell.cell_type == "code":
            cell.outputs = []

    config = Config()
    config.SlidesExporter.update(EXPORTER_CONFIG)
    language = deck_language(notebook)
    # NB: nbconvert takes ISO 639-1 codes only ("zh"); the page gets the full tag below.
    config.SlidesExporter.language_code = language.split("-")[0]
    config.SlidesExporter.extra_template_basedirs = [str(SRC / "template")]
    config.SlidesExporter.template_name = "bnlib-reveal"
    exporter = SlidesExporter(config=config)
    resources = {
        "metadata": {"name": notebook.stem},
        "bnlib_font_css": f"{VENDOR}/{FONT_DIR}/{FONT_DIR}.css",
        "bnlib_font_family": FONT_FAMILY,
    }
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    html_tag = f'<html lang="{language.split("-")[0]}">'
    body = body.replace(html_tag, f'<html lang="{language}">', 1)

    deck = Path(out_dir) / deck_name(notebook)
    deck.parent.mkdir(parents=True, exist_ok=True)
    deck.write_text(body, encoding="utf-8")
    return deck


def build(notebooks=None, out_dir=OUT):
    """Build the decks of `notebooks` (default: every lesson in notebooks/ and its editions in
    notebooks/<language>/, e.g. notebooks/zh-TW/) into out_dir.

    Returns the paths of the decks written.
    """
    notebooks = (
        [Path(n) for n in notebooks]
        if notebooks
        else sorted(ROOT.glob("notebooks/*.ipynb"))
        + [
            n
            for language in _editions()
            for n in sorted(ROOT.glob(f"notebooks/{language}/*.ipynb"))
        ]
    )
    missing = [str(n) for n in notebooks if not n.is_file()]
    if missing:
        raise SlidesError(f"bnlib.slides: no such notebook: {', '.join(missing)}")
    node_modules = ensure_node_modules()
    install_vendor(out_dir, node_modules)
    decks = [export_deck(n, out_dir) for n in notebooks]
    # The font covers every deck in out_dir, also those of an earlier build of other lessons.
    install_cjk_font(out_dir, node_modules, sorted(Path(out_dir).glob("*.slides.html")))
    return decks


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m bnlib.slides", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "notebooks", nargs="*", help="lessons to build (default: notebooks/*, notebooks/zh-TW/*)"
    )
    parser.add_argument("--out", default=str(OUT), help="output folder (default: slides/)")
    args = parser.parse_args(argv)
    try:
        decks = build(args.notebooks, args.out)
    except SlidesError as e:
        print(e, file=sys.stderr)
        return 1
    for deck in decks:
        print(f"wrote {deck}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
