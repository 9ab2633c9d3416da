"""cluster.yaml passes Ray's own cluster-launcher validation, and deploy/serve_config.yaml Serve's own
config model, offline, plus the checks those validators do not make (unknown keys, inline secrets)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.serve.schema import DeploymentSchema, HTTPOptionsSchema, ServeApplicationSchema, ServeDeploySchema

from serve_app.ingress import MozaiksIngress
from mozaiks.settings import Settings

REPO = Path(__file__).resolve().parent.parent
SECRET_WORDS = ("secret", "password", "private_key", "api_key", "credential", "token")


def _load(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / name).read_text()))


def _launcher_validate(raw: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` does before it talks to the cloud: fill in defaults, then the JSON schema."""
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config


def test_cluster_yaml_passes_the_cluster_launcher_validation():
    config = _launcher_validate(_load("cluster.yaml"))
    types = config["available_node_types"]
    assert config["head_node_type"] == "head" and "generator" not in types["head"]["resources"]
    assert types["generator"]["resources"]["generator"] >= 1
    assert types["generator"]["max_workers"] >= 1 and "generator" not in types["worker"]["resources"]


def test_the_launcher_validation_does_reject_a_mistake():
    raw = _load("cluster.yaml")
    raw["setup_comands"] = raw.pop("setup_commands")
    with pytest.raises(jsonschema.ValidationError):
        _launcher_validate(raw)


def test_every_node_installs_the_project_and_the_head_deploys_the_serve_config():
    raw = _load("cluster.yaml")
    assert "/home/ubuntu/mozaiks" in raw["file_mounts"]
    assert any("pip install" in c and "~/mozaiks" in c for c in raw["setup_commands"])
    assert any("serve deploy deploy/serve_config.yaml" in c for c in raw["head_start_ray_commands"])
    assert all(". ~/mozaiks.env" in c for c in raw["head_start_ray_commands"] + raw["worker_start_ray_commands"]
               if "ray start" in c)


def _unknown_keys(raw: dict[str, Any], model: type[BaseModel], where: str) -> list[str]:
    """Serve's config models ignore unknown keys (forward compatibility): a typo would pass."""
    known = set(model.model_fields) | {f.alias for f in model.model_fields.values() if f.alias}
    return [f"{where}.{key}" for key in raw if key not in known]


def test_serve_config_is_accepted_by_serves_config_model():
    raw = _load("deploy/serve_config.yaml")
    config = ServeDeploySchema.model_validate(raw)
    unknown = _unknown_keys(raw, ServeDeploySchema, "") + _unknown_keys(raw["http_options"], HTTPOptionsSchema,
                                                                       "http_options")
    for app in raw["applications"]:
        unknown += _unknown_keys(app, ServeApplicationSchema, app["name"])
        for deployment in app["deployments"]:
            unknown += _unknown_keys(deployment, DeploymentSchema, deployment["name"])
    assert unknown == []
    (app,) = config.applications
    assert app.import_path == "serve_app.ingress:app_builder"
    (ingress,) = app.deployments
    assert ingress.name == MozaiksIngress.name  # a name the application does not have fails the deploy
    assert ingress.max_ongoing_requests >= 1000  # every open WebSocket holds a request slot
    assert ingress.num_replicas >= 2


def test_serve_config_args_are_settings_and_hold_no_secret():
    (app,) = _load("deploy/serve_config.yaml")["applications"]
    args = app["args"]
    assert set(args) <= set(Settings.model_fields), set(args) - set(Settings.model_fields)
    assert not [key for key in args if any(word in key for word in SECRET_WORDS)]
    assert "store_url" not in args  # it carries credentials: MOZAIKS_STORE_URL on the nodes
    assert "env_vars" not in app.get("runtime_env", {})
    settings = Settings(**args, user_jwt_secret="x" * 32, runtime_token_secret="y" * 32)
    assert settings.mode == "production"
