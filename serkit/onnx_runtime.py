"""onnxruntime, imported with its telemetry off.

onnxruntime 1.29 and later (serkit pins 1.31.1) writes a device id and an event database under
``~/.cache/Microsoft/DeveloperTools/.onnxruntime/`` and tries to send usage events when a session
starts, unless ``ORT_DISABLE_TELEMETRY`` is set before the library loads (its
``disable_telemetry_events()`` alone still writes the files: checked). serkit promises that
nothing goes out at run time, so every onnxruntime use in serkit (the VAD, ``serkit export``)
imports it through :func:`import_onnxruntime`. A program that imported onnxruntime before
serkit did must set ``ORT_DISABLE_TELEMETRY=1`` itself.
"""

from __future__ import annotations

import os
from types import ModuleType


def import_onnxruntime() -> ModuleType:
    """The ``onnxruntime`` module, its telemetry turned off first.

    Sets ``ORT_DISABLE_TELEMETRY=1`` in this process's environment (unless set already), imports
    onnxruntime and calls its ``disable_telemetry_events()``.

    Raises:
        ImportError: onnxruntime is not installed.
    """
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime

    onnxruntime.disable_telemetry_events()
    return onnxruntime
