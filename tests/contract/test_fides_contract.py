"""The template files and overrides against the installed ethyca-fides' own models and checks."""

from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from fides.api.common_exceptions import DomainValidationError
from fides.api.graph.config import CollectionAddress, FieldAddress
from fides.api.graph.graph import DatasetGraph
from fides.api.graph.traversal import Traversal
from fides.api.models.datasetconfig import convert_dataset_to_graph
from fides.api.schemas.connection_configuration.connection_secrets_saas import SaaSSchemaFactory
from fides.api.schemas.saas.saas_config import SaaSConfig
from fides.api.schemas.saas.strategy_configuration import OAuth2BaseConfiguration
from fides.api.service.connectors.saas.authenticated_client import AuthenticatedClient
from fides.api.service.saas_request.saas_request_override_factory import (
    SaaSRequestOverrideFactory,
    SaaSRequestType,
    validate_read_override_function,
    validate_test_override_function,
    validate_update_override_function,
)
from fides.api.util.saas_util import load_config_from_string
from fides.api.util.unsafe_file_util import verify_svg
from fides.config import CONFIG
from fides.config.security_settings import DomainValidationMode
from fideslang.models import Dataset
from pydantic import ValidationError

from fides_movable_ink import contract, fides_override, templates

INSTANCE_KEY = "movable_ink"
MAPPING_DATASET = "movable_ink_mapping"


def load_yaml(path: Any) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def instance_config() -> SaaSConfig:
    text = templates.config_file().read_text(encoding="utf-8").replace("<instance_fides_key>", INSTANCE_KEY)
    return SaaSConfig(**load_config_from_string(text))


def instance_dataset() -> Dataset:
    text = templates.dataset_file().read_text(encoding="utf-8").replace("<instance_fides_key>", INSTANCE_KEY)
    return Dataset(**yaml.safe_load(text)["dataset"][0])


def test_config_loads_through_fides_saas_config() -> None:
    config = SaaSConfig(**load_yaml(templates.config_file())["saas_config"])
    assert config.fides_key == "<instance_fides_key>" and config.type == "movable_ink"
    params = {p.name: p for p in config.connector_params}
    required = [name for name, p in params.items() if p.default_value is None]
    assert required == ["brand", "client_id", "client_secret"]  # plus Domain, which has a default
    assert params["domain"].type == "endpoint"
    assert params["domain"].allowed_values == contract.ALLOWED_DOMAINS
    assert params["domain"].default_value == contract.DEFAULT_DOMAIN
    assert params["client_secret"].sensitive
    assert [r.name for r in config.external_references or []] == ["movable_ink_user_id"]


def test_oauth2_token_request_matches_the_contract() -> None:
    authentication = instance_config().client_config.authentication
    assert authentication is not None and authentication.strategy == "oauth2_client_credentials"
    oauth = OAuth2BaseConfiguration(**authentication.configuration)
    assert oauth.token_request.path == contract.TOKEN_PATH
    body = yaml.safe_load(oauth.token_request.body or "{}")
    assert body == contract.token_form("<client_id>", "<client_secret>")
    assert oauth.expires_in and oauth.expires_in > 600  # Fides renews within 10 minutes of expiry


def test_dataset_and_mapping_recipe_load_through_fideslang() -> None:
    dataset = Dataset(**load_yaml(templates.dataset_file())["dataset"][0])
    [user] = dataset.collections
    [mi_u] = user.fields
    assert (user.name, mi_u.name, mi_u.data_categories) == ("user", "mi_u", ["user.unique_id"])
    assert mi_u.fides_meta and mi_u.fides_meta.primary_key

    mapping = Dataset(**load_yaml(templates.mapping_dataset_file())["dataset"][0])
    [table] = mapping.collections
    assert table.fides_meta and table.fides_meta.erase_after == [f"{INSTANCE_KEY}.user"]
    fields = {f.name: f for f in table.fields}
    assert fields["email"].fides_meta and fields["email"].fides_meta.identity == "email"
    assert "CREATE TABLE IF NOT EXISTS movable_ink_user_map" in templates.mapping_sql_file().read_text()


def test_icon_passes_fides_svg_check() -> None:
    verify_svg(templates.icon_file().read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    "name, request_type, validate",
    [
        (fides_override.READ_OVERRIDE, SaaSRequestType.READ, validate_read_override_function),
        (fides_override.DELETE_OVERRIDE, SaaSRequestType.DELETE, validate_update_override_function),
        (fides_override.TEST_OVERRIDE, SaaSRequestType.TEST, validate_test_override_function),
    ],
)
def test_yaml_override_names_are_registered_and_pass_fides_checks(
    name: str, request_type: SaaSRequestType, validate: Any
) -> None:
    config = instance_config()
    requests = config.endpoints[0].requests
    reads = requests.read if isinstance(requests.read, list) else [requests.read]
    named_in_yaml = {
        SaaSRequestType.READ: [read.request_override for read in reads if read],
        SaaSRequestType.DELETE: [requests.delete.request_override],  # type: ignore[union-attr]
        SaaSRequestType.TEST: [config.test_request.request_override],
    }[request_type]
    assert named_in_yaml == [name]
    function = SaaSRequestOverrideFactory.get_override(name, request_type)
    validate(function)


def test_read_is_an_override_not_an_output_template() -> None:
    # Fides pastes values into an `output` template's JSON text unescaped.
    [read] = [instance_config().endpoints[0].requests.read]  # type: ignore[list-item]
    assert read.request_override == fides_override.READ_OVERRIDE  # type: ignore[union-attr]
    assert read.output is None and read.path is None  # type: ignore[union-attr]
    assert [(p.name, p.references) for p in read.param_values or []] == [("mi_u", ["movable_ink_user_id"])]  # type: ignore[union-attr]


def test_fides_reports_access_and_erasure_support() -> None:
    assert [action.value for action in instance_config().supported_actions] == ["access", "erasure"]


def test_graph_resolves_the_external_reference_from_the_mapping_table() -> None:
    secrets = {
        "domain": contract.DEFAULT_DOMAIN,
        "brand": "Acme",
        "client_id": "id",
        "client_secret": "secret",
        "movable_ink_user_id": {
            "dataset": MAPPING_DATASET,
            "field": "movable_ink_user_map.mi_u",
            "direction": "from",
        },
    }
    saas_graph = instance_config().get_graph(secrets)
    mapping = Dataset(**load_yaml(templates.mapping_dataset_file())["dataset"][0])
    graph = DatasetGraph(convert_dataset_to_graph(mapping, "mapping_postgres"), saas_graph)

    mapping_mi_u = FieldAddress(MAPPING_DATASET, "movable_ink_user_map", "mi_u")
    user_mi_u = FieldAddress(saas_graph.name, "user", "mi_u")
    assert any(edge.f1 == mapping_mi_u and edge.f2 == user_mi_u for edge in graph.edges)

    # Traversal from an email reaches Movable Ink's user collection (it raises on unreachable nodes).
    traversal = Traversal(graph, {"email": "person@example.com"})
    assert CollectionAddress(saas_graph.name, "user") in traversal.traversal_node_dict
    # The dataset Fides instantiates from the template agrees with the SaaS config's graph.
    assert [c.name for c in instance_dataset().collections] == ["user"]


# -- Domain validation, as Fides applies it when FIDES__SECURITY__DOMAIN_VALIDATION_MODE is enabled --


@pytest.fixture
def domain_validation_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CONFIG, "dev_mode", False)
    monkeypatch.setattr(CONFIG.security, "domain_validation_mode", DomainValidationMode.enabled)
    monkeypatch.delenv("FIDES__SECURITY__DOMAIN_VALIDATION_MODE", raising=False)


def instantiate_secrets(**overrides: Any) -> dict[str, Any]:
    """The secrets the instantiate endpoint validates, as the Integrations form sends them."""
    return {
        "domain": contract.DEFAULT_DOMAIN,
        "brand": "Acme",
        "client_id": "id",
        "client_secret": "secret",
        "movable_ink_user_id": {"dataset": MAPPING_DATASET, "field": "movable_ink_user_map.mi_u", "direction": "from"},
        **overrides,
    }


@pytest.mark.parametrize(
    "domain", ["https://app.movableink.com", "app.movableink.com/api", "app.movableink.com:8443", "evil.example.com"]
)
def test_fides_rejects_a_domain_outside_the_allowed_hosts_naming_it(
    domain_validation_enabled: None, domain: str
) -> None:
    # The schema the instantiate and secrets endpoints validate with (422 with this message).
    schema = SaaSSchemaFactory(instance_config()).get_saas_schema()
    with pytest.raises(ValidationError) as raised:
        schema(**instantiate_secrets(domain=domain))
    [error] = raised.value.errors()
    assert f"The value '{domain}' for 'domain' is not in the list of allowed values" in error["msg"]
    assert "app.movableink.com, *.movableink.com" in error["msg"]


@pytest.mark.parametrize("domain", ["app.movableink.com", "eu.movableink.com"])
def test_fides_accepts_movable_ink_hosts(domain_validation_enabled: None, domain: str) -> None:
    schema = SaaSSchemaFactory(instance_config()).get_saas_schema()
    assert schema(**instantiate_secrets(domain=domain)).domain == domain  # type: ignore[attr-defined]


@pytest.mark.parametrize("missing", ["brand", "client_id", "client_secret", "movable_ink_user_id"])
def test_fides_rejects_missing_required_settings_naming_them(missing: str) -> None:
    schema = SaaSSchemaFactory(instance_config()).get_saas_schema()
    secrets = instantiate_secrets()
    del secrets[missing]
    with pytest.raises(ValidationError) as raised:
        schema(**secrets)
    assert "must be supplied all of: [brand, client_id, client_secret, movable_ink_user_id]" in str(raised.value)


def test_fides_own_send_check_covers_our_allowed_hosts(domain_validation_enabled: None) -> None:
    """The check `_base_url` borrows from Fides' client sees exactly contract.ALLOWED_DOMAINS."""
    config = instance_config()
    configuration: Any = SimpleNamespace(get_saas_config=lambda: config)
    client = AuthenticatedClient("https://app.movableink.com", configuration, config.client_config)
    client._validate_request_domain("eu.movableink.com")
    with pytest.raises(DomainValidationError, match="evil.example.com"):
        client._validate_request_domain("evil.example.com")
    assert client._allowed_hosts == contract.ALLOWED_DOMAINS
