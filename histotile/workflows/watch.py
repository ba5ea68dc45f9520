"""``histotile watch``: every slide that appears under a folder (recursively) is run, as
``histotile run`` runs it, once it is completely written.

A file counts as completely written when its size and modification time have not changed
for ``settle`` seconds; until then it is only ``stat``-ed, never opened (a scanner or a
copy may still be writing it). Each slide then goes through ``run``'s own batch path
(:func:`histotile.workflows.tasks.batch.run_batch`, so the per-slide
:func:`~histotile.workflows.tasks.slide.run_task`): the same outputs, fingerprints,
folder locks and ``run-report``. A slide finished before a restart is skipped by its
fingerprint; a slide that fails gets a failed record and the watch goes on; a stop
(SIGTERM, SIGINT) lets the current slide finish writing, then returns.

Changes are found with watchfiles (file-system events; polling with ``poll`` for NFS and
other file systems without events). Progress goes to an ``on_event`` callback.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from histotile.errors import ConfigError
from histotile.workflows.slide_options import RunOptions
from histotile.workflows.tasks.inputs import is_slide_file


@dataclass(frozen=True)
class WatchSettings:
    """How ``histotile watch`` runs.

    Attributes:
        inbox: the folder watched (recursively) for slides.
        out_dir: the results folder (as ``run --out``); must not lie inside ``inbox``.
        model_dir: the model folder (as ``run --model``).
        settle: seconds a file's size and modification time must stay unchanged before
            it is read.
        poll: poll the folder instead of waiting for file-system events (NFS, SMB).
        interval: seconds between checks of files still settling (and, with ``poll``,
            between polls).
        run: how each slide is run (:class:`RunOptions`: heatmap, tiling, engine, batch
            size, annotations...), checked when built.
    """

    inbox: Path
    out_dir: Path
    model_dir: Path
    settle: float = 10.0
    poll: bool = False
    interval: float = 1.0
    run: RunOptions = field(default_factory=RunOptions)

    def __post_init__(self) -> None:
        for name in ("inbox", "out_dir", "model_dir"):
            object.__setattr__(self, name, Path(getattr(self, name)))

    def validate(self) -> WatchSettings:
        """Raise :class:`ConfigError` naming the first bad setting; return self."""
        if not self.inbox.is_dir():
            raise ConfigError(f"{self.inbox}: not a folder (give the folder to watch)")
        if not (self.model_dir / "model_card.json").is_file():
            raise ConfigError(f"{self.model_dir}: not a model folder (no model_card.json); "
                              "pass a folder written by 'histotile train'")
        if self.out_dir.resolve().is_relative_to(self.inbox.resolve()):
            raise ConfigError(f"{self.out_dir}: the results folder lies inside the watched "
                              f"folder {self.inbox} (its heatmap slides would be watched "
                              "too); choose a results folder outside it")
        if self.settle < 0 or self.interval <= 0:
            raise ConfigError(f"settle {self.settle} s / interval {self.interval} s: use a "
                              "settle of 0 or more and an interval above 0")
        return self

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> WatchSettings:
        """Settings from a plain dict: the watch's own and ``run``'s options by their
        option names, flat (:meth:`RunOptions.from_dict`); unknown keys are refused."""
        own = {f.name for f in fields(cls)} - {"run"}
        unknown = sorted(set(values) - own - set(RunOptions.option_names()))
        if unknown:
            raise ConfigError(f"unknown watch setting(s) {', '.join(unknown)} (known: "
                              f"{', '.join(sorted(own | set(RunOptions.option_names())))})")
        return cls(**{k: v for k, v in values.items() if k in own},
                   run=RunOptions.from_dict({k: v for k, v in values.items() if k not in own}))


@dataclass(frozen=True)
class WatchEvent:
    """What the watch reports. ``kind``: ``waiting`` (a slide seen or changed, not yet
    settled; ``size`` in bytes), ``processing``, ``finished`` (``record`` says how: ok,
    skipped or failed), ``gone`` (removed before it settled)."""

    kind: str
    path: Path
    size: int | None = None
    record: Any = None


OnEvent = Callable[[WatchEvent], None]


class Settling:
    """Slides not yet completely written: the size and modification time last seen of
    each, and since when (``clock`` seconds) they have not changed. Only ``stat``."""

    def __init__(self, settle: float, clock: Callable[[], float], on_event: OnEvent) -> None:
        self.settle = settle
        self.clock = clock
        self.on_event = on_event
        self.files: dict[Path, tuple[tuple[int, int], float]] = {}

    def saw(self, path: Path) -> None:
        """Note ``path`` (created or changed); a path that is not a file is dropped."""
        try:
            stat = path.stat()
        except OSError:
            self.forget(path)
            return
        identity = (stat.st_size, stat.st_mtime_ns)
        known = self.files.get(path)
        if known is None or known[0] != identity:
            self.files[path] = (identity, self.clock())
            self.on_event(WatchEvent("waiting", path, size=stat.st_size))

    def forget(self, path: Path) -> None:
        if self.files.pop(path, None) is not None:
            self.on_event(WatchEvent("gone", path))

    def settled(self) -> list[Path]:
        """The slides unchanged for ``settle`` seconds (removed from the waiting list), in
        the order they were first seen."""
        ready = []
        for path in list(self.files):
            self.saw(path)  # a change restarts its wait
            entry = self.files.get(path)
            if entry is not None and self.clock() - entry[1] >= self.settle:
                del self.files[path]
                ready.append(path)
        return ready


def watch_folder(settings: WatchSettings, on_event: OnEvent | None = None,
                 stop: threading.Event | None = None,
                 clock: Callable[[], float] = time.monotonic) -> list:
    """Run every slide under ``settings.inbox`` once it is completely written, until
    ``stop`` is set; return this watch's records (:class:`SlideRecord`). ``clock``: the
    seconds the settle time is measured in (tests pass their own)."""
    import watchfiles

    settings.validate()
    report = on_event or (lambda _event: None)
    stop = stop or threading.Event()
    waiting = Settling(settings.settle, clock, report)
    records: list = []
    interval_ms = max(1, int(settings.interval * 1000))
    changes_seen = watchfiles.watch(
        settings.inbox, recursive=True, force_polling=settings.poll or None,
        poll_delay_ms=interval_ms, rust_timeout=interval_ms, yield_on_timeout=True,
        debounce=interval_ms, stop_event=stop, raise_interrupt=False,
        watch_filter=lambda _change, name: is_slide_file(Path(name)) or Path(name).is_dir())
    first = True
    for changes in changes_seen:
        if first:  # after the watcher started, so no slide falls between scan and events
            _scan(settings.inbox, waiting)
            first = False
        for change, name in sorted(changes):
            path = Path(name)
            if change == watchfiles.Change.deleted:
                waiting.forget(path)
            elif path.is_dir():  # a folder moved in brings no event per file
                _scan(path, waiting)
            else:
                waiting.saw(path)
        for path in waiting.settled():
            if stop.is_set():
                break
            records.append(_process(path, settings, report))
    return records


def _scan(folder: Path, waiting: Settling) -> None:
    for path in sorted(folder.rglob("*")):
        if is_slide_file(path) and path.is_file():
            waiting.saw(path)


def _process(path: Path, settings: WatchSettings, report: OnEvent):
    """``run`` on one slide (its batch path: task, locks, fingerprints); the run report
    and the evaluation over every slide run into the results folder, rewritten."""
    from histotile.workflows.tasks.aggregate import combine_evaluations
    from histotile.workflows.tasks.batch import run_batch
    from histotile.workflows.tasks.report import merged_records, write_report

    report(WatchEvent("processing", path))
    [record] = run_batch([path], settings.model_dir, settings.out_dir, settings.run,
                         show_progress=False)
    write_report([record], settings.out_dir, name="run-report")
    combine_evaluations(merged_records(settings.out_dir / "run-report.json", []),
                        settings.out_dir)
    report(WatchEvent("finished", path, record=record))
    return record


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT (main thread only): the slide being run
    finishes writing, then :func:`watch_folder` returns."""
    import signal

    stop = threading.Event()

    def handler(_signum, _frame) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop
