"""Feature references, one grammar for every read path (online SDK, HTTP, `get`, training sets).

A reference is ``view`` (every feature of the view's current version), ``view:feature``,
``view@N`` or ``view@N:feature`` (version N, from 1 to the view's current version: older
versions are read with the current definition's feature names).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from freshet.features.definitions import FeatureView
from freshet.features.errors import DefinitionError


@dataclass(frozen=True)
class FeatureReference:
    text: str  # as written
    head: str  # the part before ':' as written: 'view' or 'view@N'
    view: FeatureView  # the definition at the asked version (a copy with that version when pinned)
    features: tuple[str, ...]
    older: bool  # a version before the current one

    @property
    def label(self) -> str:
        """``view`` for the current version, ``view@N`` for an older one."""
        return f"{self.view.name}@{self.view.version}" if self.older else self.view.name


def parse_reference(views: dict[str, FeatureView], text: str) -> FeatureReference:
    """One reference, checked against ``views``; every error names what exists."""
    head, _, feature = text.partition(":")
    view_name, at, pinned = head.partition("@")
    view = views.get(view_name)
    if view is None:
        raise DefinitionError(f"unknown view {view_name!r} in {text!r}; views: {', '.join(sorted(views))}")
    if at:
        try:
            version = int(pinned)
        except ValueError:
            raise DefinitionError(f"bad version {pinned!r} in {text!r}: use view@<integer>:feature") from None
        if not 1 <= version <= view.version:
            raise DefinitionError(f"view {view_name!r} has no version {version} (in {text!r}): its versions are "
                                  f"1 to {view.version}")
    else:
        version = view.version
    older = version != view.version
    if older:
        view = view.model_copy(update={"version": version})
    names = view.feature_names()
    if feature and feature not in names:
        raise DefinitionError(f"view {view_name!r} has no feature {feature!r}; features: {', '.join(names)}")
    return FeatureReference(text, head, view, (feature,) if feature else tuple(names), older)


def parse_references(views: dict[str, FeatureView], texts: Sequence[str]) -> list[FeatureReference]:
    if not texts:
        raise DefinitionError("no features requested: name 'view', 'view:feature' or 'view@N:feature'")
    return [parse_reference(views, text) for text in texts]
