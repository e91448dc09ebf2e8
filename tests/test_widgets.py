"""bnlib.widgets.bn_explorer: builds, redraws when a slider moves, agrees with the reference;
NormGroupExplorer: its G slider is live for GN only. Every figure widget: its PNG is shown at its
own pixel width, and every word it shows goes through bnlib.i18n."""

import base64
import html
import re

import numpy as np
import pytest
import torch

from bnlib import functional as F
from bnlib.hooks import trace_training
from bnlib.train import lr_sweep, mlp
from bnlib.widgets import (
    BATCH_SIZES,
    MODEL_LABELS,
    BatchNoiseExplorer,
    LayerDistributionViewer,
    LearningRateSelector,
    NormGroupExplorer,
    RunningStatsExplorer,
    bn_explorer,
    png_width,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY = "tiny spread (std 0.003)"


@pytest.fixture
def explorer():
    return bn_explorer(seed=0)


def test_builds_with_the_css_hooks_of_the_browser_test(explorer):
    assert "bnlib-slider-gamma" in explorer.gamma._dom_classes
    assert "bnlib-bn-figure" in explorer.image._dom_classes
    assert "bnlib-bn-explorer" in explorer.widget._dom_classes
    assert explorer.image.format == "png"
    assert bytes(explorer.image.value).startswith(PNG_SIGNATURE)
    assert not explorer.gamma.continuous_update


def test_moving_gamma_redraws_the_figure(explorer):
    before = bytes(explorer.image.value)
    explorer.gamma.value = 2.0
    after = bytes(explorer.image.value)
    assert after.startswith(PNG_SIGNATURE) and after != before
    explorer.gamma.value = 1.0
    assert bytes(explorer.image.value) == before  # the same state draws the same bytes


@pytest.mark.parametrize("slider, value", [("beta", 1.5), ("eps", 1e-1), ("batch_size", 8)])
def test_every_slider_redraws(explorer, slider, value):
    before = bytes(explorer.image.value)
    explorer.set(**{slider: value})
    assert bytes(explorer.image.value) != before


def test_values_match_the_reference_batch_norm(explorer):
    explorer.set(gamma=1.7, beta=-0.4, eps=1e-3, batch_size=16)
    x, xhat, y = explorer.values()
    assert x.shape == xhat.shape == y.shape == (16,)
    ref = F.batch_norm(
        x[:, None], None, None, np.array([1.7]), np.array([-0.4]), training=True, eps=1e-3
    )
    np.testing.assert_allclose(y, ref[:, 0], rtol=1e-12, atol=1e-12)


def test_gamma_and_beta_set_the_output_mean_and_std_and_leave_xhat_alone(explorer):
    xhat_before = explorer.stats()["xhat"]
    explorer.set(gamma=2.5, beta=-1.0)
    stats = explorer.stats()
    assert stats["xhat"] == pytest.approx(xhat_before, abs=1e-12)
    assert stats["y"][0] == pytest.approx(-1.0, abs=1e-9)
    assert stats["y"][1] == pytest.approx(2.5 * stats["xhat"][1], rel=1e-12)


def test_eps_matters_for_the_tiny_spread_feature_only(explorer):
    explorer.set(eps=1e-5)
    assert explorer.stats()["xhat"][1] == pytest.approx(1.0, abs=1e-4)  # var ~0.3 >> eps
    explorer.set(feature=TINY, batch_size=512)
    var = explorer.values()[0].var()
    assert var < 1e-5  # below eps: eps, not the data, sets the scale
    assert explorer.stats()["xhat"][1] == pytest.approx(np.sqrt(var / (var + 1e-5)), rel=1e-9)
    assert explorer.stats()["xhat"][1] < 0.8
    explorer.set(eps=1e-8)
    assert explorer.stats()["xhat"][1] > 0.99


def test_the_input_is_skewed_and_offset(explorer):
    explorer.set(batch_size=BATCH_SIZES[-1])
    x = explorer.values()[0]
    mean, std = x.mean(), x.std()
    assert mean > 3 * std  # far from zero
    assert np.mean(((x - mean) / std) ** 3) > 0.5  # skewed to the right


def test_text_fallback_and_static_image(explorer):
    explorer.set(gamma=2.0, beta=0.5)
    bundle = explorer._repr_mimebundle_()
    text = bundle["text/plain"]
    assert "gamma=2" in text and "beta=0.5" in text and "eps=1e-05" in text
    assert "y   : mean   0.5000, std  2.0000" in text
    assert "xhat: mean   0.0000, std  1.0000" in text
    assert base64.b64decode(bundle["image/png"]) == bytes(explorer.image.value)
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert repr(explorer) == text


def test_seed_changes_the_samples():
    a, b = bn_explorer(seed=0), bn_explorer(seed=1)
    assert not np.array_equal(a.values()[0], b.values()[0])
    assert np.array_equal(a.values()[0], bn_explorer(seed=0).values()[0])


def test_set_rejects_unknown_sliders(explorer):
    with pytest.raises(ValueError, match="gamma"):
        explorer.set(gama=2.0)


def test_groups_slider_is_enabled_for_gn_only():
    """Lesson 5's explorer: G means something for GN only, so its slider is greyed out for BN, LN
    and IN (moving it there would change nothing)."""
    explorer = NormGroupExplorer()
    assert explorer.method.value == "BN" and explorer.groups.disabled
    explorer.method.value = "GN"
    assert not explorer.groups.disabled
    explorer.groups.value = 3
    assert explorer.image.value == explorer.frames["GN", 3]
    for method in ("LN", "IN", "BN"):
        explorer.method.value = method
        assert explorer.groups.disabled
        assert explorer.image.value == explorer.frames[method, 2]


# --- every figure widget: shown at its PNG's pixel width; every word it shows is translatable ----


@pytest.fixture(scope="module")
def lesson3_inputs(data):
    """Tiny stand-ins for lesson 3's traced runs and learning-rate sweep (their size does not
    matter to the widgets)."""
    traces = {}
    for kind in ("none", "bn"):
        torch.manual_seed(0)
        model = mlp((64, 8, 8, 10), norm=kind, activation="sigmoid")
        traces[f"model {kind}"] = trace_training(
            model, data, steps=20, batch_size=16, keep_every=5
        )[1]
    runs = lr_sweep(
        lambda kind: mlp((64, 8, 10), norm=kind),
        ("none", "bn"),
        (0.05, 0.1),
        data,
        steps=10,
        batch_size=16,
        eval_every=5,
    )
    return traces, runs


def _all_widgets(lesson3_inputs):
    traces, runs = lesson3_inputs
    return {
        "BNExplorer": bn_explorer(),
        "RunningStatsExplorer": RunningStatsExplorer(),
        "LayerDistributionViewer": LayerDistributionViewer(traces),
        "LearningRateSelector": LearningRateSelector(
            runs, labels={"none": "label none", "bn": "label bn"}
        ),
        "BatchNoiseExplorer": BatchNoiseExplorer(),
        "NormGroupExplorer": NormGroupExplorer(),
    }


def test_every_figure_is_shown_at_the_pixel_width_it_is_rendered_at(lesson3_inputs):
    """A PNG stretched by the browser is soft and its text oversized: the Image widget's CSS
    width is the PNG's own width (figure width x dpi), and it fits JupyterLab's ~964-px column."""
    for name, explorer in _all_widgets(lesson3_inputs).items():
        png = bytes(explorer.image.value)
        width = png_width(png)
        figure = getattr(explorer, "figure", None)
        if figure is not None:  # NormGroupExplorer keeps only its frames' PNGs
            assert width == round(figure.get_figwidth() * figure.dpi), name
        layout = explorer.image.layout
        assert (layout.width, layout.max_width, layout.height) == (f"{width}px", "100%", "auto")
        assert 250 <= width <= 964, f"{name}: {width} px"
        if explorer.caption is not None:
            assert explorer.caption.layout.max_width == "100%", name


def test_png_width_reads_the_header():
    assert png_width(base64.b64decode(PNG_1x1)) == 1
    with pytest.raises(ValueError, match="PNG"):
        png_width(b"GIF89a" + bytes(20))


PNG_1x1 = (  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


class _Pseudo(dict):
    """A catalogue that 'translates' every message to ⟦message⟧, so an untranslated word shows."""

    def get(self, message, default=None):
        return f"⟦{message}⟧"


def _texts(widget):
    """(kind, text) of everything a learner reads on a widget tree: descriptions, labels,
    option labels and HTML captions (tags stripped)."""
    import ipywidgets as w

    out = []
    if getattr(widget, "description", ""):
        out.append(("description", widget.description))
    if isinstance(widget, w.Label):
        out.append(("label", widget.value))
    if isinstance(widget, w.HTML):
        out.append(("caption", re.sub(r"<[^>]*>", "\n", html.unescape(widget.value))))
    for label in getattr(widget, "_options_labels", ()):
        out.append(("option", label))
    for child in getattr(widget, "children", ()):
        out.extend(_texts(child))
    return out


def test_every_word_a_widget_shows_goes_through_the_translation(monkeypatch, lesson3_inputs):
    """Under a pseudo-catalogue every text with words is bracketed: the widgets translate their
    labels when they are built and their captions when they redraw, not at import time, the
    caller's model labels included. Numbers, symbols and BN/LN/IN/GN stay as they are.
    """
    from bnlib import i18n

    monkeypatch.setattr(i18n, "_translations", lambda language: _Pseudo())
    callers = {"BN", "LN", "IN", "GN"}
    names = ("Batch Norm", "Layer Norm", "Instance Norm", "Group Norm")  # lesson 5's caption
    for name, explorer in _all_widgets(lesson3_inputs).items():
        texts = _texts(explorer.widget)
        assert texts, name
        for kind, text in texts:
            for piece in filter(None, (p.strip() for p in text.split("\n"))):
                if re.search(r"[A-Za-z]{2}", piece) and piece not in callers:
                    if kind == "caption" and piece.startswith(names):
                        continue  # the method's name (bnlib.plots.NORM_FUNCTIONS), a proper name
                    assert "⟦" in piece, f"{name}: {kind} {piece!r} is not translated"
        assert explorer.summary().startswith("⟦"), name


def test_lesson3_captions_follow_the_controls(lesson3_inputs):
    traces, runs = lesson3_inputs
    viewer = LayerDistributionViewer(traces)
    before = viewer.caption.value
    viewer.step.value = 6
    assert "step 6" in viewer.caption.value and viewer.caption.value != before
    assert "step 6" in viewer._repr_mimebundle_()["text/html"]
    selector = LearningRateSelector(runs, labels={"none": "plain", "bn": "with BN"})
    selector.lr.value = 0.05
    caption = selector.caption.value
    assert "Learning rate 0.05" in caption and "plain" in caption and "with BN" in caption
    for line in selector.lines.values():  # the legend: each curve's color beside its label
        assert line.get_color() in caption
    bundle = selector._repr_mimebundle_()
    assert base64.b64encode(selector.image.value).decode() in bundle["text/html"]


def test_lesson3_model_labels_and_lists_show_in_the_notebooks_language(monkeypatch, lesson3_inputs):
    """Lesson 3 passes English model labels (a code cell's strings stay English in the zh-TW
    edition): the widgets translate them where shown, and join their lists with the catalogue's
    separator; in English the text is as before."""
    from bnlib import i18n

    traces, runs = lesson3_inputs
    without, with_bn = MODEL_LABELS[:2]
    traces = {without: traces["model none"], with_bn: traces["model bn"]}
    labels = {"none": without, "bn": with_bn}

    viewer, selector = LayerDistributionViewer(traces), LearningRateSelector(runs, labels=labels)
    summary = viewer.summary()
    assert summary.startswith("Layer distribution viewer: without BN, layer 2, step 16: ")
    assert "percentiles (15, 50, 85) of the inputs = " in summary
    assert "the 15, 50, 85 percentiles" in viewer.caption.value
    finals = selector.summary().split("(step 10): ")[1].split(".\n")[0]
    assert re.fullmatch(r"without BN 0\.\d{3}, with BN 0\.\d{3}", finals), finals

    fake = {without: "甲", with_bn: "乙", "{first}, {second}": "{first}、{second}"}
    monkeypatch.setattr(i18n, "_translations", lambda language: fake)
    viewer, selector = LayerDistributionViewer(traces), LearningRateSelector(runs, labels=labels)
    assert viewer.model._options_labels == ("甲", "乙")
    assert viewer.model.value == without  # the values stay the traces' keys
    assert "甲" in viewer.summary() and "(15、50、85)" in viewer.summary()
    assert viewer.summary().count("、") == 4  # the percentiles, then their values
    viewer.model.value = with_bn
    assert "乙" in viewer.caption.value and "15、50、85" in viewer.caption.value
    finals = selector.summary().split("(step 10): ")[1].split(".\n")[0]
    assert re.fullmatch(r"甲 0\.\d{3}、乙 0\.\d{3}", finals), finals
    assert "BN" not in re.sub(r"<[^>]*>", "", selector.caption.value), selector.caption.value


def test_the_model_labels_are_in_the_catalogue():
    from bnlib import translate

    messages, _ = translate.runtime_messages()
    for label in MODEL_LABELS:
        assert "bnlib/widgets.py" in messages.get(label, []), label
