"""The trial record (explore/records.py): one schema, names and units, versions, one writer."""

from __future__ import annotations

import dataclasses

import optuna
import pytest

from explore.errors import ExploreError
from explore.measure import Measurement, Protocol
from explore.records import (CONFIG_HASH, FAMILIES, FIELDS, RECORD_VERSION, RecordWriter, TrialRecord, is_known,
                             promotion_attrs)
from explore.train import ProxyResult, SegmentationResult


def _trial() -> optuna.Trial:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(directions=["maximize", "minimize"]).ask()


def _measurement() -> Measurement:
    return Measurement(protocol={"name": "cpu-latency", "batch_size": 16}, device_name="cpu", batch_size=16,
                       median_ms=8.0, iqr_ms=0.5, cv=0.02, throughput_img_s=2000.0, latency_ms_per_img=0.5,
                       gpu_ms=None, host_ms=None, host_bound=None, oom_retries=0, versions={"torch": "2"})


def test_every_field_has_a_name_a_unit_entry_and_a_doc():
    assert all(f.name == name and f.doc for name, f in FIELDS.items())
    assert FIELDS[CONFIG_HASH].unit == "" and FIELDS["latency_ms_per_img"].unit == "ms/img"
    assert FIELDS["macs"].unit == "count" and FIELDS["proxy_top1"].unit == "%"


def test_the_schema_knows_what_measurement_protocol_and_proxy_results_store():
    """The names the other stages hand over (Measurement.as_attrs, Protocol fields, proxy results)
    are fields of the schema, each listed with its unit: a new field there fails here until it is
    documented."""
    stored = set(_measurement().as_attrs())
    stored |= {f"latency_protocol_{f.name}" for f in dataclasses.fields(Protocol)}
    stored |= {f"proxy_{f.name}" for f in dataclasses.fields(ProxyResult) + dataclasses.fields(SegmentationResult)}
    missing = sorted(name for name in stored if name not in FIELDS and not name.startswith("latency_protocol_"))
    assert not missing, f"add to explore.records.FIELDS: {missing}"
    assert all(is_known(name) for name in stored)


def test_the_writer_stores_known_names_only_and_stamps_the_version():
    trial = _trial()
    record = RecordWriter(trial)
    record.start("host:1")
    record.architecture(config_json="{}", config_hash="abc")
    record.counts(1000, 2000)
    record.measured_latency(_measurement().as_attrs(), cached=False, measured_by=0)
    record.proxy({"top1": 50.0, "steps": 3})
    with pytest.raises(KeyError, match="not a field"):
        record.set("latency", 1.0)  # a typo of a family prefix alone
    with pytest.raises(KeyError, match="not a field"):
        record.set("top1", 1.0)
    with pytest.raises(KeyError, match="latency field"):
        record.latency({"params": 3})
    attrs = trial.user_attrs
    assert attrs["record_version"] == RECORD_VERSION and attrs["worker"] == "host:1"
    assert attrs["latency_source"] == "measured" and attrs["latency_cached"] is False
    assert attrs["latency_protocol_name"] == "cpu-latency" and attrs["proxy_top1"] == 50.0
    assert all(is_known(name) for name in attrs)
    pruned = record.prune("duplicate: same architecture as trial #0")
    assert isinstance(pruned, optuna.TrialPruned) and trial.user_attrs["pruned_reason"].startswith("duplicate")


def test_the_reader_types_the_fields_and_reads_records_without_a_version():
    old = type("Frozen", (), {"user_attrs": {"config_hash": "abc", "params": 1000, "latency_ms_per_img": 0.5,
                                             "rung": 1, "arch_trial": 3, "rung_history": [{"rung": 0}],
                                             "latency_protocol_name": "cpu-latency", "fail_reason": "boom"}})()
    record = TrialRecord.of(old)
    assert record.version == 1  # written before the version was stored
    assert (record.config_hash, record.params, record.latency_ms_per_img) == ("abc", 1000, 0.5)
    assert (record.rung, record.arch_trial, record.rung_history) == (1, 3, [{"rung": 0}])
    assert record.latency_protocol == {"name": "cpu-latency"} and record.reason == "boom"
    assert not record.is_promotion and not record.latency_cached and record.config is None
    assert TrialRecord.of(type("T", (), {"user_attrs": promotion_attrs(4)})()).promotes == 4


def test_a_record_of_a_newer_schema_is_refused_not_misread():
    newer = type("Frozen", (), {"user_attrs": {"record_version": RECORD_VERSION + 1}})()
    with pytest.raises(ExploreError, match="record_version"):
        TrialRecord.of(newer)


def test_families_cover_only_their_prefix():
    assert is_known("latency_protocol_img_width") and is_known("proxy_new_figure")
    assert not is_known("latency_protocol_") and not is_known("proxy_") and not is_known("unknown")
    assert set(FAMILIES) == {"latency_protocol_", "latency_", "proxy_"}
