"""The study's --latency-figure (issue 30.1): normalised on the CPU by default, raw on request,
CUDA unchanged."""

from __future__ import annotations

import pytest

from explore.errors import ExploreError
from explore.search import StudySettings


def test_the_study_names_the_figure_that_ranks():
    assert StudySettings().latency_protocol(64, 1).figure == "normalised"
    assert StudySettings(latency_figure="raw").latency_protocol(64, 1).figure == "raw"
    assert StudySettings(device="cuda").latency_protocol(64, 1).figure == "raw"


@pytest.mark.parametrize("settings", [StudySettings(latency_figure="median"),
                                      StudySettings(device="cuda", latency_figure="normalised")])
def test_a_bad_figure_is_one_error_naming_the_option(settings):
    with pytest.raises(ExploreError) as info:
        settings.latency_protocol(64, 1)
    assert info.value.field == "--latency-figure"
