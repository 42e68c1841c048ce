"""The ``serkit`` command line. It parses arguments and prints; the work is done elsewhere."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.table import Table

from serkit.errors import AudioError, SerkitError

app = typer.Typer(help="serkit: speech emotion recognition, evaluated speaker-independently.", no_args_is_help=True)
corpus_app = typer.Typer(help="Inspect corpora.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")
console = Console(stderr=True)
out = Console(highlight=False, soft_wrap=True)

RecipeArg = Annotated[Path, typer.Argument(help="Recipe YAML (see recipes/).", exists=True, dir_okay=False)]
CorpusOpt = Annotated[Optional[str], typer.Option("--corpus", help="Corpus adapter name, replaces the recipe's.")]
RootOpt = Annotated[Optional[Path], typer.Option("--root", help="Corpus root folder.")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a recipe value: dotted.key=value (YAML).")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output folder.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
        force=True,
    )


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}")
    raise typer.Exit(2)


@app.command()
def experiment(
    recipe: RecipeArg,
    corpus: CorpusOpt = None,
    root: RootOpt = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Run folder (default results/<name>-<corpus>-<time>).")] = None,
    set_: SetOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Evaluate a recipe on its protocol's folds and write a report folder."""
    from serkit.experiment import run_experiment
    from serkit.recipe import load_recipe

    _setup_logging(quiet)
    try:
        resolved = load_recipe(recipe, corpus=corpus, root=root, overrides=set_ or ())
        run_dir = run_experiment(resolved, out_dir, progress=not quiet, overwrite=overwrite)
    except SerkitError as exc:
        _fail(exc)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    fm = metrics["fold_mean"]
    out.print(
        f"{resolved['name']} on {resolved['corpus']['name']} ({metrics['protocol']['name']}, "
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
        resolved = load_recipe(recipe, corpus=corpus, root=root, overrides=set_ or ())
        bundle_dir = train_bundle(resolved, out_dir, progress=not quiet, overwrite=overwrite)
    except SerkitError as exc:
        _fail(exc)
    out.print(f"model bundle: {bundle_dir}")


@app.command()
def predict(
    model_dir: Annotated[Path, typer.Argument(help="Model bundle folder (from `serkit train`).")],
    files: Annotated[list[Path], typer.Argument(help="Audio files (WAV, FLAC, …).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Label recordings with a trained model. Bad files are reported and skipped (exit code 1).

    A bundle trained with speaker normalisation standardises the given files together: pass
    recordings of one speaker, at least two of them.
    """
    from serkit.audio import load_audio
    from serkit.bundle import load_bundle

    _setup_logging(True)
    try:
        bundle = load_bundle(model_dir)
    except SerkitError as exc:
        _fail(exc)
    good: list[tuple[Path, dict]] = []
    errors: dict[Path, str] = {}
    for path in files:
        try:
            good.append((path, bundle.features(load_audio(path))))
        except AudioError as exc:
            errors[path] = exc.problem
    results = []
    if good:
        try:
            proba = bundle.predict([feats for _, feats in good])
        except SerkitError as exc:
            _fail(exc)
        for (path, _), p in zip(good, proba):
            results.append({"file": str(path), "label": bundle.labels[int(p.argmax())],
                            "probabilities": {lab: round(float(v), 4) for lab, v in zip(bundle.labels, p)}})
    results.extend({"file": str(path), "error": message} for path, message in errors.items())
    if as_json:
        out.print(json.dumps(results, indent=2))
    else:
        table = Table("file", "label", *bundle.labels)
        for row in results:
            if "error" not in row:
                table.add_row(row["file"], row["label"], *(f"{v:.2f}" for v in row["probabilities"].values()))
        if table.row_count:
            out.print(table)
        for path, message in errors.items():
            console.print(f"[red]skipped[/] {path}: {message}")
    if errors:
        raise typer.Exit(1)


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
def list_registries() -> None:
    """List the registered corpora, feature extractors and models."""
    from serkit.corpora import list_corpora
    from serkit.features import list_extractors
    from serkit.models.base import list_models

    out.print("corpora:  " + ", ".join(list_corpora()))
    out.print("features: " + ", ".join(list_extractors()))
    out.print("models:   " + ", ".join(list_models()))
