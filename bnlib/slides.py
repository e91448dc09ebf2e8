"""Build each lesson's reveal.js slide deck, one self-contained folder that presents offline.

    python -m bnlib.slides [NOTEBOOK ...] [--out DIR]      (`make slides` builds every lesson)

A lesson is also its slides: its cells carry `slideshow.slide_type` metadata (slide, subslide,
fragment, skip). nbconvert's SlidesExporter turns `notebooks/NN_name.ipynb` into
`slides/NN_name.slides.html` from the outputs stored in the notebook (nothing is executed). Open
the file in a browser from disk; `s` opens the speaker view, `Esc` the overview.

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

Node.js and npm are needed to build (not to present); without them the build stops with a message.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["SlidesError", "build", "export_deck", "install_vendor", "ensure_node_modules"]

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

# Cells whose input a deck leaves out, besides those collapsed in JupyterLab (Jupyter Book's tags).
HIDE_INPUT_TAGS = {"hide-input", "remove-input"}

EXPORTER_CONFIG = {
    "reveal_url_prefix": f"{VENDOR}/reveal.js",
    "reveal_theme": "white",
    "reveal_scroll": True,  # a slide taller than the screen scrolls instead of being cut off
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


def export_deck(notebook, out_dir):
    """Write one notebook's deck to out_dir/<stem>.slides.html (vendor files not included)."""
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
    config.SlidesExporter.extra_template_basedirs = [str(SRC / "template")]
    config.SlidesExporter.template_name = "bnlib-reveal"
    exporter = SlidesExporter(config=config)
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": notebook.stem}})

    deck = Path(out_dir) / f"{notebook.stem}.slides.html"
    deck.parent.mkdir(parents=True, exist_ok=True)
    deck.write_text(body, encoding="utf-8")
    return deck


def build(notebooks=None, out_dir=OUT):
    """Build the decks of `notebooks` (default: every lesson in notebooks/) into out_dir.

    Returns the paths of the decks written.
    """
    notebooks = (
        [Path(n) for n in notebooks] if notebooks else sorted(ROOT.glob("notebooks/*.ipynb"))
    )
    missing = [str(n) for n in notebooks if not n.is_file()]
    if missing:
        raise SlidesError(f"bnlib.slides: no such notebook: {', '.join(missing)}")
    install_vendor(out_dir, ensure_node_modules())
    return [export_deck(n, out_dir) for n in notebooks]


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m bnlib.slides", description=__doc__.splitlines()[0]
    )
    parser.add_argument("notebooks", nargs="*", help="lessons to build (default: notebooks/*)")
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
