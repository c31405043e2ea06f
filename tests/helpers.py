"""Helpers the tests share (recipes on the session's tiny model and demo corpus, a free port). Fixtures
stay in conftest.py; this module imports no test module, so nothing imports in a circle."""

from __future__ import annotations

from pathlib import Path

import yaml

from sclcoder.endpoints import free_port  # noqa: F401  (tests import it from here)

# The session demo corpus; recipes that point at it must say so, or ensure_demo refuses the mismatch.
DEMO_CHARTS, DEMO_SEED = 40, 7


def processes_with(marker: str) -> list[int]:
    """Processes whose environment carries `marker` (NAME=value): children keep it, even once reparented to
    init or started in sessions of their own, as launchers start their ranks."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker.encode() in (proc / "environ").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


NOTE_CHARS = 1500
"""Prediction tests read the opening of each demo note (header, history, the first coded mentions): a few
windows each, enough to exercise merging. Whole notes of corpus v5 run to thousands of tokens, and what these
tests check does not need them (the long-note test joins several)."""


def demo_notes(tmp_path: Path, demo_corpus: Path, n: int) -> Path:
    """The first `n` test notes of the demo corpus (cut to NOTE_CHARS) as a notes JSONL."""
    import json

    from sclcoder.data.corpus_folder import read_demo

    docs = read_demo(demo_corpus, split="test")[:n]
    path = tmp_path / "notes.jsonl"
    path.write_text("".join(json.dumps({"id": d.id, "text": d.text[:NOTE_CHARS]}) + "\n" for d in docs))
    return path


def jsonl_rows(path: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines()]


def write_recipe(tmp_path: Path, model: Path, corpus: Path, **data_overrides) -> Path:
    data = {
        "train": [{"demo": {"split": "train", "corpus": str(corpus), "charts": DEMO_CHARTS, "seed": DEMO_SEED}}],
        "validation": [{"demo": {"split": "val", "corpus": str(corpus), "charts": DEMO_CHARTS, "seed": DEMO_SEED}}],
        "span": {"fraction": 1.0, "context": "tokens", "context_size": 16, "negative_rate": 0.5},
        "document": {"fraction": 0.3},
        "synthesis": {
            "offline_fallback": True,
            "rare_threshold": 2,
            "per_code": 2,
            "codes": ["I21.9", "G43.909"],
            "cache_dir": str(tmp_path / "teacher-cache"),
        },
        "seed": 3,
    }
    for key, value in data_overrides.items():
        data[key] = value
    recipe = {
        "model": {"model_name_or_path": str(model)},
        "windows": {"max_tokens": 256, "overlap_tokens": 32},
        "data": data,
        "train": {"output_dir": str(tmp_path / "run")},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def tiny_recipe(
    tmp_path: Path,
    tiny_model: Path,
    demo_corpus: Path,
    name: str = "run",
    *,
    dataset: Path | None = None,
    **train_overrides,
) -> Path:
    """The recipe of the session's tiny adapter, with `train` keys overridden; `dataset`: a dataset this recipe
    already built (the tiny adapter's), read instead of building the same one again."""
    path = write_recipe(
        tmp_path,
        tiny_model,
        demo_corpus,
        span={"fraction": 0.3, "negative_rate": 0.2},
        document={"fraction": 0.1},
        synthesis={"offline_fallback": False},
    )
    recipe = yaml.safe_load(path.read_text())
    recipe["lora"] = {"r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "target_modules": "all-linear"}
    recipe["train"] = {
        "output_dir": str(tmp_path / name),
        "learning_rate": 3e-3,
        "max_steps": 30,
        "per_device_train_batch_size": 4,
        "max_length": 512,
        "logging_steps": 1,
        "save_steps": 1000,
        "warmup_steps": 0,
        "seed": 1,
        **train_overrides,
    }
    recipe["data"]["dataset_dir"] = str(dataset) if dataset else None
    out = tmp_path / f"{name}.yaml"
    out.write_text(yaml.safe_dump(recipe))
    return out


class ScriptedTeacher:
    """A teacher LLM on loopback that answers like a good one would: an OpenAI-compatible server (the edge
    sclcoder talks to) whose answers are written by the test. `answer(schema_name, messages)` gives the JSON
    object for a request; every request is kept in `requests`."""

    def __init__(self, answer) -> None:  # type: ignore[no-untyped-def]
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        teacher = self
        self.requests: list[dict] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _send(self, body: dict) -> None:
                import json

                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._send({"object": "list", "data": [{"id": "teacher", "object": "model", "owned_by": "test"}]})

            def do_POST(self) -> None:
                import json

                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                teacher.requests.append(request)
                name = request["response_format"]["json_schema"]["name"]
                content = json.dumps(answer(name, request["messages"]))
                self._send(
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "created": 0,
                        "model": "teacher",
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                )

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedTeacher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def assert_same_codes(a: list[dict], b: list[dict], tolerance: float = 1e-3) -> None:
    """Two predictions files' codes: the same codes and evidence, and confidences (and supports) that agree to
    `tolerance` (two engines in float32 round differently; the answers must not differ)."""
    scores = ("confidence", "support")

    def fixed(rows: list[dict]) -> list:
        return [[{k: v for k, v in c.items() if k not in scores} for c in r["codes"]] for r in rows]

    assert fixed(a) == fixed(b)
    for ra, rb in zip(a, b, strict=True):
        for ca, cb in zip(ra["codes"], rb["codes"], strict=True):
            for key in scores:
                x, y = ca.get(key), cb.get(key)
                assert (x is None) == (y is None) and (x is None or abs(x - y) < tolerance), (ca["code"], key, x, y)


def headless_chromium():  # type: ignore[no-untyped-def]
    """Debian's chromium under selenium, headless; the test is skipped (with the reason) where it is missing."""
    import shutil

    import pytest

    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip(
            "Debian's chromium and chromium-driver are not installed here (make setup installs them where apt works)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,800",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(driver), options=options)
