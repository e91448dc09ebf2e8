"""The course's JupyterLab settings, and the widget state a fresh clone's lessons carry.

lab-settings/bnlib.json turns on ipywidgets' "Save Widget State Automatically" (`saveState`), so
that a lesson saved (or autosaved) in JupyterLab and opened again after its kernel is gone shows
each widget as it was last drawn instead of "Error displaying widget: model not found".
`make setup` (and Binder's postBuild) copies it to JupyterLab's settings overrides in the
environment, where `jupyter lab` reads it at start. tests/test_browser.py checks the effect in a
browser; this file checks the pieces without one.
"""

import json
import re
import sys
from pathlib import Path

import jsonschema
import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ROOT / "lab-settings" / "bnlib.json"
INSTALLED = (
    Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.d" / "bnlib.json"
)
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
VIEW = "application/vnd.jupyter.widget-view+json"
STATE = "application/vnd.jupyter.widget-state+json"


def _schema(plugin):
    """The settings schema of a JupyterLab plugin "package:name", as installed in sys.prefix."""
    package, name = plugin.split(":")
    share = Path(sys.prefix) / "share" / "jupyter"
    for base in (share / "labextensions" / package / "schemas", share / "lab" / "schemas"):
        path = base / package / f"{name}.json"
        if path.is_file():
            return json.loads(path.read_text())
    raise AssertionError(f"no settings schema for {plugin} under {share}")


def test_the_settings_save_widget_state():
    settings = json.loads(SETTINGS.read_text())
    assert settings["@jupyter-widgets/jupyterlab-manager:plugin"]["saveState"] is True


def test_every_setting_is_one_jupyterlab_knows():
    """A misspelt plugin or key would be ignored without a word: validate each against the
    plugin's schema, which forbids unknown keys (additionalProperties: false)."""
    for plugin, values in json.loads(SETTINGS.read_text()).items():
        schema = _schema(plugin)
        assert schema.get("additionalProperties") is False, f"{plugin}'s schema accepts any key"
        jsonschema.validate(values, schema)


def test_the_settings_are_installed_in_this_environment():
    assert INSTALLED.is_file(), f"{INSTALLED} is missing: run `make setup`"
    assert json.loads(INSTALLED.read_text()) == json.loads(SETTINGS.read_text()), (
        f"{INSTALLED} differs from lab-settings/bnlib.json: run `make setup`"
    )


@pytest.mark.parametrize("path", LESSONS, ids=[p.name for p in LESSONS])
def test_a_fresh_clone_holds_the_state_of_every_widget_it_shows(path):
    """Each widget output of a committed lesson names a model stored in the notebook's widget
    state, and so does every model those refer to (a box's children, a slider's layout): opened
    before it runs, the lesson shows its stored widgets, not "model not found"."""
    nb = nbformat.read(path, as_version=4)
    shown = [
        output["data"][VIEW]["model_id"]
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if VIEW in output.get("data", {})
    ]
    if not shown:
        assert "widgets" not in nb.metadata, "widget state stored but no widget shown"
        return
    state = nb.metadata["widgets"][STATE]["state"]
    missing, todo, seen = [], list(shown), set()
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.add(model)
        if model not in state:
            missing.append(model)
            continue
        todo += re.findall(r"IPY_MODEL_([0-9a-f]+)", json.dumps(state[model]["state"]))
    assert not missing, f"{len(missing)} widget model(s) shown but not stored: {missing[:3]}"
