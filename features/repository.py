"""Loading a feature repository: a directory of ``*.py`` and ``*.yaml`` files.

YAML files hold ``sources``, ``entities`` and ``views`` lists; a view names its
source (and optionally its entity) by name or inline. Python files define
module-level :class:`Source`, :class:`Entity` and :class:`FeatureView`
objects. Both go through the same models.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from freshet.features.definitions import Entity, FeatureView, Source
from freshet.features.errors import DefinitionError, RepositoryError

log = logging.getLogger(__name__)

YAML_SECTIONS = ("sources", "entities", "views")
IGNORED_PARTS = {"__pycache__", ".freshet", ".git", ".venv"}


@dataclass
class LoadedObjects:
    """Definitions found in a repository, each with the file it came from."""

    sources: dict[str, tuple[Source, Path]] = field(default_factory=dict)
    entities: dict[str, tuple[Entity, Path]] = field(default_factory=dict)
    views: dict[str, tuple[FeatureView, Path]] = field(default_factory=dict)
    raw_views: list[tuple[dict[str, Any], Path]] = field(default_factory=list)

    def add(self, kind: str, name: str, obj: Any, origin: Path) -> None:
        table: dict[str, tuple[Any, Path]] = getattr(self, kind)
        if name in table:
            existing_obj, existing_path = table[name]
            if existing_obj is obj or (kind != "views" and existing_obj == obj):
                return  # one object imported into two modules, or an identical source/entity
            raise RepositoryError(
                f"duplicate {kind[:-1]} name {name!r}: defined in {existing_path} and in {origin}"
            )
        table[name] = (obj, origin)


def repository_files(root: Path) -> list[Path]:
    if not root.is_dir():
        raise RepositoryError(f"feature repository {str(root)!r} is not a directory")
    files = [
        p for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix in (".py", ".yaml", ".yml")
        and not IGNORED_PARTS.intersection(p.relative_to(root).parts)
    ]
    if not files:
        raise RepositoryError(f"feature repository {str(root)!r} has no *.py or *.yaml files")
    return files


def load_objects(root: Path) -> LoadedObjects:
    found = LoadedObjects()
    for path in repository_files(root):
        if path.suffix == ".py":
            _load_python(path, root, found)
        else:
            _load_yaml(path, found)
    for raw, origin in found.raw_views:
        view = _build_view(raw, origin, found)
        found.add("views", view.name, view, origin)
    return found


@contextmanager
def _legacy_imports(path: Path) -> Iterator[None]:
    """Repositories written for Freshet 0.1/0.2 import ``features``: while one loads, that name is
    ``freshet.features`` (nothing is installed under it; the alias is removed afterwards)."""

    if "features" in sys.modules or "import features" not in _imports_text(path):
        yield
        return
    log.warning("%s imports `features`, Freshet's name before 0.3: write `from freshet import ...`", path)
    aliases = {"features" + name[len("freshet.features"):]: module for name, module in list(sys.modules.items())
               if name == "freshet.features" or name.startswith("freshet.features.")}
    sys.modules.update(aliases)
    try:
        yield
    finally:
        for name in aliases:
            sys.modules.pop(name, None)


def _imports_text(path: Path) -> str:
    """The file's import lines, normalised so ``from features import X`` reads ``import features``."""
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = [line.strip() for line in text.splitlines() if line.lstrip().startswith(("from ", "import "))]
    return "\n".join("import " + line.split()[1] if line.startswith("from ") else line for line in lines)


def _load_python(path: Path, root: Path, found: LoadedObjects) -> None:
    module_name = "freshet_repo_" + "_".join(path.relative_to(root).with_suffix("").parts)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise RepositoryError(f"{path}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        with _legacy_imports(path):
            spec.loader.exec_module(module)
    except DefinitionError as exc:
        raise DefinitionError(f"{path}: {exc}") from None
    except Exception as exc:  # a user's file may raise anything
        raise RepositoryError(f"{path}: failed to import: {type(exc).__name__}: {exc}") from exc
    for value in vars(module).values():
        if isinstance(value, Source):
            found.add("sources", value.name, value, path)
        elif isinstance(value, Entity):
            found.add("entities", value.name, value, path)
        elif isinstance(value, FeatureView):
            found.add("views", value.name, value, path)
            found.add("sources", value.source.name, value.source, path)


def _load_yaml(path: Path, found: LoadedObjects) -> None:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise RepositoryError(f"{path}: not valid YAML: {exc}") from None
    if doc is None:
        return
    if not isinstance(doc, dict):
        raise RepositoryError(f"{path}: expected a mapping with {', '.join(YAML_SECTIONS)}")
    unknown = set(doc) - set(YAML_SECTIONS)
    if unknown:
        raise RepositoryError(
            f"{path}: unknown section(s) {', '.join(sorted(map(str, unknown)))}; allowed: {', '.join(YAML_SECTIONS)}"
        )
    for section in YAML_SECTIONS:
        items = doc.get(section) or []
        if not isinstance(items, list):
            raise RepositoryError(f"{path}: {section!r} must be a list, got {type(items).__name__}")
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise RepositoryError(f"{path}: {section}[{index}] must be a mapping, got {item!r}")
            if section == "views":
                found.raw_views.append((item, path))
                continue
            try:
                obj: Source | Entity = Source(**item) if section == "sources" else Entity(**item)
            except DefinitionError as exc:
                raise DefinitionError(f"{path}: {exc}") from None
            found.add(section, obj.name, obj, path)


def _build_view(raw: dict[str, Any], origin: Path, found: LoadedObjects) -> FeatureView:
    data = dict(raw)
    label = data.get("name", "?")
    source = data.get("source")
    if isinstance(source, str):
        if source not in found.sources:
            known = ", ".join(sorted(found.sources)) or "none"
            raise DefinitionError(f"{origin}: view {label!r} names source {source!r}, which is not defined; sources: {known}")
        data["source"] = found.sources[source][0]
    entity = data.get("entity")
    if isinstance(entity, str):
        data["entity"] = found.entities[entity][0] if entity in found.entities else Entity(name=entity)
    try:
        return FeatureView(**data)
    except DefinitionError as exc:
        raise DefinitionError(f"{origin}: {exc}") from None
