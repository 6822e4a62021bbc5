"""Search-space files: lookup by name or path, validation errors, sampling."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from explore.arch import ArchConfig
from explore.errors import ConfigError, SpaceError
from explore.space import load_space, resolve_space_path

SPACE_DIR = Path(__file__).resolve().parents[2] / "search_spaces"

MINIMAL = """
[space]
name = "mini"
stages = 2
[model]
img_size = { value = 32 }
[stage]
width = [{ choices = [16, 32] }, { low = 32, high = 64, step = 16 }]
depth = { low = 1, high = 2 }
heads = { choices = [2, 4] }
qk_dim = { value = 8 }
kernel = { choices = [3, 5] }
"""


def test_builtin_space_by_name_and_by_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # any working directory
    by_name = load_space("cga")
    assert by_name.path == SPACE_DIR / "cga.toml"
    assert by_name.num_stages == 3
    by_path = load_space(str(SPACE_DIR / "cga.toml"))
    assert by_path.describe() == by_name.describe()
    names = dict(by_name.describe())
    for knob in ("width", "depth", "heads", "qk_dim", "v_ratio", "ffn_ratio", "kernel", "window_size",
                 "sandwich_n", "token_mixer"):
        assert f"stage0.{knob}" in names
    for knob in ("img_size", "norm", "activation"):
        assert knob in names


def test_sampling_gives_valid_configs_only():
    space = load_space("cga")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(60):
        trial = study.ask()
        config = space.sample(trial, in_chans=1, num_classes=10)  # heads among the width's divisors
        assert isinstance(config, ArchConfig)
        assert all(len(s.kernels) == s.heads for s in config.stages if s.token_mixer == "cga")
        assert 32 <= config.stages[0].width <= 128 and config.stages[0].width % 16 == 0


@pytest.mark.parametrize("name", ["cga", "msla", "hybrid"])
def test_builtin_spaces_have_no_infeasible_draws_and_the_inverse_round_trips(name):
    from explore.space import space_params

    space = load_space(name)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=11))
    heads_seen: dict[int, set[int]] = {}
    for _ in range(300):
        trial = study.ask()
        config = space.sample(trial, in_chans=1, num_classes=10)  # a ConfigError here fails the test
        for stage in config.stages:
            if stage.token_mixer == "cga":
                assert stage.width % stage.heads == 0
                heads_seen.setdefault(stage.width, set()).add(stage.heads)
        params, rebuilt, notes = space_params(config, space, in_chans=1, num_classes=10)
        assert rebuilt == config and not notes
        assert params == trial.params
    if name == "cga":  # 3 heads where the width allows it (48, 96, ...), never elsewhere
        assert any(3 in h for w, h in heads_seen.items() if w % 3 == 0)
        assert not any(3 in h for w, h in heads_seen.items() if w % 3)


def test_heads_drawn_among_divisors_under_a_subset_name(tmp_path):
    path = tmp_path / "div.toml"
    path.write_text(MINIMAL.replace("heads = { choices = [2, 4] }", "heads = { choices = [2, 3, 4] }")
                    .replace("[{ choices = [16, 32] }, { low = 32, high = 64, step = 16 }]", "[{ value = 32 }, { value = 48 }]"))
    space = load_space(str(path))
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    config = space.sample(trial, in_chans=1, num_classes=10)
    assert "stage0.heads[2,4]" in trial.params and "stage0.heads" not in trial.params  # 32: 3 does not divide
    assert "stage1.heads" in trial.params  # 48: every choice divides it
    assert config.stages[0].heads in (2, 4)


def test_a_fixed_heads_that_does_not_divide_is_still_a_named_reason(tmp_path):
    path = tmp_path / "fixed.toml"
    path.write_text(MINIMAL.replace("heads = { choices = [2, 4] }", "heads = { value = 3 }"))
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    with pytest.raises(ConfigError) as info:
        load_space(str(path)).sample(trial, in_chans=1, num_classes=10)
    assert "heads" in info.value.field and info.value.value == 3


def test_user_space_file(tmp_path):
    path = tmp_path / "mini.toml"
    path.write_text(MINIMAL)
    space = load_space(str(path))
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    config = space.sample(trial, in_chans=3, num_classes=5)
    assert config.img_size == 32 and len(config.stages) == 2 and config.stages[0].qk_dim == 8
    assert set(trial.params) >= {"stage0.width", "stage1.width", "stage0.kernel0"}


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda t: t.replace("stages = 2", "stages = 0"), "space.stages"),
        (lambda t: t.replace("heads = { choices = [2, 4] }", "heads = { choices = [] }"), "stage.heads.choices"),
        (lambda t: t.replace("qk_dim = { value = 8 }", "qk_dims = { value = 8 }"), "stage.qk_dims"),
        (lambda t: t.replace("low = 32, high = 64", "low = 64, high = 32"), "stage.width[1].high"),
        (lambda t: t.replace("img_size = { value = 32 }", "img_size = { value = 32, choices = [1] }"), "model.img_size"),
        (lambda t: t.replace("depth = { low = 1, high = 2 }", "depth = { low = 1.5, high = 2 }"), "stage.depth.low"),
        (lambda t: t + "\nnorm = 3\n", "stage.norm"),
        (lambda t: t.replace("[stage]", "[stage\n"), "malformed TOML"),
        (lambda t: t.replace('kernel = { choices = [3, 5] }', 'kernel = { choices = ["a"] }'), "stage.kernel.choices[0]"),
        (lambda t: t.replace("[model]", "[model]\nnorm = { choices = [\"bn\", \"gn\"] }"), "model.norm.choices[1]"),
    ],
)
def test_malformed_space_names_file_and_field(tmp_path, edit, needle):
    path = tmp_path / "bad.toml"
    path.write_text(edit(MINIMAL))
    with pytest.raises(SpaceError) as info:
        load_space(str(path))
    message = str(info.value)
    assert needle in message
    assert "bad.toml" in message


def test_unknown_space_lists_known_names():
    with pytest.raises(SpaceError, match="cga") as info:
        resolve_space_path("nope")
    assert info.value.field == "--space"
    with pytest.raises(SpaceError, match="no such file"):
        resolve_space_path("missing/space.toml")


@pytest.mark.parametrize("name", ["msla", "hybrid"])
def test_msla_and_hybrid_spaces_sample_conditionally(name):
    space = load_space(name)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=5))
    layouts, mixers = set(), set()
    for _ in range(40):
        trial = study.ask()
        config = space.sample(trial, in_chans=1, num_classes=10)  # both spaces are feasible by design
        layouts.add(config.layout)
        for i, stage in enumerate(config.stages):
            mixers.add(stage.token_mixer)
            drawn = {k.split(".", 1)[1] for k in trial.params if k.startswith(f"stage{i}.")}
            if stage.token_mixer == "cga":
                assert {f"kernel{j}" for j in range(stage.heads)} <= drawn
            else:
                assert not any(k.startswith("kernel") for k in drawn)
            if stage.token_mixer != "msla":
                assert "scales" not in drawn
            if config.layout == "mbconv":
                assert "ffn_ratio" not in drawn and "sandwich_n" not in drawn
        if config.layout == "sandwich":
            assert "stem_width" not in trial.params
    if name == "msla":
        assert layouts == {"mbconv"} and mixers == {"none", "msla"}
    else:
        assert layouts == {"sandwich", "mbconv"} and mixers >= {"cga", "mhsa", "linear", "msla"}


def test_list_knobs(tmp_path):
    path = tmp_path / "lists.toml"
    path.write_text(MINIMAL.replace("[model]", "[model]\nlayout = { value = \"mbconv\" }\nstem_width = { value = 8 }\n"
                                    "head_widths = { choices = [[64, 80], []] }")
                    + "token_mixer = { value = \"msla\" }\nscales = { choices = [[3], [3, 5], [5]] }\n")
    space = load_space(str(path))
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2)).ask()
    config = space.sample(trial, in_chans=3, num_classes=5)
    assert config.head_widths in ((64, 80), ())
    assert all(s.scales in ((3,), (3, 5), (5,)) for s in config.stages)
    assert trial.params["stage0.scales"] in ("3", "3,5", "5")
    path.write_text(MINIMAL + "scales = { low = 3, high = 5 }\n")
    with pytest.raises(SpaceError, match="list knob"):
        load_space(str(path))
