"""The Kubernetes manifests validate against the API schemas (offline), and every flag and variable they
give Freshet exists in the CLI and the settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from freshet.cli import build_parser
from freshet.infra.settings import FreshetSettings

K8S = Path(__file__).resolve().parents[2] / "infra" / "k8s"


def documents() -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        out += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


def containers() -> list[dict[str, Any]]:
    return [c for _path, doc in documents() if doc["kind"] in ("StatefulSet", "Deployment")
            for c in doc["spec"]["template"]["spec"]["containers"]]


@pytest.mark.parametrize(("path", "doc"), documents(), ids=lambda x: x.name if isinstance(x, Path) else x["kind"])
def test_each_resource_validates(path: Path, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_kustomizations_name_files_that_exist() -> None:
    for kustomization in K8S.rglob("kustomization.yaml"):
        spec = yaml.safe_load(kustomization.read_text())
        for resource in spec["resources"]:
            assert (kustomization.parent / resource).exists(), (kustomization, resource)


def test_every_flag_parses_with_the_cli() -> None:
    parser = build_parser()
    found = containers()
    assert {c["args"][0] for c in found} == {"run", "serve"}
    for container in found:
        args = parser.parse_args(container["args"])  # an unknown flag exits (SystemExit) here
        assert args.repo == "/app/examples/fraud"


def test_every_variable_is_a_setting() -> None:
    settings = {f"FRESHET_{name.upper()}" for name in FreshetSettings.model_fields}
    (config,) = [doc for _p, doc in documents() if doc["kind"] == "ConfigMap"]
    assert set(config["data"]) <= settings
    # the AWS SDK's own variables carry an s3:// log's credentials and region (README, "The log on object storage")
    allowed = settings | {"FRESHET_SERVE_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"}
    overlays = sorted((K8S / "overlays").glob("*/kustomization.yaml"))
    assert {p.parent.name for p in overlays} >= {"example", "s3"}
    for path in overlays:
        overlay = yaml.safe_load(path.read_text())
        secrets = {item.split("=", 1)[0] for gen in overlay.get("secretGenerator", []) for item in gen["literals"]}
        assert secrets <= allowed, path
        for patch in overlay.get("patches", []):
            if patch["target"]["kind"] == "ConfigMap":
                keys = {op["path"].removeprefix("/data/") for op in yaml.safe_load(patch["patch"])}
                assert keys <= allowed, path
                assert any(op.get("value", "").startswith("s3://") for op in yaml.safe_load(patch["patch"]))
    for container in containers():
        refs = {r.get("configMapRef", r.get("secretRef"))["name"] for r in container["envFrom"]}
        assert refs == {"freshet-settings", "freshet-credentials"}
