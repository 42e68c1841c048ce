"""Write the weight-free ONNX graphs of the Whisper encoders that ``serkit predict`` and ``serve``
run with onnxruntime (:mod:`serkit.features.whisper_onnx`): one file per model and number of
blocks, ``serkit/features/graphs/<model>-<blocks>.onnx``. Needs the ``export`` extra (onnx);
``tests/test_whisper_onnx.py`` checks that the shipped files are what this writes.

Usage::

    python scripts/build_whisper_graphs.py [--out serkit/features/graphs]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from serkit.features.whisper import WHISPER_MODELS, whisper_weights
from serkit.features.whisper_onnx import build_whisper_graph, graph_name

OUT = Path(__file__).resolve().parents[1] / "serkit" / "features" / "graphs"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    for model in WHISPER_MODELS:
        config, state = whisper_weights(model)
        for n_blocks in range(config["encoder_layers"] + 1):
            path = args.out / graph_name(model, n_blocks)
            path.write_bytes(build_whisper_graph(config, state, n_blocks))
            print(f"{path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
