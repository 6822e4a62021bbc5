"""Tests of explore.importance: units, Taylor scores, global pruning (exact shapes, parameter counts
and outputs), the Fig. 5 frame, the reallocated config, enqueueing, and ``explore importance``."""

from __future__ import annotations

import dataclasses
import json
import math

import optuna
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from explore.analysis import importance as imp
from explore.cli import app
from explore.arch import ArchConfig, StageConfig
from explore.errors import ExploreError
from explore.measure import count_macs, count_params
from explore.nn import CascadedGroupAttention, MultiHeadSelfAttention, build
from explore.space import load_space, space_params
from tests.conftest import needs_fashion_mnist, tiny_config

IMG = 32
runner = CliRunner()


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One intra-op thread: these tiny models run faster so on a shared CPU (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _tiny(**stage_changes) -> ArchConfig:
    config = tiny_config(img_size=IMG)
    return config.replace_stages(**stage_changes) if stage_changes else config


def _mbconv_cga() -> ArchConfig:
    """An mbconv-layout model (B family) with CGA in its last two stages: MixerMBConvBlocks,
    MBConv-only blocks and stride-2 MBConv downsamples."""
    stages = (
        StageConfig(width=16, depth=1, heads=1, token_mixer="none", expand_ratio=4.0),
        StageConfig(width=24, depth=1, heads=1, token_mixer="none", expand_ratio=4.0),
        StageConfig(width=32, depth=1, heads=2, qk_dim=8, kernels=(3, 3), expand_ratio=4.0),
        StageConfig(width=48, depth=1, heads=4, qk_dim=8, kernels=(3, 3, 3, 3), expand_ratio=4.0),
    )
    return ArchConfig(stages=stages, img_size=IMG, in_chans=1, num_classes=10, layout="mbconv", stem_width=8,
                      stem_depth=1, activation="hardswish")


LAYOUTS = {
    "sandwich-cga": lambda: _tiny(),
    "sandwich-cga-v-wide": lambda: _tiny(v_ratio=1.25),  # V dim > C/H: the cascade drops extra channels
    "sandwich-cga-v-narrow": lambda: _tiny(v_ratio=0.5),  # V dim < C/H: part of the split passes alone
    "transformer-mhsa": lambda: _tiny(token_mixer="mhsa", v_ratio=0.75).replace(layout="transformer"),
    "mbconv-cga": _mbconv_cga,
}


def _randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial norm statistics and affine weights (an untrained model has zero-initialised
    output norms, which would hide wrong surgery), and random attention biases."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = torch.rand(m.weight.shape, generator=gen) + 0.5
            m.bias.data = torch.rand(m.bias.shape, generator=gen) * 0.4 - 0.2
            m.running_mean = torch.rand(m.running_mean.shape, generator=gen) * 0.2 - 0.1
            m.running_var = torch.rand(m.running_var.shape, generator=gen) + 0.5
        if hasattr(m, "attention_biases"):
            m.attention_biases.data = torch.randn(m.attention_biases.shape, generator=gen)
    return model.eval()


def _batch(config: ArchConfig, n: int = 4, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, config.in_chans, config.img_size, config.img_size, generator=gen)
    return x, torch.randint(0, config.num_classes, (n,), generator=gen)


def _analyse(config: ArchConfig, target: float = 0.5, by: str = "params"):
    torch.manual_seed(0)
    model = _randomise(build(config))
    units = imp.find_units(model, config.img_size, config.in_chans)
    scores = imp.taylor_scores(model, units, [_batch(config)])
    plan = imp.plan_pruning(scores, units, target, by)
    return model, units, scores, plan


# --------------------------------------------------------------------------------------------------
# expected parameter counts, by hand from the kept channel counts
def _unit_params(config: ArchConfig, unit: imp.Unit, keep: imp.UnitKeep | None) -> int:
    """Parameters of one unit (BN norms: weight + bias per channel) with ``keep`` (None = unpruned)."""
    if isinstance(unit, imp.AttentionUnit):
        heads = {h: (unit.qk_dim, unit.v_dim) for h in range(unit.heads)} if keep is None else \
            {h: (len(a), len(b)) for h, (a, b) in keep.heads.items()}
        c, table = unit.width, unit.table_side ** 2
        total = c * sum(v for _, v in heads.values()) + 2 * c  # proj conv + proj norm
        for h, (qk, v) in heads.items():
            if unit.kind == "cga":
                split, k = c // unit.heads, unit.kernels[h]
                total += split * (2 * qk + v) + 2 * (2 * qk + v) + qk * k * k + 2 * qk + table
            else:
                total += c * (2 * qk + v) + 2 * (2 * qk + v) + table
        return total
    hidden = unit.hidden if keep is None else len(keep.hidden)
    if unit.kind == "ffn":
        return unit.in_chs * hidden + 2 * hidden + hidden * unit.in_chs + 2 * unit.in_chs
    # MBConv: 1x1 (in -> hidden), 3x3 depthwise, 1x1 (hidden -> out), norm after the last only in
    # attention stages (biases instead), after each otherwise
    in_chs = unit.in_chs
    out_chs = config.stages[unit.stage].width
    fewer_norm = config.stages[unit.stage].token_mixer != "none"
    inner = 1 if fewer_norm else 2  # bias, or norm weight + bias, per hidden channel
    return in_chs * hidden + inner * hidden + 9 * hidden + inner * hidden + hidden * out_chs + 2 * out_chs


def _expected_pruned_params(config: ArchConfig, model: torch.nn.Module, units, plan) -> int:
    removed = sum(_unit_params(config, u, None) - _unit_params(config, u, plan.keep[u.path]) for u in units)
    return count_params(model) - removed


def _masked_output(model: torch.nn.Module, units, plan, x: torch.Tensor) -> torch.Tensor:
    """The unpruned model with every removed channel zeroed (K and V after the qkv norm, FFN hidden
    after pw1's norm, MBConv hidden after the depthwise conv + act)."""
    hooks = []

    def scale(mask: torch.Tensor):
        return lambda _m, _inp, out: out * mask.view(1, -1, 1, 1)

    for u in units:
        keep, module = plan.keep[u.path], model.get_submodule(u.path)
        if isinstance(u, imp.AttentionUnit):
            masks = []
            for h in range(u.heads):
                mask = torch.zeros(2 * u.qk_dim + u.v_dim)
                mask[: u.qk_dim] = 1  # Q stays: a zero K removes the pair's term
                if h in keep.heads:
                    qk_idx, v_idx = keep.heads[h]
                    mask[[u.qk_dim + c for c in qk_idx]] = 1
                    mask[[2 * u.qk_dim + c for c in v_idx]] = 1
                masks.append(mask)
            if u.kind == "cga":
                hooks += [module.qkvs[h].register_forward_hook(scale(masks[h])) for h in range(u.heads)]
            else:
                hooks.append(module.qkv.register_forward_hook(scale(torch.cat(masks))))
        else:
            mask = torch.zeros(u.hidden)
            mask[list(keep.hidden)] = 1
            hooks.append((module.pw1 if u.kind == "ffn" else module.depth_conv).register_forward_hook(scale(mask)))
    try:
        with torch.no_grad():
            return model(x)
    finally:
        for hook in hooks:
            hook.remove()


# --------------------------------------------------------------------------------------------------
def test_find_units_sandwich():
    config = _tiny()
    units = imp.find_units(build(config), IMG, 1)
    attn = [u for u in units if isinstance(u, imp.AttentionUnit)]
    ffn = [u for u in units if isinstance(u, imp.HiddenUnit)]
    assert [(u.stage, u.block, u.kind, u.heads, u.qk_dim, u.v_dim) for u in attn] == [
        (0, 0, "cga", 2, 8, 16), (1, 0, "cga", 3, 8, 16), (2, 0, "cga", 4, 8, 16)]
    assert len(ffn) == 3 * 2 + 2 * 2  # two per sandwich block, two per patch-merging downsample
    res1 = [u for u in ffn if u.path.endswith("downsample.res1.1.m")]
    assert [(u.stage, u.config_stage, u.in_chs, u.hidden) for u in res1] == [(1, 0, 32, 64), (2, 1, 48, 96)]
    # 32 px: stem 2x2 (one window of 4 tokens), then 1x1 maps
    assert (attn[0].windows, attn[0].window_tokens, attn[1].window_tokens) == (1, 4, 1)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_pruned_model_runs_with_exact_shapes_params_and_outputs(layout):
    config = LAYOUTS[layout]()
    model, units, _scores, plan = _analyse(config, target=0.6)
    pruned = imp.prune_model(model, units, plan, config.img_size, config.in_chans).model.eval()
    x, _ = _batch(config)
    with torch.no_grad():
        out = pruned(x)
    assert out.shape == (x.shape[0], config.num_classes)
    assert count_params(pruned) == _expected_pruned_params(config, model, units, plan)
    assert count_params(model) - count_params(pruned) == plan.removed_params
    assert plan.removed_params >= 0.6 * plan.prunable_params
    # exactly the unpruned model with the removed channels zeroed
    assert torch.allclose(out, _masked_output(model, units, plan, x), atol=1e-5, rtol=1e-5)
    for u in units:
        keep, module = plan.keep[u.path], pruned.get_submodule(u.path)
        if isinstance(u, imp.AttentionUnit):
            kept_v = sum(len(b) for _, b in keep.heads.values())
            for j, h in enumerate(sorted(keep.heads)):
                qk, v = len(keep.heads[h][0]), len(keep.heads[h][1])
                if u.kind == "cga" and isinstance(module, CascadedGroupAttention):
                    assert module.qkvs[j].conv.weight.shape == (2 * qk + v, u.width // u.heads, 1, 1)
                    assert module.dws[j].conv.weight.shape[0] == qk
            if isinstance(module, (CascadedGroupAttention, MultiHeadSelfAttention)):
                assert module.proj[1].conv.weight.shape == (u.width, kept_v, 1, 1)
                assert module.attention_biases.shape[0] == len(keep.heads)
        else:
            first = module.pw1.conv if u.kind == "ffn" else module.inverted_conv.conv
            last = module.pw2.conv if u.kind == "ffn" else module.point_conv.conv
            assert first.out_channels == last.in_channels == len(keep.hidden)


def test_macs_removed_match_fvcore():
    config = _tiny(token_mixer="mhsa").replace(img_size=64)  # 4x4 windows: attention matmuls count
    model, units, _, plan = _analyse(config, target=0.5, by="macs")
    pruned = imp.prune_model(model, units, plan, config.img_size, config.in_chans).model
    assert count_macs(model, config.img_size, 1) - count_macs(pruned, config.img_size, 1) == plan.removed_macs
    assert plan.removed_macs >= 0.5 * plan.prunable_macs


def test_plan_keeps_minimums_at_extreme_target():
    config = _tiny()
    model, units, _, plan = _analyse(config, target=0.99)
    for u in units:
        keep = plan.keep[u.path]
        if isinstance(u, imp.AttentionUnit):
            assert len(keep.heads) >= 1
            assert all(len(a) >= 1 and len(b) >= 1 for a, b in keep.heads.values())
        else:
            assert len(keep.hidden) >= 1
    pruned = imp.prune_model(model, units, plan, IMG, 1).model
    assert pruned(_batch(config)[0]).shape == (4, 10)


def test_untrained_model_scores_are_finite_and_not_all_zero():
    config = _tiny().replace(img_size=64)
    model = build(config)  # zero-initialised output norms: every upstream gradient is 0
    units = imp.find_units(model, 64, 1)
    scores = imp.taylor_scores(model, units, [_batch(config)])
    assert scores["score"].map(math.isfinite).all()
    assert (scores.groupby("unit")["score"].sum() > 0).all()
    assert set(scores["source"]) == {"magnitude"}
    # once the norms are non-zero (as after training), Taylor scores are used
    trained_like = imp.taylor_scores(_randomise(model), units, [_batch(config)])
    assert set(trained_like["source"]) == {"taylor"}
    assert set(trained_like["group"]) == {"qk", "v", "head", "hidden"}


def test_zero_score_unit_falls_back_but_one_token_qk_keeps_zero():
    config = _tiny()  # 32 px: stages 1 and 2 attend over one token, so Q/K there cannot matter
    model = _randomise(build(config))
    units = imp.find_units(model, IMG, 1)
    model.stages[0].blocks[0].ffn1[0].m.pw2.norm.weight.data.zero_()  # one FFN outputs 0
    scores = imp.taylor_scores(model, units, [_batch(config)])
    by_unit = scores.drop_duplicates("unit").set_index("unit")["source"]
    assert by_unit["stages.0.blocks.0.ffn1.0.m"] == "magnitude"
    assert (by_unit.drop("stages.0.blocks.0.ffn1.0.m") == "taylor").all()
    one_token_qk = scores[(scores["group"] == "qk") & (scores["stage"] == 2)]
    assert (one_token_qk["score"] == 0).all() and (one_token_qk["source"] == "taylor").all()


def test_torch_pruning_groups_hidden_channels_inside_the_unit():
    """The dependency graph couples an FFN's / MBConv's hidden channel to exactly the unit's layers.
    (Its group of one Q channel, by contrast, runs through the attention matmuls into the other
    heads and blocks, and takes tens of seconds to build: not tested here, see the module docstring.)"""
    tp = pytest.importorskip("torch_pruning")
    for config in (_tiny(token_mixer="mhsa").replace(layout="transformer"), _mbconv_cga()):
        model = build(config).eval()
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=torch.zeros(1, 1, IMG, IMG), verbose=False)
        modules = set(model.modules())
        for u in imp.find_units(model, IMG, 1):
            if isinstance(u, imp.HiddenUnit):
                first, expected = imp.hidden_modules(model.get_submodule(u.path), u.kind)
                group = graph.get_pruning_group(first, tp.prune_conv_out_channels, idxs=[0, 1])
                assert {d.target.module for d, _ in group if d.target.module in modules} == expected, u.path


def test_torch_pruning_and_own_surgery_agree():
    pytest.importorskip("torch_pruning")
    config = _mbconv_cga()
    model, units, _, plan = _analyse(config, target=0.5)
    with_tp = imp.prune_model(model, units, plan, IMG, 1)
    own = imp.prune_model(model, units, plan, IMG, 1, use_torch_pruning=False)
    assert "torch-pruning" in with_tp.backends.values() and set(own.backends.values()) == {"own"}
    x, _ = _batch(config)
    with torch.no_grad():
        assert torch.allclose(with_tp.model.eval()(x), own.model.eval()(x), atol=1e-6)
    assert count_params(with_tp.model) == count_params(own.model)


def test_bad_plan_input():
    _model, units, scores, _ = _analyse(_tiny())
    for target in (0, 1, 1.5, -0.1, float("nan"), True):
        with pytest.raises(ExploreError, match="--target"):
            imp.plan_pruning(scores, units, target)
    with pytest.raises(ExploreError, match="--by"):
        imp.plan_pruning(scores, units, 0.5, "flops")
    with pytest.raises(ExploreError, match="--rank"):
        imp.plan_pruning(scores, units, 0.5, "params", "l2")


# --------------------------------------------------------------------------------------------------
def _space_fit() -> ArchConfig:
    """A small config inside the ``cga`` search space's ranges (widths, heads, kernels)."""
    stages = (
        StageConfig(width=32, depth=1, heads=2, qk_dim=8, kernels=(5, 3)),
        StageConfig(width=64, depth=1, heads=4, qk_dim=8, kernels=(3, 3, 3, 3)),
        StageConfig(width=96, depth=1, heads=4, qk_dim=8, kernels=(3, 3, 3, 3)),
    )
    return ArchConfig(stages=stages, img_size=64, in_chans=1, num_classes=10)


def _retained_case():
    config = _space_fit()
    _model, units, _, plan = _analyse(config, target=0.6)
    return config, units, plan, imp.retained_frame(units, plan)


def test_retained_frame_and_suggested_config():
    config, _units, _plan, retained = _retained_case()
    assert "v_score_per_param" not in retained
    blocks = retained[retained["location"] == "block"]
    assert list(blocks["label"]) == ["s0.b0", "s1.b0", "s2.b0"] and list(blocks["index"]) == [1, 2, 3]
    assert list(blocks["qk_ratio_before"]) == pytest.approx([2 * 8 / 32, 4 * 8 / 64, 4 * 8 / 96])
    assert list(blocks["ffn_ratio_before"]) == pytest.approx([2.0, 2.0, 2.0])
    assert ((blocks["qk_kept"] <= 1) & (blocks["v_kept"] <= 1) & (blocks["ffn_kept"] <= 1)).all()
    assert len(retained[retained["location"] == "downsample"]) == 4
    suggested = imp.suggest_config(config, retained, name="x-realloc")
    for old, new in zip(config.stages, suggested.stages):
        assert (new.width, new.depth, new.token_mixer) == (old.width, old.depth, old.token_mixer)
        assert new.qk_dim >= 4 and new.qk_dim % 4 == 0
        assert new.width % new.heads == 0 and 1 <= new.heads <= old.heads
        assert new.v_dim >= 1 and (new.v_ratio * 8).is_integer() and (new.ffn_ratio * 4).is_integer()
    assert ArchConfig.from_json(suggested.to_json()) == suggested
    assert build(suggested).eval()(torch.zeros(1, 1, 64, 64)).shape == (1, 10)


def test_score_per_param_columns_and_sensitivity():
    _model, units, scores, plan = _analyse(_space_fit(), target=0.5)
    retained = imp.retained_frame(units, plan, scores)
    blocks = retained[retained["location"] == "block"]
    assert (blocks[["v_score_per_param", "ffn_score_per_param"]] > 0).all().all()
    assert list(blocks["qk_score_per_param"] > 0) == [True, True, False]  # stage 2 attends over one token
    sens = imp.sensitivity_frame(scores, units, "params", targets=(0.3, 0.6))
    assert list(zip(sens["rank"], sens["target"])) == [("per-cost", 0.3), ("per-cost", 0.6), ("score", 0.3),
                                                       ("score", 0.6)]
    assert (sens["removed"] >= sens["target"]).all() and sens["verdict"].isin(["holds", "partly", "does not hold"]).all()
    by_score = imp.plan_pruning(scores, units, 0.5, "params", "score")
    assert by_score.keep != plan.keep and by_score.rank == "score"


def test_paper_trend_on_a_constructed_frame():
    frame = pd.DataFrame({
        "location": ["block"] * 4, "index": [1, 2, 3, 4],
        "qk_before": [32] * 4, "qk_kept": [0.3, 0.2, 0.2, 0.1], "v_kept": [0.9, 0.9, 0.8, 0.6],
        "qk_ratio_after": [0.3, 0.2, 0.2, 0.1], "v_ratio_after": [0.9, 0.9, 0.8, 0.6],
        "n_ffn": [1] * 4, "ffn_kept": [0.8, 0.6, 0.5, 0.3],
    })
    trend = imp.paper_trend(frame)
    assert trend["verdict"] == "holds" and trend["ffn_rho"] == pytest.approx(-1.0)
    trend = imp.paper_trend(frame.assign(v_kept=[0.1] * 4, ffn_kept=[0.3, 0.5, 0.6, 0.8]))
    assert (trend["v_over_qk"], trend["ffn_later_more"], trend["verdict"]) == (False, False, "partly")
    # attention untouched: the retained fractions tie, the score per parameter decides
    untouched = frame.assign(qk_kept=1.0, v_kept=1.0, qk_score_per_param=[1e-5] * 4, v_score_per_param=[3e-5] * 4)
    trend = imp.paper_trend(untouched)
    assert (trend["v_over_qk"], trend["v_over_qk_basis"], trend["blocks_v_denser"]) == (True, "score per parameter", 4)
    assert imp.paper_trend(untouched.drop(columns=["qk_score_per_param", "v_score_per_param"]))["v_over_qk"] is None


def test_space_params_snap_to_the_space_and_enqueue():
    config, _, _, retained = _retained_case()
    suggested = imp.suggest_config(config, retained)
    space = load_space("cga")
    params, built, notes = space_params(suggested, space, in_chans=1, num_classes=10)
    assert built == space.sample(optuna.trial.FixedTrial(params), in_chans=1, num_classes=10)
    assert params["stage0.qk_dim"] in (8, 16, 32) and params["stage1.v_ratio"] in (0.5, 0.75, 1.0, 1.25)
    assert params["stage0.width"] == 32 and params["stage2.kernel3"] == 3
    assert any(n.startswith("stage0.qk_dim") for n in notes) or suggested.stages[0].qk_dim in (8, 16, 32)
    study = optuna.create_study(directions=["maximize", "minimize"])
    for _ in range(2):
        study.enqueue_trial(params, skip_if_exists=True)
    assert len(study.get_trials(states=(optuna.trial.TrialState.WAITING,))) == 1
    with pytest.raises(ExploreError, match="--enqueue"):
        space_params(suggested.replace(layout="mbconv", stem_width=8), space, in_chans=1, num_classes=10)


# --------------------------------------------------------------------------------------------------
# the command
def _study_dir(tmp_path, config: ArchConfig):
    """A run folder holding a study of the cga space with one complete trial of ``config``."""
    run = tmp_path / "runs" / "cga"
    run.mkdir(parents=True)
    study = optuna.create_study(storage=f"sqlite:///{(run / 'study.db').as_posix()}", study_name="cga",
                                directions=["maximize", "minimize"])
    study.set_user_attr("space_file", str(load_space("cga").path))
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.COMPLETE, values=[50.0, 1.0],
                                              user_attrs={"config": config.to_json(sort_keys=True)}))
    return run, study


def test_resolve_model_forms(tmp_path):
    config = _tiny()
    run, _ = _study_dir(tmp_path, config)
    got, name, is_preset = imp.resolve_model(f"{run}:0")
    assert (got, name, is_preset) == (config, "cga-trial0", False)
    assert imp.resolve_model("efficientvit_m0")[2] is True
    path = tmp_path / "arch.json"
    path.write_text(config.to_json())
    assert imp.resolve_model(str(path))[:2] == (config, "arch")
    for bad in ("nope", f"{run}:3", f"{run}:x", f"{tmp_path}/missing:0"):
        with pytest.raises(ExploreError, match="--model"):
            imp.resolve_model(bad)


@needs_fashion_mnist
def test_cli_end_to_end_fashion_mnist(tmp_path):
    run, _study = _study_dir(tmp_path, _space_fit())
    out = tmp_path / "report"
    args = ["importance", "--model", f"{run}:0", "--dataset", "fashion_mnist", "--img-size", "32",
            "--max-train", "256", "--max-val", "128", "--batch-size", "64", "--score-batches", "2",
            "--latency-repeats", "2", "--target", "0.4", "--out", str(out), "--enqueue", str(run),
            "--save-checkpoint"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    for name in ("summary.md", "comparison.csv", "retained.csv", "retained.png", "scores.csv", "sensitivity.csv",
                 "suggested_config.json", "enqueued.json", "checkpoint.pt"):
        assert (out / name).is_file(), name
    suggested = ArchConfig.from_json((out / "suggested_config.json").read_text())
    assert [s.width for s in suggested.stages] == [32, 64, 96] and suggested.img_size == 32
    comparison = pd.read_csv(out / "comparison.csv")
    assert list(comparison["model"]) == ["original", "pruned", "suggested"]
    assert comparison["params"].iloc[1] < comparison["params"].iloc[0]
    assert comparison[["latency_ms", "top1"]].notna().all().all()
    retained = pd.read_csv(out / "retained.csv")
    assert {"qk_ratio_after", "v_ratio_after", "ffn_ratio_after"} <= set(retained.columns)
    summary = (out / "summary.md").read_text()
    assert "| model" in summary and "Verdict" in summary and "explore importance --model" in summary
    waiting = optuna.load_study(study_name="cga", storage=f"sqlite:///{(run / 'study.db').as_posix()}").get_trials(
        states=(optuna.trial.TrialState.WAITING,))
    assert len(waiting) == 1 and "stage0.qk_dim" in waiting[0].system_attrs["fixed_params"]
    describe = runner.invoke(app, ["describe", str(out / "suggested_config.json"), "--json"])
    assert describe.exit_code == 0 and json.loads(describe.stdout)["params"] == comparison["params"].iloc[2]

    # the checkpoint skips training and gives the same original top-1
    again = tmp_path / "again"
    result = runner.invoke(app, ["importance", "--model", f"{run}:0", "--img-size", "32", "--max-train", "256",
                                 "--max-val", "128", "--batch-size", "64", "--score-batches", "2",
                                 "--latency-repeats", "2", "--target", "0.4", "--out", str(again),
                                 "--checkpoint", str(out / "checkpoint.pt"), "--no-retrain"])
    assert result.exit_code == 0, result.output
    assert pd.read_csv(again / "comparison.csv")["top1"].iloc[0] == comparison["top1"].iloc[0]


BAD_INPUTS = [
    (["--model", "nope"], "--model = 'nope'"),
    (["--model", "RUN:9"], "--model = "),
    (["--model", "missing_run:0"], "--model = 'missing_run:0'"),
    (["--model", "efficientvit_m0", "--target", "1.5"], "--target = 1.5"),
    (["--model", "efficientvit_m0", "--target", "0"], "--target = 0"),
    (["--model", "efficientvit_m0", "--by", "flops"], "--by = 'flops'"),
    (["--model", "efficientvit_m0", "--rank", "l1"], "--rank = 'l1'"),
    (["--model", "efficientvit_m0", "--dataset", "mnist"], "--dataset = 'mnist'"),
    (["--model", "efficientvit_m0", "--checkpoint", "/nonexistent.pt"], "--checkpoint = '/nonexistent.pt'"),
    (["--model", "efficientvit_m0", "--enqueue", "/nonexistent/run"], "--enqueue = '/nonexistent/run'"),
]


@pytest.mark.parametrize("args, needle", BAD_INPUTS)
def test_bad_input_is_one_error_line_and_writes_nothing(tmp_path, monkeypatch, args, needle):
    run, _ = _study_dir(tmp_path, _tiny())
    monkeypatch.chdir(tmp_path)
    args = [a.replace("RUN", str(run)) for a in args]
    out = tmp_path / "out"
    before = sorted(p.name for p in tmp_path.iterdir())
    result = runner.invoke(app, ["importance", *args, "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert needle in result.output
    assert result.output.count("error:") == 1
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == before


def test_command_line_round_trip():
    settings = imp.ImportanceSettings(model="efficientvit_m0", target=0.3, epochs=3.0, max_train=None,
                                      save_checkpoint=True)
    words = imp.command_line(settings).split()
    assert words[:4] == ["explore", "importance", "--model", "efficientvit_m0"]
    assert "--target" in words and "0.3" in words and "--max-train" in words and "--save-checkpoint" in words
    assert dataclasses.replace(settings, target=0.5).target == 0.5
