"""Base helpers of explore.resources and explore.resolution used across stages."""

from __future__ import annotations

import pytest

from explore.errors import ExploreError
from explore.resolution import resolution, resolution_label, resolution_pixels
from explore.resources import write_atomically


def test_write_atomically_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "sub" / "rows.csv"
    assert write_atomically(path, lambda tmp: tmp.write_text("a\n")) == path
    write_atomically(path, lambda tmp: tmp.write_text("b\n"))
    assert path.read_text() == "b\n" and sorted(p.name for p in path.parent.iterdir()) == ["rows.csv"]


def test_a_failed_write_leaves_the_old_file_as_it_was(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("old")

    def half_then_fail(tmp):
        tmp.write_text("ne")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, half_then_fail)
    assert path.read_text() == "old"


@pytest.mark.parametrize(("given", "hw", "label", "pixels"), [
    (512, (512, 512), "512", 262144), ("512", (512, 512), "512", 262144), ("512x512", (512, 512), "512", 262144),
    ("1024x2048", (1024, 2048), "1024x2048", 2097152)])
def test_resolutions_parse_label_and_count_pixels(given, hw, label, pixels):
    assert resolution(given) == hw and resolution_label(given) == label and resolution_pixels(given) == pixels


@pytest.mark.parametrize("bad", ["0", "x512", "512x", "a", "-4", True, "512x0"])
def test_a_bad_resolution_names_the_field(bad):
    with pytest.raises(ExploreError) as info:
        resolution(bad)
    assert info.value.field == "img_sizes" and info.value.value == bad
