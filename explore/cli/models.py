"""``explore describe`` and ``explore presets``: params and MACs of one architecture, of every preset."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from explore.cli.common import app, console, fail, print_table
from explore.errors import ExploreError

__all__ = ["describe", "presets"]


@app.command()
def describe(
    name_or_file: Annotated[str, typer.Argument(help="Preset (efficientvit_m0..m5, efficientvit_b0..b3) or config file (.json/.toml).")],
    *,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object: params, macs, config.")] = False,
    img_size: Annotated[int, typer.Option(help="Count at this input side (0 = the config's).")] = 0,
    seg_head_width: Annotated[int, typer.Option(
        help="Put the MIT segmentation head of this width on the model (0 = as the config says).")] = 0,
    num_classes: Annotated[int, typer.Option(help="Classes (0 = the config's; Cityscapes: 19).")] = 0,
) -> None:
    """Print params (M), MACs (M) and the config of an architecture (at another resolution, or with the
    MIT segmentation head, where asked)."""
    from explore.arch import resolve_arch, stage_field_used
    from explore.evaluate import evaluate_candidate

    changes = {"img_size": img_size, "seg_head_width": seg_head_width, "num_classes": num_classes}
    try:
        config = resolve_arch(name_or_file, "NAME_OR_FILE").config
        config = config.replace(**{k: v for k, v in changes.items() if v})
    except ExploreError as exc:
        if exc.field in changes:  # name the option, not the config field
            exc = type(exc)(f"--{exc.field.replace('_', '-')}", exc.value, exc.expected)
        raise fail(exc) from None
    counted = evaluate_candidate(config)
    params, macs = counted.params, counted.macs
    if as_json:
        print(json.dumps({"name": config.name or name_or_file, "params": params, "macs": macs,
                          "img_size": config.img_size, "config": config.to_dict()}))
        return
    console.print(f"[bold]{config.name or name_or_file}[/]  params {params / 1e6:.3f} M  "
                  f"MACs {macs / 1e6:.1f} M  at {config.img_size}x{config.img_size}, {config.in_chans} ch, "
                  f"{config.num_classes} classes")
    table = Table("stage", "C", "L", "mixer", "H", "QK", "V ratio", "Q kernels", "win", "scales", "FFN", "N",
                  "expand")
    switches = []
    for i, s in enumerate(config.stages):
        def shown(field: str, text: str, stage=s) -> str:  # noqa: ANN001 - a StageConfig
            return text if stage_field_used(field, config.layout, stage.token_mixer) else "-"

        table.add_row(str(i), str(s.width), str(s.depth), s.token_mixer, shown("heads", str(s.heads)),
                      shown("qk_dim", str(s.qk_dim)), shown("v_ratio", f"{s.v_ratio:g}"),
                      shown("kernels", ",".join(map(str, s.kernels[: s.heads]))),
                      shown("window_size", str(s.window_size)), shown("scales", ",".join(map(str, s.scales))),
                      shown("ffn_ratio", f"{s.ffn_ratio:g}"), shown("sandwich_n", str(s.sandwich_n)),
                      shown("expand_ratio", f"{s.expand_ratio:g}"))
        if not s.cascade and stage_field_used("cascade", config.layout, s.token_mixer):
            switches.append(f"stage {i}: CGA without cascade")
        if not s.dw_conv and stage_field_used("dw_conv", config.layout, s.token_mixer):
            switches.append(f"stage {i}: no DW conv before the FFNs")
        if s.linear_window and stage_field_used("linear_window", config.layout, s.token_mixer):
            switches.append(f"stage {i}: linear attention in {s.linear_window}x{s.linear_window} windows")
    console.print(table)
    if switches:
        console.print("; ".join(switches))
    extra = f", stem {config.stem_width} x{config.stem_depth}" if config.layout == "mbconv" else ""
    head = f"MLP head {list(config.head_widths)}" if config.head_widths else "norm + linear head"
    if config.is_segmentation:
        head = (f"MIT segmentation head: width {config.seg_head_width}, {config.seg_head_depth} MBConv (expand "
                f"{config.seg_head_expand:g}), final x{config.seg_head_final_expand:g}, fuses the last "
                f"{config.seg_head_inputs} stages at stride {config.seg_stride}")
    console.print(f"layout {config.layout}{extra}, norm {config.norm}, activation {config.activation}, {head}")


@app.command()
def presets(
    *,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a markdown table instead.")] = False,
) -> None:
    """Params and MACs of every preset at 224x224, beside timm's params and the paper's MACs."""
    from explore.arch import PRESETS, TIMM_PARAM_COUNTS, paper_macs
    from explore.evaluate import evaluate_candidate

    header = ["model", "params", "timm params", "MACs (M)", "paper MACs (M)", "MACs vs paper (%)"]
    rows = []
    for name, config in PRESETS.items():
        counted = evaluate_candidate(config)
        paper = paper_macs(name)
        rows.append([name, f"{counted.params:,}", f"{TIMM_PARAM_COUNTS[name]:,}", f"{counted.macs / 1e6:.2f}",
                     f"{paper:g}", f"{(counted.macs / 1e6 / paper - 1) * 100:+.2f}"])
    if markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    print_table(rows, header, title="presets at 224x224, 1000 classes (MACs: fvcore, norms not counted)")
