"""`sclcoder predict NOTES --ray`: the same prediction spread over a Ray cluster.

Ray Data reads the notes (a JSONL file, a directory of JSONL shards, or Parquet, on any filesystem pyarrow
reads) and streams them through a pool of actors, each holding one engine (one GPU each on GPUs; a set number
of CPUs on CPU) and the same NoteCoder as plain `predict`: windows, grounding, validation and alignment are
unchanged. Each predictions line comes back to the driver, which writes it through the same PredictionsWriter:
durable line by line, every note id exactly once (a batch Ray retries after an actor died is not written
twice), and a rerun skips the notes already written. Ray is imported here only, so the core never needs it.
"""

from __future__ import annotations

import json
import socket
import time
from os import PathLike
from pathlib import Path
from typing import Any

from sclcoder.artifacts import Adapter
from sclcoder.data.documents import Note
from sclcoder.errors import SclError
from sclcoder.files import check_writable
from sclcoder.infer.coder import NoteCoder
from sclcoder.infer.predict import PredictReport
from sclcoder.infer.predictions import PredictionLine, PredictionsWriter
from sclcoder.infer.settings import merges, open_engine
from sclcoder.progress import bar
from sclcoder.recipe import PredictSection

EXTRA = "pip install 'sclcoder[ray]'"


def import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise SclError(f"--ray needs Ray, which is not installed ({EXTRA})") from None
    return ray


def _check_reachable(address: str) -> None:
    """A cluster address that nothing answers at fails here in one line, not after Ray's minute of retries."""
    if address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=3):
            return
    except (OSError, ValueError):
        raise SclError(
            f"no Ray cluster answers at {address}", field="--ray-address", hint="start one with `ray start --head`"
        ) from None


def connect(address: str | None, num_cpus: int | None = None) -> Any:
    """Join the cluster at `address` (or RAY_ADDRESS), or start a local one on this machine."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    if address:
        _check_reachable(address)
    kwargs: dict[str, Any] = {"address": address, "log_to_driver": False, "include_dashboard": False}
    if not address:
        kwargs["num_cpus"] = num_cpus
    ray.init(**kwargs)
    ray.data.DataContext.get_current().enable_progress_bars = False  # ours says notes/s and the ETA
    return ray


def read_notes_dataset(ray: Any, notes: str | PathLike[str]) -> Any:
    """Ray Data over the notes: JSONL (a file or a directory of them) or Parquet, by suffix."""
    path = str(notes)
    local = Path(path)
    if "://" not in path and not local.exists():
        raise SclError("notes not found", path=path)
    parquet = path.endswith(".parquet") or (local.is_dir() and any(local.glob("*.parquet")))
    ds = ray.data.read_parquet(path) if parquet else ray.data.read_json(path, lines=True)
    missing = {"id", "text"} - set(ds.schema().names)
    if missing:
        raise SclError(f"the notes have no {', '.join(sorted(missing))} column", path=path)
    return ds.select_columns(["id", "text"])


class RayCoder:
    """One actor: one engine and the NoteCoder of plain predict; a batch of notes in, predictions lines out."""

    def __init__(self, adapter_dir: str, settings: dict[str, Any], endpoint: str | None, endpoint_model: str | None):
        from sclcoder.artifacts import open_adapter

        adapter = open_adapter(adapter_dir)
        self.settings = PredictSection.model_validate(settings)
        self.coder = NoteCoder(adapter, self.settings)
        self.engine = open_engine(adapter, self.settings, endpoint=endpoint, endpoint_model=endpoint_model)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        notes = []
        for note_id, text in zip(batch["id"], batch["text"], strict=True):
            if not isinstance(text, str):
                raise SclError(f"note {note_id!r}: text must be a string", field="text")
            notes.append(Note(str(note_id), text))
        lines = self.coder.code(notes, self.engine)
        return {"id": [line.id for line in lines], "line": [json.dumps(line.to_json()) for line in lines]}


def _user_error(exc: BaseException) -> SclError | None:
    """The SclError an actor raised, wherever Ray wrapped it (task error, user-code exception, their causes)."""
    seen: set[int] = set()
    todo: list[Any] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, SclError):
            return e
        todo += [getattr(e, "cause", None), e.__cause__, e.__context__]
    return None


def predict_on_ray(
    notes: str | PathLike[str],
    output: str | PathLike[str],
    *,
    adapter: Adapter,
    settings: PredictSection,
    address: str | None = None,
    endpoint: str | None = None,
    endpoint_model: str | None = None,
    overwrite: bool = False,
) -> PredictReport:
    """Predict every note of `notes` into `output` over a Ray cluster (see the module docstring)."""
    started = time.perf_counter()
    ray = connect(address)
    coder = NoteCoder(adapter, settings)  # checks the prompt and the windows before any actor starts
    out = check_writable(output)
    if endpoint is None and merges(settings) and not adapter.merged:
        from sclcoder.infer.merge import merged_model

        merged_model(adapter)  # merged once here: actors starting together would each write the same folder
    gpus = settings.ray_gpus_per_actor
    if gpus is None:
        gpus = float(settings.tensor_parallel_size) if ray.cluster_resources().get("GPU", 0) else 0.0
    with PredictionsWriter(out, coder.identity, overwrite=overwrite, inputs=(notes,)) as writer:
        done = set(writer.done)
        report = PredictReport(out, already_done=len(done))
        # read and filtered to completion before the actors start: actors holding every CPU of a small cluster
        # would otherwise leave the read task none to run on (Ray Data waits for it forever)
        todo = read_notes_dataset(ray, notes).filter(lambda row: str(row["id"]) not in done).materialize()
        remaining = todo.count()
        results = todo.map_batches(
            RayCoder,
            fn_constructor_args=(str(adapter.path), settings.model_dump(), endpoint, endpoint_model),
            batch_size=settings.batch_size,
            concurrency=settings.ray_actors,
            num_cpus=settings.ray_cpus_per_actor,
            num_gpus=gpus,
            # an actor that dies is replaced and its batch runs again; the writer keeps the first copy of a note
            max_restarts=-1,
            max_task_retries=-1,
        )
        with bar("predict (ray)", remaining, unit="notes", extra="{task.fields[rate]}") as progress:
            try:
                for batch in results.iter_batches(batch_size=None, batch_format="default"):
                    for note_id, raw in zip(batch["id"], batch["line"], strict=True):
                        if note_id in writer.done:
                            continue
                        line = PredictionLine.model_validate_json(raw)
                        writer.write(line)
                        report.add(line)
                        for code in line.codes:
                            report.quotes.update(q.match or "unaligned" for q in code.evidence)
                        progress.advance(1)
                    elapsed = time.perf_counter() - started
                    progress.update(rate=f"{report.written / elapsed:.2f} notes/s")
            except Exception as exc:
                problem = _user_error(exc)
                if problem is not None:  # a bad note, said by the actor that read it: one line, as plain predict
                    raise problem.at(path=notes) from None
                raise
        writer.finish()  # the stream ended without an error: every note is in (a repeated id, once)
    report.seconds = time.perf_counter() - started
    return report
