"""Feature extractors against reference implementations, known signals and malformed input.

References: python_speech_features 0.6 (log-Mel "pss" mode, deltas), librosa 0.11 (mel filters,
STFT), opensmile 2.6 run directly (LLD, Δ, functionals). Real recordings: EmoDB 03a01Fa
(1.898 s, 16 kHz mono).
"""

from __future__ import annotations

import pickle

import librosa
import numpy as np
import opensmile
import pytest
import python_speech_features as psf

from serkit.audio import Audio, load_audio
from serkit.errors import AudioError, ConfigError, FeatureError, SampleRateError, TooShortAudioError
from serkit.features import get_extractor, list_extractors, regression_delta, stack_deltas
from serkit.features.smile import smile_input
from serkit.features.spectral import frame_count, pss_mel_filterbank

SR = 16000


@pytest.fixture(scope="module")
def speech(emodb_file) -> Audio:
    return load_audio(emodb_file)


def tone(f0: float, amplitude: float, seconds: float = 2.0, sr: int = SR) -> Audio:
    t = np.arange(int(seconds * sr)) / sr
    return Audio((amplitude * np.sin(2 * np.pi * f0 * t)).astype(np.float32)[None, :], sr)


# --------------------------------------------------------------------------- deltas


def test_delta_of_linear_ramp_is_its_slope_away_from_edges():
    frames = np.arange(30, dtype=np.float64)[:, None] * np.array([[0.5, -2.0, 3.0]]) + 7.0
    d = regression_delta(frames, width=2)
    np.testing.assert_allclose(d[2:-2], np.broadcast_to([0.5, -2.0, 3.0], d[2:-2].shape), atol=1e-12)
    # edge frames repeat the first/last frame, so the slope is damped there (HTK rule)
    assert np.all(np.abs(d[0]) < np.abs(d[2]))
    # d_0 = (1 (c_1 - c_0) + 2 (c_2 - c_0)) / 10 = slope * (1 + 4) / 10
    np.testing.assert_allclose(d[0], np.array([0.5, -2.0, 3.0]) * 0.5, atol=1e-12)
    np.testing.assert_allclose(d[-1], np.array([0.5, -2.0, 3.0]) * 0.5, atol=1e-12)


@pytest.mark.parametrize("width", [1, 2, 3])
def test_delta_equals_python_speech_features(width):
    x = np.random.default_rng(width).standard_normal((57, 13))
    np.testing.assert_allclose(regression_delta(x, width), psf.delta(x, width), rtol=0, atol=1e-12)


def test_stack_deltas_blocks():
    x = np.random.default_rng(0).standard_normal((40, 5))
    out = stack_deltas(x, 2)
    assert out.shape == (40, 15)
    np.testing.assert_allclose(out[:, :5], x)
    np.testing.assert_allclose(out[:, 5:10], psf.delta(x, 2), atol=1e-12)
    np.testing.assert_allclose(out[:, 10:], psf.delta(psf.delta(x, 2), 2), atol=1e-12)


@pytest.mark.parametrize(
    "call", [lambda: regression_delta(np.ones((4, 2)), 0), lambda: stack_deltas(np.ones((4, 2)), -1)]
)
def test_delta_bad_parameters(call):
    with pytest.raises(ConfigError):
        call()


def test_delta_of_empty_sequence_is_an_error():
    with pytest.raises(FeatureError):
        regression_delta(np.zeros((0, 3)))


# --------------------------------------------------------------------------- log-Mel


@pytest.mark.parametrize(
    ("nfilt", "nfft", "lowfreq", "highfreq"),
    [(40, 512, 0, None), (26, 512, 300, 7000), (64, 1024, 20, 8000), (80, 512, 0, None)],
)
def test_pss_filterbank_equals_python_speech_features(nfilt, nfft, lowfreq, highfreq):
    ours = pss_mel_filterbank(nfilt, nfft, SR, lowfreq, highfreq or SR / 2)
    np.testing.assert_array_equal(ours, psf.get_filterbanks(nfilt, nfft, SR, lowfreq, highfreq))


def test_logmel_pss_hamming_matches_python_speech_features(speech):
    """MSIR's configuration: 40 bands, 25 ms Hamming / 10 ms, NFFT 512, pre-emphasis 0.97."""
    ours = get_extractor("logmel", {"n_mels": 40}).extract(speech)
    signal = speech.samples[0].astype(np.float64)
    reference = np.log(psf.fbank(signal, SR, nfilt=40, winfunc=np.hamming)[0])
    assert ours.dtype == np.float32 and ours.shape == reference.shape == (189, 40)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-4)


def test_logmel_pss_rectangular_matches_logfbank(speech):
    """python_speech_features 0.6 ``logfbank`` takes no window: it equals window="rectangular"."""
    ours = get_extractor("logmel", {"window": "rectangular"}).extract(speech)
    reference = psf.logfbank(speech.samples[0].astype(np.float64), SR, nfilt=40)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-4)


def test_logmel_deltas_are_regression_deltas_of_the_static_block(speech):
    out = get_extractor("logmel", {"deltas": 2}).extract(speech)
    static = get_extractor("logmel").extract(speech).astype(np.float64)
    assert out.shape == (189, 120)
    np.testing.assert_allclose(out[:, :40], static, atol=1e-5)
    np.testing.assert_allclose(out[:, 40:80], psf.delta(static, 2), atol=1e-4)
    np.testing.assert_allclose(out[:, 80:], psf.delta(psf.delta(static, 2), 2), atol=1e-4)


@pytest.mark.parametrize("n", [400, 401, 559, 560, 561, 30372])
def test_logmel_frame_count_formula(n):
    audio = Audio(np.random.default_rng(n).uniform(-0.5, 0.5, (1, n)).astype(np.float32), SR)
    frames = get_extractor("logmel").extract(audio).shape[0]
    assert frames == frame_count(n, 400, 160) == 1 + int(np.ceil((n - 400) / 160))
    assert frames == len(psf.fbank(audio.samples[0].astype(np.float64), SR, nfilt=40)[0])


def test_logmel_librosa_mode_matches_librosa(speech):
    """attention-BLSTM-FCN eq. 1–2: |STFT|², Slaney mel filters, log. Same framing as "pss".

    librosa centres a 400-sample window in each 512-sample frame; padding the signal by
    (512 - 400) / 2 = 56 samples on the left makes its frames hold exactly our samples.
    """
    out = get_extractor("logmel", {"filterbank": "librosa", "preemphasis": 0.0}).extract(speech)
    y = speech.samples[0]
    n_frames = frame_count(len(y), 400, 160)
    padded = np.pad(y, (56, 56 + (n_frames - 1) * 160 + 400 - len(y)))
    mel = librosa.feature.melspectrogram(
        y=padded, sr=SR, n_fft=512, hop_length=160, win_length=400, window="hamming",
        center=False, power=2.0, n_mels=40,
    )
    reference = np.log(np.maximum(mel.T, 1e-10))
    assert out.shape == reference.shape == (n_frames, 40)
    np.testing.assert_allclose(out, reference, rtol=0, atol=1e-4)


# --------------------------------------------------------------------------- STFT


def test_stft_matches_librosa(speech):
    """Default: 16 kHz, n_fft 1024, 50 ms Hann, 12.5 ms hop, centred frames; log(|X| + 1e-6)."""
    out = get_extractor("stft").extract(speech)
    y = speech.samples[0].astype(np.float64)
    stft = librosa.stft(y, n_fft=1024, hop_length=200, win_length=800, window="hann", center=True, pad_mode="constant")
    magnitude = np.abs(stft)
    assert out.dtype == np.float32 and out.shape == (1 + len(y) // 200, 513) == magnitude.T.shape
    np.testing.assert_allclose(out, np.log(magnitude.T + 1e-6), rtol=0, atol=1e-4)


def test_stft_peak_bin_of_a_tone():
    out = get_extractor("stft").extract(tone(1000.0, 0.5, 1.0))
    assert np.all(np.argmax(out[5:-5], axis=1) == 64)  # 1000 Hz * 1024 / 16000 = bin 64


# --------------------------------------------------------------------------- every extractor: shapes and bad input

CASES = [
    ("logmel", {"deltas": 1}, (189, 80)),
    ("logmel", {"filterbank": "librosa", "preemphasis": 0.0}, (189, 40)),
    ("stft", {}, (152, 513)),
    ("opensmile_lld", {}, (185, 195)),
    ("opensmile_lld", {"feature_set": "eGeMAPSv02", "delta_source": "regression"}, (185, 75)),
    ("opensmile_functionals", {"feature_set": "eGeMAPSv02"}, (88,)),
    ("opensmile_functionals", {"feature_set": "ComParE_2016"}, (6373,)),
    ("opensmile_functionals", {"feature_set": "IS09"}, (384,)),
    ("opensmile_functionals", {"feature_set": "IS10"}, (1582,)),
]


def test_registry_lists_the_builtin_extractors():
    assert {"logmel", "stft", "opensmile_lld", "opensmile_functionals"} <= set(list_extractors())


@pytest.mark.parametrize(("name", "config", "shape"), CASES)
def test_shape_dtype_names_on_real_file(speech, name, config, shape):
    extractor = get_extractor(name, config)
    out = extractor.extract(speech)
    assert out.shape == shape and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    assert extractor.dim == shape[-1] == len(extractor.names)
    assert (extractor.frame_shift is None) == (extractor.level == "utterance")
    # the config round-trips through describe()
    again = get_extractor(extractor.describe()["name"], extractor.describe()["config"])
    assert again.config == extractor.config


@pytest.mark.parametrize(
    ("name", "config"),
    [
        ("logmel", {"n_mels": 0}),
        ("logmel", {"n_mels": "40"}),
        ("logmel", {"window": "kaiser"}),
        ("logmel", {"n_fft": 256}),  # 400-sample window does not fit
        ("logmel", {"fmax": 9000}),
        ("logmel", {"deltas": 3}),
        ("logmel", {"preemphasis": 1.5}),
        ("logmel", {"filterbank": "htk"}),
        ("logmel", {"hop_lenght": 0.01}),  # misspelt option
        ("stft", {"n_fft": 512}),  # 800-sample window does not fit
        ("stft", {"eps": 0}),
        ("opensmile_lld", {"feature_set": "IS10"}),
        ("opensmile_lld", {"feature_set": "eGeMAPSv02"}),  # no openSMILE Δ level for eGeMAPS
        ("opensmile_lld", {"delta_source": "librosa"}),
        ("opensmile_functionals", {"feature_set": "IS13"}),
        ("opensmile_functionals", {"sample_rate": 0}),
        ("no_such_extractor", {}),
    ],
)
def test_malformed_config_is_a_config_error(name, config):
    with pytest.raises(ConfigError):
        get_extractor(name, config)


@pytest.mark.parametrize(("name", "config", "shape"), CASES)
def test_wrong_rate_stereo_and_too_short_are_refused(speech, name, config, shape):
    extractor = get_extractor(name, config)
    with pytest.raises(SampleRateError):
        extractor.extract(speech.resample(8000))
    stereo = Audio(np.repeat(speech.samples, 2, axis=0), SR)
    with pytest.raises(AudioError, match="mono"):
        extractor.extract(stereo)
    with pytest.raises(TooShortAudioError):
        extractor.extract(Audio(speech.samples[:, 4000:4160], SR))  # 10 ms


def test_logmel_accepts_exactly_one_window():
    extractor = get_extractor("logmel")
    audio = Audio(np.full((1, 400), 0.1, dtype=np.float32), SR)
    assert extractor.extract(audio).shape == (1, 40)
    with pytest.raises(TooShortAudioError):
        extractor.extract(Audio(audio.samples[:, :399], SR))


# --------------------------------------------------------------------------- openSMILE LLD


def _smile(level):
    return opensmile.Smile(feature_set=opensmile.FeatureSet.ComParE_2016, feature_level=level)


@pytest.fixture(scope="module")
def compare_streams(speech):
    """openSMILE run directly: LLD alone, Δ alone (two separate runs), as DataFrames."""
    x = smile_input(speech.samples[0])
    lld = _smile(opensmile.FeatureLevel.LowLevelDescriptors).process_signal(x, SR)
    delta = _smile(opensmile.FeatureLevel.LowLevelDescriptors_Deltas).process_signal(x, SR)
    return lld, delta


def test_lld_and_delta_frames_are_aligned(speech, compare_streams):
    """Separate runs give n and n + 2 frames; ours holds the n LLD frames, each with its own Δ."""
    lld, delta = compare_streams
    n = len(lld)
    assert len(delta) == n + 2
    starts_lld = lld.index.get_level_values("start").total_seconds().to_numpy()
    starts_delta = delta.index.get_level_values("start").total_seconds().to_numpy()
    # both on the 10 ms grid from 0 (openSMILE repeats the time stamps of the final frames)
    np.testing.assert_allclose(starts_lld[: n - 1], 0.01 * np.arange(n - 1), atol=1e-9)
    np.testing.assert_allclose(starts_delta[: n - 1], starts_lld[: n - 1], atol=1e-9)

    out = get_extractor("opensmile_lld").extract(speech)
    assert out.shape == (n, 195)
    np.testing.assert_array_equal(out[:, :65], lld.to_numpy(dtype=np.float32))
    np.testing.assert_array_equal(out[:, 65:130], delta.to_numpy(dtype=np.float32)[:n])
    # Δ² is the width-2 regression delta of the Δ block
    np.testing.assert_allclose(out[:, 130:], regression_delta(out[:, 65:130].astype(np.float64)), rtol=1e-5, atol=1e-6)


def test_regression_delta_reproduces_opensmile_delta(compare_streams):
    """For the 59 non-voicing ComParE LLDs openSMILE's Δ is the width-2 regression delta.

    Except for the last two frames (where openSMILE uses frames missing from the LLD output),
    the two agree to float32 precision: found max |diff| / column scale < 1e-5.
    """
    lld, delta = compare_streams
    n = len(lld)
    ours = regression_delta(lld.to_numpy(dtype=np.float64))[: n - 2, 6:]
    theirs = delta.to_numpy(dtype=np.float64)[: n - 2, 6:]
    scale = np.abs(theirs).max(axis=0) + 1e-12
    assert np.max(np.abs(ours - theirs).max(axis=0) / scale) < 1e-5
    correlation = [np.corrcoef(ours[:, j], theirs[:, j])[0, 1] for j in range(ours.shape[1]) if theirs[:, j].std() > 0]
    assert min(correlation) > 0.9999


def test_opensmile_voicing_deltas_follow_its_accumulating_normaliser(compare_streams):
    """The 6 voicing LLDs' Δ (``onlyInSegments=1``) is openSMILE's documented-here bug, reproduced.

    Reference model of openSMILE's loop: frames in time order, the 6 fields inside; a pair
    (t - i, t + i), i = 1, 2, counts only when both values are non-zero, and every counted pair
    adds i² to one normaliser shared by all fields and frames (starting at 2 (1² + 2²) = 10).
    """
    lld, delta = compare_streams
    x = lld.to_numpy(dtype=np.float64)[:, :6]
    n = len(x)
    padded = np.concatenate([np.repeat(x[:1], 2, 0), x, np.repeat(x[-1:], 2, 0)])
    model = np.zeros_like(x)
    norm = 10.0
    for t in range(n):
        for j in range(6):
            num = 0.0
            for i in (1, 2):
                after, before = padded[t + 2 + i, j], padded[t + 2 - i, j]
                if after != 0 and before != 0:
                    num += i * (after - before)
                    norm += i * i
            model[t, j] = num / norm
    theirs = delta.to_numpy(dtype=np.float64)[: n - 2, :6]
    np.testing.assert_allclose(model[: n - 2], theirs, rtol=1e-4, atol=1e-7)
    # ... and it is far from the textbook delta: the normaliser grows to thousands
    assert norm > 1000


def test_lld_regression_source(speech, compare_streams):
    lld, _ = compare_streams
    out = get_extractor("opensmile_lld", {"delta_source": "regression", "deltas": 1}).extract(speech)
    assert out.shape == (len(lld), 130)
    np.testing.assert_allclose(out[:, 65:], regression_delta(lld.to_numpy(dtype=np.float64)), rtol=1e-5, atol=1e-5)


def test_lld_extractor_pickles_without_its_smile_object(speech):
    extractor = get_extractor("opensmile_lld")
    first = extractor.extract(speech)
    assert extractor._smile is not None
    clone = pickle.loads(pickle.dumps(extractor))
    assert clone._smile is None and clone.config == extractor.config
    np.testing.assert_array_equal(clone.extract(speech), first)


def test_full_scale_sample_does_not_wrap_in_opensmile():
    x = smile_input(np.array([1.0, -1.0, 0.5]))
    assert np.all((x * 32768).astype(np.int16) == np.array([32767, -32768, 16384]))


# --------------------------------------------------------------------------- openSMILE functionals


def test_functionals_equal_opensmile_process_file(emodb_file, speech):
    extractor = get_extractor("opensmile_functionals", {"feature_set": "eGeMAPSv02"})
    direct = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02).process_file(str(emodb_file))
    assert list(direct.columns) == extractor.names
    np.testing.assert_allclose(extractor.extract(speech), direct.to_numpy(dtype=np.float32)[0], rtol=1e-6)


@pytest.mark.parametrize("f0", [150.0, 200.0])
def test_functionals_measure_the_pitch_of_a_tone(f0):
    """Known signal: a 2 s sine at f0 and amplitude 0.5 (and 0.25: pitch must not move)."""
    is10 = get_extractor("opensmile_functionals", {"feature_set": "IS10"})
    egemaps = get_extractor("opensmile_functionals", {"feature_set": "eGeMAPSv02"})
    is09 = get_extractor("opensmile_functionals", {"feature_set": "IS09"})
    for amplitude in (0.5, 0.25):
        audio = tone(f0, amplitude)
        v10 = dict(zip(is10.names, is10.extract(audio), strict=True))
        assert v10["F0final_sma_quartile2"] == pytest.approx(f0, rel=0.01)
        ve = dict(zip(egemaps.names, egemaps.extract(audio), strict=True))
        assert ve["F0semitoneFrom27.5Hz_sma3nz_percentile50.0"] == pytest.approx(12 * np.log2(f0 / 27.5), abs=0.1)
        v09 = dict(zip(is09.names, is09.extract(audio), strict=True))
        # IS09's autocorrelation pitch reads 2-3 % high on a pure tone (154.5 / 204.1 Hz found);
        # the tolerance still catches octave errors and a wrong sample rate
        assert v09["F0_sma_amean"] == pytest.approx(f0, rel=0.05)


def test_functionals_loudness_grows_with_level():
    egemaps = get_extractor("opensmile_functionals", {"feature_set": "eGeMAPSv02"})
    col = egemaps.names.index("loudness_sma3_amean")
    assert egemaps.extract(tone(200.0, 0.5))[col] > 1.3 * egemaps.extract(tone(200.0, 0.25))[col]
