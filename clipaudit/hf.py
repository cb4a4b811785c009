"""Hugging Face ``transformers`` CLIP and SigLIP behind the same :class:`~clipaudit.model.AuditModel`.

Why an adapter rather than a second code path: every audit, hook and cache reads a CLIP through
``model.model.visual`` (the hookable vision tower), ``encode_image``/``encode_text``,
``logit_scale`` (and ``logit_bias`` for sigmoid models). :class:`HFDualEncoder` gives a
transformers ``CLIPModel``/``SiglipModel`` exactly that shape, sharing (not copying) its
parameters, so the numbers are transformers' own.

Pixel convention as everywhere: public methods take pixels in [0, 1] at the model's input size;
:meth:`HFAuditModel.to_pixels` runs the checkpoint's own image processor (resize, crop, rescale)
with normalisation turned off, and the processor's ``image_mean``/``image_std`` are applied inside.
Text is tokenised by the checkpoint's tokenizer, padded to the text tower's context length
(``max_position_embeddings``), as SigLIP was trained and as CLIP's causal mask makes harmless.

Layer paths (for :mod:`clipaudit.hooks`): ``visual.body.encoder.layers.N`` are the
transformer blocks; ``penultimate`` is the last block's ``mlp.activation_fn`` output (the MLP
hidden units after the activation, as for open_clip ViTs).

Requires the optional extra ``clipaudit[hf]`` (``transformers>=4.45``).
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from PIL import Image

from clipaudit.errors import ClipauditError
from clipaudit.model import AuditModel, _finish

#: config.json ``model_type`` values this backend loads (dual encoders with separate towers).
DUAL_ENCODERS = {"clip": "CLIPModel", "siglip": "SiglipModel"}
INSTALL_HINT = "pip install 'clipaudit[hf]' (transformers>=4.45)"


def _require_transformers():
    try:
        import transformers
    except ImportError:
        raise ClipauditError(f"loading a Hugging Face transformers model needs transformers: {INSTALL_HINT}") from None
    return transformers


def _features(out: Any) -> torch.Tensor:
    """The pooled tensor of a transformers output (a tensor before v5, an output object after)."""
    if isinstance(out, torch.Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    return pooled if pooled is not None else out[1]


class _Tower(torch.nn.Module):
    """One tower plus its projection: ``forward(inputs) -> (B, D)`` unnormalised embeddings."""

    def __init__(self, body: torch.nn.Module, projection: torch.nn.Module | None, kwarg: str) -> None:
        super().__init__()
        self.body = body
        self.projection = projection if projection is not None else torch.nn.Identity()
        self._kwarg = kwarg

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.projection(_features(self.body(**{self._kwarg: inputs})))


class HFDualEncoder(torch.nn.Module):
    """A transformers CLIPModel/SiglipModel shaped like an open_clip CLIP.

    Attributes:
        visual: the vision tower (``visual.body`` is transformers' ``vision_model``).
        text: the text tower.
        logit_scale: log of the logit scale (shared with the wrapped model).
        logit_bias: the learned logit bias (SigLIP) or None (CLIP).
        hf_class: the wrapped model's class name.
    """

    def __init__(self, hf_model: torch.nn.Module) -> None:
        super().__init__()
        self.visual = _Tower(hf_model.vision_model, getattr(hf_model, "visual_projection", None), "pixel_values")
        self.text = _Tower(hf_model.text_model, getattr(hf_model, "text_projection", None), "input_ids")
        self.logit_scale = hf_model.logit_scale
        self.logit_bias = getattr(hf_model, "logit_bias", None)
        self.hf_class = type(hf_model).__name__

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual(pixels)

    def encode_text(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.text(input_ids)


class HFTokenizer:
    """Texts -> (N, context_length) token ids, padded to the full context as the model was trained."""

    def __init__(self, tokenizer: Any, context_length: int) -> None:
        self.tokenizer = tokenizer
        self.context_length = int(context_length)

    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        enc = self.tokenizer([str(t) for t in texts], padding="max_length", truncation=True,
                             max_length=self.context_length, return_tensors="pt")
        return enc["input_ids"]

    def count(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text including special tokens, before any cut."""
        return [len(ids) for ids in self.tokenizer([str(t) for t in texts])["input_ids"]]


@dataclass
class HFAuditModel(AuditModel):
    """An :class:`AuditModel` around a transformers dual encoder (see the module docstring)."""

    image_processor: Any = field(default=None, repr=False)
    hf_config: dict = field(default_factory=dict, repr=False)

    @property
    def arch(self) -> str:
        return "vit"

    @property
    def image_size(self) -> int:
        size = self.hf_config.get("vision_config", {}).get("image_size", 224)
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    def describe(self) -> dict:
        out = super().describe()
        out["backend"] = f"transformers {self.model.hf_class}"
        return out

    def preprocessing(self) -> dict:
        out = super().preprocessing()
        proc = self.image_processor
        out.update(resize_mode="processor", interpolation=_jsonable(getattr(proc, "resample", None)),
                   quick_gelu=self.hf_config.get("vision_config", {}).get("hidden_act") == "quick_gelu",
                   size=_jsonable(getattr(proc, "size", None)), crop_size=_jsonable(getattr(proc, "crop_size", None)),
                   do_center_crop=bool(getattr(proc, "do_center_crop", False)))
        return out

    def to_pixels(self, images: Image.Image | Sequence[Image.Image]) -> torch.Tensor:
        """The checkpoint's image processor (resize, crop, rescale to [0, 1]) without its
        normalisation: (B, 3, S, S) in [0, 1]."""
        from clipaudit.data import to_rgb

        if isinstance(images, Image.Image):
            images = [images]
        rgb = [to_rgb(img) for img in images]
        pixels = self.image_processor(images=rgb, do_normalize=False, return_tensors="pt")["pixel_values"]
        return pixels.float().clamp(0, 1).to(self.device)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        return self.tokenizer.count(texts)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, (int, float, str, bool)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if hasattr(value, "items"):
        return {str(k): _jsonable(v) for k, v in dict(value).items() if v is not None}
    if hasattr(value, "__dict__"):  # transformers' SizeDict
        return {str(k): _jsonable(v) for k, v in vars(value).items() if v is not None}
    return str(getattr(value, "name", value))


def read_config(folder: Path) -> dict:
    """config.json of a transformers folder.

    Raises:
        ClipauditError: unreadable JSON, or a model that is not a CLIP/SigLIP dual encoder
            (naming its class and the supported ones).
    """
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ClipauditError(f"cannot read {str(folder / 'config.json')!r} ({type(err).__name__}); "
                             "is it a complete transformers model folder?") from None
    kind = cfg.get("model_type")
    if kind not in DUAL_ENCODERS:
        cls = ", ".join(cfg.get("architectures") or []) or f"model_type {kind!r}"
        raise ClipauditError(f"{str(folder)!r} holds a transformers {cls}, not a CLIP/SigLIP dual encoder "
                             f"(supported: {', '.join(DUAL_ENCODERS.values())}); clipaudit needs an image and a "
                             "text tower")
    return cfg


def cached_hub_folder(repo_id: str) -> Path | None:
    """The local Hugging Face cache snapshot of ``repo_id`` holding a config.json, or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        hit = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # an id the hub library refuses (bad characters): not in the cache
        return None
    return Path(hit).parent if isinstance(hit, str) else None


def load_hf(folder: Path | str, name: str, device: str = "auto", precision: str = "fp32") -> HFAuditModel:
    """Load a transformers CLIP/SigLIP folder (weights, tokenizer, image processor) as an AuditModel.

    Args:
        folder: a ``save_pretrained`` folder (config.json, weights, tokenizer and processor files).
        name: the name it was asked for (a path or a hub id), kept in manifests.
        device, precision: as :func:`clipaudit.model.load_model`.

    Raises:
        ClipauditError: transformers missing, not a dual encoder, weights/tokenizer/processor
            missing or unreadable.
    """
    folder = Path(folder).expanduser()
    cfg = read_config(folder)
    transformers = _require_transformers()
    cls = getattr(transformers, DUAL_ENCODERS[cfg["model_type"]])
    with _quiet_transformers(transformers):
        try:
            hf_model = cls.from_pretrained(str(folder), local_files_only=True)
        except Exception as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
            raise ClipauditError(f"cannot load the {cls.__name__} weights in {str(folder)!r} ({first}); "
                                 "the folder needs config.json and model.safetensors (or pytorch_model.bin)") from None
        tokenizer, processor = _text_and_image_processors(transformers, folder)
    context = int(cfg.get("text_config", {}).get("max_position_embeddings")
                  or hf_model.config.text_config.max_position_embeddings)
    mean = tuple(float(v) for v in processor.image_mean)
    std = tuple(float(v) for v in processor.image_std)
    pcfg = {"source": f"transformers image processor of {name} ({type(processor).__name__})"}
    base = _finish(HFDualEncoder(hf_model), name, str(folder), HFTokenizer(tokenizer, context), device, precision,
                   mean, std, pcfg)
    return HFAuditModel(base.model, base.name, base.pretrained, base.tokenizer, base.device, base.precision,
                        base.mean, base.std, base.preprocess_cfg, image_processor=processor, hf_config=cfg)


@contextlib.contextmanager
def _quiet_transformers(transformers) -> Iterator[None]:
    """Hold back transformers' loading progress bars and config notes while clipaudit loads
    (clipaudit reports problems itself, in one line); restored on exit."""
    log = transformers.utils.logging
    level, bars = log.get_verbosity(), log.is_progress_bar_enabled()
    log.set_verbosity_error()
    log.disable_progress_bar()
    try:
        yield
    finally:
        log.set_verbosity(level)
        if bars:
            log.enable_progress_bar()


def _text_and_image_processors(transformers, folder: Path):
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as err:
        raise ClipauditError(f"cannot load the tokenizer in {str(folder)!r} ({type(err).__name__}); save the "
                             "checkpoint's processor or tokenizer into the folder (processor.save_pretrained)") from None
    try:
        processor = transformers.AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
    except Exception as err:
        raise ClipauditError(f"cannot load the image processor in {str(folder)!r} ({type(err).__name__}); "
                             "the folder needs preprocessor_config.json (processor.save_pretrained)") from None
    return tokenizer, processor


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return (len(parts) == 2 and all(parts) and not name.startswith(("hf-hub:", ".", "~"))
            and not name.endswith((".pt", ".pth", ".bin", ".safetensors"))
            and not Path(name).expanduser().exists())


def resolve(name: str) -> Path | None:
    """The transformers folder ``name`` denotes, None when it is not a transformers model.

    ``name`` is a folder (a transformers folder has config.json) or an ``owner/name`` hub id
    found in the local Hugging Face cache (nothing is downloaded).

    Raises:
        ClipauditError: a folder in neither transformers nor open_clip format (what was found
            is listed), an open_clip folder (how to load it), or a hub id absent from the cache.
    """
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return path
        if (path / "open_clip_config.json").is_file():
            weights = sorted(p.name for p in path.glob("open_clip_*model*"))
            raise ClipauditError(f"{name!r} is an open_clip folder (open_clip_config.json); load its weights file "
                                 f"with --model ARCH --pretrained {str(path / (weights[0] if weights else 'WEIGHTS'))}")
        found = sorted(p.name for p in path.iterdir())
        shown = ", ".join(found[:6]) + (f" and {len(found) - 6} more" if len(found) > 6 else "") if found else "nothing"
        raise ClipauditError(f"folder {name!r} is neither a transformers model (no config.json) nor an open_clip "
                             f"one (no open_clip_config.json); found: {shown}. Pass a checkpoint file, an "
                             "open_clip architecture, or a folder saved with save_pretrained")
    if _looks_like_hub_id(name):
        folder = cached_hub_folder(name)
        if folder is not None:
            return folder
        from huggingface_hub.constants import HF_HUB_CACHE

        raise ClipauditError(f"{name} is not in the local Hugging Face cache ({HF_HUB_CACHE}); offline, download "
                             f"it elsewhere (huggingface-cli download {name}) and pass the folder as --model PATH")
    return None
