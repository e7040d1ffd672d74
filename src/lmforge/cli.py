"""The ``lmforge`` command line: one table of commands, each a typed function.

Errors a user can act on (``LmforgeError``) print as one paragraph and exit 1; anything else
is an internal error, also without a traceback unless ``--debug``.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from lmforge.core.errors import LmforgeError, Terminated
from lmforge.stages import STAGE_LIST, StageSpec

app = typer.Typer(
    name="lmforge",
    help="The whole large-model lifecycle from one YAML recipe: data, tokenizer, and more.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
recipes_app = typer.Typer(help="Built-in recipes: list them, or print one to copy and edit.")
app.add_typer(recipes_app, name="recipes")

RecipeArg = Annotated[
    str, typer.Argument(help="A recipe YAML file or the name of a built-in recipe.")
]
OutOpt = Annotated[
    str | None,
    typer.Option(
        "--out",
        help="Run directory: a new or empty folder, or an earlier run "
        "(default: runs/<name>-<timestamp>).",
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override a recipe key: --set data.dedup.threshold=0.9 (see `lmforge schema`).",
    ),
]
ForceOpt = Annotated[
    bool, typer.Option("--force", help="Redo stages even if their inputs are unchanged.")
]
ResumeOpt = Annotated[
    bool, typer.Option("--resume", help="Continue from the stage's last checkpoint.")
]


def _echo(text: str = "") -> None:
    typer.echo(text)


def _load(recipe: str, overrides: list[str] | None):
    from lmforge.recipe import load_recipe

    return load_recipe(recipe, overrides or [])


def _print_outcome(outcome) -> None:
    stages = outcome.summary["stages"]
    _echo(f"run directory: {outcome.root}")
    for name, entry in stages.items():
        note = " (unchanged, reused)" if entry.get("cached") else ""
        note = " (from the stage cache)" if entry.get("from_cache") else note
        numbers = [(k, v) for k, v in entry["metrics"].items() if isinstance(v, int | float)]
        shown = ", ".join(f"{k}={_fmt(v)}" for k, v in numbers[:6])  # tables: summary.json
        _echo(f"  {name:<10} {entry['status']:<8} {entry['seconds']:>8.1f} s{note}  {shown}")
    from lmforge.report.headlines import headline_numbers

    report = outcome.root / "report.html"
    if report.exists():
        _echo(f"report: {report}")
    headlines = headline_numbers(outcome.summary)
    if headlines:
        _echo("headline: " + " | ".join(headlines))


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _out_dir(out: str | None) -> Path | None:
    """``--out`` as a path; an empty one is a mistake (it would mean the current folder)."""
    if out is None:
        return None
    if not out.strip():
        raise LmforgeError("--out is empty; give a folder for the run, e.g. --out runs/my-run")
    return Path(out)


def _run(
    recipe: str,
    out: str | None,
    overrides: list[str] | None,
    only,
    resume: bool,
    force: bool,
    use_cache: bool = True,
) -> None:
    from lmforge.runner import run_recipe

    r = _load(recipe, overrides)
    outcome = run_recipe(
        r, out=_out_dir(out), only=only, resume=resume, force=force, use_cache=use_cache
    )
    _print_outcome(outcome)


def _run_through(
    recipe: str,
    out: str | None,
    overrides: list[str] | None,
    stage: str,
    resume: bool,
    force: bool,
) -> None:
    """Run ``stage`` and the configured stages before it (those already done are reused)."""
    from lmforge.runner import run_recipe
    from lmforge.stages import AVAILABLE_STAGES

    r = _load(recipe, overrides)
    if getattr(r, stage) is None:
        raise LmforgeError(f"recipe '{r.name}' has no {stage} section")
    upto = AVAILABLE_STAGES[: AVAILABLE_STAGES.index(stage) + 1]
    only = [s for s in upto if getattr(r, s) is not None]
    _print_outcome(run_recipe(r, out=_out_dir(out), only=only, resume=resume, force=force))


@app.callback()
def _root(
    debug: Annotated[
        bool,
        typer.Option(
            "--debug", help="Show full tracebacks and debug logs (also after the command)."
        ),
    ] = False,
) -> None:
    """lmforge: raw text to a model you can ship, from one recipe."""


@app.command()
def run(
    recipe: Annotated[
        str, typer.Argument(help="Recipe file or built-in recipe name.")
    ] = "quickstart",
    out: OutOpt = None,
    set_: SetOpt = None,
    only: Annotated[
        str | None,
        typer.Option("--only", help="Comma-separated stages to run, e.g. data,tokenizer."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue the newest run of this recipe in runs/ (or --out DIR): completed "
            "stages are reused, an interrupted pretraining continues from its last checkpoint.",
        ),
    ] = False,
    force: ForceOpt = False,
    no_cache: Annotated[
        bool,
        typer.Option(
            "--no-cache",
            help="Neither take stages from the stage cache nor add them to it "
            "(see `lmforge cache`).",
        ),
    ] = False,
) -> None:
    """Run a recipe's stages in order; unchanged stages of an existing run directory are reused."""
    _run(recipe, out, set_, only, resume, force, use_cache=not no_cache)


@app.command()
def validate(recipe: RecipeArg, set_: SetOpt = None) -> None:
    """Check a recipe without running anything: exit 0 when valid, else name the bad field."""
    r = _load(recipe, set_)
    _echo(f"{recipe}: valid (stages: {', '.join(r.stages()) or 'none'})")


def _add_stage_command(spec: StageSpec) -> None:
    """``lmforge <stage> RECIPE``: run the stage and the configured stages before it."""
    help_text = (
        f"{spec.description} Runs the recipe's earlier stages first when they are not done "
        "(those already done are reused)."
    )
    if spec.resumable:

        def command(
            recipe: RecipeArg = "quickstart",
            out: OutOpt = None,
            set_: SetOpt = None,
            resume: ResumeOpt = False,
            force: ForceOpt = False,
        ) -> None:
            _run_through(recipe, out, set_, spec.name, resume, force)

    else:

        def command(
            recipe: RecipeArg = "quickstart",
            out: OutOpt = None,
            set_: SetOpt = None,
            force: ForceOpt = False,
        ) -> None:
            _run_through(recipe, out, set_, spec.name, False, force)

    app.command(name=spec.name, help=help_text)(command)


for _spec in STAGE_LIST:
    if _spec.command:
        _add_stage_command(_spec)


@app.command()
def generate(
    model_dir: Annotated[
        str,
        typer.Argument(
            help="A causal LM: RUN/pretrain/model (clm), an instruction fine-tune "
            "(RUN/finetune/model or merged), a model directory, or smollm2-135m."
        ),
    ],
    prompt: Annotated[str, typer.Option("--prompt", help="Text to continue.")] = "",
    max_new_tokens: Annotated[
        int,
        typer.Option(
            "--max-new-tokens",
            min=1,
            help="Tokens to generate (clipped to the room the prompt leaves in the context).",
        ),
    ] = 100,
    temperature: Annotated[
        float, typer.Option("--temperature", min=0.0, help="0 for greedy decoding.")
    ] = 0.8,
    top_k: Annotated[
        int | None, typer.Option("--top-k", min=1, help="Sample from the k most likely tokens.")
    ] = 50,
    top_p: Annotated[
        float | None, typer.Option("--top-p", min=0.0, max=1.0, help="Nucleus sampling mass.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Sampling seed.")] = 0,
    chat: Annotated[
        bool, typer.Option("--chat", help="Wrap the prompt in the model's chat template.")
    ] = False,
    ban: Annotated[
        list[str] | None,
        typer.Option("--ban", help="A phrase that must never appear (repeatable)."),
    ] = None,
    stop: Annotated[
        list[str] | None, typer.Option("--stop", help="Stop before this text (repeatable).")
    ] = None,
    max_chars: Annotated[
        int | None, typer.Option("--max-chars", min=1, help="Cut the reply at N characters.")
    ] = None,
    regex: Annotated[
        str | None, typer.Option("--regex", help="The reply must match this regex in full.")
    ] = None,
    json_schema: Annotated[
        Path | None,
        typer.Option("--json-schema", help="The reply must be JSON valid for this schema file."),
    ] = None,
    gate: Annotated[
        str | None,
        typer.Option("--gate", help="A classifier directory that gates prompt and reply."),
    ] = None,
    gate_refuse: Annotated[
        list[str] | None,
        typer.Option("--gate-refuse", help="A gate class to refuse (repeatable)."),
    ] = None,
) -> None:
    """Sample a continuation from a causal language model (models that cannot generate text,
    such as masked LMs and classifiers, are refused), optionally under guards."""
    from lmforge.explain.control import guards_from_options
    from lmforge.models.generate import generate_text

    guards = guards_from_options(
        ban=ban,
        stop=stop,
        max_chars=max_chars,
        regex=regex,
        json_schema=json_schema,
        gate=gate,
        gate_refuse=gate_refuse,
        max_new_tokens=max_new_tokens,
    )
    text = generate_text(
        model_dir,
        prompt,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        seed=seed,
        chat=chat,
        guards=guards,
    )
    _echo(prompt + text)


@app.command()
def evaluate(
    model_dir: Annotated[
        Path,
        typer.Argument(
            help="A saved model: RUN/finetune/model (adapter or full), RUN/finetune/merged, or "
            "any transformers model directory."
        ),
    ],
    data: Annotated[Path, typer.Option("--data", help="Test file (csv/jsonl/parquet).")],
    task: Annotated[
        str | None,
        typer.Option(
            "--task", help="The model's task; default: from its lmforge.json (must agree)."
        ),
    ] = None,
    text_column: Annotated[
        str | None, typer.Option("--text-column", help="Default: as trained, else 'text'.")
    ] = None,
    label_column: Annotated[
        str | None, typer.Option("--label-column", help="Default: as trained, else 'label'.")
    ] = None,
    question_column: Annotated[
        str | None,
        typer.Option("--question-column", help="Extractive QA only; default: as trained."),
    ] = None,
    max_length: Annotated[
        int | None,
        typer.Option("--max-length", min=1, help="Default: as trained, else 128."),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", min=1, help="Default: as trained, else 16.")
    ] = None,
    max_examples: Annotated[int | None, typer.Option("--max-examples", min=1)] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Where to write results (default: runs/evaluate-<ts>)."),
    ] = None,
    profile: Annotated[
        bool, typer.Option("--profile/--no-profile", help="Measure latency and peak RSS.")
    ] = True,
    trust_remote_code: Annotated[
        bool,
        typer.Option(
            "--trust-remote-code",
            help="Run the Python code the model directory names in config.json (auto_map); "
            "only for code you have read and trust.",
        ),
    ] = False,
    encoding: Annotated[
        str, typer.Option("--encoding", help="Text encoding of the test file (e.g. gbk).")
    ] = "utf-8",
    device: Annotated[
        str, typer.Option("--device", help="auto (a CUDA GPU if any), cpu or cuda.")
    ] = "auto",
) -> None:
    """Score a saved model on a test file; size, latency (batch 1 and 32) and peak RSS."""
    from lmforge.evaluate.cli import evaluate_command

    summary = evaluate_command(
        model_dir,
        task=task,
        data=data,
        columns=(text_column, label_column, question_column),
        max_length=max_length,
        batch_size=batch_size,
        max_examples=max_examples,
        out=out,
        profile=profile,
        trust_remote_code=trust_remote_code,
        encoding=encoding,
        device=device,
    )
    for key, value in summary["metrics"].items():
        if isinstance(value, int | float):
            _echo(f"  {key:<24} {_fmt(value)}")
    _echo(f"results: {summary['out']}")


@app.command()
def datasets() -> None:
    """Built-in datasets with size, language, task, licence and source."""
    from lmforge.data.builtin import DATASETS

    for name in DATASETS.names():
        d = DATASETS.get(name)
        _echo(
            f"{name}\n  {d.description}\n  size: {d.size} | language: {d.language} | task: {d.task}"
        )
        _echo(f"  licence: {d.licence}\n  source: {d.source}")


@app.command()
def schema(
    section: Annotated[
        str | None, typer.Argument(help="Only keys under this prefix, e.g. data.dedup.")
    ] = None,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Every key as Markdown tables (the reference).")
    ] = False,
) -> None:
    """Every recipe key with its type, default and description (the keys --set takes)."""
    from lmforge.core.schema import describe_fields, fields_markdown
    from lmforge.recipe import Recipe

    if markdown:
        sys.stdout.write(fields_markdown(Recipe))
        return

    rows = [r for r in describe_fields(Recipe) if section is None or r[0].startswith(section)]
    if not rows:
        raise LmforgeError(
            f"no recipe keys start with {section!r}; try `lmforge schema` for all of them"
        )
    for path, type_name, default, description in rows:
        default_text = f" = {default}" if default else ""
        _echo(f"{path}: {type_name}{default_text}\n    {description}")


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (what `lmforge run` printed).")],
) -> None:
    """Rebuild RUN_DIR/report.html: one self-contained page with a section per stage."""
    from lmforge.report import report_command

    _echo(f"report: {report_command(run_dir)}")


@app.command()
def compare(
    run_dirs: Annotated[
        list[Path], typer.Argument(help="Two or more run directories, shown side by side.")
    ],
    out: Annotated[
        Path, typer.Option("--out", help="Where to write the page (a file or a directory).")
    ] = Path("compare.html"),
) -> None:
    """Runs side by side: differing recipe keys, every metric, and overlaid curves (one page)."""
    from lmforge.report import compare_runs

    _echo(f"comparison: {compare_runs(run_dirs, out)}")


@app.command()
def cost(
    params: Annotated[
        str | None, typer.Option("--params", help="Parameters N: 7e9, 6.7B, 125M.")
    ] = None,
    tokens: Annotated[
        str | None,
        typer.Option("--tokens", help="Training tokens D: 2e12, 300B (default: 20·N, Chinchilla)."),
    ] = None,
    hardware: Annotated[
        str, typer.Option("--hardware", help="a100, h100, h200, or cpu (this machine, measured).")
    ] = "a100",
    devices: Annotated[int, typer.Option("--devices", help="Devices training together.")] = 1,
    mfu: Annotated[
        float | None,
        typer.Option("--mfu", help="Model FLOPs utilisation, 0-1 (default: 0.4 GPUs, 0.2 cpu)."),
    ] = None,
    price: Annotated[
        float | None,
        typer.Option("--price", help="USD per device-hour (default: the preset's assumed price)."),
    ] = None,
    seq_len: Annotated[int, typer.Option("--seq-len", help="Training sequence length.")] = 2048,
    layers: Annotated[
        int | None, typer.Option("--layers", help="Layers (default: estimated from N).")
    ] = None,
    hidden: Annotated[
        int | None, typer.Option("--hidden", help="Hidden size (default: estimated from N).")
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option("--model", help="Take N and the shape from a saved model's config.json."),
    ] = None,
    grid_intensity: Annotated[
        float, typer.Option("--grid-intensity", help="Grid carbon intensity, gCO2/kWh.")
    ] = 480.0,
    pue: Annotated[
        float,
        typer.Option("--pue", help="Data-centre power usage effectiveness (1: devices only)."),
    ] = 1.0,
    watts: Annotated[
        float | None, typer.Option("--watts", help="Power per device (default: the preset's TDP).")
    ] = None,
    micro_batch: Annotated[
        int, typer.Option("--micro-batch", help="Sequences per device per step (activations).")
    ] = 1,
    precision: Annotated[
        str, typer.Option("--precision", help="mixed (bf16 + fp32 Adam states) or fp32.")
    ] = "mixed",
    strategy: Annotated[
        list[str] | None,
        typer.Option(
            "--strategy", help="ddp, zero1, zero2, zero3, fsdp (repeatable; default: all)."
        ),
    ] = None,
    batch: Annotated[int, typer.Option("--batch", help="Inference batch (sequences).")] = 32,
    weight_bits: Annotated[
        int, typer.Option("--weight-bits", help="Inference weight precision: 16, 8 or 4.")
    ] = 16,
    json_out: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Plan a training run: FLOPs, time, price, energy, memory per device, serving cost."""
    from lmforge.cost.plan import format_json, format_plan, parse_count, plan_cost

    plan = plan_cost(
        parse_count(params, "--params") if params is not None else None,
        parse_count(tokens, "--tokens") if tokens is not None else None,
        hardware=hardware,
        devices=devices,
        mfu=mfu,
        price=price,
        seq_len=seq_len,
        layers=layers,
        hidden=hidden,
        model=model,
        pue=pue,
        grid=grid_intensity,
        watts=watts,
        micro_batch=micro_batch,
        precision=precision,
        strategies=strategy,
        batch=batch,
        weight_bits=weight_bits,
    )
    _echo(format_json(plan) if json_out else format_plan(plan))


@app.command()
def serve(
    target: Annotated[
        Path, typer.Argument(help="A run directory (serves its best model) or a model directory.")
    ],
    host: Annotated[
        str, typer.Option("--host", help="Interface to bind (loopback only by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535)] = 8000,
    api_key_env: Annotated[
        str | None,
        typer.Option(
            "--api-key-env",
            help="Environment variable holding the API key; then every route but /health "
            "needs 'Authorization: Bearer <key>'.",
        ),
    ] = None,
    max_batch_size: Annotated[
        int, typer.Option("--max-batch-size", min=1, help="Items per forward pass (1: off).")
    ] = 32,
    max_wait_ms: Annotated[
        float, typer.Option("--max-wait-ms", min=0, help="How long a batch waits to fill.")
    ] = 5.0,
    task: Annotated[
        str | None, typer.Option("--task", help="Default: from lmforge.json or config.json.")
    ] = None,
    log_inputs: Annotated[
        bool,
        typer.Option("--log-inputs", help="Store request inputs (default: only their hash)."),
    ] = False,
    feedback_db: Annotated[
        Path | None,
        typer.Option("--feedback-db", help="SQLite file (default: RUN/serve/feedback.sqlite)."),
    ] = None,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", min=1)] = 1_000_000,
    max_texts: Annotated[
        int, typer.Option("--max-texts", min=1, help="Texts, images or prompts per request.")
    ] = 64,
    max_chars: Annotated[
        int, typer.Option("--max-chars", min=1, help="Characters per text.")
    ] = 20_000,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", min=1, help="New tokens per choice, at most.")
    ] = 512,
    max_n: Annotated[int, typer.Option("--max-n", min=1, help="Choices per prompt.")] = 8,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds per request (then 504).")
    ] = 60.0,
    trust_remote_code: Annotated[
        bool, typer.Option("--trust-remote-code", help="Run the model directory's own code.")
    ] = False,
    ban: Annotated[
        list[str] | None,
        typer.Option("--ban", help="Generation: a phrase no reply may contain (repeatable)."),
    ] = None,
    gate: Annotated[
        str | None,
        typer.Option("--gate", help="Generation: a text classifier checking prompt and reply."),
    ] = None,
    gate_refuse: Annotated[
        list[str] | None,
        typer.Option("--gate-refuse", help="A --gate class that is refused (repeatable)."),
    ] = None,
    gate_threshold: Annotated[
        float,
        typer.Option("--gate-threshold", min=0, max=1, help="--gate refuses at this probability."),
    ] = 0.5,
    uncompressed: Annotated[
        bool,
        typer.Option(
            "--uncompressed",
            help="Serve a run's fine-tuned model, not the compress artefact chosen for it.",
        ),
    ] = False,
    precision: Annotated[
        str,
        typer.Option(
            "--precision",
            help="fp32, bf16 or fp16 (autocast), or auto: fp32 or bf16, whichever is measured "
            "faster here.",
        ),
    ] = "fp32",
) -> None:
    """Serve a model over HTTP: task routes, OpenAI-compatible generation, feedback."""
    from lmforge.explain.control import guards_from_options
    from lmforge.serve.app import Limits, Settings
    from lmforge.serve.run import api_key_from_env
    from lmforge.serve.run import serve as run_server

    if precision not in ("fp32", "bf16", "fp16", "auto"):
        raise typer.BadParameter(
            f"{precision!r} is not one of fp32, bf16, fp16, auto", param_hint="--precision"
        )
    limits = Limits(max_body_bytes, max_texts, max_chars, max_tokens, max_n, timeout)
    guards = guards_from_options(
        ban=ban, gate=gate, gate_refuse=gate_refuse, gate_threshold=gate_threshold
    )
    settings = Settings(
        api_key_from_env(api_key_env),
        max_batch_size,
        max_wait_ms,
        log_inputs,
        limits,
        guards,
        precision=precision,
    )
    run_server(
        target,
        host=host,
        port=port,
        settings=settings,
        task=task,
        feedback_db=feedback_db,
        trust_remote_code=trust_remote_code,
        uncompressed=uncompressed,
    )


@app.command()
def explain(
    model_dir: Annotated[
        Path,
        typer.Argument(help="A saved text classifier: RUN/finetune/model or merged, or a copy."),
    ],
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Labelled test file (csv/jsonl/parquet; trained columns)."),
    ] = None,
    text: Annotated[
        list[str] | None,
        typer.Option("--text", help="A text to explain (repeatable); instead of --data."),
    ] = None,
    examples: Annotated[
        int, typer.Option("--examples", min=1, help="Texts whose attention/IG are drawn.")
    ] = 4,
    attack: Annotated[
        list[str] | None,
        typer.Option("--attack", help="Attack to run (repeatable): char, word, zh-char."),
    ] = None,
    max_examples: Annotated[
        int, typer.Option("--max-examples", min=1, help="Examples attacked per method.")
    ] = 50,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Where to write results (default: runs/explain-<ts>)."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of random orders and attacks.")] = 0,
    trust_remote_code: Annotated[
        bool, typer.Option("--trust-remote-code", help="Run the model directory's own code.")
    ] = False,
) -> None:
    """Explain a text classifier: attention maps, Integrated Gradients with AOPC, attacks."""
    from lmforge.explain.cli import explain_command

    summary = explain_command(
        model_dir,
        data=data,
        texts=text,
        examples=examples,
        attacks=attack,
        max_examples=max_examples,
        out=out,
        seed=seed,
        trust_remote_code=trust_remote_code,
    )
    for key, value in summary["metrics"].items():
        if isinstance(value, int | float):
            _echo(f"  {key:<28} {_fmt(value)}")
    for name, m in summary["metrics"].get("attacks", {}).items():
        _echo(
            f"  attack {name:<8} accuracy {_fmt(m['clean_accuracy'])} -> "
            f"{_fmt(m['accuracy_under_attack'])} (success rate {_fmt(m['attack_success_rate'])})"
        )
    _echo(f"results: {summary['out']}")


@app.command()
def improve(
    run_dir: Annotated[Path, typer.Argument(help="A run directory with a fine-tuned model.")],
    feedback_db: Annotated[
        Path | None,
        typer.Option("--feedback-db", help="SQLite file (default: RUN/serve/feedback.sqlite)."),
    ] = None,
) -> None:
    """Re-run the fine-tune on train + served corrections; before/after on the same test split."""
    from lmforge.improve.run import improve as run_improve

    entry = run_improve(run_dir, feedback_db)
    _echo(f"corrections: {entry['corrections']} (skipped: {entry['skipped']})")
    for key, before in entry["before"].items():
        after = entry["after"].get(key)
        shown = _fmt(after) if after is not None else "-"
        _echo(f"  {key:<24} {_fmt(before)} -> {shown}")
    _echo(f"recorded in {run_dir / 'summary.json'} (improve); restart lmforge serve to serve it")


@app.command()
def cache(
    clear: Annotated[
        bool, typer.Option("--clear", help="Remove every entry of the stage cache.")
    ] = False,
) -> None:
    """List the stage cache (data, tokenizer, pretrain outputs shared by runs) with sizes."""
    from lmforge.core.cache import CACHE_ENV, NO_CACHE_ENV, StageCache, cache_dir, disabled_by_env

    root = cache_dir()
    store = StageCache(root, code="")  # listing and clearing need no code fingerprint
    where = f"{root}" + (f" (${CACHE_ENV})" if os.environ.get(CACHE_ENV) else "")
    if clear:
        freed = store.clear()
        _echo(f"stage cache {where}: cleared, {_size(freed)} removed")
        return
    entries = store.entries()
    off = f"; off: ${NO_CACHE_ENV} is set" if disabled_by_env() else ""
    _echo(f"stage cache {where}{off}")
    for e in entries:
        built = f"built in {e.built_seconds:.1f} s by {e.built_in}" if e.built_seconds else ""
        what = "damaged (dropped when next used)" if e.damaged else f"{e.created}  {built}"
        _echo(f"  {e.stage:<10} {e.input_hash[:12]:<12} {_size(e.size):>10}  {what}")
    leftovers = store.leftovers()
    if leftovers:
        _echo(f"  (+ {len(leftovers)} unfinished temporary folders; --clear removes them)")
    total = sum(e.size for e in entries)
    _echo(f"{len(entries)} entries, {_size(total)} (hard links share space with the runs)")


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


@recipes_app.callback(invoke_without_command=True)
def recipes_list(ctx: typer.Context) -> None:
    """List built-in recipes with a one-line description."""
    if ctx.invoked_subcommand is not None:
        return
    from lmforge.recipe import builtin_recipes, recipe_description

    for name, path in builtin_recipes().items():
        _echo(f"{name:<20} {recipe_description(path)}")


@recipes_app.command("show")
def recipes_show(name: Annotated[str, typer.Argument(help="Built-in recipe name.")]) -> None:
    """Print a built-in recipe's YAML, to copy and edit."""
    from lmforge.recipe import builtin_recipes, resolve_recipe_path

    path = builtin_recipes().get(name) or resolve_recipe_path(name)
    sys.stdout.write(path.read_text(encoding="utf-8"))


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is now (it changes under pytest's capture)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:
            self.handleError(record)


def _setup_logging(debug: bool) -> None:
    logger = logging.getLogger("lmforge")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("lmforge %(levelname)s: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.INFO)
    # Libraries' warnings on the root logger, shown once: a root without a handler gets one
    # from logging.basicConfig the first time a library calls logging.warning() (onnxruntime's
    # quantizer does), and from then on every lmforge line would print twice.
    root = logging.getLogger()
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        others = _StderrHandler(logging.WARNING)
        others.addFilter(lambda record: not record.name.startswith("lmforge"))
        others.setFormatter(logging.Formatter("%(name)s %(levelname)s: %(message)s"))
        root.addHandler(others)


def _accept_debug_everywhere(group: Any, debug: Any = None) -> None:
    """Let ``--debug`` follow any command too (``lmforge run x --debug``), as messages advise.

    Each command gets a hidden copy of the root's ``--debug`` flag (typer builds on its own
    copy of click, so the root's option is copied rather than a click one made).
    """
    debug = debug or next(p for p in group.params if p.name == "debug")
    for command in getattr(group, "commands", {}).values():
        if not any(p.name == "debug" for p in command.params):
            flag = copy.copy(debug)
            flag.expose_value, flag.hidden = False, True
            command.params.append(flag)
        _accept_debug_everywhere(command, debug)


def _raise_terminated(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C: the stage is recorded as interrupted, partial work kept."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM ends the process at once
    raise Terminated("stopped by SIGTERM")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code (0 success, 1 error, 2 usage,
    143 stopped by SIGTERM)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in (args[: args.index("--")] if "--" in args else args)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _setup_logging(debug)
    if not debug:  # transformers' per-load progress bars and advice drown lmforge's own output
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    command = typer.main.get_command(app)
    _accept_debug_everywhere(command)
    previous_sigterm = None
    with contextlib.suppress(ValueError):  # only the main thread may set handlers
        previous_sigterm = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        # standalone mode: click itself reports usage errors (exit 2) and Ctrl-C, and always
        # ends in SystemExit; lmforge's own exceptions pass through to be shown below
        command.main(args=args, prog_name="lmforge", standalone_mode=True)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except Terminated:
        typer.echo(
            "lmforge: stopped by SIGTERM; what was running is recorded as interrupted in the "
            "run's summary.json (an interrupted pretraining continues with --resume)",
            err=True,
        )
        return 128 + signal.SIGTERM
    except LmforgeError as e:
        if debug:
            raise
        typer.echo(f"lmforge error: {e}", err=True)
        return 1
    except Exception as e:
        if debug:
            raise
        typer.echo(
            f"lmforge internal error: {type(e).__name__}: {e}\n"
            "This is a bug in lmforge; rerun with --debug for the traceback and report it.",
            err=True,
        )
        return 1
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
    return 0


if __name__ == "__main__":
    sys.exit(main())
