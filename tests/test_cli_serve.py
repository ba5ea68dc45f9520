"""``histotile serve`` builds its :class:`ServeSettings` once, from the command line and
``--config``, and hands it whole to the service (stubbed here: nothing listens)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from histotile.workflows.cli.main import cli
from histotile.workflows.serve.settings import ServeSettings


def _captured(monkeypatch) -> list[ServeSettings]:
    import histotile.workflows.serve as serve_package

    got: list[ServeSettings] = []
    monkeypatch.setattr(serve_package, "serve_settings",
                        lambda settings, echo=None: got.append(settings))
    return got


def test_serve_gets_one_settings_object_from_flags_and_config(tmp_path, monkeypatch):
    got = _captured(monkeypatch)
    slides = tmp_path / "slides"
    slides.mkdir()
    config = tmp_path / "serve.yaml"
    config.write_text("port: 9100\nmax_upload_mb: 5\n")
    result = CliRunner().invoke(cli, ["serve", str(slides), "--config", str(config),
                                      "--threshold", "0.3", "--public-metrics"])
    assert result.exit_code == 0, result.output
    [settings] = got
    assert settings.roots == [Path(slides)] and settings.model is None
    assert (settings.port, settings.max_upload_mb, settings.threshold) == (9100, 5.0, 0.3)
    assert settings.public_metrics and settings.host == ServeSettings().host


def test_serve_refuses_an_open_host_without_a_token(tmp_path, monkeypatch):
    got = _captured(monkeypatch)
    result = CliRunner().invoke(cli, ["serve", str(tmp_path), "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "--token" in result.output and got == []
