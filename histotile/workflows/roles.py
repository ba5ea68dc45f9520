"""The class a slide's heatmap, decision and evaluation are about, from a predictions
table's model reference and the explicit choices (see :mod:`histotile.class_roles`)."""

from __future__ import annotations

from typing import Any


def resolve_positive_class(classes: list[str], model: dict[str, Any],
                           requested: str | None) -> str:
    """The class heatmaps and decisions are about: ``requested`` (a class the model has),
    else the positive class recorded in the model card (``model``: the predictions' model
    reference), else the documented default, the last class (see
    :mod:`histotile.class_roles`; :func:`model_roles` also says what was assumed)."""
    return model_roles(classes, model, positive=requested).positive_class


def model_roles(classes: list[str], model: dict[str, Any], *, positive: str | None = None,
                default: str | None = None):
    """The :class:`~histotile.class_roles.ClassRoles` of a predictions table's model, with
    explicit choices (``--class``/``--positive-class``, ``--default-class``) on top."""
    import dataclasses

    from histotile.class_roles import card_roles

    reference = {**(model or {}), "classes": list(classes)}
    roles = card_roles(reference, default_class=default, positive_class=positive,
                       source=str((model or {}).get("model_dir") or "the model"))
    # What prediction already assumed for an old card, unless chosen explicitly now.
    earlier = [n for n in reference.get("assumed") or ()
               if not (positive and "positive class" in n)
               and not (default and "default class" in n)]
    return dataclasses.replace(roles, assumed=tuple(dict.fromkeys([*earlier, *roles.assumed])))


def assumed_note(roles, *extra: str) -> str | None:
    """The roles' assumptions about the positive class, and ``extra`` notes, as one
    warning (None when nothing was assumed)."""
    notes = [n for n in roles.assumed if "default class" not in n] + list(extra)
    return "; ".join(notes) or None
