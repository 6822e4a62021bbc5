"""Multi-fidelity schedules: rules (sorting, hypervolume, brackets), promotion in a real study, exact
continuation, resume after a kill mid-rung, two workers on one journal and on PostgreSQL."""

from __future__ import annotations

import random
import subprocess
import time

import pytest
from optuna.trial import TrialState
from typer.testing import CliRunner

from explore.cli import app
from explore.errors import ExploreError
from explore.evaluate import evaluate_candidate
from explore.arch import ArchConfig
from explore.search import FAULTS_ENV, StudySettings, open_study, run_study, trials_frame
from explore.search.schedule import Schedule, hypervolume_2d, nondominated_order, pareto_mask, promotion_claimed
from tests.study_helpers import (  # noqa: F401 - one_thread and postgres_url are fixtures
    TINY_ARGS,
    explore_command,
    one_thread,
    postgres_url,
    subprocess_env,
    tiny_settings,
    unique_name,
    write_space,
)

SHA = {"schedule": "sha", "epochs": 2.0, "rungs": (0.5, 1.0, 2.0), "eta": 2}
SHA_ARGS = ["--schedule", "sha", "--rungs", "0.5,1,2", "--eta", "2"]


def test_schedule_options_are_checked_with_the_option_named():
    assert Schedule.make("sha", 2.0, None, 2).rungs == (0.5, 1.0, 2.0)
    assert Schedule.make("full", 2.0).rungs == (2.0,) and not Schedule.make("full", 2.0).staged
    cases = [(("warp", 2.0, None, 3), "--schedule"), (("sha", 2.0, (1.0, 0.5, 2.0), 3), "increasing"),
             (("sha", 2.0, (0.5, 1.0), 3), "last rung"), (("sha", 2.0, (2.0,), 3), "at least two"),
             (("sha", 2.0, (0.0, 2.0), 3), "> 0"), (("full", 2.0, (1.0, 2.0), 3), "need --schedule"),
             (("sha", 2.0, None, 1), "--eta")]
    for args, text in cases:
        with pytest.raises(ExploreError, match=text):
            Schedule.make(*args)
    with pytest.raises(ExploreError, match="--schedule.*objective pareto"):
        StudySettings(schedule="sha", objective="top1").validate()


def test_costs_and_hyperband_brackets():
    sha = Schedule.make("sha", 2.0, (0.5, 1.0, 2.0), 2)
    assert sha.expected_epochs() == pytest.approx(0.5 + 0.5 / 2 + 1.0 / 4)
    hb = Schedule.make("hyperband", 2.0, (0.5, 1.0, 2.0), 2)
    weights = hb.brackets()
    assert sum(weights) == pytest.approx(1) and weights[0] > weights[1] >= weights[2]  # most start low
    draws = [hb.bracket_for(3, n) for n in range(2000)]
    assert [draws.count(b) / 2000 for b in range(3)] == pytest.approx(weights, abs=0.04)
    assert draws == [hb.bracket_for(3, n) for n in range(2000)]  # any worker draws the same
    per_bracket = [0.5 + 0.5 / 2 + 1.0 / 4, 1.0 + 1.0 / 2, 2.0]
    assert hb.expected_epochs() == pytest.approx(sum(w * c for w, c in zip(weights, per_bracket)))


def test_nondominated_order_by_front_then_crowding():
    top1 = [90, 80, 70, 85, 60, 75]
    latency = [3.0, 2.0, 1.0, 2.5, 2.0, 1.5]
    order = nondominated_order(top1, latency)
    first_front = {i for i, m in enumerate(pareto_mask(top1, latency)) if m}
    assert first_front == {0, 1, 2, 3, 5}
    assert set(order[:5]) == first_front and order[5] == 4
    assert order[:2] == [0, 2]  # the ends of the front (infinite crowding distance) first


def test_hypervolume_matches_optuna_on_random_fronts():
    from optuna._hypervolume import compute_hypervolume
    import numpy as np

    rng = random.Random(0)
    for _ in range(50):
        n = rng.randint(1, 12)
        top1 = [rng.uniform(20, 90) for _ in range(n)]
        latency = [rng.uniform(0.1, 2.0) for _ in range(n)]
        ours = hypervolume_2d(top1, latency, 10.0, 2.5)
        theirs = compute_hypervolume(np.array([[-a, b] for a, b in zip(top1, latency)]), np.array([-10.0, 2.5]))
        assert ours == pytest.approx(theirs)
    assert hypervolume_2d([], [], 10, 1) == 0 and hypervolume_2d([5.0], [0.5], 10, 1) == 0  # outside the box


def test_of_two_jobs_for_one_promotion_the_later_yields():
    import optuna

    study = optuna.create_study(directions=["maximize", "minimize"])
    study.enqueue_trial({}, user_attrs={"promotes": 3})
    study.enqueue_trial({}, user_attrs={"promotes": 3})
    study.enqueue_trial({}, user_attrs={"promotes": 4})
    first = study.ask()  # pops #0 ...
    assert first.number == 0 and promotion_claimed(study, first, 3) is None  # the earlier one runs
    second = study.ask()
    assert promotion_claimed(study, second, 3) == 0
    study.tell(first, state=optuna.trial.TrialState.FAIL)  # a failed job's retry (a later number) takes over
    assert promotion_claimed(study, second, 3) is None
    third = study.ask()
    assert promotion_claimed(study, third, 4) is None


def _jobs(study):
    return [t for t in study.get_trials() if t.state == TrialState.COMPLETE]


def _check_asha_counts(jobs, first: int, eta: int = 2, rungs: int = 3) -> None:
    """``first`` first jobs; floor(n / eta) of each rung's n promoted, as synchronous successive halving
    would (the cap of next_promotion), and no job continued twice."""
    counts = [sum(1 for t in jobs if t.user_attrs["rung"] == k) for k in range(rungs)]
    assert counts[0] == first
    for k in range(rungs - 1):
        assert counts[k + 1] == counts[k] // eta
    promoted = [t.user_attrs["promotes"] for t in jobs if t.user_attrs.get("promotes") is not None]
    assert len(promoted) == len(set(promoted)) == sum(counts[1:])


def test_promotion_counts_continuation_and_report(tmp_path, one_thread):  # noqa: F811
    settings = tiny_settings(tmp_path, trials=6, train_threads=1, **SHA)  # one thread, as the check below
    summary = run_study(settings)
    study = open_study(str(settings.run_dir))
    jobs = _jobs(study)
    _check_asha_counts(jobs, 6)
    assert summary.architectures == 6
    numbers = {t.number: t for t in jobs}
    for job in jobs:
        history = job.user_attrs["rung_history"]
        assert [h["rung"] for h in history] == list(range(job.user_attrs["rung"] + 1))
        assert history[-1]["top1"] == job.values[0] and history[-1]["trial"] == job.number
        if job.user_attrs.get("promotes") is not None:
            parent = numbers[job.user_attrs["promotes"]]
            assert parent.user_attrs["rung"] == job.user_attrs["rung"] - 1
            assert job.user_attrs["rung_history"][:-1] == parent.user_attrs["rung_history"]
            assert job.params == parent.params and job.user_attrs["arch_trial"] == parent.user_attrs["arch_trial"]
            assert job.user_attrs["latency_cached"]  # the architecture's latency is not measured again
            assert (settings.run_dir / parent.user_attrs["checkpoint"]).is_file()
    # each promotion was among the first floor(n / eta) of its rung when it was made (ASHA)
    for k in range(2):
        promoted = [t for t in jobs if t.user_attrs["rung"] == k + 1]
        for job in promoted:
            before = [t for t in jobs if t.user_attrs["rung"] == k and t.datetime_complete <= job.datetime_start]
            order = nondominated_order([t.values[0] for t in before], [t.values[1] for t in before])
            allowed = {before[i].number for i in order[:len(before) // 2]}
            assert job.user_attrs["promotes"] in allowed
    # the top-rung job equals training its architecture fully in one go, with the same seed
    top = next(t for t in jobs if t.user_attrs["rung"] == 2)
    config = ArchConfig.from_json(top.user_attrs["config"])
    data = settings.load_data(settings.seed)
    whole = evaluate_candidate(config, seed=settings.seed + top.user_attrs["arch_trial"], data=data,
                               recipe=settings.proxy_recipe(), count=False).proxy
    assert whole.top1 == top.values[0] and {t.user_attrs["proxy_threads"] for t in jobs} == {1}
    counts = [sum(1 for t in jobs if t.user_attrs["rung"] == k) for k in range(3)]
    epochs = counts[0] * 0.5 + counts[1] * 0.5 + counts[2] * 1.0
    assert sum(t.user_attrs["train_images"] for t in jobs) == 64 * epochs  # 64 images, epochs of 2 steps
    # the front is that of the top rung; the report says where each architecture stopped
    frame = trials_frame(study)
    assert set(frame.loc[frame["pareto"], "rung"]) == {2}
    from explore.cli.study import write_study_report

    text = write_study_report(str(settings.run_dir), None, tmp_path / "report").markdown.read_text()
    assert "## Schedule `sha`: rungs 0.5, 1, 2 epochs, eta 2" in text
    assert f"0.5 ep {counts[0] - counts[1]}" in text and f"top rung {counts[2]}" in text
    assert f"Training spent: {epochs:.2f} epochs of the 64-image subset, against 12 " in text


def test_a_resumed_study_keeps_its_schedule(tmp_path, one_thread):  # noqa: F811
    settings = tiny_settings(tmp_path, trials=2, **SHA)
    run_study(settings)
    for change, option in [({"eta": 3}, "--eta"), ({"schedule": "full", "rungs": None}, "--schedule"),
                           ({"rungs": (1.0, 2.0)}, "--rungs")]:
        with pytest.raises(ExploreError, match=option):
            run_study(tiny_settings(tmp_path, **{**SHA, "trials": 3, **change}))


def test_kill_mid_rung_then_the_same_command_resumes_from_the_stored_state(tmp_path):
    space = write_space(tmp_path)
    command = explore_command("study", "--space", str(space), "--study-name", "k", "--out", str(tmp_path / "runs"),
                              *TINY_ARGS, "--epochs", "2", *SHA_ARGS, "--trials", "4", "--heartbeat-interval", "1",
                              "--no-report", "--no-remeasure-front")
    # job #2 is the first promotion (two first jobs done, eta 2): killed after its latency, before training
    first = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=tmp_path, check=False,
                           env={**subprocess_env(), FAULTS_ENV: "kill@2"})
    assert first.returncode == -9, first.stdout + first.stderr
    study = open_study(str(tmp_path / "runs" / "k"))
    killed = study.trials[2]
    assert killed.state == TrialState.RUNNING and killed.user_attrs["promotes"] is not None
    time.sleep(3.5)  # its heartbeat goes stale
    second = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=tmp_path, check=False,
                            env=subprocess_env())
    assert second.returncode == 0, second.stdout + second.stderr
    study = open_study(str(tmp_path / "runs" / "k"))
    assert study.trials[2].state == TrialState.FAIL
    retry = next(t for t in study.trials if t.system_attrs.get("failed_trial") == 2)
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["promotes"] == killed.user_attrs["promotes"]
    assert retry.user_attrs["rung"] == 1 and len(retry.user_attrs["rung_history"]) == 2
    _check_asha_counts(_jobs(study), 4)


def _two_workers(tmp_path, storage: str, name: str) -> None:
    space = write_space(tmp_path)
    command = explore_command("study", "--space", str(space), "--study-name", name, "--storage", storage,
                              "--out", str(tmp_path / "runs"), *TINY_ARGS, "--epochs", "2", *SHA_ARGS, "--trials", "8",
                              "--workers", "2", "--heartbeat-interval", "2", "--no-report", "--no-remeasure-front")
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False,
                            env=subprocess_env())
    assert result.returncode == 0, result.stdout + result.stderr
    study = open_study(name, storage)
    jobs = _jobs(study)
    _check_asha_counts(jobs, 8)  # every promotion once, though two workers looked
    assert len({t.user_attrs["worker"] for t in jobs}) == 2
    assert len({t.user_attrs["config_hash"] for t in jobs if t.user_attrs.get("promotes") is None}) == 8


def test_two_workers_on_a_journal_promote_each_job_once(tmp_path):
    _two_workers(tmp_path, str(tmp_path / "shared.log"), "w2")


def test_two_workers_on_postgresql_promote_each_job_once(tmp_path, postgres_url):  # noqa: F811
    _two_workers(tmp_path, postgres_url, unique_name("sha2"))


def test_bad_schedule_options_write_nothing(tmp_path):
    space = write_space(tmp_path)
    for extra, text in [(["--schedule", "sha", "--rungs", "1,0.5"], "--rungs"),
                        (["--schedule", "sha", "--rungs", "0.5,x"], "--rungs"),
                        (["--schedule", "fast"], "--schedule"), (["--rungs", "0.5,1"], "--rungs")]:
        # in process, the same CLI (four subprocesses cost four torch imports)
        result = CliRunner().invoke(app, ["study", "--space", str(space), "--out", str(tmp_path / "runs"),
                                          *TINY_ARGS, *extra])
        assert result.exit_code == 1 and result.stderr.count("error:") == 1 and text in result.stderr, result.output
    assert not (tmp_path / "runs").exists()
