"""One registration mechanism: duplicate names refused in every registry, plug-ins through entry points."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from serkit.cli import app
from serkit.corpora.base import CORPORA
from serkit.derived.base import DERIVED
from serkit.errors import ConfigError
from serkit.features.base import EXTRACTORS
from serkit.models.base import MODELS, get_model
from serkit.registry import Registry

REGISTRIES = {"corpora": (CORPORA, "emodb"), "extractors": (EXTRACTORS, "logmel"),
              "derived": (DERIVED, "pooled_stats"), "models": (MODELS, "linear_svm")}  # fmt: skip


@pytest.mark.parametrize("kind", sorted(REGISTRIES))
def test_a_second_class_under_a_taken_name_is_refused(kind):
    registry, taken = REGISTRIES[kind]
    builtin = registry.get(taken)
    impostor = type("Impostor", (builtin,), {"name": taken})
    with pytest.raises(ConfigError, match=f"{taken!r} is registered twice"):
        registry.register(impostor)
    assert registry.get(taken) is builtin  # the refused class did not replace it
    registry.register(builtin)  # the same class again is no duplicate


def test_a_reloaded_module_may_register_its_class_again():
    registry = Registry("thing", "serkit.test-none")

    def make():  # the same module and qualified name, as importlib.reload produces
        return type("Thing", (), {"name": "thing", "__module__": "acme.things"})

    first, second = make(), make()
    registry.register(first)
    registry.register(second)
    assert registry.get("thing") is second


def _install_plugin(root: Path, monkeypatch, entry_points: str, module: str) -> None:
    """A distribution 'acme-ser' on sys.path: its module and a dist-info with entry points."""
    (root / "acme_ser.py").write_text(textwrap.dedent(module))
    info = root / "acme_ser-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-ser\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))
    monkeypatch.syspath_prepend(str(root))


@pytest.fixture
def fresh_registries():
    for registry, _ in REGISTRIES.values():
        registry.refresh()
    yield
    for registry, _ in REGISTRIES.values():
        registry.refresh()


PLUGIN = """
    from serkit.models.svm import LinearSVM

    class AcmeSVM(LinearSVM):
        name = "acme_svm"

    class Clash(LinearSVM):
        name = "linear_svm"

    class Misnamed(LinearSVM):
        name = "something_else"
"""


def test_another_package_adds_a_model_through_an_entry_point(tmp_path, monkeypatch, fresh_registries):
    _install_plugin(tmp_path, monkeypatch, '[serkit.models]\nacme_svm = acme_ser:AcmeSVM\n', PLUGIN)
    MODELS.refresh()
    model = get_model("acme_svm", {"C": 0.1})
    assert type(model).__name__ == "AcmeSVM" and model.config.C == 0.1
    assert "acme-ser" in MODELS.source("acme_svm")
    listing = CliRunner().invoke(app, ["list", "--verbose"])
    assert listing.exit_code == 0 and "acme_svm: acme_ser:AcmeSVM (package acme-ser)" in listing.output


def test_a_plugin_that_takes_a_builtin_name_is_refused(tmp_path, monkeypatch, fresh_registries):
    _install_plugin(tmp_path, monkeypatch, '[serkit.models]\nlinear_svm = acme_ser:Clash\n', PLUGIN)
    MODELS.refresh()
    with pytest.raises(ConfigError, match="'linear_svm' is registered twice: .*acme-ser"):
        get_model("linear_svm")


def test_an_entry_point_must_carry_its_class_name(tmp_path, monkeypatch, fresh_registries):
    _install_plugin(tmp_path, monkeypatch, '[serkit.models]\nacme_other = acme_ser:Misnamed\n', PLUGIN)
    MODELS.refresh()
    with pytest.raises(ConfigError, match="is a model named 'something_else'"):
        get_model("acme_other")


def test_a_broken_plugin_names_itself(tmp_path, monkeypatch, fresh_registries):
    _install_plugin(tmp_path, monkeypatch, '[serkit.derived]\nacme_broken = acme_ser_missing:Thing\n', PLUGIN)
    DERIVED.refresh()
    with pytest.raises(ConfigError, match="acme_broken.*acme-ser.*cannot be loaded"):
        DERIVED.get("acme_broken")
    assert "acme_broken" in DERIVED.names()  # listed without importing it


def test_every_builtin_is_declared_as_an_entry_point():
    """Each registered built-in is found by name from the installed metadata, not by an import list."""
    for registry, _ in REGISTRIES.values():
        points = registry._entry_points()
        for name, cls in registry.load_all().items():
            if cls.__module__.startswith("serkit."):
                assert name in points, f"{registry.group}: {name} ({cls.__module__}) has no entry point in pyproject.toml"
