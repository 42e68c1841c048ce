"""The ``serkit`` command line. It parses arguments and prints; the work is done elsewhere."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from serkit.errors import ConfigError, SerkitError

app = typer.Typer(help="serkit: speech emotion recognition, evaluated speaker-independently.", no_args_is_help=True)
corpus_app = typer.Typer(help="Inspect corpora.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")
console = Console(stderr=True)
out = Console(highlight=False, soft_wrap=True, markup=False)  # results print as they are: [brackets] kept

RecipeArg = Annotated[Path, typer.Argument(help="Recipe YAML (see recipes/).", exists=True, dir_okay=False)]
CorpusOpt = Annotated[
    Optional[str],
    typer.Option("--corpus", help="Corpus adapter name, replaces the recipe's; several, comma-separated, are pooled."),
]
RootOpt = Annotated[
    Optional[list[Path]], typer.Option("--root", help="Corpus root folder; repeat it, one per pooled corpus, in order.")
]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe value: dotted.key=value (YAML).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output folder.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
ClusterOpt = Annotated[
    Optional[str],
    typer.Option("--cluster", help="Dask scheduler address or file to run on (default: the recipe's, then $SERKIT_CLUSTER; local: here)."),
]


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
        force=True,
    )


def _fail(exc: Exception) -> None:
    """Print ``error: <message>`` (in the command line's words where the error has them) and exit 2."""
    console.print(f"[bold red]error:[/] {escape(getattr(exc, 'cli_message', None) or str(exc))}", soft_wrap=True)
    raise typer.Exit(2)


@app.command()
def experiment(
    recipe: RecipeArg,
    corpus: CorpusOpt = None,
    root: RootOpt = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run folder (default results/<name>-<corpus>-<time>).")] = None,
    set_: SetOpt = None,
    overwrite: OverwriteOpt = False,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue an interrupted run into --out, reusing the folds it kept in OUT.folds/."),
    ] = False,
    cluster: ClusterOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Evaluate a recipe on its protocol's folds and write a report folder."""
    from serkit.experiment import run_experiment
    from serkit.recipe import corpus_title, load_recipe

    _setup_logging(quiet)
    try:
        resolved = load_recipe(recipe, corpus=corpus, root=root or None, overrides=set_ or ())
        if cluster is not None:
            resolved["cluster"] = cluster
        run_dir = run_experiment(resolved, out_dir, progress=not quiet, overwrite=overwrite, resume=resume)
    except SerkitError as exc:
        _fail(exc)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    fm = metrics["fold_mean"]
    out.print(
        f"{resolved['name']} on {corpus_title(resolved)} ({metrics['protocol']['name']}, "
        f"{resolved['normalisation']} normalisation): UA {metrics['ua']:.3f}  WA {metrics['wa']:.3f}  "
        f"macro-F1 {metrics['macro_f1']:.3f}  (fold mean UA {fm['mean']['ua']:.3f} ± {fm['std']['ua']:.3f})"
    )
    out.print(f"report: {run_dir / 'report.md'}")


@app.command()
def train(
    recipe: RecipeArg,
    out_dir: Annotated[Path, typer.Option("--out", help="Model bundle folder to create.")],
    corpus: CorpusOpt = None,
    root: RootOpt = None,
    set_: SetOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Fit a recipe on all of a corpus and save a self-describing model bundle."""
    from serkit.experiment import train_bundle
    from serkit.recipe import load_recipe

    _setup_logging(quiet)
    try:
        resolved = load_recipe(recipe, corpus=corpus, root=root or None, overrides=set_ or ())
        bundle_dir = train_bundle(resolved, out_dir, progress=not quiet, overwrite=overwrite)
    except SerkitError as exc:
        _fail(exc)
    out.print(f"model bundle: {bundle_dir}")


def _inference_config(window: float, hop: float, per_channel: bool, no_vad: bool, **more: Any):
    from serkit.inference import InferenceConfig

    return InferenceConfig(window=window, hop=hop, per_channel=per_channel, vad=not no_vad, **more)


WindowOpt = Annotated[float, typer.Option("--window", help="Longest stretch of speech labelled at once, seconds.")]
HopOpt = Annotated[float, typer.Option("--hop", help="Step between windows over longer speech, seconds.")]
PerChannelOpt = Annotated[bool, typer.Option("--per-channel", help="Analyse each channel on its own (stereo: left, right).")]
NoVadOpt = Annotated[bool, typer.Option("--no-vad", help="Treat the whole recording as speech (no voice activity detection).")]
MinConfidenceOpt = Annotated[float, typer.Option(
    "--min-confidence", help="Label windows whose highest probability is below this 'uncertain' (0: never).")]
AdaptOpt = Annotated[str, typer.Option(
    "--adapt", help="Standardise features with the training statistics (none), those of all windows of the call "
    "(batch), or per speaker (speaker: --speakers, else per channel).")]
#: ``serkit predict`` and ``serkit serve`` adapt to the batch unless told otherwise: on corpora
#: the shipped model never heard it beat the training statistics on every corpus but EmoDB
#: (leave-one-corpus-out, serkit/default_model/README.md); a call below --min-batch windows keeps
#: the training statistics, so a short clip is labelled as before.
DEFAULT_ADAPT = "batch"
MinBatchOpt = Annotated[int, typer.Option("--min-batch", help="Fewest windows a batch or speaker needs to adapt on.")]


@app.command()
def predict(
    files: Annotated[
        list[Path],
        typer.Argument(help="[MODEL_DIR] then audio files or folders of them (WAV, FLAC, OGG, …); MODEL_DIR is a folder "
                            "holding bundle.json and no audio.", metavar="[MODEL_DIR] FILE...", readable=False),
    ],
    model_dir: Annotated[Optional[Path], typer.Option("--model", help="Model bundle folder (default: the shipped model).")] = None,
    out_dir: Annotated[
        Optional[Path],
        typer.Option("--out", help="Write <name>.csv, <name>.json and <name>.png per file here; names keep the path below "
                                   "the folder the inputs share (a/x.wav and b/x.wav give a/x.* and b/x.*)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    window: WindowOpt = 3.0,
    hop: HopOpt = 1.5,
    per_channel: PerChannelOpt = False,
    no_vad: NoVadOpt = False,
    min_confidence: MinConfidenceOpt = 0.0,
    adapt: AdaptOpt = DEFAULT_ADAPT,
    min_batch: MinBatchOpt = 20,
    speakers_csv: Annotated[Optional[Path], typer.Option(
        "--speakers", help="CSV with columns path and speaker: the groups of --adapt speaker.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Emotion timelines of recordings of any length. Bad files are reported and skipped (exit code 1).

    The model is ``--model DIR``, or a first argument that is unmistakably a model bundle (a
    folder holding ``bundle.json`` and no audio file; one holding both is refused), or else the
    model shipped with serkit. Speech is found with voice activity detection and labelled in
    windows; the overall label is the duration-weighted mean over the speech. A bundle trained
    with speaker normalisation standardises the windows of each channel of a recording together.
    An output that cannot be written (not a folder, no permission, disk full) stops the batch
    (exit code 2); each file's CSV, JSON and PNG are written together or not at all.
    """
    from rich.progress import Progress

    from serkit.batch import audio_files, label_files, model_argument
    from serkit.inference import Recognizer

    _setup_logging(True)
    try:
        model_dir, files = model_argument(files, model_dir)
        config = _inference_config(window, hop, per_channel, no_vad, min_confidence=min_confidence,
                                   adapt=adapt, min_batch=min_batch)  # fmt: skip
        recognizer = Recognizer(model_dir, config)
        paths, errors = audio_files(files)
        speaker_of = _speaker_table(speakers_csv, [path for path, _ in paths]) if speakers_csv is not None else None
    except SerkitError as exc:
        _fail(exc)
    with Progress(console=console, transient=True, disable=quiet or len(paths) < 2) as progress:
        task = progress.add_task("reading" if adapt != "none" else "recognising", total=len(paths))
        try:
            results, failed, notes = label_files(recognizer, paths, out_dir, speakers=speaker_of,
                                                 advance=lambda: progress.advance(task))
        except SerkitError as exc:
            _fail(exc)
    errors.update(failed)
    for note in notes:
        console.print(f"[yellow]adaptation[/] {escape(note)}", soft_wrap=True)
    labels = recognizer.labels
    if as_json:
        rows = results + [{"file": str(path), "error": message} for path, message in errors.items()]
        out.print(json.dumps(rows, indent=2, allow_nan=False))
    else:
        table = Table("file", "channel", "speech s", "segments", "label", *labels)
        for row in results:
            for channel, overall in row["per_channel"].items():
                n = sum(seg["channel"] == channel for seg in row["segments"])
                if overall is None:
                    table.add_row(row["file"], channel, "0.0", "0", "(no speech)", *("" for _ in labels))
                else:
                    table.add_row(row["file"], channel, f"{overall['speech_s']:.1f}", str(n), overall["label"],
                                  *(f"{overall['probabilities'][lab]:.2f}" for lab in labels))
        if table.row_count:
            out.print(table)
        for path, message in errors.items():
            console.print(f"[red]skipped[/] {escape(str(path))}: {escape(message)}", soft_wrap=True)
        if out_dir is not None and results:
            out.print(f"timelines: {out_dir}")
    if errors:
        raise typer.Exit(1)


def _speaker_table(csv: Path, paths: list[Path]) -> dict[Path, str]:
    """``{audio path: speaker}`` from a CSV with columns ``path`` and ``speaker`` (paths
    relative to the CSV's folder or absolute).

    Raises:
        ConfigError: unreadable CSV, missing columns, or an audio file it does not list.
    """
    import pandas as pd

    try:
        table = pd.read_csv(csv, dtype=str)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{csv}: cannot read the speaker table ({exc})") from None
    if not {"path", "speaker"} <= set(table.columns):
        raise ConfigError(f"{csv}: needs columns path and speaker, has {', '.join(table.columns)}")
    known = {(csv.parent / p).resolve(): str(s) for p, s in zip(table["path"], table["speaker"])}
    missing = [p for p in paths if p.resolve() not in known]
    if missing:
        raise ConfigError(f"{csv}: no speaker for {missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    return {p: known[p.resolve()] for p in paths}


@app.command()
def serve(
    model_dir: Annotated[Optional[Path], typer.Argument(help="Model bundle folder (default: the shipped model).")] = None,
    host: Annotated[str, typer.Option("--host", help="Address to bind; 0.0.0.0 exposes the service to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="Largest accepted upload in MiB.")] = 20.0,
    max_duration: Annotated[float, typer.Option("--max-duration", help="Longest accepted recording in seconds.")] = 600.0,
    workers: Annotated[int, typer.Option("--workers", help="Recognitions running at once (threads).")] = 4,
    token: Annotated[
        Optional[str],
        typer.Option("--token", envvar="SERKIT_TOKEN", show_envvar=True,
                     help="Require 'Authorization: Bearer TOKEN' on the API (prefer the environment variable: "
                          "a command line is visible to other users)."),
    ] = None,
    window: WindowOpt = 3.0,
    hop: HopOpt = 1.5,
) -> None:
    """Serve the HTTP API (POST /v1/recognize, GET /healthz, /docs) and the web page at /.

    Limits, memory and running behind a reverse proxy: docs/security.md.
    """
    try:
        from serkit.service import ServiceLimits
        from serkit.service import serve as run_service
    except ImportError as exc:
        _fail(ImportError(f"`serkit serve` needs the serve extra: pip install 'serkit[serve]' ({exc})"))

    try:
        limits = ServiceLimits(int(max_upload_mb * 1024 * 1024), max_duration, workers)
        config = _inference_config(window, hop, False, False, adapt=DEFAULT_ADAPT)
        _setup_logging(False)  # the service warns through logging on a non-loopback bind without a token
        console.print(f"serkit: serving on http://{escape(host)}:{port}/ (API docs at /docs)")
        run_service(model_dir, host=host, port=port, limits=limits, config=config, token=token)
    except SerkitError as exc:
        _fail(exc)


@app.command()
def export(
    model_dir: Annotated[Path, typer.Argument(help="Model bundle folder of a neural or linear model.")],
    onnx: Annotated[bool, typer.Option("--onnx", help="Export the network to ONNX (the only format so far).")] = False,
    out_file: Annotated[Optional[Path], typer.Option("--out", help="ONNX file to write (default MODEL_DIR.onnx, beside the bundle).")] = None,
    exporter: Annotated[str, typer.Option("--exporter", help="auto (torch.export, else TorchScript), dynamo or torchscript.")] = "auto",
) -> None:
    """Export a bundle to ONNX and check it against PyTorch with onnxruntime: a neural model's network, or a
    linear model with its standardisation and temperature (and, for Whisper statistics, the encoder blocks)."""
    from serkit.export import export_onnx

    if not onnx:
        _fail(ValueError("choose an export format: --onnx"))
    try:
        report = export_onnx(model_dir, out_file, exporter=exporter)
    except SerkitError as exc:
        _fail(exc)
    except ImportError as exc:
        _fail(ImportError(f"`serkit export` needs the export extra: pip install 'serkit[export]' ({exc})"))
    out.print(f"ONNX model: {report['path']} ({report['exporter']} exporter; inputs {', '.join(report['inputs'])}; "
              f"max |p_onnx - p_torch| = {report['max_abs_diff']:.2e})")


@corpus_app.command("info")
def corpus_info(
    name: Annotated[str, typer.Argument(help="Corpus adapter name (see `serkit list`).")],
    root: Annotated[Path, typer.Option("--root", help="Corpus root folder.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    option: Annotated[Optional[list[str]], typer.Option("--option", help="Adapter option key=value (YAML).")] = None,
) -> None:
    """Utterances per speaker and per label of a corpus folder."""
    import yaml

    from serkit.corpora import corpus_summary, load_corpus

    options = {}
    for item in option or []:
        key, _, value = item.partition("=")
        options[key] = yaml.safe_load(value)
    try:
        summary = corpus_summary(load_corpus(name, root, **options))
    except SerkitError as exc:
        _fail(exc)
    if as_json:
        out.print(json.dumps(summary, indent=2))
        return
    out.print(
        f"{name}: {summary['utterances']} utterances, {summary['speakers']} speakers, "
        f"{summary['duration_s'] / 60:.1f} min"
    )
    labels = list(summary["per_label"])
    table = Table("speaker", *labels, "total")
    for speaker, counts in summary["per_speaker_label"].items():
        table.add_row(speaker, *(str(counts.get(lab, 0)) for lab in labels), str(summary["per_speaker"][speaker]))
    table.add_row("total", *(str(summary["per_label"][lab]) for lab in labels), str(summary["utterances"]), style="bold")
    out.print(table)


@app.command("list")
def list_registries(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Where each comes from (module, package).")] = False,
) -> None:
    """List the registered corpora, feature extractors, derived features and models (plug-ins included)."""
    from serkit.corpora.base import CORPORA
    from serkit.derived.base import DERIVED
    from serkit.features.base import EXTRACTORS
    from serkit.models.base import MODELS

    for label, registry in (("corpora", CORPORA), ("features", EXTRACTORS), ("derived", DERIVED), ("models", MODELS)):
        if not verbose:
            out.print(f"{label + ':':9} " + ", ".join(registry.names()))
            continue
        out.print(f"{label}:")
        for name, cls in registry.load_all().items():
            kind = (" (fitted)" if cls.fitted else " (fixed)") if registry is DERIVED else ""
            out.print(f"  {name}{kind}: {registry.source(name)}")


RunsArg = Annotated[list[Path], typer.Argument(help="Run folders (a glob's expansion is fine).", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of Markdown.")]


@app.command()
def compare(
    runs: Annotated[
        Optional[list[Path]],
        typer.Argument(
            help="RUN_A RUN_B, or the runs of two systems (split by config; A is the first run's system).",
            metavar="RUN",
            show_default=False,
        ),
    ] = None,
    a: Annotated[Optional[list[Path]], typer.Option("--a", help="A run of system A (repeat for each seed).")] = None,
    b: Annotated[Optional[list[Path]], typer.Option("--b", help="A run of system B (repeat for each seed).")] = None,
    metric: Annotated[str, typer.Option("--metric", help="Fold metric to pair: ua, wa or macro_f1.")] = "ua",
    as_json: JsonOpt = False,
) -> None:
    """Paired per-fold comparison of system A against B: folds paired by (seed from config.yaml, fold name).

    Prints the pair count, how often A is above / equal to / below B, the mean paired difference
    with its standard error, a two-sided Wilcoxon signed-rank test and a two-sided sign test.
    """
    from serkit.evaluation.compare import compare_runs, render_comparison, two_systems

    try:
        if a or b:
            if runs:
                raise typer.BadParameter("give runs either as RUN... or each with its own --a / --b (one per run), not both")
            system_a, system_b = a or [], b or []
        else:
            system_a, system_b = two_systems(runs or [])
        result = compare_runs(system_a, system_b, metric=metric)
    except SerkitError as exc:
        _fail(exc)
    typer.echo(json.dumps(result.to_dict(), indent=2) if as_json else render_comparison(result).rstrip("\n"))


@app.command()
def table(
    runs: RunsArg,
    per_run: Annotated[bool, typer.Option("--per-run", help="One row per run instead of one per config over seeds.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """A Markdown table of run folders: one row per config, mean ± std over its seeds, and cost.

    Paths without a metrics.json (unfinished runs, RUN.folds/) are named on stderr and skipped.
    """
    from serkit.evaluation.compare import find_runs, render_table, results_table

    found, skipped = find_runs(runs)
    for path, reason in skipped:
        typer.echo(f"skipped {path}: {reason}", err=True)
    try:
        rows = results_table(found, per_run=per_run)
    except SerkitError as exc:
        _fail(exc)
    typer.echo(json.dumps([row.to_dict() for row in rows], indent=2) if as_json else render_table(rows).rstrip("\n"))


@app.command()
def sweep(
    sweep_file: Annotated[Path, typer.Argument(help="Sweep YAML (see sweeps/).", exists=True, dir_okay=False)],
    set_: SetOpt = None,
    only: Annotated[Optional[list[str]], typer.Option("--only", help="Run only this run (name or shell pattern); repeat.")] = None,
    cluster: ClusterOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Run a grid of recipes x corpora x --set values x seeds and end with one table (mean ± std over
    seeds, paired per fold with the baseline). Complete runs are skipped, interrupted ones resumed;
    a failed run is reported (exit code 1) and the others go on."""
    from serkit.sweep import load_sweep, run_sweep

    _setup_logging(quiet)
    try:
        loaded = load_sweep(sweep_file, overrides=set_ or ())
        report = run_sweep(loaded, only=only or (), cluster=cluster, progress=not quiet)
    except SerkitError as exc:
        _fail(exc)
    for outcome in report.outcomes:
        console.print(f"{outcome.run.name}: {outcome.status}" + (f" ({outcome.message})" if outcome.message else ""))
    if report.table is None:
        console.print(f"{len(report.missing)} of {len(loaded.runs)} runs are not complete; the table comes when they are")
    else:
        typer.echo(report.table.rstrip("\n"))
        console.print(f"table: {report.files[0]}")
    if report.failed:
        raise typer.Exit(1)
