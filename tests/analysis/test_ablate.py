"""Ablation recipes: loading and validation, one tiny recipe end to end on CPU (CLI), resume,
MAC matching, the analysis (Δs, verdicts, Kendall τ, findings) and the built-in recipes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from explore.analysis import ablation as ab
from explore.cli import app
from explore.measure import count_macs
from explore.nn import build
from explore.resources import builtin_dirs

runner = CliRunner()

TINY_BASE = """
[base.config]
img_size = 32
in_chans = 3
num_classes = 10
stages = [
  { width = 16, depth = 1, heads = 2, qk_dim = 4, kernels = [3, 3], window_size = 2 },
  { width = 24, depth = 1, heads = 2, qk_dim = 4, kernels = [3, 3], window_size = 2 },
]
"""

TINY = """
[recipe]
name = "tiny"
title = "tiny test recipe"
description = "Two stages, synthetic data."

[paper]
source = "made-up figures for the test"
accuracy = "top1"
""" + TINY_BASE + """
[budget]
dataset = "synthetic"
max_train = 64
max_val = 32
epochs = 1
batch_size = 32
img_size = 32
seeds = [0, 1]

[measure]
protocols = ["cpu-latency", "gpu-throughput"]
img_sizes = [32]
batch_size = 2
repeats = 2

[[variant]]
name = "base"
label = "baseline"
baseline = true
paper = { top1 = 70.0, onnx_img_s = 100.0 }

[[variant]]
name = "mhsa"
stage = { token_mixer = "mhsa" }
paper = { top1 = 69.0 }

[[variant]]
name = "no_dw"
stage = { dw_conv = false }
paper = { top1 = 68.0 }

[[variant]]
name = "no_cascade"
stage = { cascade = false }
paper = { top1 = 71.0 }
"""


def _write(tmp_path: Path, text: str, name: str = "recipe.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_tiny_recipe_end_to_end_via_cli(tmp_path):
    recipe = _write(tmp_path, TINY)
    out = tmp_path / "run"
    result = runner.invoke(app, ["ablate", str(recipe), "--out", str(out)])
    assert result.exit_code == 0, result.output
    training = pd.read_csv(out / "training.csv")
    assert sorted(training.groupby("variant")["seed"].apply(sorted).to_dict().items()) == [
        ("base", [0, 1]), ("mhsa", [0, 1]), ("no_cascade", [0, 1]), ("no_dw", [0, 1])]
    assert (training["status"] == "ok").all() and training["top1"].between(0, 100).all()
    measurements = pd.read_csv(out / "measurements.csv")
    assert set(measurements["protocol"]) == {"cpu-latency"}  # gpu-throughput needs CUDA
    assert (measurements["median_ms"] > 0).all()
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["variant"]) == ["base", "mhsa", "no_dw", "no_cascade"]
    assert summary.loc[0, "d_top1"] == 0 and summary["paper_d_acc"].tolist() == [0.0, -1.0, -2.0, 1.0]
    assert set(summary["verdict_acc"]) <= {"baseline", "reproduced", "not reproduced", "unclear"}
    # params/MACs come from the measured (3-channel, 1000-class) model
    v = pd.read_csv(out / "variants.csv")
    assert (v["params"] > 0).all() and (v["macs"] > 0).all()
    assert v.loc[v["variant"] == "no_dw", "params"].item() < v.loc[v["variant"] == "base", "params"].item()
    report = (out / "report.md").read_text()
    assert "Made by: `explore ablate" in report and "Kendall τ" in report and "gpu-throughput" in report
    assert "made-up figures for the test" in report
    assert (out / "ablation.png").stat().st_size > 1000
    meta = json.loads((out / "run.json").read_text())
    assert meta["skipped_protocols"] == ["gpu-throughput"] and meta["train_images"] == 64
    assert meta["recipe_file"] == "recipe.toml" and str(tmp_path) not in (out / "run.json").read_text()


def test_rerun_reuses_rows_and_changed_budget_reruns(tmp_path):
    recipe = ab.load_recipe(_write(tmp_path, TINY))
    small = ab.with_overrides(recipe, variants=["base", "mhsa"], protocols=["cpu-latency"])
    out = tmp_path / "run"
    first = ab.run_recipe(small, out)
    again = ab.run_recipe(small, out, progress=lambda m: pytest.fail(f"re-ran: {m}"))
    pd.testing.assert_frame_equal(first.training, again.training)
    changed = ab.with_overrides(small, epochs=0.5)
    third = ab.run_recipe(changed, out)
    assert len(third.training) == 4 and set(third.training["key"]) == {changed.training_key()}
    assert len(pd.read_csv(out / "training.csv")) == 8  # the first budget's rows are kept in the file
    # one more seed and one more variant: only the new rows are trained or measured
    more = ab.with_overrides(recipe, variants=["base", "mhsa", "no_dw"], protocols=["cpu-latency"], seeds=[0, 1, 2])
    said = []
    fourth = ab.run_recipe(more, out, progress=said.append)
    trained = sorted(m.split(":")[0] for m in said if "top-1" in m)
    assert trained == ["base seed 2", "mhsa seed 2", "no_dw seed 0", "no_dw seed 1", "no_dw seed 2"]
    assert [m for m in said if "cpu-latency" in m and not m.startswith("no_dw")] == []
    assert len(fourth.training) == 9 and len(fourth.measurements) == 3
    said.clear()
    fifth = ab.run_recipe(more, out, progress=said.append, remeasure=True)
    assert not any("top-1" in m for m in said) and sum("cpu-latency" in m for m in said) == 3
    assert len(fifth.measurements) == 3 and len(pd.read_csv(out / "measurements.csv")) == 3


def test_same_seed_same_top1(tmp_path):
    recipe = ab.with_overrides(ab.load_recipe(_write(tmp_path, TINY)), variants=["base", "mhsa"], protocols=[])
    a = ab.run_recipe(recipe, tmp_path / "a").training.sort_values(["variant", "seed"])
    b = ab.run_recipe(recipe, tmp_path / "b").training.sort_values(["variant", "seed"])
    assert a["top1"].tolist() == b["top1"].tolist()


@pytest.mark.parametrize("edit, field", [
    (lambda t: t.replace('baseline = true\n', ''), "baseline"),
    (lambda t: t.replace('seeds = [0, 1]', 'seeds = [0]'), "seeds"),
    (lambda t: t.replace('"cpu-latency", "gpu-throughput"', '"cpu-latenzy"'), "protocols"),
    (lambda t: t.replace('stage = { dw_conv = false }', 'stage = { dw_convs = false }'), "dw_convs"),
    (lambda t: t.replace('stage = { token_mixer = "mhsa" }', 'stage = { heads = 5 }'), "heads"),
    (lambda t: t.replace('paper = { top1 = 69.0 }', 'paper = { top5 = 69.0 }'), "top5"),
    (lambda t: t.replace('name = "no_dw"', 'name = "mhsa"'), "variant.name"),
    (lambda t: t.replace('dataset = "synthetic"', 'dataset = "mnist"'), "dataset"),
    (lambda t: t + '\n[[finding]]\ntext = "x"\nkind = "faster"\nvariant = "nope"\nthan = "base"\nprotocol = "cpu-latency"\n',
     "finding[0].variant"),
    (lambda t: t.replace('[budget]', '[budgets]'), "budgets"),
    (lambda t: t.replace('epochs = 1\n', 'epochs = 0\n'), "[budget].epochs"),
    (lambda t: t.replace('batch_size = 32', 'batch_size = 0'), "[budget].batch_size"),
])
def test_bad_recipes_fail_with_the_field_and_write_nothing(tmp_path, edit, field):
    recipe = _write(tmp_path, edit(TINY))
    out = tmp_path / "run"
    result = runner.invoke(app, ["ablate", str(recipe), "--out", str(out)])
    assert result.exit_code != 0
    assert field in result.output and "Traceback" not in result.output, result.output
    assert not out.exists()


def test_unknown_recipe_name_lists_the_builtin_ones():
    result = runner.invoke(app, ["ablate", "no_such_recipe"])
    assert result.exit_code != 0 and "cga_table6" in result.output and "mit_ablation" in result.output


def test_variant_subset_must_keep_the_baseline(tmp_path):
    recipe = ab.load_recipe(_write(tmp_path, TINY))
    with pytest.raises(ab.RecipeError, match="baseline"):
        ab.with_overrides(recipe, variants=["mhsa", "no_dw"])
    with pytest.raises(ab.RecipeError, match="unknown variant"):
        ab.with_overrides(recipe, variants=["base", "zzz"])


def test_sweeps_make_one_variant_per_value(tmp_path):
    text = TINY.split("[[variant]]")[0] + """
[[sweep]]
field = "stage.qk_dim"
values = [2, 4, 8]
baseline = 4
name = "qk{}"

[[finding]]
text = "best around 4"
kind = "best_x_within"
range = [3, 5]
"""
    recipe = ab.load_recipe(_write(tmp_path, text))
    assert [v.name for v in recipe.variants] == ["qk2", "qk4", "qk8"]
    assert recipe.baseline.name == "qk4" and [v.x for v in recipe.variants] == [2.0, 4.0, 8.0]
    assert all(s.qk_dim == 8 for s in recipe.variants[2].config.stages)


def test_match_macs_scales_expand_ratio_to_the_baseline(tmp_path):
    text = """
[recipe]
name = "match"
[base.config]
layout = "mbconv"
img_size = 64
stem_width = 8
stages = [
  { width = 16, depth = 1, heads = 1, token_mixer = "none" },
  { width = 32, depth = 1, heads = 2, token_mixer = "msla", scales = [5] },
]
[budget]
train = false
[measure]
protocols = []
img_sizes = [64]
[match_macs]
field = "expand_ratio"
tolerance = 0.01
[[variant]]
name = "ms"
baseline = true
[[variant]]
name = "single"
stages = [{}, { token_mixer = "linear" }]
"""
    recipe = ab.load_recipe(_write(tmp_path, text))
    run = ab.run_recipe(recipe, tmp_path / "run")
    macs = dict(zip(run.variants["variant"], run.variants["macs"]))
    assert abs(macs["single"] / macs["ms"] - 1) <= 0.01
    factor = run.variants.set_index("variant").loc["single", "match_factor"]
    assert factor > 1  # no multi-scale branch: fewer MACs, so wider MBConvs
    unmatched = recipe.measure_config(recipe.variants[1], 64)
    assert count_macs(build(unmatched).eval(), 64, 3) < macs["ms"]


def _run_from(rows: dict[str, tuple[list[float], float, float | None]], paper_key: str = "top1") -> ab.AblationRun:
    """A fake run: variant -> (top-1 per seed, onnx img/s, paper accuracy)."""
    recipe_variants = []
    from explore.arch import get_preset
    base = get_preset("efficientvit_m0")
    for i, (name, (_, _, paper)) in enumerate(rows.items()):
        recipe_variants.append(ab.Variant(name, name, base, {}, baseline=i == 0,
                                          paper={} if paper is None else {paper_key: paper, "onnx_img_s": 100.0 + i}))
    recipe = ab.Recipe("fake", "fake", "", Path("fake.toml"), "", "", paper_key, base, tuple(recipe_variants),
                       ab.Budget(), ab.MeasureSpec(protocols=("onnx-cpu",)))
    variants = pd.DataFrame([{"variant": n, "label": n, "baseline": i == 0, "x": float("nan"), "params": 1e6,
                              "macs": 1e8, "attention_share": 1.0} for i, n in enumerate(rows)])
    training = pd.DataFrame([{"variant": n, "seed": s, "status": "ok", "top1": t}
                             for n, (tops, _, _) in rows.items() for s, t in enumerate(tops)])
    meas = pd.DataFrame([{"variant": n, "protocol": "onnx-cpu", "img_size": 224, "throughput_img_s": speed,
                          "median_ms": 100.0, "iqr_ms": 1.0, "latency_ms_per_img": 1.0}
                         for n, (_, speed, _) in rows.items()])
    return ab.AblationRun(recipe, variants, training, meas, {})


def test_summarise_deltas_verdicts_and_tau():
    run = _run_from({
        "base": ([80.0, 80.2], 100.0, 70.0),
        "worse": ([75.0, 75.2], 90.0, 68.0),       # clear drop, paper drop: reproduced
        "better": ([82.0, 82.2], 110.0, 69.0),     # clear gain, paper drop: not reproduced
        "same": ([80.0, 80.4], 100.5, 69.5),       # within the noise: unclear
        "no_paper": ([70.0, 70.2], 100.0, None),
    })
    table, taus = ab.summarise(run)
    t = table.set_index("variant")
    assert t.loc["worse", "d_top1"] == pytest.approx(-5.0)
    assert t.loc["worse", "verdict_acc"] == "reproduced"
    assert t.loc["better", "verdict_acc"] == "not reproduced"
    assert t.loc["same", "verdict_acc"] == "unclear"
    assert t.loc["no_paper", "verdict_acc"] == "unclear"
    assert t.loc["worse", "d_onnx-cpu_pct"] == pytest.approx(-10.0)
    assert t.loc["worse", "paper_d_onnx_img_s_pct"] == pytest.approx(1.0)
    # our Δs (worse, better, same) = (-5, +2, +0.2), the paper's (-2, -1, -0.5): the pair (better, same)
    # is discordant, the other two agree, so tau = (2 - 1) / 3
    assert taus["acc"] == pytest.approx(1 / 3)


def test_findings_best_x_and_faster():
    run = _run_from({"a": ([70.0, 70.0], 100.0, None), "b": ([75.0, 75.0], 100.0, None)})
    run.variants["x"] = [1.0, 16.0]
    recipe = run.recipe.__class__(**{**run.recipe.__dict__, "findings": (
        ab.Finding("best near 16", "best_x_within", range=(12.0, 20.0)),
        ab.Finding("b faster than a", "faster", variant="b", than="a", protocol="onnx-cpu"))})
    meas = pd.DataFrame([
        {"variant": "a", "protocol": "onnx-cpu", "img_size": 128, "throughput_img_s": 100.0},
        {"variant": "b", "protocol": "onnx-cpu", "img_size": 128, "throughput_img_s": 150.0},
        {"variant": "a", "protocol": "onnx-cpu", "img_size": 512, "throughput_img_s": 10.0},
        {"variant": "b", "protocol": "onnx-cpu", "img_size": 512, "throughput_img_s": 40.0},
    ])
    run = ab.AblationRun(recipe, run.variants, run.training, meas, {})
    table, _ = ab.summarise(ab.AblationRun(recipe, run.variants, run.training, meas[meas.img_size == 128], {}))
    found = ab.check_findings(run, table)
    assert [f["verdict"] for f in found] == ["reproduced", "reproduced"]
    assert "4.00x @512" in found[1]["observed"]
    # best outside the range: not reproduced when clearly better, unclear within the noise
    for tops_b, verdict in (([75.0, 75.0], "not reproduced"), ([70.05, 70.15], "unclear")):
        flipped = run.training.copy()
        flipped.loc[flipped["variant"] == "a", "top1"] = tops_b
        flipped.loc[flipped["variant"] == "b", "top1"] = [70.0, 70.0]
        t, _ = ab.summarise(ab.AblationRun(recipe, run.variants, flipped, meas[meas.img_size == 128], {}))
        assert ab.check_findings(ab.AblationRun(recipe, run.variants, flipped, meas, {}), t)[0]["verdict"] == verdict


def test_every_builtin_recipe_loads_and_its_variants_are_feasible():
    folders = builtin_dirs("studies")
    files = sorted(p for d in folders[:1] for p in d.glob("*.toml"))
    names = {p.stem for p in files}
    assert {"cga_table6", "cga_fig3_mhsa_share", "cga_fig7_qk_dim", "cga_fig7_v_ratio", "mit_ablation",
            "mit_attention_latency"} <= names
    for path in files:
        recipe = ab.load_recipe(path)
        assert recipe.baseline in recipe.variants
        if recipe.budget.train:
            assert len(recipe.budget.seeds) >= 2


def test_cga_table6_rows_equal_the_shared_paper_tables():
    shared = Path(__file__).resolve().parents[3] / "shared" / "reference" / "paper_tables.json"
    if not shared.is_file():
        pytest.skip("../shared/reference/paper_tables.json is not beside this checkout")
    rows = json.loads(shared.read_text())["cga"]["ablation_table6"]["rows"]
    recipe = ab.load_recipe("cga_table6")
    ours = [(v.paper["top1"], v.paper["gpu_img_s"], v.paper["onnx_img_s"]) for v in recipe.variants]
    assert ours == [(r["top1"], r["gpu_img_s"], r["onnx_img_s"]) for r in rows]
    mit = json.loads(shared.read_text())["mit"]["ablation"]["rows"]
    by_flags = {(r["multi_scale"], r["global_attention"]): r["miou"] for r in mit}
    recipe = ab.load_recipe("mit_ablation")
    flags = {"ms_global": (True, True), "ms_local": (True, False), "single_global": (False, True),
             "single_local": (False, False)}
    assert {v.name: v.paper["miou"] for v in recipe.variants} == {n: by_flags[f] for n, f in flags.items()}


def test_sequential_seeds_are_added_only_to_open_rows_and_resume(tmp_path):
    from explore.stats import ACC_MIN_EFFECT, decision, look_level, paired_delta

    level = look_level(0.95, 3)  # auto:4 looks after 2, 3 and 4 seeds: each look spends 5 % / 3
    recipe = ab.load_recipe(_write(tmp_path, TINY.replace("seeds = [0, 1]", 'seeds = "auto:4"')))
    assert recipe.budget.max_seeds == 4 and recipe.budget.seeds == (0, 1)
    small = ab.with_overrides(recipe, variants=["base", "mhsa", "no_dw"], protocols=["cpu-latency"])
    assert small.budget.max_seeds == 4  # kept through command-line overrides
    out = tmp_path / "run"
    run = ab.run_recipe(small, out)
    per_seed = {name: dict(zip(rows["seed"], rows["top1"])) for name, rows in run.training.groupby("variant")}
    states = run.meta["sequential"]
    assert set(states) == {"mhsa", "no_dw"}
    for name, state in states.items():
        seeds = sorted(per_seed[name])
        assert seeds == list(range(len(seeds))) and 2 <= len(seeds) <= 4 and state["seeds"] == len(seeds)
        assert set(seeds) <= set(per_seed["base"])  # the baseline ran every seed a row needed
        base = {s: per_seed["base"][s] for s in seeds}
        final = decision(paired_delta(base, per_seed[name], level), ACC_MIN_EFFECT)
        assert state["state"] == ("max seeds" if final == "open" else final)
        assert final != "open" or len(seeds) == 4  # it stopped because it was decided or at the cap
        if len(seeds) > 2:  # it got its last seed only while undecided
            earlier = {s: per_seed[name][s] for s in seeds[:-1]}
            assert decision(paired_delta(base, earlier, level), ACC_MIN_EFFECT) == "open"
    again = ab.run_recipe(small, out, progress=lambda m: pytest.fail(f"re-ran: {m}") if "top-1" in m else None)
    assert len(again.training) == len(run.training) and again.meta["sequential"] == states
    table, _ = ab.summarise(again)
    assert {"d_top1_low", "d_top1_high", "variance_reduction", "decision"} <= set(table.columns)
    # the report's intervals are the ones the rule decided with (issue 28, item 2)
    for name, state in states.items():
        row = table.set_index("variant").loc[name]
        assert row["decision"] == ("open" if state["state"] == "max seeds" else state["state"])


@pytest.mark.parametrize("seeds, message", [('"auto:1"', "MAX >= 2"), ('"sometimes"', "auto"), ('"auto:x"', "auto")])
def test_bad_sequential_seeds_name_the_field(tmp_path, seeds, message):
    with pytest.raises(ab.RecipeError, match=message) as info:
        ab.load_recipe(_write(tmp_path, TINY.replace("seeds = [0, 1]", f"seeds = {seeds}")))
    assert "seeds" in str(info.value)


def test_sequential_seeds_from_the_command_line(tmp_path):
    recipe = _write(tmp_path, TINY)
    ok = runner.invoke(app, ["ablate", str(recipe), "--seeds", "auto:3", "--dry-run"])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, ["ablate", str(recipe), "--seeds", "auto:1", "--dry-run"])
    assert bad.exit_code == 1 and "seeds" in bad.output and "MAX >= 2" in bad.output


TINY_SEG = TINY.replace('accuracy = "top1"', 'accuracy = "miou"').replace(
    'dataset = "synthetic"\nmax_train = 64\nmax_val = 32', 'dataset = "fashion_scenes"\nmax_train = 8\nmax_val = 4'
).replace("batch_size = 32\nimg_size = 32", 'batch_size = 4\ntask = "segmentation"\nseg_size = 32\nseg_head_width = 8\n'
          "seg_head_depth = 1").replace("top1 = ", "miou = ")


def test_a_segmentation_recipe_trains_and_measures_with_the_head(tmp_path):
    recipe = _write(tmp_path, TINY_SEG)
    out = tmp_path / "run"
    result = runner.invoke(app, ["ablate", str(recipe), "--out", str(out), "--variants", "base,mhsa"])
    assert result.exit_code == 0, result.output
    training = pd.read_csv(out / "training.csv")
    assert (training["status"] == "ok").all() and training["top1"].between(0, 100).all()  # mIoU in the accuracy column
    assert (training["img_size"] == 32).all()
    loaded = ab.load_recipe(recipe)
    config = loaded.measure_config(loaded.baseline, 64)
    assert config.is_segmentation and config.num_classes == 19 and config.img_size == 64
    v = pd.read_csv(out / "variants.csv")
    assert v.loc[v["variant"] == "base", "macs"].item() == count_macs(build(loaded.measure_config(loaded.baseline, 32)), 32, 3)
    report = (out / "report.md").read_text()
    assert "mIoU (%)" in report and "Δ mIoU" in report and "segmentation head" in report and "top-1 (%)" not in report
    assert json.loads((out / "run.json").read_text())["budget"]["task"] == "segmentation"
    bad = _write(tmp_path, TINY_SEG.replace('dataset = "fashion_scenes"', 'dataset = "fashion_mnist"'), "bad.toml")
    result = runner.invoke(app, ["ablate", str(bad), "--out", str(tmp_path / "bad")])
    assert result.exit_code == 1 and "[budget].dataset" in result.output and not (tmp_path / "bad").exists()


def test_a_latency_recipe_measures_segmentation_models_at_non_square_resolutions(tmp_path):
    text = TINY.replace('[budget]\ndataset = "synthetic"\nmax_train = 64\nmax_val = 32\nepochs = 1\nbatch_size = 32\n'
                        'img_size = 32\nseeds = [0, 1]', '[budget]\ntrain = false\ntask = "segmentation"\n'
                        'seg_head_width = 8\nseg_head_depth = 1').replace(
        "img_sizes = [32]", 'img_sizes = [32, 64, "32x64"]')
    text += ('\n[[finding]]\ntext = "window-free CGA vs MHSA"\nkind = "faster"\nvariant = "base"\nthan = "mhsa"\n'
             'protocol = "cpu-latency"\n')
    out = tmp_path / "run"
    result = runner.invoke(app, ["ablate", str(_write(tmp_path, text)), "--out", str(out), "--variants", "base,mhsa"])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out / "measurements.csv")
    assert sorted(rows["img_size"].astype(str).unique()) == ["32", "32x64", "64"]
    report = (out / "report.md").read_text()
    header = next(line for line in report.splitlines() if "px (ms/img)" in line)
    assert [c.strip() for c in header.strip("|").split("|")][2:] == ["32 px (ms/img)", "32x64 px (ms/img)",
                                                                     "64 px (ms/img)"]  # by pixels
    assert "@32x64" in report and (out / "latency_vs_resolution.png").is_file()
    again = runner.invoke(app, ["ablate", str(_write(tmp_path, text)), "--out", str(out), "--variants", "base,mhsa"])
    assert again.exit_code == 0 and "@32x64:" not in again.output  # rows reused, nothing measured again
    bad = text.replace('img_sizes = [32, 64, "32x64"]', 'img_sizes = ["32x64", 32]')
    result = runner.invoke(app, ["ablate", str(_write(tmp_path, bad, "bad.toml")), "--out", str(tmp_path / "b")])
    assert result.exit_code == 1 and "img_sizes[0]" in result.output


def test_one_rule_decides_a_row_the_verdict_follows_the_paired_decision():
    """Issue 28, item 1: a row whose paired interval spans 0 is never "reproduced" or "not
    reproduced", however large its Δ against the unpaired standard error."""
    from explore.analysis.ablation.summary import accuracy_verdict

    run = _run_from({
        "base": ([80.0, 81.0, 80.0], 100.0, 70.0),
        # Δ -1.0 mean, per-seed Δs -0.2, -2.2, -0.6: the paired interval spans 0; the old |Δ| > 2 SE rule called it
        "noisy_drop": ([79.8, 78.8, 79.4], 100.0, 68.0),
    })
    table, _ = ab.summarise(run)
    row = table.set_index("variant").loc["noisy_drop"]
    assert row["d_top1_low"] < 0 < row["d_top1_high"] and row["decision"] == "open"
    assert row["verdict_acc"] == "unclear"
    assert accuracy_verdict("effect", -1.0, -2.0) == "reproduced"
    assert accuracy_verdict("effect", 1.0, -2.0) == "not reproduced"
    assert accuracy_verdict("negligible", 0.05, -2.0) == "not reproduced"  # the paper's effect is not there
    assert accuracy_verdict("negligible", 0.05, -0.1) == "reproduced"  # no effect, as in the paper
    assert accuracy_verdict("open", -1.0, -2.0) == "unclear"
    assert accuracy_verdict("effect", -1.0, float("nan")) == "unclear"
