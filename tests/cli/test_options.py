"""The options several commands share (explore/cli/options.py): one declaration each, the command's
default shown from its settings, the settings fed from what was given, the reproduce line too."""

from __future__ import annotations

import dataclasses
import re

import typer
from typer.main import get_command
from typer.testing import CliRunner

import explore.cli.options as options
from explore.analysis.importance.command import ImportanceSettings
from explore.cli import app
from explore.cli.options import DEVICE, MAX_TRAIN, SEED, Shared, given, reproduce_line
from explore.evaluate import RunBudget
from explore.search import StudySettings
from explore.search.schedule_comparison import CompareSettings
from explore.supernet.train import SupernetSettings
from explore.search.settings import TASK_DEFAULTS

SHARED = {o.flag: o for o in vars(options).values() if isinstance(o, Shared)}
PROTOCOL_BATCH = {("bench", "--batch-size"), ("bench models", "--batch-size"), ("latency-table", "--batch-size")}
"""Where --batch-size is the latency protocol's batch, not the proxy training's: another option of the same name."""
SETTINGS = {"study": StudySettings, "validate-proxy": RunBudget, "importance": ImportanceSettings,
            "compare-schedules": CompareSettings, "supernet train": SupernetSettings}
"""The settings whose defaults each command's shared options show."""


def _commands() -> dict[str, object]:
    group = get_command(app)
    out = {}
    for name, command in group.commands.items():
        out[name] = command
        for sub, inner in getattr(command, "commands", {}).items():  # explore bench <sub>
            out[f"{name} {sub}"] = inner
    return out


def _defaults(cls: type) -> dict[str, object]:
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


def test_every_shared_option_is_the_one_declaration():
    """A command that takes --max-train, --seed, --device ... takes the shared declaration (its help),
    not one of its own."""
    takers: dict[str, list[str]] = {}
    for name, command in _commands().items():
        for param in command.params:
            flag = (getattr(param, "opts", None) or [None])[0]
            if flag in SHARED and (name, flag) not in PROTOCOL_BATCH:
                assert param.help.startswith(SHARED[flag].help), f"explore {name} declares its own {flag}"
                takers.setdefault(flag, []).append(name)
    assert len(takers["--max-train"]) == 6 and len(takers["--seed"]) == 5 and len(takers["--device"]) >= 8


def test_the_defaults_shown_are_the_settings_defaults():
    for name, cls in SETTINGS.items():
        defaults = _defaults(cls)
        command = _commands()[name]
        for param in command.params:
            option = SHARED.get((getattr(param, "opts", None) or [None])[0])
            if option is None or option.field not in defaults:
                continue
            shown = re.search(r"\[default: ([^\]]+)\]", param.help)
            value = defaults[option.field]
            if shown is None:
                assert value is None, f"explore {name} {option.flag}: no default shown, the settings' is {value!r}"
                continue
            first, _, rest = shown.group(1).partition(";")
            head = re.split(r" \(|,", first)[0].strip()
            expected = "all" if value is None and option.zero_is_none else str(value)
            assert head == expected or _number(head) == _number(value), (name, option.flag, head, value)
            if "segmentation:" in rest:  # the task's own default, from the settings too
                assert rest.split("segmentation:")[1].strip() == str(TASK_DEFAULTS["segmentation"][option.field])


def _number(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def test_given_options_feed_the_settings_and_the_reproduce_line():
    seen: dict[str, object] = {}
    small = typer.Typer()

    @small.command()
    def run(ctx: typer.Context, *, max_train: MAX_TRAIN.option(10) = None, seed: SEED.option(0) = None,
            device: DEVICE.option("cpu") = None, name: str = "x", flag: bool = True) -> None:
        seen["given"] = given(ctx, MAX_TRAIN, SEED, DEVICE)
        seen["line"] = reproduce_line(ctx, ["explore", "run"])

    result = CliRunner().invoke(small, ["--seed", "3", "--max-train", "0", "--no-flag", "--name", "a b"])
    assert result.exit_code == 0, result.output
    assert seen["given"] == {"seed": 3, "max_train": None}  # 0 = all; --device not given: the settings keep theirs
    assert seen["line"] == "explore run --max-train 0 --seed 3 --name 'a b' --no-flag"  # the command's order


def test_study_settings_take_the_task_defaults():
    seg = StudySettings.for_task(task="segmentation", space="msla")
    assert (seg.dataset, seg.max_train, seg.max_val, seg.batch_size) == ("fashion_scenes", 1000, 200, 16)
    assert seg.study_name == "msla" and seg.epochs == 2.0
    assert StudySettings.for_task(task="segmentation", dataset="fashion_mnist").dataset == "fashion_scenes"
    chosen = StudySettings.for_task(task="segmentation", max_train=None, rungs=(0.5, 1.0, 3.0), study_name="s")
    assert chosen.max_train is None and chosen.epochs == 3.0 and chosen.study_name == "s"  # None given = all
    assert StudySettings.for_task(space="search_spaces/hybrid.toml").study_name == "hybrid"
    assert StudySettings.for_task() == StudySettings()
