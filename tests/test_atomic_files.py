"""Atomic writes of results: a failing write leaves the previous file as it was and no temporary file behind."""

import pytest

from hypercl.checkpoint import atomic_save_figure


def test_atomic_save_figure_writes_png_and_keeps_old_file_on_failure(tmp_path):
    plt = pytest.importorskip("matplotlib.pyplot")
    path = tmp_path / "plot.png"
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    assert atomic_save_figure(fig, path) == path
    old = path.read_bytes()
    assert old[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number)  # closed after saving

    broken, _ = plt.subplots()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    broken.savefig = fail
    with pytest.raises(OSError, match="disk full"):
        atomic_save_figure(broken, path)
    assert not plt.fignum_exists(broken.number)
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]
