"""The text-embedding cache: reused across runs, keyed by the weights, bypassable, and harmless
when its folder or a file in it is broken."""
from __future__ import annotations

import warnings

import open_clip.model
import pandas as pd
import pytest
import torch

from clipaudit import textcache
from clipaudit.cli import main
from clipaudit.model import load_model

PROMPTS = ["a photo of a apple.", "a photo of a pizza.", "a red bus", "a photo of a apple."]


@pytest.fixture
def cache_root(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv(textcache.ENV_DIR, str(root))
    monkeypatch.setattr(textcache, "_shards", {})  # each test starts as a fresh process would
    return root


@pytest.fixture
def text_calls(monkeypatch):
    """How many prompts went through the text tower of any CLIP."""
    seen = [0]
    original = open_clip.model.CLIP.encode_text

    def counted(self, text, normalize: bool = False):
        seen[0] += int(text.shape[0])
        return original(self, text, normalize)

    monkeypatch.setattr(open_clip.model.CLIP, "encode_text", counted)
    return seen


def _toy(pretrained=None, text_cache=True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model("toy", pretrained=pretrained, device="cpu", text_cache=text_cache)


def _uncached(model, texts, normalize=True):
    """The reference: the text tower itself, in one batch, as encode_texts did before the cache."""
    with torch.no_grad():
        emb = model.model.encode_text(model.tokenizer(list(texts))).float()
    return torch.nn.functional.normalize(emb, dim=-1) if normalize else emb


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv(textcache.ENV_DIR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert textcache.cache_dir() == tmp_path / "xdg" / "clipaudit" / "text"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert textcache.cache_dir() == tmp_path / "home" / ".cache" / "clipaudit" / "text"
    monkeypatch.setenv(textcache.ENV_DIR, str(tmp_path / "mine"))
    assert textcache.cache_dir() == tmp_path / "mine" / "text"


def test_second_encode_reads_the_cache_with_both_normalisations(cache_root, text_calls):
    model = _toy()
    first = model.encode_texts(PROMPTS)
    assert text_calls[0] == 3  # the repeated prompt is encoded once
    textcache._shards.clear()  # a new process: only the file remains
    again = model.encode_texts(PROMPTS)
    raw = model.encode_texts(PROMPTS, normalize=False)
    assert text_calls[0] == 3
    assert torch.equal(first, again) and torch.equal(first[0], first[3])
    assert torch.allclose(first, _uncached(model, PROMPTS), atol=1e-6)
    assert torch.allclose(raw, _uncached(model, PROMPTS, normalize=False), atol=1e-5)
    assert not torch.allclose(raw.norm(dim=1), torch.ones(4))
    assert len(list((cache_root / "text").glob("*.safetensors"))) == 1


def test_a_different_checkpoint_never_reads_another_models_entries(cache_root, text_calls, tmp_path):
    from safetensors.torch import save_file

    base = _toy()
    sd = {k: v.clone().contiguous() for k, v in base.model.state_dict().items()}
    sd["text_projection"] += 0.05  # a retrained text tower, same architecture
    path = tmp_path / "retrained.safetensors"
    save_file(sd, str(path))
    other = _toy(pretrained=str(path))
    a = base.encode_texts(PROMPTS[:3])
    b = other.encode_texts(PROMPTS[:3])
    assert text_calls[0] == 6  # the second model encoded everything itself
    assert base.weights_hash != other.weights_hash and not torch.allclose(a, b)
    assert torch.allclose(b, _uncached(other, PROMPTS[:3]), atol=1e-6)
    assert len(list((cache_root / "text").glob("*.safetensors"))) == 2


def test_unwritable_folder_warns_once_and_results_are_unchanged(tmp_path, monkeypatch, text_calls):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(textcache.ENV_DIR, str(blocker))  # the cache folder would be a-file/text
    monkeypatch.setattr(textcache, "_shards", {})
    model = _toy()
    with pytest.warns(UserWarning, match="is not writable.*running uncached") as record:
        first = model.encode_texts(PROMPTS[:2])
        second = model.encode_texts(["a blue car", "a green tree"])
    assert len([w for w in record if "text-embedding cache" in str(w.message)]) == 1
    assert text_calls[0] == 4 and blocker.read_text() == "not a folder"
    assert torch.allclose(first, _uncached(model, PROMPTS[:2]), atol=1e-6)
    assert torch.allclose(second, _uncached(model, ["a blue car", "a green tree"]), atol=1e-6)


def test_corrupt_shard_is_ignored_with_a_warning_and_rewritten(cache_root, text_calls):
    model = _toy()
    model.encode_texts(PROMPTS[:2])
    (shard,) = (cache_root / "text").glob("*.safetensors")
    shard.write_bytes(b"\x00garbage that is no safetensors file")
    textcache._shards.clear()
    with pytest.warns(UserWarning, match="ignoring unreadable text-embedding cache file"):
        emb = model.encode_texts(PROMPTS[:2])
    assert text_calls[0] == 4
    textcache._shards.clear()
    model.encode_texts(PROMPTS[:2])  # the rewritten file reads cleanly
    assert text_calls[0] == 4
    assert torch.allclose(emb, _uncached(model, PROMPTS[:2]), atol=1e-6)


def test_no_cache_model_neither_reads_nor_writes(cache_root, text_calls):
    _toy().encode_texts(PROMPTS[:2])
    before = {p: p.stat().st_mtime_ns for p in (cache_root / "text").glob("*")}
    _toy(text_cache=False).encode_texts(PROMPTS[:3])
    assert text_calls[0] == 2 + 3
    assert {p: p.stat().st_mtime_ns for p in (cache_root / "text").glob("*")} == before


def _neurons(tmp_path, out: str) -> pd.DataFrame:
    concepts = tmp_path / "concepts.txt"
    if not concepts.exists():
        concepts.write_text("\n".join(["apple", "pizza", "bus", "cat", "dog", "tree", "car", "red", "blue",
                                       "green", "house", "boat"]))
    argv = ["neurons", "--model", "toy", "--device", "cpu", "--n-images", "32", "--steps", "1", "--top", "2",
            "--no-attribution", "--k", "4", "--n-words", "2", "--n-pictures", "2", "--batch", "32",
            "--concepts", str(concepts), "--out", str(tmp_path / out)]
    textcache._shards.clear()  # each run starts as a new process: only the files remain
    assert main(argv) == 0
    return pd.read_csv(tmp_path / out / "neurons.csv")


def test_second_identical_neurons_run_encodes_no_concept_text(cache_root, text_calls, tmp_path, capsys):
    first = _neurons(tmp_path, "run1")
    n_first = text_calls[0]
    assert n_first >= 12  # every concept went through the text tower once
    second = _neurons(tmp_path, "run2")
    assert text_calls[0] == n_first  # ... and not again
    pd.testing.assert_frame_equal(first.drop(columns=["featvis", "top_images", "attribution"], errors="ignore"),
                                  second.drop(columns=["featvis", "top_images", "attribution"], errors="ignore"))


def test_no_cache_flag_reaches_the_model(cache_root, text_calls):
    import argparse

    from clipaudit.cli import add_model_args, model_from_args

    p = argparse.ArgumentParser()
    add_model_args(p)
    model = model_from_args(p.parse_args(["--model", "toy", "--device", "cpu", "--no-cache"]))
    assert model.text_cache is False
    model.encode_texts(PROMPTS[:2])
    model.encode_texts(PROMPTS[:2])
    assert text_calls[0] == 4 and not (cache_root / "text").exists()
    assert model_from_args(p.parse_args(["--model", "toy", "--device", "cpu"])).text_cache is True
