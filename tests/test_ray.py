"""`predict --ray` (#28): a local Ray cluster started by the test, two CPU actors, the tiny model behind the session's
vLLM server: the same predictions as plain predict, note by note, with an actor killed mid-run."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from sclcoder.artifacts import open_adapter
from sclcoder.errors import SclError
from sclcoder.infer.predict import predict
from sclcoder.infer.settings import predict_settings
from tests.helpers import assert_same_codes, demo_notes, jsonl_rows

SETTINGS = ["max_model_len=2048", "max_new_tokens=160", "merge_adapter=never"]


def _ray_workers() -> list[int]:
    """Ray Data's actor processes (their process title names the map worker)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if b"MapWorker" in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def test_ray_gives_plain_predicts_lines_and_an_actor_killed_mid_run_loses_nothing(
    tmp_path, demo_corpus, tiny_adapter, vllm_server
) -> None:
    import ray

    from sclcoder.infer.distributed import predict_on_ray

    adapter = open_adapter(tiny_adapter)
    notes = demo_notes(tmp_path, demo_corpus, 3)
    endpoint = {"endpoint": vllm_server.base_url, "endpoint_model": "adapter"}
    plain = tmp_path / "plain.jsonl"
    predict(notes, plain, adapter=adapter, settings=predict_settings(adapter, None, SETTINGS), **endpoint)

    out = tmp_path / "ray.jsonl"
    killed: list[int] = []

    def kill_one_actor_after_the_first_line() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            workers = _ray_workers()
            if len(workers) == 2 and out.exists() and out.read_text().count("\n") >= 1:
                os.kill(workers[0], signal.SIGKILL)
                killed.append(workers[0])
            time.sleep(0.1)

    killer = threading.Thread(target=kill_one_actor_after_the_first_line, daemon=True)
    killer.start()
    settings = predict_settings(adapter, None, [*SETTINGS, "batch_size=1", "ray_actors=2"])
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        report = predict_on_ray(notes, out, adapter=adapter, settings=settings, **endpoint)
        killer.join()
        assert killed, "no actor was killed: the test did not test a fault"
        ids = [r["id"] for r in jsonl_rows(out)]
        assert sorted(ids) == sorted(r["id"] for r in jsonl_rows(plain)) and len(ids) == len(set(ids)) == 3
        assert report.written == 3
        by_id = {r["id"]: r for r in jsonl_rows(out)}
        ordered = [by_id[r["id"]] for r in jsonl_rows(plain)]
        # the tiny adapter's answers run until max_new_tokens cuts them: what each window wrote is compared through
        # what the checks said of it (where its JSON broke, how long it ran), with the token counts and the codes
        assert_same_codes(jsonl_rows(plain), ordered)
        keep = ("windows", "errors", "usage")
        assert [{k: r[k] for k in keep} for r in jsonl_rows(plain)] == [{k: r[k] for k in keep} for r in ordered]
        assert all(r["usage"]["completion_tokens"] > 100 and r["errors"] for r in ordered)  # not empty answers
        # the driver started again: every note is there, nothing is decoded or written twice
        again = predict_on_ray(notes, out, adapter=adapter, settings=settings, **endpoint)
        assert (again.written, again.already_done, len(jsonl_rows(out))) == (0, 3, 3)
    finally:
        ray.shutdown()


def test_a_bad_address_and_a_missing_extra_are_one_line_each(monkeypatch) -> None:
    from sclcoder.infer import distributed

    with pytest.raises(SclError, match=r"no Ray cluster answers at 127\.0\.0\.1:1"):
        distributed.connect("127.0.0.1:1")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    with pytest.raises(SclError, match=r"sclcoder\[ray\]"):
        distributed.connect(None)
