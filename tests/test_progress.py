"""bnlib.progress: a lesson's stored progress bar reads as finished, not as a frozen '0%'."""

import nbformat
import pytest
from jupyter_client.kernelspec import NATIVE_KERNEL_NAME
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from bnlib.progress import progress_bar, track


def test_outside_a_notebook_it_is_tqdms_text_bar(capsys):
    bar = progress_bar(total=3, desc="work")
    for _ in range(3):
        bar.update(1)
    bar.close()
    assert "work" in capsys.readouterr().err  # tqdm's text bar writes to stderr


@pytest.mark.parametrize("total", [None, -1, 2.5, "3"])
def test_a_bad_total_is_named(total):
    with pytest.raises(ValueError, match="total must be a whole number"):
        progress_bar(total=total, desc="x")


def test_a_stored_notebook_shows_the_finished_line_not_the_widget():
    code = (
        "from bnlib.progress import progress_bar\n"
        "bar = progress_bar(total=4, desc='four runs')\n"
        "for _ in range(4):\n"
        "    bar.update(1)\n"
        "bar.close()\n"
        "print('after')"
    )
    nb = new_notebook(cells=[new_code_cell(code)])
    NotebookClient(nb, timeout=60, kernel_name=NATIVE_KERNEL_NAME).execute()
    outputs = nb.cells[0].outputs
    shown = [o for o in outputs if o.output_type == "display_data"]
    assert len(shown) == 1, outputs
    assert shown[0].data == {"text/plain": "four runs: 4 of 4 done"}  # no widget, no "0%"
    assert [o.text for o in outputs if o.output_type == "stream"] == ["after\n"]
    nbformat.validate(nb)


def test_track_counts_an_iterable_and_closes(capsys):
    assert list(track(range(3), desc="items")) == [0, 1, 2]
    assert "items" in capsys.readouterr().err
