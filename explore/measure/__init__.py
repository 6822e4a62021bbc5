"""Measurement: params, MACs (fvcore + handlers), the latency protocols (the only timer), timing under
the device lock and in interleaved rounds, BN fusion, device naming, peak GPU memory, latency tables.

Follows: the speed protocols of arXiv:2305.07027 §4.1 (GPU throughput, CPU and ONNX latency, BN
fused) and arXiv:2205.14756 §4 (latency vs resolution).
"""

from explore.measure.counting import count_macs, count_model, count_params
from explore.measure.fusion import fuse_batchnorm
from explore.measure.protocols import (
    CALIBRATION_REPEATS,
    CLEAN_RATIO,
    CONTENTION_ATTEMPTS,
    CONTENTION_PAUSE_ENV,
    FIGURES,
    MODES,
    PROTOCOLS,
    REFERENCE_PRESET,
    RUN_SHARE,
    SLOWDOWN_LIMIT,
    SPREAD_LIMIT,
    Contention,
    CpuTiming,
    Measurement,
    Protocol,
    Timed,
    clean_repeats,
    device_name,
    get_protocol,
    library_versions,
    measure,
    measure_batch,
    measure_pair,
    pair_spread,
    reference_group,
    MIN_REFERENCE_REPEATS,
    ReferenceCalibration,
    reference_calibration,
    calibration_file,
    reference_calibrations,
    reference_model,
    reference_workload,
    set_reference_calibration,
    time_cpu,
    time_cpu_paired,
)
from explore.measure.runners import HOST_BOUND_RATIO, GraphCounter, host_bound_rule, peak_memory_mib
from explore.measure.timing import time_model, time_pair, time_rounds

__all__ = [
    "count_macs", "count_model", "count_params", "fuse_batchnorm",
    "CLEAN_RATIO", "CONTENTION_ATTEMPTS", "CONTENTION_PAUSE_ENV", "MODES", "PROTOCOLS", "RUN_SHARE", "Contention",
    "Measurement", "Protocol",
    "Timed", "clean_repeats", "device_name", "get_protocol", "library_versions", "measure", "measure_batch",
    "reference_workload", "time_cpu", "CALIBRATION_REPEATS", "FIGURES", "REFERENCE_PRESET", "SLOWDOWN_LIMIT",
    "SPREAD_LIMIT", "CpuTiming", "ReferenceCalibration", "pair_spread", "reference_calibration", "calibration_file",
    "reference_calibrations", "reference_model", "set_reference_calibration", "time_cpu_paired", "measure_pair", "time_pair", "reference_group", "MIN_REFERENCE_REPEATS",
    "HOST_BOUND_RATIO", "GraphCounter", "host_bound_rule", "peak_memory_mib", "time_model", "time_rounds",
]
