"""The search: an Optuna multi-objective study over a space (top-1 up, latency down), its settings,
objective, sampler, schedules (successive halving, Hyperband), workers, storages with heartbeats, the
shared latency cache and its results; the front's common seeds and the comparison of schedules.

Follows: the search of efficient architectures under a latency budget that arXiv:2305.07027 §3
motivates (a study's Pareto front of proxy top-1 against measured latency).
"""

from explore.search.cache import CACHE_PREFIX, LatencyCache, LatencyKey
from explore.search.faults import FAULTS_ENV, inject_fault, injected_fault
from explore.search.front_seeds import FRONT_SEED_OFFSET, front_runs, front_table, retrain_front
from explore.search.objective import make_objective, training_threads
from explore.search.results import (
    REMEASURED_PREFIX,
    open_study,
    REMEASURE_ROUNDS,
    remeasure_latencies,
    remeasured_latencies,
    study_meta,
    study_space,
    trial_config,
    trials_frame,
)
from explore.search.run import fail_stale, prepare_study, run_study
from explore.search.sampler import TrialSeededSampler, make_sampler
from explore.search.schedule import SCHEDULES, Schedule, hypervolume_2d, next_promotion, nondominated_order
from explore.search.schedule_comparison import CompareSettings, Comparison, compare_schedules
from explore.search.settings import (
    DEFAULT_LATENCY_MODE,
    OBJECTIVE_MODES,
    OBJECTIVES,
    SAMPLERS,
    StudySettings,
    StudySummary,
)
from explore.search.storage import (
    DEFAULT_HEARTBEAT_S,
    POSTGRES_INSTALL,
    check_driver,
    MAX_RETRY,
    HeartbeatJournalStorage,
    default_storage,
    driver_url,
    is_journal,
    make_storage,
    mask_password,
    scrub,
)

__all__ = [
    "CACHE_PREFIX", "LatencyCache", "LatencyKey", "FAULTS_ENV", "inject_fault", "injected_fault", "FRONT_SEED_OFFSET",
    "front_runs", "front_table", "retrain_front", "CompareSettings", "Comparison", "compare_schedules",
    "make_objective", "training_threads", "REMEASURED_PREFIX", "REMEASURE_ROUNDS", "open_study", "remeasure_latencies",
    "remeasured_latencies", "study_meta", "study_space", "trial_config", "trials_frame", "fail_stale",
    "prepare_study", "run_study", "TrialSeededSampler", "make_sampler", "SCHEDULES", "Schedule", "hypervolume_2d",
    "next_promotion", "nondominated_order", "DEFAULT_LATENCY_MODE", "OBJECTIVE_MODES",
    "OBJECTIVES", "SAMPLERS", "StudySettings", "StudySummary", "DEFAULT_HEARTBEAT_S", "POSTGRES_INSTALL", "check_driver", "MAX_RETRY",
    "HeartbeatJournalStorage", "default_storage", "driver_url", "is_journal", "make_storage", "mask_password", "scrub",
]
