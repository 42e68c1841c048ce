"""Weight-free ONNX graphs of the Whisper encoders, built by ``scripts/build_whisper_graphs.py``
(:mod:`serkit.features.whisper_onnx`)."""
