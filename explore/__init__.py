"""explore: architecture exploration and ablation for efficient vision transformers.

Pipeline: search space -> ArchConfig -> generated ``nn.Module`` -> measurement (params, MACs,
latency) and short-proxy accuracy -> Optuna study -> analysis and reports.
"""

__version__ = "0.1.0"
