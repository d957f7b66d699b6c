"""Where the SaaS template files are: inside an installed wheel, or at the top of a checkout."""

from pathlib import Path

CONNECTOR_TYPE = "movable_ink"


def template_root() -> Path:
    """Folder holding `connector_config/` and `dataset/`."""
    packaged = Path(__file__).parent / "templates"
    if (packaged / "connector_config").is_dir():
        return packaged
    return Path(__file__).resolve().parents[2]  # src/fides_movable_ink -> checkout root


def config_file() -> Path:
    return template_root() / "connector_config" / f"{CONNECTOR_TYPE}_config.yml"


def dataset_file() -> Path:
    return template_root() / "dataset" / f"{CONNECTOR_TYPE}_dataset.yml"


def icon_file() -> Path:
    return template_root() / "connector_config" / f"{CONNECTOR_TYPE}.svg"


def mapping_sql_file() -> Path:
    return template_root() / "dataset" / "mapping_table.sql"


def mapping_dataset_file() -> Path:
    return template_root() / "dataset" / "movable_ink_mapping_dataset.yml"
