"""The options several commands share, each declared once: its flag, its help, the settings field it
sets, and how its value goes into the settings and back into the reproduce line.

The reproduce line of a run is the command's own options as given (:func:`reproduce_line`, from the
command's context): an option added to a command is in it without another edit.

A command takes a shared option as a parameter named after the settings field, with the declaration's
type and ``None`` as its default (``None``: not given, so the command's settings keep their own
default)::

    def importance(ctx: typer.Context, *, max_train: MAX_TRAIN.option(5000) = None, ...):
        settings = ImportanceSettings(model=model, **given(ctx, MAX_TRAIN, ...))
        command = command_line(["explore", "importance"], reproduce(settings, MAX_TRAIN, ...))

``option(default)`` only shows the command's default in ``--help``: the value itself comes from the
settings (``tests/cli/test_options.py`` checks that the two agree for every command). The defaults
are not read from the settings classes here because those import torch, and ``explore --help``
should not.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Optional

import typer

from explore.reproduce import command_line

__all__ = ["Shared", "DATASET", "DATA_ROOT", "MAX_TRAIN", "MAX_VAL", "EPOCHS", "BATCH_SIZE", "SEED", "DEVICE",
           "STORAGE", "BUDGET", "given", "reproduce", "reproduce_line"]


@dataclass(frozen=True)
class Shared:
    """One option several commands take.

    Attributes:
        flag: the option, e.g. ``--max-train``; the settings field is its name with underscores.
        help: what it sets (each command adds its own default, :meth:`option`).
        type: ``int``, ``float`` or ``str``.
        zero_is_none: 0 on the command line is None in the settings (``--max-train 0``: every image).
        envvar: an environment variable that sets it when the option is not given.
    """

    flag: str
    help: str
    type: type = int
    zero_is_none: bool = False
    envvar: str | None = None

    @property
    def field(self) -> str:
        """The settings field (and the command's parameter name): ``--max-train`` -> ``max_train``."""
        return self.flag[2:].replace("-", "_")

    def option(self, default: Any = None) -> Any:
        """The type of a command's parameter for this option (its default must be ``None``).

        Args:
            default: the command's default as ``--help`` shows it (from its settings; None: nothing shown).
        """
        text = self.help
        if default is not None:
            text += f" [default: {'all' if self.zero_is_none and default == 0 else default}]"
        return Annotated[Optional[self.type], typer.Option(self.flag, help=text, show_default=False, envvar=self.envvar,
                                                           show_envvar=False)]

    def to_setting(self, value: Any) -> Any:
        """The settings value of a command-line value (0 -> None where 0 means all)."""
        return None if self.zero_is_none and value == 0 else value

    def to_option(self, value: Any) -> Any:
        """The command-line value of a settings value, for the reproduce line (None -> 0 where 0 means all)."""
        return 0 if self.zero_is_none and value is None else value


DATASET = Shared("--dataset", "fashion_mnist | cifar10 | cifar100 | imagefolder | synthetic; segmentation: "
                              "fashion_scenes | a folder of images and masks.", str)
DATA_ROOT = Shared("--data-root", "Local data folder (default for fashion_mnist: the Debian package's).", str)
MAX_TRAIN = Shared("--max-train", "Training images used (a random subset; 0 = all); segmentation: scenes.",
                   zero_is_none=True)
MAX_VAL = Shared("--max-val", "Held-out images top-1 is measured on (a random subset; 0 = all); segmentation: "
                              "scenes (mIoU).", zero_is_none=True)
EPOCHS = Shared("--epochs", "Proxy training epochs (fractions allowed).", float)
BATCH_SIZE = Shared("--batch-size", "Proxy training batch size.")
SEED = Shared("--seed", "Seed of what the command draws: architectures, data subsets, initial weights and the "
                        "training order (a study's trial k trains with seed + k).")
DEVICE = Shared("--device", "cpu | cuda | cuda:N: where the command trains, and times when it times.", str)
STORAGE = Shared("--storage", "Optuna storage URL (postgresql://... for many machines; needs the postgres extra) "
                              "or journal file path. Env: EXPLORE_STORAGE.", str, envvar="EXPLORE_STORAGE")

BUDGET = (DATASET, DATA_ROOT, MAX_TRAIN, MAX_VAL, EPOCHS, BATCH_SIZE, SEED, DEVICE)
"""The shared budget fields (:class:`explore.evaluate.RunBudget`: data, subsets, epochs, batch, seed, device)."""


def given(ctx: typer.Context | Mapping[str, Any], *options: Shared) -> dict[str, Any]:
    """The shared options given on the command line, as settings fields (an option not given is left
    out, so the settings keep their default; 0 becomes None where 0 means all).

    Args:
        ctx: the command's context (its ``params``), or the parameters as a mapping.
        options: the shared options the command takes.
    """
    params = ctx if isinstance(ctx, Mapping) else ctx.params
    return {o.field: o.to_setting(params[o.field]) for o in options if params.get(o.field) is not None}


def reproduce(settings: Any, *options: Shared, defaults: Any = None) -> list[tuple[str, Any]]:
    """``(flag, value)`` of each option as ``settings`` holds it, for
    :func:`explore.reproduce.command_line` (those equal to ``defaults``' are left out, when given)."""
    out = []
    for o in options:
        value = getattr(settings, o.field)
        if defaults is not None and value == getattr(defaults, o.field):
            continue
        out.append((o.flag, o.to_option(value)))
    return out


def reproduce_line(ctx: typer.Context, words: Sequence[str], *, leave_out: Collection[str] = (),
                   values: Mapping[str, Any] | None = None) -> str:
    """The command line that reproduces this run (:func:`explore.reproduce.command_line`): ``words``,
    then every option given on the command line or by its environment variable, in the command's
    order, as given (a bool flag given off as its ``--no-`` form).

    Args:
        ctx: the command's context.
        words: the command and its arguments, e.g. ``["explore", "ablate", "cga_table6"]``.
        leave_out: parameter names not to write (options that do not change the result).
        values: parameter name -> the value to write instead of the given one (a path shown relative).
    """
    options: list[tuple[str, Any]] = []
    for param in ctx.command.params:
        if param.param_type_name != "option" or param.name in leave_out:
            continue
        source = ctx.get_parameter_source(param.name)
        if source is None or source.name not in ("COMMANDLINE", "ENVIRONMENT"):  # not given: the default
            continue
        value = (values or {}).get(param.name, ctx.params.get(param.name))
        if getattr(param, "is_flag", False) and value is False and getattr(param, "secondary_opts", None):
            options.append((param.secondary_opts[0], True))
        else:
            options.append((param.opts[0], value))
    return command_line(words, options)
