"""The class a slide's heatmap, decision and evaluation are about, from a predictions
table's model reference and the explicit choices (see :mod:`histotile.class_roles`)."""

from __future__ import annotations

from typing import Any

from histotile.class_roles import ClassRoles, Role, card_roles, recorded_assumptions


def resolve_positive_class(classes: list[str], model: dict[str, Any],
                           positive_class: str | None) -> str:
    """The class heatmaps and decisions are about: ``positive_class`` (a class the model has),
    else the positive class recorded in the model card (``model``: the predictions' model
    reference), else the documented default, the last class (see
    :mod:`histotile.class_roles`; :func:`model_roles` also says what was assumed)."""
    return model_roles(classes, model, positive_class=positive_class).positive_class


def model_roles(classes: list[str], model: dict[str, Any], *,
                positive_class: str | None = None,
                default_class: str | None = None) -> ClassRoles:
    """The :class:`~histotile.class_roles.ClassRoles` of a predictions table's model, with
    explicit choices (``--positive-class``, ``--default-class``) on top."""
    import dataclasses

    reference = {**(model or {}), "classes": list(classes)}
    roles = card_roles(reference, default_class=default_class, positive_class=positive_class,
                       source=str((model or {}).get("model_dir") or "the model"))
    # What prediction already assumed for an old card, unless chosen explicitly now.
    chosen = {Role.POSITIVE: bool(positive_class), Role.DEFAULT: bool(default_class)}
    earlier = [a for a in recorded_assumptions(reference) if not chosen[a.role]]
    return dataclasses.replace(
        roles, assumptions=tuple(dict.fromkeys([*earlier, *roles.assumptions])))


def slide_roles(predictions, positive_class: str | None) -> ClassRoles:
    """The slide's class roles (:class:`~histotile.class_roles.ClassRoles`) with the
    positive class resolved, once per slide: ``positive_class`` (a class the model has),
    else the one the predictions' model reference records, else the last class (what
    was assumed is in ``assumed``). Heatmap, decision, QuPath regions and evaluation
    take it from here."""
    return model_roles(list(predictions.classes), predictions.model,
                       positive_class=positive_class)


def assumed_note(roles: ClassRoles, *extra: str) -> str | None:
    """The roles' assumptions about the positive class, and ``extra`` notes, as one
    warning (None when nothing was assumed)."""
    notes = [a.note for a in roles.assumptions if a.role is not Role.DEFAULT] + list(extra)
    return "; ".join(notes) or None


def used_threshold(predictions, flag: float | None, positive_class: str | None = None):
    """The tile threshold a stage applies to saved predictions
    (:class:`~histotile.models.operating_point.TileThreshold`): ``flag`` (``--threshold``)
    when given; else the one their sidecar records (the model card's operating point, or
    predict's flag), unless it is about another class than ``positive_class``; else
    :data:`~histotile.models.operating_point.DEFAULT_TILE_THRESHOLD`,
    saying why."""
    from histotile.models.operating_point import (
        DEFAULT_TILE_THRESHOLD,
        SOURCE_CARD,
        TileThreshold,
        tile_threshold,
    )

    if flag is not None:
        return tile_threshold(None, flag)
    recorded = (predictions.settings or {}).get("threshold")
    if not isinstance(recorded, dict) or not isinstance(recorded.get("value"), (int, float)):
        return TileThreshold(DEFAULT_TILE_THRESHOLD, f"default {DEFAULT_TILE_THRESHOLD:g} (the "
                             "predictions record no threshold: predicted before operating "
                             "points)")
    about = (predictions.model or {}).get("positive_class")
    if (recorded.get("source") == SOURCE_CARD and positive_class is not None
            and about is not None and positive_class != about):
        return TileThreshold(DEFAULT_TILE_THRESHOLD,
                             f"default {DEFAULT_TILE_THRESHOLD:g} (the card's threshold is "
                             f"about {about!r}, not {positive_class!r})")
    return TileThreshold(float(recorded["value"]), str(recorded.get("source")))
