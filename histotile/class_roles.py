"""Class semantics, one source of truth: the order of the classes, the **default class**
(the label of a tile no annotation covers) and the **positive class** (what heatmaps,
slide decisions, sensitivity and specificity are about).

The user gives them once, when tiling (``--classes``, ``--default-class``,
``--positive-class``); the tiling manifest's JSON records them, training copies them
into the model card, and every later stage reads them from there. Nothing here sorts
classes: the order is the user's.

Documented defaults (used when a setting is not given, and for model folders written
before these fields existed): the default class is the **first** class, the positive
class the **last** one (so ``other,tumour`` detects tumour).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from histotile.errors import ConfigError, ModelError


class Role(enum.Enum):
    """The two roles a class can play."""

    POSITIVE = "positive"
    DEFAULT = "default"


@dataclass(frozen=True)
class Assumption:
    """A role that was not recorded and took its documented default.

    Attributes:
        role: which role was assumed (code branches on this, never on ``note``).
        note: the sentence the user reads, naming the class assumed and the flag to pass.
    """

    role: Role
    note: str


@dataclass(frozen=True)
class ClassRoles:
    """The classes in order and the roles two of them play.

    Attributes:
        classes: class names in the user's order (the model's output order).
        default_class: the label of unannotated tiles.
        positive_class: the class detected (heatmaps, decisions, sensitivity).
        assumptions: one :class:`Assumption` per role that was not recorded and took its
            documented default (empty when everything was explicit or recorded);
            :attr:`assumed` gives their sentences.
    """

    classes: tuple[str, ...]
    default_class: str
    positive_class: str
    assumptions: tuple[Assumption, ...] = field(default=(), compare=False)

    @property
    def assumed(self) -> tuple[str, ...]:
        """The sentences of :attr:`assumptions`, one per role assumed."""
        return tuple(a.note for a in self.assumptions)

    def assumes(self, role: Role) -> bool:
        """Whether ``role`` took its documented default (was neither given nor recorded)."""
        return any(a.role is role for a in self.assumptions)

    def to_dict(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "default_class": self.default_class,
                "positive_class": self.positive_class}


def resolve_roles(classes: Sequence[str], *, default_class: str | None = None,
                  positive_class: str | None = None, where: str = "classes") -> ClassRoles:
    """Roles from explicit settings, with the documented defaults (first class is the
    default, last class is positive). Raises :class:`ConfigError` when a named class is
    not one of ``classes`` (``where`` names the setting's source in the message)."""
    classes = tuple(str(c) for c in classes)
    if not classes:
        raise ConfigError(f"{where}: no classes given")
    for role, name in (("default class", default_class), ("positive class", positive_class)):
        if name is not None and name not in classes:
            flag = "--" + role.replace(" ", "-")
            raise ConfigError(f"{where}: the {role} {name!r} is not one of the classes "
                              f"{list(classes)} (pass {flag} with one of them)")
    return ClassRoles(classes, default_class or classes[0], positive_class or classes[-1])


def order_classes(found: Iterable[str], declared: Sequence[str] | None) -> list[str]:
    """The classes present in ``found`` in the user's ``declared`` order; classes found but
    not declared follow in order of first appearance. Never sorts."""
    present = list(dict.fromkeys(str(c) for c in found))
    declared = [str(c) for c in declared or ()]
    return [c for c in declared if c in present] + [c for c in present if c not in declared]


def card_roles(card: dict[str, Any], *, default_class: str | None = None,
               positive_class: str | None = None, source: str = "the model") -> ClassRoles:
    """The roles a model was trained with, read from its card (or from a predictions
    table's model reference, which carries the same fields). An explicit
    ``default_class`` / ``positive_class`` overrides the card only with a class the model
    has (:class:`ModelError` otherwise). Cards written before these fields existed: the
    training's ``positive_class``, the card's tiling settings' default class, else the
    documented defaults, each noted in ``assumed``."""
    classes = tuple(str(c) for c in card.get("classes") or ())
    if not classes:
        raise ModelError(f"{source}: the model card lists no classes; retrain the model")
    for role, name in (("default", default_class), ("positive", positive_class)):
        if name is not None and name not in classes:
            flag = "--default-class" if role == "default" else "--positive-class"
            raise ModelError(f"{source}: {role} class {name!r} is not one of the model's "
                             f"classes {list(classes)} (choose {flag} among them)")
    assumed: list[Assumption] = []
    positive = positive_class or _recorded_positive(card, classes)
    if positive is None:
        positive = classes[-1]
        assumed.append(Assumption(Role.POSITIVE, f"{source} records no positive class: "
                                  f"assumed the last class {positive!r} (pass "
                                  "--positive-class to choose another)"))
    default = default_class or _recorded_default(card, classes)
    if default is None:
        default = classes[0]
        assumed.append(Assumption(Role.DEFAULT, f"{source} records no default class: "
                                  f"assumed the first class {default!r} (pass "
                                  "--default-class to choose another)"))
    return ClassRoles(classes, default, positive, tuple(assumed))


def recorded_assumptions(reference: Mapping[str, Any]) -> tuple[Assumption, ...]:
    """The assumptions a predictions table's model reference records (see
    :func:`histotile.postprocess.predict.model_reference`): its ``assumed`` sentences, in
    the order :func:`card_roles` writes them (positive, then default), each given its role
    by the reference's fields: its ``default_class`` is None exactly when the default class
    was assumed, so that sentence is the last one, and any other is the positive class's.
    The sidecar keeps only the sentences, so its format (and every output) is unchanged."""
    notes = [str(n) for n in reference.get("assumed") or ()]
    default_assumed = bool(notes) and reference.get("default_class") is None
    roles = [Role.POSITIVE] * (len(notes) - default_assumed) + [Role.DEFAULT] * default_assumed
    return tuple(Assumption(role, note) for role, note in zip(roles, notes))


def _recorded_positive(card: dict[str, Any], classes: tuple[str, ...]) -> str | None:
    for value in (card.get("positive_class"),
                  (card.get("training") or {}).get("positive_class")):
        if value in classes:
            return str(value)
    return None


def _recorded_default(card: dict[str, Any], classes: tuple[str, ...]) -> str | None:
    if card.get("default_class") in classes:
        return str(card["default_class"])
    saved = ((card.get("tiling") or {}).get("settings")) or {}
    explicit = saved.get("default_class")
    if explicit in classes:
        return str(explicit)
    saved_classes = list(saved.get("classes") or [])
    # The tiler's own first class: the user's order (the card's classes may be sorted).
    if saved_classes and saved_classes[0] in classes:
        return str(saved_classes[0])
    return None


def training_roles(classes: Sequence[str], tiling: dict[str, Any] | None, *,
                   default_class: str | None = None, positive_class: str | None = None,
                   where: str = "training") -> ClassRoles:
    """The roles a model is trained with: the explicit settings, else those the tiler
    recorded (``tiling``: the manifest JSON's tiling settings), else the documented
    defaults (first class default, last class positive; with only the positive class
    named, the default is the first other class)."""
    tiler = tiling or {}
    present = [str(c) for c in classes]
    if default_class is None:
        recorded = tiler.get("default_class") or (list(tiler.get("classes") or []) or [None])[0]
        default_class = recorded if recorded in present else None
    if positive_class is None:
        recorded = tiler.get("positive_class")
        positive_class = recorded if recorded in present else None
    if default_class is None and positive_class is not None and len(present) > 1:
        # The positive class named is the first one (``--positive-class idc`` of the
        # sorted folders idc/, non_idc/): the default is then the first of the others.
        default_class = next(c for c in present if c != positive_class)
    roles = resolve_roles(present, default_class=default_class,
                          positive_class=positive_class, where=where)
    if len(present) > 1 and roles.default_class == roles.positive_class:
        raise ConfigError(f"{where}: the default class (label of unannotated tiles) and the "
                          f"positive class are both {roles.positive_class!r}; pass "
                          "--positive-class or --default-class to tell them apart")
    return roles


def require_positive_class(classes: Sequence[str], *, guessed_order: bool,
                           positive_class: str | None, where: str) -> None:
    """No silent class guess: a binary task whose class order nobody declared (sorted
    image-folder names; a manifest whose tiler recorded neither classes nor a positive
    class) must name its positive class. Raises :class:`ConfigError` naming the classes
    found and the flag; nothing when ``positive_class`` is given or the order was
    declared (the documented default, the last class, then applies)."""
    if positive_class is not None or not guessed_order or len(classes) != 2:
        return
    names = " and ".join(repr(str(c)) for c in classes)
    raise ConfigError(f"{where}: two classes were found, {names} (an order taken from the "
                      "data, e.g. sorted folder names), and no positive class was named; "
                      "pass --positive-class with the class to detect (positive_class= "
                      f"in Python), e.g. --positive-class {classes[0]}")
