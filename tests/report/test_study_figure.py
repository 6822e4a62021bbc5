"""The study report names the latency figure that ranks (issue 30.1)."""

from __future__ import annotations

import pandas as pd

from explore.report.study import _figure_sentence


def test_the_report_names_the_figure_that_ranks():
    assert "**normalised**" in _figure_sentence(pd.DataFrame({"latency_figure": ["normalised", None]}))
    assert "**raw**" in _figure_sentence(pd.DataFrame({"latency_figure": ["raw", "raw"]}))
    assert "do not rank on one scale" in _figure_sentence(pd.DataFrame({"latency_figure": ["raw", "normalised"]}))
