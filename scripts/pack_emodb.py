"""Pack EmoDB losslessly into the repository: ``<out>/wav/<stem>.flac`` plus checksums and a README.

Usage::

    python scripts/pack_emodb.py ../shared/corpora/emodb                  # writes data/emodb
    python scripts/pack_emodb.py SOURCE --out data/emodb --force        # replace an earlier copy

``SOURCE`` is an EmoDB root holding ``wav/*.wav`` as distributed (535 files, 16 kHz mono 16-bit
PCM); it is validated with serkit's EmoDB adapter. Each file is read as int16 and written as FLAC
(PCM_16, same rate and channels); the FLAC is decoded again and must give exactly the same int16
samples, otherwise the script stops. It writes ``SHA256SUMS`` (the FLAC files),
``SOURCE_SHA256SUMS`` (the original WAV files, cross-checked against ``SOURCE/SHA256SUMS`` when
that exists) and ``README.md`` (provenance, licence, how to verify).

Exit status 0 on success; 1 with a message on any mismatch or bad input.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from serkit.corpora import load_corpus
from serkit.errors import SerkitError

REPO = Path(__file__).resolve().parents[1]


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_sums(path: Path) -> dict[str, str]:
    """``relative path -> hex digest`` from a ``sha256sum``-style file."""
    sums = {}
    for line in path.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*").strip()] = digest
    return sums


def write_sums(path: Path, sums: dict[str, str]) -> None:
    """Write ``sums`` in ``sha256sum`` format (``<digest>  <relative path>``), sorted by path."""
    path.write_text("".join(f"{digest}  {name}\n" for name, digest in sorted(sums.items())))


def convert(wav: Path, flac: Path) -> int:
    """Write ``wav`` as 16-bit FLAC at ``flac``, check the decoded samples are identical; return the frame count.

    Raises:
        SystemExit: the source is not 16-bit PCM, or the round trip changes any sample.
    """
    info = sf.info(str(wav))
    if info.subtype != "PCM_16":
        raise SystemExit(f"{wav}: subtype {info.subtype}, expected PCM_16 (16-bit FLAC would not be lossless)")
    samples, rate = sf.read(str(wav), dtype="int16", always_2d=True)
    sf.write(str(flac), samples, rate, format="FLAC", subtype="PCM_16", compression_level=1.0)
    back, back_rate = sf.read(str(flac), dtype="int16", always_2d=True)
    if back_rate != rate or back.shape != samples.shape or not np.array_equal(back, samples):
        raise SystemExit(f"{flac}: decoded samples differ from {wav}")
    return samples.shape[0]


README = """\
# EmoDB, Berlin Database of Emotional Speech (lossless FLAC copy)

This folder ships EmoDB with serkit so that the EmoDB recipes and tests need no download.

## Source and citation

- F. Burkhardt, A. Paeschke, M. Rolfes, W. Sendlmeier, B. Weiss: "A Database of German Emotional
  Speech", Proc. Interspeech 2005, Lisbon, pp. 1517-1520.
- Original distribution: by its authors at Technische Universität Berlin, as
  `wav/<file>.wav` with 535 files, 16 kHz, mono, 16-bit PCM.
- Licence: made available by its authors free of charge for research use. Anyone using it must
  cite the paper above. This copy changes no content and adds nothing but checksums and this note.

## Contents

- `wav/SSTTTEV.flac`: {n} files, same names as the original `.wav` files (only the suffix
  differs); {minutes:.1f} min of audio, {mb:.1f} MB.
  Name: `SS` speaker, `TTT` text, `E` emotion code (W anger, L boredom, E disgust, A fear,
  F happiness, T sadness, N neutral), `V` version.
- `SHA256SUMS`: SHA-256 of every FLAC file in this folder.
- `SOURCE_SHA256SUMS`: SHA-256 of every original WAV file the FLACs were made from.

## What was done

`scripts/pack_emodb.py` read each original WAV as 16-bit integers with soundfile (libsndfile
{libsndfile}) and wrote it as FLAC (PCM_16, same sample rate and channel count). FLAC is
lossless: the decoded samples are bit-identical to the original WAV samples, and the script
decoded every FLAC again and compared all samples before writing the checksums. Four original
files (`14a07Aa`, `14a07Fd`, `14a07Na`, `14a07Wc`) carry an extra RIFF `PAD ` chunk; it holds no
audio and is not carried over. Nothing was trimmed, resampled, normalised or re-labelled.

## How to verify

    cd data/emodb && sha256sum -c SHA256SUMS

checks the shipped files. To check the samples against an original copy, decode both as int16
and compare (the test `tests/test_corpora.py` does this for all {n} files):

    soundfile.read("wav/03a01Fa.flac", dtype="int16")[0] == soundfile.read("<original>/wav/03a01Fa.wav", dtype="int16")[0]

and `sha256sum -c SOURCE_SHA256SUMS` run in an original EmoDB root confirms that it is the same
release. Re-running the script with another libsndfile/libFLAC version may give different FLAC
bytes (encoder metadata and choices) but always the same samples.
"""


def pack(source: Path, out: Path, force: bool) -> None:
    """Convert ``source/wav/*.wav`` into ``out`` (see the module docstring).

    Raises:
        SystemExit: invalid source, existing output without ``force``, or any mismatch.
    """
    try:
        table = load_corpus("emodb", source)
    except SerkitError as exc:
        raise SystemExit(f"source is not a complete EmoDB copy: {exc}") from exc
    wav_paths = [Path(p) for p in table["path"]]
    if any(p.suffix != ".wav" for p in wav_paths):
        raise SystemExit(f"{source}: expected the original .wav files")
    out_wav = out / "wav"
    old = sorted(out_wav.glob("*.flac")) if out_wav.is_dir() else []
    if old and not force:
        raise SystemExit(f"{out_wav} already holds {len(old)} FLAC files; pass --force to replace them")
    for path in old:
        path.unlink()
    out_wav.mkdir(parents=True, exist_ok=True)

    known = read_sums(source / "SHA256SUMS") if (source / "SHA256SUMS").is_file() else {}
    source_sums, flac_sums, frames = {}, {}, 0
    for wav in wav_paths:
        name = f"wav/{wav.name}"
        source_sums[name] = sha256(wav)
        if name in known and known[name] != source_sums[name]:
            raise SystemExit(f"{wav}: SHA-256 differs from {source / 'SHA256SUMS'}")
        flac = out_wav / f"{wav.stem}.flac"
        frames += convert(wav, flac)
        flac_sums[f"wav/{flac.name}"] = sha256(flac)

    write_sums(out / "SOURCE_SHA256SUMS", source_sums)
    write_sums(out / "SHA256SUMS", flac_sums)
    size = sum((out_wav / Path(n).name).stat().st_size for n in flac_sums)
    rate = int(sf.info(str(wav_paths[0])).samplerate)
    (out / "README.md").write_text(
        README.format(n=len(flac_sums), minutes=frames / rate / 60, mb=size / 1e6, libsndfile=sf.__libsndfile_version__)
    )
    print(f"wrote {len(flac_sums)} FLAC files to {out_wav} ({size / 1e6:.1f} MB, {frames / rate / 60:.1f} min)")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="EmoDB root holding wav/*.wav")
    parser.add_argument("--out", type=Path, default=REPO / "data" / "emodb", help="output folder (default data/emodb)")
    parser.add_argument("--force", action="store_true", help="replace FLAC files already in --out")
    args = parser.parse_args(argv)
    try:
        pack(args.source, args.out, args.force)
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(f"pack_emodb: {exc.code}", file=sys.stderr)
            return 1
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
