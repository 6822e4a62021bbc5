"""Search spaces: TOML files -> ``sample(trial) -> ArchConfig`` with constraints, the inverse
(config -> trial parameters) from the same parameter names, and random feasible points of a space
(:func:`sample_architectures`).

Follows: the knobs of arXiv:2305.07027 §3 (widths, depths, heads, QK dim, V ratio, FFN ratio) and
arXiv:2205.14756 §3 (multi-scale aggregation, MBConv expansion).
"""

from explore.space.inverse import ConfigTrial, space_params
from explore.space.knobs import Knob, config_params, knob_label, param_name
from explore.space.sampling import sample_architectures
from explore.space.search_space import SearchSpace, builtin_space_dirs, load_space, resolve_space_path

__all__ = ["ConfigTrial", "space_params", "Knob", "config_params", "knob_label", "param_name", "sample_architectures",
           "SearchSpace", "builtin_space_dirs", "load_space", "resolve_space_path"]
