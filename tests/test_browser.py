"""The lessons in a real JupyterLab and a real browser: they run cleanly, their widgets respond.

The test starts `jupyter lab` from this interpreter on a free localhost port with a random token,
serving a temporary copy of notebooks/ whose outputs are cleared (so every output on the page comes
from this run, and the repository is never written to). Jupyter's config, data and runtime folders
are temporary too, so a user's settings or open tabs cannot leak in; the kernel spec and the
ipywidgets lab extension still come from the environment (sys.prefix/share/jupyter). Headless
Chromium (Debian's, via playwright) then opens lesson 1, runs all cells from the Run menu, saves
it, and the saved file must hold every code cell executed and no error. It moves the gamma slider
of `bn_explorer` and waits for new figure bytes, then answers quiz questions and waits for
feedback. Every other lesson then runs the same way in one shared JupyterLab: each widget that
draws a figure must draw a new one when one of its controls moves, and its quiz must answer.
On failure a screenshot lands in the test's tmp folder (its path is in the message).
"""

import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest
from _chromium import chromium_or_skip, launch

ROOT = Path(__file__).resolve().parents[1]
LESSON = "01_bn_formulas.ipynb"

pytestmark = pytest.mark.browser

# User settings for the temporary JupyterLab: no news or update pop-up over the page, the
# notebook's kernel starts without a "Select Kernel" dialog, and every cell stays attached to the
# DOM (the default windowing detaches cells scrolled out of view).
SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {"checkForUpdates": False, "fetchNews": "false"},
    "@jupyterlab/notebook-extension/tracker": {
        "windowingMode": "none",
        "autoStartDefaultKernel": True,
    },
}

# One snapshot of the notebook on the page: its code cells' prompts ("[3]:", "[*]:", "[ ]:") and
# the kernel status shown in the toolbar.
PAGE_STATE_JS = """() => ({
    prompts: [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')]
        .map(p => p.textContent.trim()),
    kernel: document.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status ?? null,
})"""

# The bytes of the explorer's figure, an <img> whose src is a blob: URL made by ipywidgets.
FIGURE_BYTES_JS = """async (img) => {
    const buffer = await (await fetch(img.src)).arrayBuffer();
    let s = ''; for (const b of new Uint8Array(buffer)) s += String.fromCharCode(b);
    return btoa(s);
}"""


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


BUDGET = 110  # seconds for the whole test; every wait below ends by then at the latest
_end = [float("inf")]  # when the budget runs out (set when the test starts)


def _wait_until(condition, timeout, what, interval=0.25):
    """Poll condition() until it returns a truthy value; fail after timeout seconds."""
    deadline = min(time.monotonic() + timeout, _end[0])
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def _copy_lessons(dest):
    """Copy notebooks/*.ipynb to dest with outputs, execution counts and widget state cleared."""
    dest.mkdir(parents=True)
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        nb.metadata.pop("widgets", None)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nbformat.write(nb, dest / path.name)


@contextmanager
def _jupyter_lab(tmp_path):
    """Run JupyterLab on tmp_path/root; yield (base_url, token). Stopped on exit."""
    root, home = tmp_path / "root", tmp_path / "jupyter"
    _copy_lessons(root)
    for name, values in SETTINGS.items():
        path = home / "config" / "lab" / "user-settings" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        BROWSER="true",
    )
    port, token = _free_port(), secrets.token_hex(24)
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]
    if os.geteuid() == 0:  # containers and CI run as root; Jupyter refuses that without a flag
        cmd.append("--allow-root")
    log = (tmp_path / "jupyter-lab.log").open("w")
    server = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"

    def up():
        if server.poll() is not None:
            raise AssertionError(f"jupyter lab exited ({server.returncode}); see {log.name}")
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    try:
        _wait_until(up, 60, f"jupyter lab to answer on {base} (log: {log.name})")
        yield base, token
    finally:
        server.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait()
        log.close()


def _menu(page, menu, command, timeout=20):
    """Click menu > the item of `command`, once the notebook is active and the item enabled.

    Right after the page loads, the notebook may not be the current widget yet and the item
    is disabled (a click would do nothing); then close the menu and try again.
    """
    item = page.locator(f'.lm-Menu-item[data-command="{command}"]')

    def clicked():
        page.locator(".jp-NotebookPanel-toolbar").first.click(position={"x": 2, "y": 2})
        page.locator(".lm-MenuBar-item", has_text=menu).first.click()
        item.wait_for(state="visible", timeout=5_000)
        if "lm-mod-disabled" in (item.get_attribute("class") or ""):
            page.keyboard.press("Escape")
            time.sleep(0.5)
            return False
        item.click()
        return True

    _wait_until(clicked, timeout, f"{menu} > {command} to be enabled")


def _save(page, saved):
    """File > Save Notebook; return the notebook as written to disk."""
    before = saved.stat().st_mtime_ns
    _menu(page, "File", "docmanager:save")
    _wait_until(lambda: saved.stat().st_mtime_ns != before, 15, "the notebook to be saved")

    def complete():
        # NB: Jupyter's "atomic" writing keeps a backup and rewrites the file in place, so a read
        # right after the change can see it empty or half written: retry until it parses
        try:
            return nbformat.read(saved, as_version=4)
        except (OSError, ValueError):  # NotJSONError and JSONDecodeError are ValueErrors
            return None

    return _wait_until(complete, 15, "the saved notebook to be complete JSON")


def _done(nb):
    """Every code cell ran, or one raised (Run All stops there)."""
    code = [c for c in nb.cells if c.cell_type == "code"]
    return all(c.execution_count for c in code) or any(
        o.output_type == "error" for c in code for o in c.outputs
    )


def _run_all_and_save(page, saved, timeout=90):
    """Run > Run All Cells, wait for the kernel, then File > Save; return the saved notebook.

    The page shows when the kernel is idle with no cell queued ("[*]"), but not about a cell
    whose input is collapsed; so the saved file decides, and while it shows cells that have not
    run yet (and no error), wait and save again.
    """
    page.wait_for_selector(".jp-Notebook .jp-CodeCell", timeout=30_000)
    _wait_until(lambda: page.evaluate(PAGE_STATE_JS)["kernel"] == "idle", 30, "the kernel to start")
    _menu(page, "Run", "runmenu:run-all")
    deadline, last = time.monotonic() + timeout, {}

    def quiet():
        last.update(page.evaluate(PAGE_STATE_JS))
        ran = any(p[1:-2].isdigit() for p in last["prompts"])
        return ran and last["kernel"] == "idle" and "[*]:" not in last["prompts"]

    while True:
        left = deadline - time.monotonic()
        try:
            _wait_until(lambda: quiet() and (time.sleep(0.5) or quiet()), left, "Run All")
        except AssertionError as e:
            prompts = " ".join(last.get("prompts", []))
            raise AssertionError(f"{e}; last seen: kernel {last.get('kernel')}, {prompts}") from e
        nb = _save(page, saved)
        if _done(nb) or time.monotonic() > deadline:
            return nb
        time.sleep(1)


def _assert_ran_cleanly(nb):
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [
        f"cell {i}: {o.ename}: {o.evalue}"
        for i, c in enumerate(code)
        for o in c.outputs
        if o.output_type == "error"
    ]
    assert not errors, "lesson raised in JupyterLab:\n" + "\n".join(errors)
    not_run = [i for i, c in enumerate(code) if c.execution_count is None]
    assert not not_run, f"code cells {not_run} did not run"


def _figure_bytes(page):
    img = page.locator(".bnlib-bn-figure").first
    img.wait_for(state="visible", timeout=10_000)
    return base64.b64decode(img.evaluate(FIGURE_BYTES_JS))


def _move_gamma_and_see_new_figure(page):
    slider = page.locator(".bnlib-slider-gamma").first
    slider.scroll_into_view_if_needed()
    readout = slider.locator(".widget-readout")
    before_png, before_value = _figure_bytes(page), readout.inner_text()
    assert before_png.startswith(b"\x89PNG"), "the explorer's figure is not a PNG"
    handle = slider.locator(".noUi-handle")
    handle.focus()
    for _ in range(3):  # three steps of 0.1: gamma 1.0 -> 1.3
        handle.press("ArrowRight")
    _wait_until(lambda: readout.inner_text() != before_value, 10, "the gamma readout to change")
    after = _wait_until(
        lambda: (png := _figure_bytes(page)) != before_png and png,
        10,
        "the figure to redraw after moving gamma",
    )
    assert after.startswith(b"\x89PNG")
    return before_value, readout.inner_text()


def _answer(question, choose):
    """Answer one quiz question with choose(question), press Check; return the feedback text."""
    question.scroll_into_view_if_needed()
    feedback = question.locator(".bnlib-quiz-feedback").first
    assert feedback.inner_text().strip() == "", "feedback shown before any answer"
    choose(question)
    question.locator(".bnlib-quiz-check button, button.bnlib-quiz-check").first.click()
    return _wait_until(
        lambda: feedback.inner_text().strip(), 10, "quiz feedback after pressing Check"
    )


def _answer_quiz(page):
    quiz = page.locator(".bnlib-quiz").first
    quiz.wait_for(state="attached", timeout=10_000)
    questions = quiz.locator(".bnlib-quiz-question")
    assert questions.count() > 0, "the quiz shows no questions"
    with_options = questions.filter(has=page.locator(".bnlib-quiz-options"))
    with_input = questions.filter(has=page.locator(".bnlib-quiz-input"))
    feedback = {}
    if with_options.count():
        feedback["multiple choice"] = _answer(
            with_options.first,
            lambda q: q.locator(".bnlib-quiz-options input[type=radio]").first.check(),
        )
    if with_input.count():
        feedback["numeric"] = _answer(
            with_input.first, lambda q: q.locator(".bnlib-quiz-input input").first.fill("0.5")
        )
    assert feedback, "the quiz has neither radio buttons nor a numeric input"
    for kind, text in feedback.items():
        assert text.startswith(("Correct.", "Not quite.")), f"{kind} feedback: {text!r}"
    return feedback


def test_lesson1_runs_and_its_widgets_respond(tmp_path):
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    if not (ROOT / "notebooks" / LESSON).is_file():
        pytest.fail(f"notebooks/{LESSON} is missing")
    started = time.monotonic()
    _end[0] = started + BUDGET
    with _jupyter_lab(tmp_path) as (base, token), sync_playwright() as p:
        browser = launch(p, executable)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(10_000)  # each click or lookup
        try:
            page.goto(f"{base}/lab/tree/{LESSON}?token={token}", timeout=30_000)
            nb = _run_all_and_save(page, tmp_path / "root" / LESSON)
            _assert_ran_cleanly(nb)
            _move_gamma_and_see_new_figure(page)
            _answer_quiz(page)
        except Exception as e:
            shot = tmp_path / "failure.png"
            page.screenshot(path=str(shot), full_page=True)
            raise AssertionError(f"{e}\nscreenshot: {shot}") from e
        finally:
            browser.close()
    assert time.monotonic() - started < 120, "the browser test took two minutes or more"


# --- every other lesson: runs cleanly in JupyterLab, and each of its figure widgets redraws -------

LESSONS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
OTHER_LESSONS = [n for n in LESSONS if n not in ("00_start_here.ipynb", LESSON)]


# Every widget of the course that draws a figure is a box holding an ipywidgets Image (an <img>
# with a blob: URL) and at least one control: the output areas holding one are what a learner
# is meant to move.
def _figure_widgets(page):
    return page.locator(".jp-OutputArea-output").filter(has=page.locator('img[src^="blob:"]'))


def _png_of(widget):
    img = widget.locator('img[src^="blob:"]').first
    return base64.b64decode(img.evaluate(FIGURE_BYTES_JS))


def _nudges(widget):
    """The ways to move the widget's controls: a slider step right and left, a toggle button
    not yet selected, the next option of a drop-down. Each is (description, action)."""
    sliders = widget.locator(".noUi-handle")
    toggles = widget.locator("button.widget-toggle-button:not(.mod-active)")
    selects = widget.locator("select")

    def press(key):
        handle = sliders.first
        handle.scroll_into_view_if_needed()
        handle.focus()
        handle.press(key)

    ways = []
    if sliders.count():
        ways += [("slider right", lambda: press("ArrowRight"))]
        ways += [("slider left", lambda: press("ArrowLeft"))]
    if toggles.count():
        ways.append(("toggle button", lambda: toggles.first.click()))
    if selects.count():
        ways.append(("drop-down", lambda: selects.first.select_option(index=1)))
    return ways


def _every_figure_widget_redraws(page):
    """Each figure widget draws a new figure after one of its controls moves (some controls
    matter only in some states, e.g. a group count for group norm only: so try each)."""
    count = _figure_widgets(page).count()
    assert not page.get_by_text("Error displaying widget").count(), "a widget failed to display"
    for i in range(count):
        widget = _figure_widgets(page).nth(i)
        widget.scroll_into_view_if_needed()
        before = _png_of(widget)
        assert before.startswith(b"\x89PNG"), f"widget {i}: its figure is not a PNG"
        ways = _nudges(widget)
        assert ways, f"widget {i} has no slider, toggle button or drop-down"
        tried = []
        for what, nudge in ways:
            nudge()
            tried.append(what)
            try:
                _wait_until(lambda w=widget, b=before: _png_of(w) != b, 5, "a redraw")
                break
            except AssertionError:
                continue
        else:
            raise AssertionError(f"widget {i} did not redraw after: {', '.join(tried)}")
    return count


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    executable = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    tmp = tmp_path_factory.mktemp("lab")
    with _jupyter_lab(tmp) as (base, token), sync_playwright() as p:
        browser = launch(p, executable)
        try:
            yield base, token, browser, tmp
        finally:
            browser.close()


@pytest.mark.parametrize("lesson", OTHER_LESSONS)
def test_lesson_runs_and_its_figure_widgets_redraw(lab, lesson, tmp_path):
    base, token, browser, root = lab
    _end[0] = time.monotonic() + 240  # a lesson takes up to a minute; JupyterLab adds to that
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(10_000)
    try:
        # a workspace of its own, or JupyterLab would reopen the previous lessons' tabs too
        workspace = "w" + lesson.split("_")[0]
        page.goto(f"{base}/lab/workspaces/{workspace}/tree/{lesson}?token={token}", timeout=30_000)
        nb = _run_all_and_save(page, root / "root" / lesson, timeout=180)
        _assert_ran_cleanly(nb)
        widgets = _every_figure_widget_redraws(page)
        quizzes = page.locator(".bnlib-quiz").count()
        assert widgets or quizzes, "the lesson shows neither a figure widget nor a quiz"
        if quizzes:
            _answer_quiz(page)
    except Exception as e:
        shot = tmp_path / "failure.png"
        page.screenshot(path=str(shot), full_page=True)
        raise AssertionError(f"{lesson}: {e}\nscreenshot: {shot}") from e
    finally:
        page.close()
