"""Published figures of the two papers, copied here (with their sources) for side-by-side tables.

Only numbers, never used to produce results: reports and tests compare our measurements to them.
"""

from __future__ import annotations

__all__ = [
    "CGA_MODELS_SOURCE",
    "CGA_MODELS",
    "MIT_MODELS_SOURCE",
    "MIT_MODELS",
    "TIMM_PARAM_COUNTS_SOURCE",
    "TIMM_PARAM_COUNTS",
    "paper_macs",
    "paper_throughput",
    "PROTOCOL_PAPER_FIELD",
    "PAPER_SPEED_COLUMNS",
]

CGA_MODELS_SOURCE = (
    "Liu et al., EfficientViT: Memory Efficient Vision Transformer with Cascaded Group Attention, "
    "CVPR 2023 (arXiv:2305.07027), ImageNet-1k model table; official repository microsoft/Cream. "
    "ImageNet-1k val top-1 at 224x224 after 300 epochs; MACs ('FLOPs' in the paper) with BN not counted; "
    "gpu_img_s on a V100, batch 2048, fp16; cpu_img_s on an Intel CPU, batch 16, one thread; "
    "onnx_img_s with ONNX Runtime on that CPU, batch 16 (CPU figures given for M0 only)."
)
CGA_MODELS: dict[str, dict[str, float]] = {
    "efficientvit_m0": {"top1": 63.2, "params_M": 2.3, "macs_M": 79, "gpu_img_s": 27644, "cpu_img_s": 228.4,
                        "onnx_img_s": 340.1},
    "efficientvit_m1": {"top1": 68.4, "params_M": 3.0, "macs_M": 167, "gpu_img_s": 20093},
    "efficientvit_m2": {"top1": 70.8, "params_M": 4.2, "macs_M": 201, "gpu_img_s": 18218},
    "efficientvit_m3": {"top1": 73.4, "params_M": 6.9, "macs_M": 263, "gpu_img_s": 16644},
    "efficientvit_m4": {"top1": 74.3, "params_M": 8.8, "macs_M": 299, "gpu_img_s": 15914},
    "efficientvit_m5": {"top1": 77.1, "params_M": 12.4, "macs_M": 522, "gpu_img_s": 10621},
}

MIT_MODELS_SOURCE = (
    "Cai et al., EfficientViT: Multi-Scale Linear Attention for High-Resolution Dense Prediction, ICCV 2023 "
    "(arXiv:2205.14756), ImageNet classification results; official repository mit-han-lab/efficientvit. "
    "ImageNet-1k top-1 at 224x224 (B0's top-1 is not given in our source); MACs in G."
)
MIT_MODELS: dict[str, dict[str, float]] = {
    "efficientvit_b0": {"params_M": 3.4, "macs_M": 100},
    "efficientvit_b1": {"top1": 79.4, "params_M": 9.1, "macs_M": 520},
    "efficientvit_b2": {"top1": 82.1, "params_M": 24.0, "macs_M": 1600},
    "efficientvit_b3": {"top1": 83.5, "params_M": 49.0, "macs_M": 4000},
}


PROTOCOL_PAPER_FIELD = {"gpu-throughput": "gpu_img_s", "onnx-cpu": "onnx_img_s", "cpu-latency": "cpu_img_s"}
"""Which paper column a protocol's img/s compares with (the paper's hardware differs from yours)."""
PAPER_SPEED_COLUMNS = {column: protocol for protocol, column in PROTOCOL_PAPER_FIELD.items()}
"""The inverse: a paper throughput column -> the protocol whose img/s it is compared with (in this
order in ablation tables)."""


def paper_throughput(name: str, protocol: str) -> float | None:
    """The paper's img/s for a preset under a protocol, or None where the paper gives none."""
    field = PROTOCOL_PAPER_FIELD.get(protocol)
    row = CGA_MODELS.get(name) or MIT_MODELS.get(name) or {}
    value = row.get(field) if field else None
    return float(value) if value is not None else None


def paper_macs(name: str) -> float:
    """The paper's MACs (M) of a preset, from either table.

    Raises:
        KeyError: the preset is in neither paper's table.
    """
    table = CGA_MODELS if name in CGA_MODELS else MIT_MODELS
    return float(table[name]["macs_M"])


TIMM_PARAM_COUNTS_SOURCE = "timm 1.0.31 efficientvit_m0..m5 and efficientvit_b0..b3 (ports of the official code), 1000 classes, counted with torch"
TIMM_PARAM_COUNTS: dict[str, int] = {
    "efficientvit_m0": 2349436,
    "efficientvit_m1": 2980560,
    "efficientvit_m2": 4187554,
    "efficientvit_m3": 6900722,
    "efficientvit_m4": 8804228,
    "efficientvit_m5": 12473772,
    "efficientvit_b0": 3410008,
    "efficientvit_b1": 9102024,
    "efficientvit_b2": 24330712,
    "efficientvit_b3": 48646056,
}
