"""Long-recording recognition: voice activity, windows, timelines on real EmoDB speech, outputs, CLI."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from serkit.audio import Audio, load_audio
from serkit.cli import app
from serkit.errors import BundleError, ConfigError
from serkit.inference import (
    DEFAULT_MODEL,
    InferenceConfig,
    Recognizer,
    SileroVAD,
    plot_timeline,
    timeline_segments,
    window_spans,
)

RATE = 16000
# Four EmoDB utterances of four speakers and four emotions, each one stretch of speech.
UTTERANCES = ("03a01Wa.wav", "08a02Fe.wav", "11a02Tc.wav", "16b10Lb.wav")
GAP = 1.5  # seconds of silence between them


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer()


@pytest.fixture(scope="module")
def concatenation(emodb_root) -> tuple[Audio, list[tuple[float, float]]]:
    """The utterances joined with GAP seconds of silence before, between and after them."""
    gap = np.zeros(int(GAP * RATE), dtype=np.float32)
    parts, spans, t = [gap], [], GAP
    for name in UTTERANCES:
        x = load_audio(emodb_root / "wav" / name).samples[0]
        parts += [x, gap]
        spans.append((t, t + len(x) / RATE))
        t += len(x) / RATE + GAP
    return Audio(np.concatenate(parts)[np.newaxis], RATE, "concatenation.wav"), spans


# --------------------------------------------------------------------------- pure functions


@pytest.mark.parametrize("start,end", [(0.0, 1.0), (2.0, 5.0), (0.3, 7.71), (1.0, 10.0), (0.0, 31.3)])
def test_windows_cover_the_segment_with_bounded_overlap(start, end):
    window, hop = 3.0, 1.5
    spans = window_spans(start, end, window, hop)
    assert spans[0][0] == start and spans[-1][1] == pytest.approx(end)
    if end - start <= window:
        assert spans == [(start, end)]
        return
    lengths = np.array([b - a for a, b in spans])
    assert np.allclose(lengths, window)
    starts = np.array([a for a, _ in spans])
    steps = np.diff(starts)
    assert np.all(steps > 0) and np.all(steps <= hop + 1e-9)  # overlap >= window - hop: no gap
    assert all(a >= start - 1e-9 and b <= end + 1e-9 for a, b in spans)


def test_window_spans_refuse_nonsense():
    with pytest.raises(ConfigError):
        window_spans(2.0, 2.0, 3.0, 1.5)
    with pytest.raises(ConfigError):
        window_spans(0.0, 5.0, 1.0, 2.0)


@pytest.mark.parametrize("bad", [{"hop": 4.0}, {"window": 0.0}, {"vad_threshold": 1.0}, {"min_silence": -1.0},
                                 {"window": float("nan")}, {"hop": True}, {"min_confidence": 1.0},
                                 {"min_confidence": -0.1}, {"adapt": "corpus"}, {"min_batch": 1}])
def test_inference_config_is_validated(bad):
    with pytest.raises(ConfigError):
        InferenceConfig(**bad)


def _windows(rows, labels=("a", "b")):
    return pd.DataFrame(
        [{"channel": "mix", "segment": s, "start": a, "end": b, **{f"p_{lab}": p for lab, p in zip(labels, probs)}}
         for s, a, b, probs in rows]
    )


def test_timeline_pieces_meet_in_the_middle_of_overlaps_and_merge_within_a_segment():
    windows = _windows([
        (0, 0.0, 3.0, (0.9, 0.1)),
        (0, 1.5, 4.5, (0.7, 0.3)),
        (0, 3.0, 6.0, (0.2, 0.8)),
        (1, 8.0, 9.0, (0.2, 0.8)),  # same label as the piece before it, but after a pause
    ])
    merged = timeline_segments(windows, ["a", "b"])
    assert merged[["segment", "label"]].values.tolist() == [[0, "a"], [0, "b"], [1, "b"]]
    # Pieces: [0, 2.25] (0.9), [2.25, 3.75] (0.7), [3.75, 6] (0.2); the first two merge.
    assert merged["start"].tolist() == [0.0, 3.75, 8.0]
    assert merged["end"].tolist() == [3.75, 6.0, 9.0]
    assert merged["p_a"].iloc[0] == pytest.approx((0.9 * 2.25 + 0.7 * 1.5) / 3.75)
    assert np.allclose(merged[["p_a", "p_b"]].sum(axis=1), 1.0)
    unmerged = timeline_segments(windows, ["a", "b"], merge=False)
    assert len(unmerged) == 4 and unmerged["start"].tolist() == [0.0, 2.25, 3.75, 8.0]


def test_pieces_below_the_confidence_threshold_are_uncertain_and_merge():
    windows = _windows([
        (0, 0.0, 3.0, (0.9, 0.1)),
        (0, 1.5, 4.5, (0.6, 0.4)),
        (0, 3.0, 6.0, (0.45, 0.55)),
    ])
    timeline = timeline_segments(windows, ["a", "b"], min_confidence=0.7)
    assert timeline["label"].tolist() == ["a", "uncertain"]
    assert timeline["start"].tolist() == [0.0, 2.25]  # the two unsure pieces merged
    assert timeline["p_a"].iloc[1] == pytest.approx((0.6 * 1.5 + 0.45 * 2.25) / 3.75)  # probabilities kept


# --------------------------------------------------------------------------- voice activity


def test_vad_finds_no_speech_in_silence_and_noise():
    vad = SileroVAD()
    rng = np.random.default_rng(0)
    silence = Audio(np.zeros((1, 3 * RATE), dtype=np.float32), RATE)
    hiss = Audio((0.01 * rng.standard_normal((1, 3 * RATE))).astype(np.float32), RATE)
    assert vad.speech_segments(silence, InferenceConfig()) == []
    assert vad.speech_segments(hiss, InferenceConfig()) == []


def test_vad_weights_are_checked(monkeypatch):
    from serkit import vad

    monkeypatch.setattr(vad, "VAD_SHA256", "0" * 64)
    with pytest.raises(BundleError, match="SHA-256"):
        SileroVAD()


# --------------------------------------------------------------------------- real speech


def test_default_model_is_small_and_describes_itself():
    size = sum(p.stat().st_size for p in DEFAULT_MODEL.rglob("*") if p.is_file())
    assert size < 3_000_000
    meta = json.loads((DEFAULT_MODEL / "bundle.json").read_text())
    assert meta["labels"] == ["anger", "disgust", "fear", "happiness", "neutral", "sadness"]
    assert meta["normalisers"]["pooled"]["mode"] == "global"
    # the encoder runs only up to the layer the model reads
    assert meta["recipe"]["features"]["encoder"]["config"]["layer"] == {"up_to": int(meta["trained_on"]["fit"]["layer"])}
    card = (DEFAULT_MODEL / "README.md").read_text()
    assert "Leave-one-corpus-out" in card and "CC BY-NC-SA 4.0" in card and "non-commercial" in card


def test_one_real_utterance_is_one_segment_labelled_like_the_whole_speech(recognizer, emodb_root):
    audio = load_audio(emodb_root / "wav" / "03a01Wa.wav")  # anger, 1.9 s
    timeline = recognizer.recognize(audio)
    assert len(timeline.speech) == 1 and len(timeline.segments) == 1
    (start, end) = timeline.speech[["start", "end"]].to_numpy()[0]
    assert 0 <= start < 0.3 and audio.duration - 0.3 < end <= audio.duration
    # A speech segment shorter than the window is one window: its probabilities are the bundle's
    # own prediction for exactly that stretch of audio.
    bundle = recognizer.bundle
    expected = bundle.predict([bundle.features(audio.slice(start, end))])[0]
    got = timeline.segments[[f"p_{lab}" for lab in timeline.labels]].to_numpy()[0]
    assert np.allclose(got, expected, atol=1e-9)
    assert timeline.segments["label"].iloc[0] == "anger"
    assert timeline.to_dict()["label"] == "anger"


def test_concatenated_utterances_give_one_segment_each_that_lines_up(recognizer, concatenation):
    audio, spans = concatenation
    timeline = recognizer.recognize(audio)
    speech = timeline.speech[["start", "end"]].to_numpy()
    assert len(speech) == len(spans)
    pad = timeline.config.speech_pad + 0.05
    for (s, e), (u0, u1) in zip(speech, spans):
        assert u0 - pad <= s and e <= u1 + pad  # never reaches into the silence beyond the padding
        overlap = min(e, u1) - max(s, u0)
        assert overlap >= 0.8 * (u1 - u0)  # and covers the utterance
    # Every timeline segment lies inside one utterance's span; each utterance has a segment.
    owners = []
    for row in timeline.segments.itertuples():
        inside = [i for i, (u0, u1) in enumerate(spans) if u0 - pad <= row.start and row.end <= u1 + pad]
        assert len(inside) == 1, (row.start, row.end)
        owners.append(inside[0])
    assert sorted(set(owners)) == list(range(len(spans)))


def test_concatenation_labels_each_utterance_as_the_utterance_alone(recognizer, concatenation, emodb_root):
    audio, spans = concatenation
    timeline = recognizer.recognize(audio)
    for i, name in enumerate(UTTERANCES):
        alone = recognizer.recognize(load_audio(emodb_root / "wav" / name)).overall()
        u0, u1 = spans[i]
        seg = timeline.segments[(timeline.segments["end"] > u0) & (timeline.segments["start"] < u1)]
        probs = seg[[f"p_{lab}" for lab in timeline.labels]].to_numpy()
        w = (seg["end"] - seg["start"]).to_numpy()
        mean = w @ probs / w.sum()
        # The same speech with slightly different VAD edges (other windows): close probabilities, and
        # the same decision for an emotion the model knows (16b10Lb is boredom, not one of its
        # classes: its two nearest classes may swap).
        if name != "16b10Lb.wav":
            assert timeline.labels[int(np.argmax(mean))] == alone["label"]
        assert np.max(np.abs(mean - np.array(list(alone["probabilities"].values())))) < 0.2


def test_long_speech_is_windowed_and_the_timeline_tiles_it(recognizer, emodb_root):
    x = np.concatenate([load_audio(emodb_root / "wav" / n).samples[0] for n in UTTERANCES])  # no pauses: ~11 s
    audio = Audio(x[np.newaxis], RATE)
    timeline = recognizer.recognize(audio, InferenceConfig(window=2.0, hop=1.0, merge=False))
    speech = timeline.speech[["start", "end"]].to_numpy()
    seg = timeline.segments
    for k, (s, e) in enumerate(speech):
        mine = seg[seg["segment"] == k]
        assert len(timeline.windows[timeline.windows["segment"] == k]) == len(window_spans(s, e, 2.0, 1.0))
        # Unmerged pieces tile the speech segment exactly: no gap, no overlap.
        assert mine["start"].iloc[0] == pytest.approx(s) and mine["end"].iloc[-1] == pytest.approx(e)
        assert np.allclose(mine["start"].to_numpy()[1:], mine["end"].to_numpy()[:-1])
    assert len(timeline.windows) > len(speech)
    merged = recognizer.recognize(audio, InferenceConfig(window=2.0, hop=1.0))
    assert len(merged.segments) <= len(seg)
    assert (merged.segments["label"].to_numpy()[1:] != merged.segments["label"].to_numpy()[:-1]).any() or len(merged.segments) >= len(speech)


def test_stereo_channels_are_analysed_separately(recognizer, emodb_root):
    a = load_audio(emodb_root / "wav" / UTTERANCES[0]).samples[0]
    b = load_audio(emodb_root / "wav" / UTTERANCES[1]).samples[0]
    n = len(a) + len(b) + 2 * RATE
    left, right = np.zeros(n, np.float32), np.zeros(n, np.float32)
    left[RATE // 2 : RATE // 2 + len(a)] = a  # caller speaks first, agent answers after
    b0 = RATE // 2 + len(a) + RATE
    right[b0 : b0 + len(b)] = b
    stereo = Audio(np.stack([left, right]), RATE)
    timeline = recognizer.recognize(stereo, InferenceConfig(per_channel=True))
    assert timeline.channels == ["left", "right"]
    lseg = timeline.segments[timeline.segments["channel"] == "left"]
    rseg = timeline.segments[timeline.segments["channel"] == "right"]
    assert lseg["end"].max() <= (RATE // 2 + len(a)) / RATE + 0.2
    assert rseg["start"].min() >= b0 / RATE - 0.2
    assert timeline.overall("left")["label"] == recognizer.recognize(Audio(a[np.newaxis], RATE)).overall()["label"]
    mixed = recognizer.recognize(stereo)
    assert mixed.channels == ["mix"] and len(mixed.speech) == 2


def test_outputs_round_trip(recognizer, concatenation, tmp_path):
    audio, _ = concatenation
    timeline = recognizer.recognize(audio)
    paths = timeline.write(tmp_path, "concat", audio)
    table = pd.read_csv(paths["csv"])
    assert list(table.columns) == ["channel", "segment", "start", "end", "label", *[f"p_{lab}" for lab in timeline.labels]]
    assert np.allclose(table["start"], timeline.segments["start"], atol=1e-4)
    data = json.loads(paths["json"].read_text())
    assert len(data["segments"]) == len(timeline.segments) and data["labels"] == timeline.labels
    assert sum(data["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)
    png = paths["png"].read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    from matplotlib.image import imread

    image = imread(io.BytesIO(plot_timeline(timeline)))
    assert image.shape[1] == 1000 and image[..., :3].std() > 0.05  # a drawn picture, not a blank canvas


def test_silent_recording_gives_an_empty_timeline(recognizer):
    timeline = recognizer.recognize(Audio(np.zeros((1, 2 * RATE), np.float32), RATE))
    assert timeline.segments.empty and timeline.overall() is None
    assert timeline.to_dict()["label"] is None
    assert plot_timeline(timeline).startswith(b"\x89PNG")


# --------------------------------------------------------------------------- command line

runner = CliRunner()


def test_cli_predict_needs_no_model_and_runs_folders_as_a_batch(emodb_root, concatenation, tmp_path):
    import soundfile as sf

    folder = tmp_path / "in"
    folder.mkdir()
    audio, spans = concatenation
    sf.write(folder / "concat.flac", audio.samples[0], RATE)
    (folder / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    single = tmp_path / UTTERANCES[0]
    single.write_bytes((emodb_root / "wav" / UTTERANCES[0]).read_bytes())
    result = runner.invoke(app, ["predict", str(single), str(folder), "--json", "--out", str(tmp_path / "out")])
    assert result.exit_code == 1, result.output  # the broken file is reported, the others are labelled
    rows = json.loads(result.stdout)
    by_file = {row["file"]: row for row in rows}
    assert by_file[str(single)]["label"] == "anger"
    assert len(by_file[str(folder / "concat.flac")]["speech"]) == len(spans)
    assert "cannot decode" in by_file[str(folder / "broken.wav")]["error"]
    # names keep the path below the folder the inputs share (tmp_path)
    written = {p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert written == {f"{s}.{e}" for s in ("03a01Wa", "in/concat") for e in ("csv", "json", "png")}


def test_cli_predict_table_and_bad_model(emodb_root, tmp_path):
    result = runner.invoke(app, ["predict", str(emodb_root / "wav" / UTTERANCES[0])], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "anger" in result.stdout and "mix" in result.stdout
    result = runner.invoke(app, ["predict", str(emodb_root / "wav" / UTTERANCES[0]), "--model", str(tmp_path)])
    assert result.exit_code == 2 and "no bundle.json" in result.output


# --------------------------------------------------------------------------- abstention, adaptation


def test_a_window_below_min_confidence_is_uncertain_on_real_speech(recognizer, emodb_root):
    audio = load_audio(emodb_root / "wav" / "03a01Wa.wav")
    plain = recognizer.recognize(audio)
    top = plain.windows[[f"p_{lab}" for lab in recognizer.labels]].max(axis=1).to_numpy()
    threshold = float(np.round(top.max() + 1e-3, 3))  # just above every window's confidence
    unsure = recognizer.recognize(audio, InferenceConfig(min_confidence=threshold))
    assert (unsure.windows["label"] == "uncertain").all() and (unsure.segments["label"] == "uncertain").all()
    assert unsure.to_dict()["label"] == "uncertain"
    np.testing.assert_allclose(unsure.windows.filter(like="p_").to_numpy(), plain.windows.filter(like="p_").to_numpy())
    sure = recognizer.recognize(audio, InferenceConfig(min_confidence=float(top.min()) - 1e-3))
    assert sure.windows["label"].tolist() == plain.windows["label"].tolist()


def _emodb_windows(emodb_root, n):
    """``n`` whole EmoDB utterances (no VAD) as one batch."""
    names = sorted(p.name for p in (emodb_root / "wav").glob("*.wav"))[:n]
    return [load_audio(emodb_root / "wav" / name) for name in names]


def test_batch_adaptation_standardises_with_the_batch_features_only(recognizer, emodb_root):
    from serkit.features.normalise import fit_normaliser

    audios = _emodb_windows(emodb_root, 24)
    config = InferenceConfig(vad=False, window=30.0, hop=30.0, adapt="batch", min_batch=20)
    adapted = recognizer.recognize_many(audios, config)
    bundle = recognizer.bundle
    feats = [bundle.features(a) for a in audios]
    raw = {key: np.stack([f[key] for f in feats]) for key in bundle.plan.specs}
    own = {key: fit_normaliser("global", x).transform(x) for key, x in raw.items()}
    expected = bundle.model.predict_proba(own)
    got = np.vstack([t.windows.filter(like="p_").to_numpy() for t in adapted])
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # Order-free, and nothing but the features goes in: the same batch reversed gives the same answers.
    again = recognizer.recognize_many(audios[::-1], config)
    np.testing.assert_allclose(np.vstack([t.windows.filter(like="p_").to_numpy() for t in again[::-1]]), got, atol=1e-6)
    # Below the minimum: training statistics, and a note says so.
    small = recognizer.recognize_many(audios[:5], config)
    plain = recognizer.recognize_many(audios[:5], dataclasses.replace(config, adapt="none"))
    for a, b in zip(small, plain):
        np.testing.assert_allclose(a.windows.filter(like="p_").to_numpy(), b.windows.filter(like="p_").to_numpy())
    assert "fewer than 20" in small[0].to_dict()["adaptation"][0]


def test_speaker_adaptation_uses_each_speakers_statistics(recognizer, emodb_root):
    from serkit.features.normalise import fit_normaliser

    audios = _emodb_windows(emodb_root, 30)
    speakers = [a.path.split("/")[-1][:2] for a in audios]
    config = InferenceConfig(vad=False, window=30.0, hop=30.0, adapt="speaker", min_batch=3)
    got = np.vstack([t.windows.filter(like="p_").to_numpy() for t in recognizer.recognize_many(audios, config, speakers)])
    bundle = recognizer.bundle
    feats = [bundle.features(a) for a in audios]
    for spk in set(speakers):
        rows = [i for i, s in enumerate(speakers) if s == spk]
        if len(rows) < 3:
            continue
        part = {key: np.stack([feats[i][key] for i in rows]) for key in bundle.plan.specs}
        own = {key: fit_normaliser("global", x).transform(x) for key, x in part.items()}
        np.testing.assert_allclose(got[rows], bundle.model.predict_proba(own), atol=1e-6)


def test_cli_adapts_over_the_files_of_one_call_and_abstains(emodb_root, tmp_path):
    names = sorted(p.name for p in (emodb_root / "wav").glob("*.wav"))[:24]
    files = [str(emodb_root / "wav" / n) for n in names]
    base = ["predict", *files, "--json", "--no-vad", "--window", "30", "--hop", "30"]
    plain = json.loads(runner.invoke(app, [*base, "--adapt", "none"]).stdout)
    batch = runner.invoke(app, base)  # batch adaptation is the command's default
    assert batch.exit_code == 0, batch.output
    adapted = json.loads(batch.stdout)
    assert [r["file"] for r in adapted] == [r["file"] for r in plain]
    assert any(a["probabilities"] != p["probabilities"] for a, p in zip(adapted, plain))
    csv = tmp_path / "speakers.csv"
    csv.write_text("path,speaker\n" + "".join(f"{f},{Path(f).name[:2]}\n" for f in files[:3]))
    missing = runner.invoke(app, [*base, "--adapt", "speaker", "--speakers", str(csv)])
    assert missing.exit_code != 0 and "no speaker for" in " ".join(missing.output.split())
    unsure = json.loads(runner.invoke(app, [*base, "--min-confidence", "0.999"]).stdout)
    assert {r["label"] for r in unsure} == {"uncertain"}
    bad = runner.invoke(app, [*base, "--adapt", "corpus"])
    assert bad.exit_code != 0 and "adapt must be one of" in " ".join(bad.output.split())


def test_the_vad_writes_no_telemetry(tmp_path):
    # onnxruntime 1.31 writes ~/.cache/Microsoft/DeveloperTools/.onnxruntime/{deviceid,onnxruntime.db} when a
    # session starts unless its telemetry is off; CI=true also turns it off, so the child runs without it.
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = ("import numpy as np; from serkit.audio import Audio; from serkit.inference import SileroVAD; "
            "p = SileroVAD().speech_probabilities(Audio(np.zeros((1, 16000), np.float32), 16000)); print(len(p))")
    drop = {"CI", "ORT_DISABLE_TELEMETRY", "ORT_RUNNING_UNIT_TESTS", "XDG_CACHE_HOME"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "32"  # the VAD ran: one probability per started 32 ms frame
    assert not (tmp_path / ".cache" / "Microsoft").exists(), sorted(map(str, tmp_path.rglob("*")))
