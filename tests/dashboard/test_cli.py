"""`clipaudit dashboard` flags: bad input is one error line and exit 2; good input starts the app."""
from __future__ import annotations

import pytest
from dash import Dash

from clipaudit.cli import main


def test_missing_runs_folder(capsys, tmp_path):
    assert main(["dashboard", "--runs", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --runs") and "does not exist" in err and "Traceback" not in err


def test_runs_is_a_file(capsys, tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("x")
    assert main(["dashboard", "--runs", str(f)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("port", ["0", "70000", "-1"])
def test_bad_port(capsys, tmp_path, port):
    assert main(["dashboard", "--runs", str(tmp_path), "--port", port]) == 2
    assert "--port must be between 1 and 65535" in capsys.readouterr().err


def test_bad_host(capsys, tmp_path):
    assert main(["dashboard", "--runs", str(tmp_path), "--host", "a b"]) == 2
    assert "--host" in capsys.readouterr().err


def test_starts_on_localhost_by_default(monkeypatch, capsys, runs_root):
    seen = {}
    monkeypatch.setattr(Dash, "run", lambda self, **kw: seen.update(kw))
    assert main(["dashboard", "--runs", str(runs_root)]) == 0
    assert seen == {"host": "127.0.0.1", "port": 8050, "debug": False}
    out = capsys.readouterr()
    assert "http://127.0.0.1:8050/" in out.out and "WARNING" not in out.err


def test_warns_when_binding_beyond_localhost(monkeypatch, capsys, runs_root):
    monkeypatch.setattr(Dash, "run", lambda self, **kw: None)
    assert main(["dashboard", "--runs", str(runs_root), "--host", "0.0.0.0", "--port", "9000"]) == 0
    assert "WARNING: serving on 0.0.0.0" in capsys.readouterr().err


def test_port_in_use_is_a_clear_error(monkeypatch, capsys, runs_root):
    def busy(self, **kw):
        raise OSError(98, "Address already in use")

    monkeypatch.setattr(Dash, "run", busy)
    assert main(["dashboard", "--runs", str(runs_root)]) == 2
    assert "cannot listen on 127.0.0.1:8050 (Address already in use)" in capsys.readouterr().err
