"""Several corpora at once: pooling, leave-one-corpus-out, pooled leave-one-speaker-out, on the
shipped EmoDB and the real EMOVO with eGeMAPS functionals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures_corpora import populate
from typer.testing import CliRunner

from serkit.cli import app
from serkit.corpora import load_corpus
from serkit.corpora.pool import POOLED_COLUMNS, load_pooled
from serkit.errors import ConfigError
from serkit.evaluation.protocols import make_folds
from serkit.evaluation.report import read_predictions
from serkit.experiment import run_experiment
from serkit.recipe import corpus_title, load_recipe, resolve_recipe

REPO = Path(__file__).resolve().parents[1]
SHIPPED_EMODB = REPO / "data" / "emodb"
SHARED_SIX = ["anger", "disgust", "fear", "happiness", "neutral", "sadness"]


@pytest.fixture(scope="module")
def specs(emovo_root) -> list[dict]:
    return [{"name": "emodb", "root": str(SHIPPED_EMODB)}, {"name": "emovo", "root": str(emovo_root)}]


@pytest.fixture(scope="module")
def pooled(specs) -> pd.DataFrame:
    table, labels = load_pooled(specs)
    assert labels == ["anger", "boredom", "disgust", "fear", "happiness", "neutral", "sadness", "surprise"]
    return table


@pytest.fixture(scope="module")
def egemaps(tmp_path_factory) -> dict:
    cache = tmp_path_factory.mktemp("feature-cache")
    return load_recipe(REPO / "recipes" / "egemaps_svm.yaml", overrides=[f"cache_dir={cache}", "n_jobs=2"])


def test_pooling_prefixes_every_id_with_its_corpus(pooled, specs):
    assert list(pooled.columns) == list(POOLED_COLUMNS) and len(pooled) == 535 + 588
    for spec in specs:
        own = load_corpus(spec["name"], spec["root"])
        part = pooled[pooled["corpus"] == spec["name"]].reset_index(drop=True)
        for column in ("utterance_id", "speaker", "session"):
            assert part[column].tolist() == [f"{spec['name']}-{v}" for v in own[column]]
        assert part[["path", "label", "gender"]].equals(own[["path", "label", "gender"]])
    assert pooled["speaker"].nunique() == 16


def test_leave_one_corpus_out_tests_only_the_held_out_corpus(pooled):
    table = pooled[pooled["label"].isin(SHARED_SIX)].reset_index(drop=True)
    protocol = make_folds(table, "leave_one_corpus_out")
    assert [f.name for f in protocol.folds] == ["corpus-emodb", "corpus-emovo"] and protocol.speaker_independent
    for fold, held in zip(protocol.folds, ("emodb", "emovo")):
        test, train = table.iloc[fold.test], table.iloc[fold.train]
        assert set(test["corpus"]) == {held} and len(test) == (table["corpus"] == held).sum()
        assert held not in set(train["corpus"]) and len(train) + len(test) == len(table)
        assert not set(test["speaker"]) & set(train["speaker"])
        assert not set(test["utterance_id"]) & set(train["utterance_id"])
        assert not set(test["path"]) & set(train["path"])


def test_leave_one_corpus_out_refuses_what_it_cannot_evaluate(pooled, specs):
    with pytest.raises(ConfigError, match=r"fold corpus-emodb tests \['boredom'\], which no other corpus has"):
        make_folds(pooled, "leave_one_corpus_out")
    with pytest.raises(ConfigError, match="has no 'corpus' column"):
        make_folds(load_corpus("emodb", SHIPPED_EMODB), "leave_one_corpus_out")
    with pytest.raises(ConfigError, match="needs at least 2 corpus"):
        make_folds(load_pooled(specs[:1])[0], "leave_one_corpus_out")


def test_pooled_loso_keeps_speakers_of_different_corpora_apart(tmp_path):
    # A manifest whose speakers reuse EmoDB's ids: pooled, "03" of each corpus is a fold of its own.
    populate(tmp_path, ["a.wav", "b.wav", "c.wav"])
    (tmp_path / "manifest.csv").write_text("path,label,speaker\na.wav,anger,03\nb.wav,neutral,03\nc.wav,anger,08\n")
    table, _ = load_pooled([{"name": "emodb", "root": str(SHIPPED_EMODB)}, {"name": "manifest", "root": str(tmp_path)}])
    protocol = make_folds(table, "loso")
    names = [f.name for f in protocol.folds]
    assert len(names) == 12 and {"speaker-emodb-03", "speaker-manifest-03", "speaker-emodb-08", "speaker-manifest-08"} <= set(names)
    speakers = table["speaker"].to_numpy()
    for fold in protocol.folds:
        (held,) = set(speakers[fold.test])
        assert held not in set(speakers[fold.train])
        assert set(table["corpus"].iloc[fold.test]) == {held.split("-")[0]}
    assert protocol.speaker_independent


def test_one_corpus_pooled_gives_the_single_corpus_result(egemaps, tmp_path):
    single = resolve_recipe(egemaps, root=SHIPPED_EMODB, overrides=["model.config.C=[0.001, 0.01, 0.1]"])
    alone = resolve_recipe(single, overrides=["corpus=null", f"corpora=[{{name: emodb, root: {SHIPPED_EMODB}}}]"])
    assert alone["corpus"] is None and corpus_title(alone) == "emodb"
    runs = {key: run_experiment(recipe, tmp_path / key, progress=False) for key, recipe in (("single", single), ("pooled", alone))}
    metrics = {key: json.loads((run / "metrics.json").read_text()) for key, run in runs.items()}
    for key in ("ua", "wa", "macro_f1", "labels"):
        assert metrics["pooled"][key] == metrics["single"][key]
    assert [f["ua"] for f in metrics["pooled"]["folds"]] == [f["ua"] for f in metrics["single"]["folds"]]
    assert metrics["pooled"]["per_corpus"][0]["ua"] == metrics["single"]["ua"]
    first, second = (read_predictions(runs[key] / "predictions.csv") for key in ("single", "pooled"))
    assert (second["utterance_id"] == "emodb-" + first["utterance_id"]).all() and set(second["corpus"]) == {"emodb"}
    probabilities = [f"p_{lab}" for lab in metrics["single"]["labels"]]
    assert np.array_equal(first[probabilities].to_numpy(), second[probabilities].to_numpy())


def test_cli_runs_leave_one_corpus_out_with_per_corpus_results(egemaps, emovo_root, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(json.dumps({k: egemaps[k] for k in ("features", "model", "cache_dir", "n_jobs")}))
    args = ["experiment", str(recipe), "--corpus", "emodb,emovo", "--root", str(SHIPPED_EMODB), "--root", str(emovo_root),
            "--set", "protocol=leave_one_corpus_out", "--set", f"labels={SHARED_SIX}", "--out", str(tmp_path / "run"), "-q"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "on emodb+emovo (leave_one_corpus_out" in result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["labels"] == SHARED_SIX and metrics["n_utterances"] == 454 + 504
    pred = read_predictions(tmp_path / "run" / "predictions.csv")
    assert (pred["fold"] == "corpus-" + pred["corpus"]).all()
    assert (pred["utterance_id"].str.split("-").str[0] == pred["corpus"]).all()
    by_fold = {f["fold"]: f for f in metrics["folds"]}
    for entry in metrics["per_corpus"]:
        assert entry["ua"] == by_fold[f"corpus-{entry['corpus']}"]["ua"]
    assert metrics["corpus_mean"]["mean"]["ua"] == pytest.approx(np.mean([f["ua"] for f in metrics["folds"]]))
    n_train = {f["name"]: f["n_train"] for f in metrics["protocol"]["folds"]}
    assert n_train == {"corpus-emodb": 504, "corpus-emovo": 454}
    assert "## Per corpus" in (tmp_path / "run" / "report.md").read_text()
    assert 0.25 < metrics["ua"] < 0.6  # cross-corpus eGeMAPS: above chance (1/6), far below within-corpus


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"corpus": "emodb,emovo", "root": ["a"]}, r"--root given 1 time\(s\) for 2 corpora"),
        ({"corpus": "emodb,"}, "an empty corpus name"),
        ({"corpus": "emodb,emodb", "root": ["a", "b"]}, r"names \['emodb'\] more than once"),
        ({"corpus": "emodb,emovo"}, r"corpora\[1\] 'emovo' needs a root folder"),
        ({"overrides": ["corpus=null", "corpora=[{name: emovo, root: x, colour: 1}]"]}, r"unknown key\(s\) \['colour'\]"),
        ({"overrides": ["corpus=null", "corpora=[]"]}, "corpora must be a non-empty list"),
        ({"overrides": ["labels=[anger, anger]"]}, "list of distinct label names"),
    ],
)
def test_bad_corpus_arguments_are_refused(egemaps, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        resolve_recipe(egemaps, **kwargs)


def test_a_recipe_names_corpus_or_corpora_not_both(egemaps):
    both = {**egemaps, "corpora": [{"name": "emovo", "root": "x"}]}
    with pytest.raises(ConfigError, match=r"give corpus \(one corpus\) or corpora \(several\), not both"):
        resolve_recipe(both)
    assert resolve_recipe({**both, "corpus": None})["corpora"] == [{"name": "emovo", "root": "x", "options": {}}]


def test_corpus_arguments_keep_known_roots_and_round_trip(egemaps):
    pooled = resolve_recipe(egemaps, corpus="emodb,emovo", root=["A", "B"], overrides=["labels={neutral: [neutral, calm]}"])
    assert pooled["corpus"] is None and [c["root"] for c in pooled["corpora"]] == ["A", "B"]
    assert resolve_recipe(pooled) == pooled
    swapped = resolve_recipe(pooled, corpus="emovo,ravdess", root=["B2", "R"])
    assert swapped["corpora"] == [{"name": "emovo", "root": "B2", "options": {}}, {"name": "ravdess", "root": "R", "options": {}}]
    one = resolve_recipe(pooled, corpus="emovo")
    assert one["corpora"] is None and one["corpus"] == {"name": "emovo", "root": "B", "options": {}}
    assert corpus_title(pooled) == "emodb+emovo" and corpus_title(one) == "emovo"


def test_adapt_standardises_each_held_out_corpus_with_its_own_features(egemaps, specs, tmp_path):
    from serkit.experiment import prepare_dataset, run_fold
    from serkit.features.normalise import fit_normaliser
    from serkit.models.base import get_model

    base = resolve_recipe(egemaps, overrides=["corpus=null", f"corpora={json.dumps(specs)}", f"labels={SHARED_SIX}",
                                              "protocol=leave_one_corpus_out", "model.config.C=0.01"])  # fmt: skip
    data = prepare_dataset(base, progress=False)
    fold = make_folds(data.table, "leave_one_corpus_out").folds[0]
    spk = data.speakers
    (key, x), = data.features.items()
    train = fit_normaliser("global", x[fold.train])
    model = get_model("linear_svm", {"C": 0.01}).fit({key: train.transform(x[fold.train])}, data.y[fold.train],
                                                      labels=data.labels, groups=spk[fold.train])  # fmt: skip
    own = fit_normaliser("global", x[fold.test]).transform(x[fold.test])
    for adapt, expected in (("none", train.transform(x[fold.test])), ("batch", own)):
        proba, _ = run_fold(resolve_recipe(base, overrides=[f"adapt={adapt}"]), data, fold)
        np.testing.assert_allclose(proba, model.predict_proba({key: expected}), atol=1e-8)
    proba, _ = run_fold(resolve_recipe(base, overrides=["adapt=speaker"]), data, fold)
    for s in np.unique(spk[fold.test]):
        rows = fold.test[spk[fold.test] == s]
        mine = fit_normaliser("global", x[rows]).transform(x[rows])
        np.testing.assert_allclose(proba[spk[fold.test] == s], model.predict_proba({key: mine}), atol=1e-8)
    with pytest.raises(ConfigError, match="adapt"):
        resolve_recipe(base, overrides=["adapt=speaker", "normalisation=speaker"])
