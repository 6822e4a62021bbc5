"""Reports: the only place that renders tables, plots and markdown. Every renderer works from stored
results (DataFrames, CSVs, result records), never from live models, and computes its tables before
it draws them; matplotlib is set up in one place (:func:`explore.report.common.pyplot`).
"""

from explore.report.ablation import (
    AblationReportPaths,
    plot_ablation,
    plot_resolution,
    render_ablation_markdown,
    write_ablation_report,
)
from explore.report.acceptance import AcceptanceRun, CheckResult, render_acceptance, write_acceptance_report
from explore.report.bench import (
    render_attention_scaling,
    render_proxy_throughput,
    render_repeatability,
    write_attention_scaling,
    write_bench_models,
    write_proxy_throughput,
    write_repeatability,
)
from explore.report.common import accuracy_name
from explore.report.importance import plot_retained, render_summary, write_importance_report
from explore.report.proxy_validity import write_supernet_validity_report, write_validity_report
from explore.report.study import (
    ReportPaths,
    dataset_line,
    latency_description,
    metric_label,
    pareto_figure,
    pareto_table,
    plot_pareto,
    render_markdown,
    state_counts,
    write_report,
)

__all__ = [
    "accuracy_name", "AblationReportPaths", "plot_ablation", "plot_resolution", "render_ablation_markdown", "write_ablation_report",
    "AcceptanceRun", "CheckResult", "render_acceptance", "write_acceptance_report", "render_attention_scaling", "render_proxy_throughput",
    "render_repeatability", "write_attention_scaling", "write_bench_models", "write_proxy_throughput",
    "write_repeatability", "plot_retained", "render_summary", "write_importance_report", "write_validity_report",
    "write_supernet_validity_report",
    "ReportPaths", "dataset_line", "latency_description", "metric_label", "pareto_figure", "pareto_table", "plot_pareto",
    "render_markdown", "state_counts", "write_report",
]
