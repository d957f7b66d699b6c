"""Installs the connector into a Fides server that runs in this Python environment.

Fides reads SaaS templates from `data/saas/{config,dataset,icon}` under its working
directory, and imports every module in its `override_implementations` package in the
webserver and in each worker. `install` puts our templates in the first place and a
small shim in the second; `uninstall` removes both.
"""

import importlib.util
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from fides_movable_ink import templates

SHIM_NAME = "movable_ink_overrides.py"
OVERRIDES_PACKAGE = "fides.api.service.saas_request.override_implementations"

# Fides imports this file at start-up; it must never take Fides down, so any failure to
# import our package becomes one error line that names the fix.
SHIM_SOURCE = '''"""Registers the Movable Ink request overrides. Written by `fides-movable-ink install`."""

try:
    import fides_movable_ink.fides_override  # noqa: F401  (registers the overrides)
except Exception as exc:  # pylint: disable=broad-except
    from loguru import logger

    logger.error(
        "Movable Ink connector not loaded ({}: {}). Fix: `pip install fides-movable-ink` into the "
        "Python environment that runs Fides, run `fides-movable-ink install`, and restart Fides "
        "(webserver and workers). To remove the connector, run `fides-movable-ink uninstall`.",
        type(exc).__name__,
        exc,
    )
'''

# Fides falls back to data/saas/icon/default.svg for templates without an icon and fails
# at start-up if that file is missing; the PyPI package ships none.
DEFAULT_ICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="32" height="32" viewBox="0 0 32 32">'
    '<rect width="32" height="32" rx="6" fill="#9aa0b4"/></svg>\n'
)


@dataclass(frozen=True)
class Placement:
    """Where `install` writes each file for one Fides server."""

    config: Path
    dataset: Path
    icon: Path
    default_icon: Path
    shim: Path

    @classmethod
    def for_server(cls, fides_dir: Path, overrides_dir: Optional[Path] = None) -> "Placement":
        saas = fides_dir / "data" / "saas"
        name = templates.CONNECTOR_TYPE
        return cls(
            config=saas / "config" / f"{name}_config.yml",
            dataset=saas / "dataset" / f"{name}_dataset.yml",
            icon=saas / "icon" / f"{name}.svg",
            default_icon=saas / "icon" / "default.svg",
            shim=(overrides_dir or fides_overrides_dir()) / SHIM_NAME,
        )


def fides_overrides_dir() -> Path:
    """The override_implementations folder of the Fides installed in this environment."""
    spec = importlib.util.find_spec(OVERRIDES_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "Fides is not installed in this Python environment: install the connector into the "
            "environment that runs Fides (`pip install 'fides-movable-ink[fides]'`), then run "
            "`fides-movable-ink install` there."
        )
    return Path(list(spec.submodule_search_locations)[0])


def install(fides_dir: Path, overrides_dir: Optional[Path] = None) -> list[str]:
    """Places templates and shim; idempotent. Returns one line per file written or kept."""
    place = Placement.for_server(fides_dir, overrides_dir)
    report = [
        _write(place.config, templates.config_file().read_text(encoding="utf-8")),
        _write(place.dataset, templates.dataset_file().read_text(encoding="utf-8")),
        _write(place.icon, templates.icon_file().read_text(encoding="utf-8")),
        _write(place.shim, SHIM_SOURCE),
    ]
    if not place.default_icon.exists():
        report.append(_write(place.default_icon, DEFAULT_ICON))
    return report


def uninstall(fides_dir: Path, overrides_dir: Optional[Path] = None) -> list[str]:
    """Removes what `install` wrote (default.svg stays: other templates may use it)."""
    place = Placement.for_server(fides_dir, overrides_dir)
    report = []
    for path in (place.config, place.dataset, place.icon, place.shim):
        if path.exists():
            path.unlink()
            report.append(f"removed {path}")
    return report or ["nothing to remove"]


def package(output: Path) -> Path:
    """Zip for Fides' "Upload integration" (POST /api/v1/connector-templates/register).

    Current Fides ignores Python in such zips, so the override still needs `install`.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for source in (templates.config_file(), templates.dataset_file(), templates.icon_file()):
            archive.write(source, arcname=source.name)
    return output


def _write(path: Path, text: str) -> str:
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return f"unchanged {path}"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    shutil.move(str(temporary), path)  # atomic: a starting Fides never reads half a file
    return f"wrote {path}"
