"""install / uninstall / package, with the override folder in a temporary place."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from fides_movable_ink import cli, installer, templates


def test_install_places_templates_and_shim_and_is_idempotent(tmp_path: Path) -> None:
    overrides = tmp_path / "override_implementations"
    server = tmp_path / "fides"

    first = installer.install(server, overrides)
    second = installer.install(server, overrides)

    saas = server / "data" / "saas"
    assert (saas / "config" / "movable_ink_config.yml").read_text() == templates.config_file().read_text()
    assert (saas / "dataset" / "movable_ink_dataset.yml").read_text() == templates.dataset_file().read_text()
    assert (saas / "icon" / "movable_ink.svg").exists() and (saas / "icon" / "default.svg").exists()
    assert (overrides / installer.SHIM_NAME).read_text() == installer.SHIM_SOURCE
    assert all(line.startswith("wrote") for line in first)
    assert all(line.startswith("unchanged") for line in second)
    assert not list(tmp_path.rglob("*.tmp"))


def test_install_keeps_an_existing_default_icon(tmp_path: Path) -> None:
    icon = tmp_path / "fides" / "data" / "saas" / "icon" / "default.svg"
    icon.parent.mkdir(parents=True)
    icon.write_text("<svg/>")
    installer.install(tmp_path / "fides", tmp_path / "overrides")
    assert icon.read_text() == "<svg/>"


def test_uninstall_removes_what_install_wrote(tmp_path: Path) -> None:
    overrides, server = tmp_path / "overrides", tmp_path / "fides"
    installer.install(server, overrides)

    installer.uninstall(server, overrides)

    assert not (overrides / installer.SHIM_NAME).exists()
    assert sorted(p.name for p in (server / "data" / "saas").rglob("*") if p.is_file()) == ["default.svg"]
    assert installer.uninstall(server, overrides) == ["nothing to remove"]


def test_shim_never_takes_fides_down_when_our_package_is_missing(tmp_path: Path) -> None:
    shim = tmp_path / installer.SHIM_NAME
    shim.write_text(installer.SHIM_SOURCE)
    # Import the shim with our package made unimportable, as in a Fides environment without it.
    code = (
        "import sys, runpy; sys.modules['fides_movable_ink'] = None; "
        f"runpy.run_path({str(shim)!r}); print('fides still starting')"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    assert "fides still starting" in result.stdout
    assert "Movable Ink connector not loaded" in result.stderr
    assert "pip install fides-movable-ink" in result.stderr


def test_shim_registers_the_overrides_in_a_fides_process(tmp_path: Path) -> None:
    shim = tmp_path / installer.SHIM_NAME
    shim.write_text(installer.SHIM_SOURCE)
    code = (
        "import runpy; runpy.run_path(%r)\n"
        "from fides.api.service.saas_request.saas_request_override_factory import "
        "SaaSRequestOverrideFactory as F, SaaSRequestType as T\n"
        "F.get_override('movable_ink_user_delete', T.DELETE); F.get_override('movable_ink_test_connection', T.TEST)\n"
        "print('registered')" % str(shim)
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "registered" in result.stdout, result.stderr[-2000:]


def test_package_builds_the_upload_zip(tmp_path: Path) -> None:
    output = tmp_path / "out" / "movable_ink.zip"

    assert cli.main(["package", "-o", str(output)]) == 0

    with zipfile.ZipFile(output) as archive:
        names = sorted(archive.namelist())
        config = yaml.safe_load(archive.read("movable_ink_config.yml"))
    assert names == ["movable_ink.svg", "movable_ink_config.yml", "movable_ink_dataset.yml"]
    assert config["saas_config"]["type"] == "movable_ink"


def test_cli_install_and_uninstall_report_the_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(installer, "fides_overrides_dir", lambda: tmp_path / "overrides")
    assert cli.main(["install", "--fides-dir", str(tmp_path / "fides")]) == 0
    assert cli.main(["uninstall", "--fides-dir", str(tmp_path / "fides")]) == 0
    out = capsys.readouterr().out
    assert "Restart the Fides webserver and workers to load the connector." in out
    assert "removed" in out
