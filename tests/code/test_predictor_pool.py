"""How many predictor actors a batch job asks for: the CPUs free once the stage before has given
its CPUs back (`facelab.predict.free_cpus`). Ray is not started here: its resource view is faked."""

import ray

from facelab import predict


def _cpus_over_time(monkeypatch, values):
    """ray.available_resources() answers `values` in turn (the last one from then on)."""
    answers = iter(values)
    last = {"CPU": values[-1]}
    monkeypatch.setattr(ray, "available_resources", lambda: {"CPU": next(answers, last["CPU"])})


def test_cpus_a_finished_stage_is_still_giving_back_are_waited_for(monkeypatch):
    _cpus_over_time(monkeypatch, [1.5, 1.5, 2.0])
    assert predict.free_cpus(2) == 2


def test_cpus_held_by_others_are_not_waited_for_past_the_settle_time(monkeypatch):
    monkeypatch.setattr(predict, "SETTLE_S", 0.2)
    _cpus_over_time(monkeypatch, [1.0])
    assert predict.free_cpus(4) == 1


def test_without_a_wish_the_free_cpus_now_are_the_answer_and_at_least_one(monkeypatch):
    _cpus_over_time(monkeypatch, [0.5, 2.0])
    assert predict.free_cpus() == 1
