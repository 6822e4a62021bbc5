"""Taylor importance of attention and FFN channels, structured pruning, and parameter reallocation.

The CGA paper chose the widths of its blocks by pruning a trained Swin-T with first-order Taylor
importance and reading which components keep their channels (arXiv:2305.07027 §3.3 "Parameter
Reallocation", Fig. 5): Q/K and FFN lose most of their channels, V keeps most of its own, and the
later blocks shrink more. This package makes that analysis a function of any model of our spaces:

1. :func:`find_units` (:mod:`.units`) lists the prunable units of a built model: the attention modules (CGA, MHSA)
   and the hidden layers of the FFNs and MBConvs, with the token counts their MACs scale with.
2. :func:`taylor_scores` (:mod:`.scores`) accumulates, over N batches, the first-order Taylor importance
   ``|w * dL/dw|`` of every parameter element and sums it per *group* (Molchanov et al., CVPR 2019,
   arXiv:1906.10771, as the CGA paper uses it). The groups:

   * ``qk``: one Q channel and the K channel it is multiplied with, in one head (pruned as a pair;
     for CGA also the channel's depthwise filter on Q);
   * ``v``: one V channel of one head, with the column of the output projection that reads it;
   * ``head``: a whole head (all its Q/K/V channels and its row of the attention-bias table);
   * ``hidden``: one hidden channel of an FFN (pw1 row, pw2 column) or of an MBConv (inverted-conv
     row, depthwise filter, point-conv column).

   The result is a DataFrame, one row per group, with its score, params and MACs.
3. :func:`plan_pruning` (:mod:`.plan`) ranks all groups of the model globally, by score per unit of cost (params
   or MACs removed; the default) or by raw score (Molchanov et al.'s ranking), and removes the
   cheapest-to-lose ones until a target fraction of the prunable cost is gone, in one shot (no
   fine-tuning between steps); :func:`prune_model` (:mod:`.surgery`) turns the plan into a real, smaller
   ``nn.Module``. :func:`sensitivity_frame` repeats the plan for other targets and rankings.
4. :func:`retained_frame` (:mod:`.realloc`) gives the retained QK, V and FFN widths per block, normalised by the
   block's input width (the layout of Fig. 5); :func:`suggest_config` turns them into a reallocated
   :class:`~explore.arch.ArchConfig` (per stage ``heads``, ``qk_dim``, ``v_ratio``, ``ffn_ratio``
   or ``expand_ratio``; widths and depths unchanged); :func:`explore.space.space_params` maps it
   onto the parameters of a study's search space for ``study.enqueue_trial``; :mod:`.command` runs
   it all for ``explore importance``.

Pruning back-ends: FFN and MBConv hidden channels are pruned with torch-pruning's dependency graph
(``tp.DependencyGraph`` traced on the whole model, one ``prune_conv_out_channels`` group per unit),
which couples exactly the layers of the unit. For attention it cannot be used: its graph follows
Q, K and V through the attention matmuls and the softmax into the bias table, the other heads (the
CGA cascade) and the next blocks, so the group of one CGA Q channel spans 31 layers of a 3-block
test model (and takes seconds to minutes to build, with index lists of N^2 entries). Attention
units are therefore cut by our own grouping: the same attention class rebuilt with the kept heads
and widths (:func:`pruned_attention`), holding the kept rows and columns of the weights. A hidden unit whose torch-pruning group touches any layer
outside the unit, or any run without torch-pruning installed, falls back to our own surgery for that
unit; :attr:`PrunedModel.backends` says which back-end cut each unit.

Every pruned model computes exactly what the unpruned model computes with the removed channels
zeroed (K and V after their norm, FFN hidden after pw1's norm, MBConv hidden after its depthwise
conv), in eval mode; the tests check this and the exact parameter counts.

Zero-initialised norms (the last norm of every FFN and attention branch starts at weight 0, so all
upstream gradients are 0 at init) would give all-zero scores before training. The command trains
first; in addition, a unit whose Taylor scores sum to 0 or are not finite is scored by weight
magnitude ``|w|`` instead, rescaled to the median score-per-parameter of the Taylor-scored units,
and the rows say so (``source = "magnitude"``). The check is per unit, not per group kind: a Q/K
pair of a one-token window really has zero importance (the softmax over one token ignores it) and
keeps its zero score.

Token mixers without per-head Q/K/V widths to reallocate (``linear``, ``msla``: one head dim for Q,
K and V alike) are not scored; their blocks report FFN/MBConv only.

The report (:func:`explore.report.write_importance_report`) is rendered from the DataFrames only.

Follows: arXiv:2305.07027 §3.3 (parameter reallocation), Fig. 5 (ratio of the retained channels to
the input embedding per block, for QK, V and FFN).
"""


from explore.analysis.importance.command import (
    ImportanceResult,
    ImportanceSettings,
    PreparedImportance,
    command_line,
    prepare_importance,
    resolve_model,
    run_importance,
    save_checkpoint,
)
from explore.analysis.importance.plan import RANK_BY, RANKINGS, PruningPlan, UnitKeep, check_target, plan_pruning
from explore.analysis.importance.realloc import paper_trend, retained_frame, sensitivity_frame, suggest_config
from explore.analysis.importance.scores import taylor_scores
from explore.analysis.importance.surgery import (
    PrunedModel,
    hidden_modules,
    prune_model,
    pruned_attention,
    slice_convnorm,
    sliced_state,
)
from explore.analysis.importance.units import GROUPS, AttentionUnit, HiddenUnit, Unit, find_units

__all__ = [
    "ImportanceResult", "ImportanceSettings", "PreparedImportance", "command_line", "prepare_importance",
    "resolve_model", "run_importance", "save_checkpoint", "RANK_BY", "RANKINGS", "PruningPlan", "UnitKeep", "check_target",
    "plan_pruning", "paper_trend", "retained_frame", "sensitivity_frame", "suggest_config", "taylor_scores",
    "PrunedModel", "hidden_modules", "prune_model", "pruned_attention", "slice_convnorm", "sliced_state",
    "GROUPS", "AttentionUnit", "HiddenUnit", "Unit", "find_units",
]
