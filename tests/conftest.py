"""Shared fixtures: tiny random-init ResNet/ViT CLIPs (layouts) and the shipped toy (meaning)."""
from __future__ import annotations

import os
import warnings

import pytest
import torch

os.environ.setdefault("CLIPAUDIT_NO_PROGRESS", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session", autouse=True)
def _text_cache_in_tmp(tmp_path_factory):
    """Text embeddings are cached in a fresh folder: tests never write to ~/.cache nor read
    what an earlier run left there."""
    old = os.environ.get("CLIPAUDIT_CACHE_DIR")
    os.environ["CLIPAUDIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("clipaudit-cache"))
    yield
    if old is None:
        os.environ.pop("CLIPAUDIT_CACHE_DIR", None)
    else:
        os.environ["CLIPAUDIT_CACHE_DIR"] = old


def _load(name: str, pretrained: str | None):
    from clipaudit.model import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(name, pretrained=pretrained, device="cpu")


@pytest.fixture(scope="session")
def tiny_vit():
    """Random-init toy-vit architecture: (B, T, C) token layout, 64 px."""
    return _load("toy-vit", "none")


@pytest.fixture(scope="session")
def tiny_rn():
    """Random-init toy-rn architecture: NCHW conv layout, 64 px."""
    return _load("toy-rn", "none")


@pytest.fixture(scope="session", params=["vit", "rn"])
def tiny_model(request, tiny_vit, tiny_rn):
    return tiny_vit if request.param == "vit" else tiny_rn


def _shipped(name: str):
    from clipaudit.toy import weights_path

    assert weights_path(name).is_file(), f"shipped weights for {name} are missing from the package"
    return _load(name, None)


@pytest.fixture(scope="session")
def toy_vit():
    """The shipped, trained toy-vit."""
    return _shipped("toy-vit")


@pytest.fixture(scope="session")
def toy_rn():
    """The shipped, trained toy-rn (the default ``toy``)."""
    return _shipped("toy-rn")


@pytest.fixture(scope="session", params=["toy-vit", "toy-rn"])
def toy_model(request):
    return _shipped(request.param)


def pytest_sessionfinish(session, exitstatus):
    """With CLIPAUDIT_FAIL_ON_SKIP set (CI sets it), any skipped test fails the run: a skip there
    means a dependency went missing or a guard hides a broken import, never a planned absence."""
    if not os.environ.get("CLIPAUDIT_FAIL_ON_SKIP") or exitstatus != 0:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        for rep in skipped:
            reason = rep.longrepr[-1] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
            print(f"\nunexpected skip: {rep.nodeid}: {reason}")
        session.exitstatus = 1
