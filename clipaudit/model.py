"""Load any CLIP behind one wrapper whose public methods all take pixels in [0, 1].

Why pixels: attack budgets (eps), gradients and feature-visualisation images are then in the
units a person means, and no caller can forget or double-apply the model's normalisation.

Weight lookup order for ``load_model(name, pretrained)``:

1. ``name`` starts with ``toy``: the embedded toy model organism (``pretrained`` may be
   ``none`` for random init, or a checkpoint path for retrained weights).
2. ``name`` is an existing file: a local checkpoint (OpenAI- or open_clip-style state dict);
   the architecture is inferred from the tensor shapes.
3. ``name`` starts with ``hf-hub:``: open_clip fetches config and weights from the hub/cache.
4. otherwise ``name`` is an open_clip architecture and ``pretrained`` is a tag (``openai``),
   a checkpoint path, or ``none`` for random init.

Before all of these, a folder with a config.json, or an ``owner/name`` hub id found in the local
Hugging Face cache, is a transformers CLIP/SigLIP (:mod:`clipaudit.hf`, extra ``clipaudit[hf]``).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F
from PIL import Image

from clipaudit.errors import ClipauditError, suggest

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
RANDOM_INIT = "none"
DEFAULT_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def check_template(template: str) -> str:
    """``template`` if it has exactly one ``{}`` placeholder and no other format field.

    Raises:
        ValueError: no ``{}``, several, a named/numbered field (``{name}``, ``{0}``) or a stray
            brace; the message says to write literal braces as ``{{`` and ``}}``.
    """
    import string

    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError:
        fields = None
    if fields is None or fields != [""]:
        found = ("unbalanced braces" if fields is None else f"{len(fields)} fields {fields}" if fields
                 else "no '{}' placeholder")
        raise ValueError(f"template {template!r} needs exactly one '{{}}' placeholder for the class name "
                         f"(found {found}); write literal braces as '{{{{' and '}}}}'")
    return template


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` means CUDA when present, else CPU; anything else is passed to torch."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ClipauditError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ClipauditError(f"device {device!r} asked for but CUDA is not available; use --device cpu")
    return dev


SCORING_RULES = ("softmax", "sigmoid")


class ZeroShotHead(torch.nn.Module):
    """A zero-shot classifier: calling it on pixels (B,3,H,W) in [0,1] returns logits (B, C).

    ``weights`` holds one L2-normalised text embedding per class (the mean of its templates'
    embeddings, renormalised, as in the CLIP paper). ``rule`` is how the model turns logits into
    probabilities: ``softmax`` over classes (CLIP, Radford et al. 2021: logits = scale * cos) or
    an independent ``sigmoid`` per class (SigLIP, Zhai et al. 2023: logits = scale * cos + bias);
    :meth:`probabilities` applies it.
    """

    def __init__(self, model: "AuditModel", classnames: Sequence[str], templates: Sequence[str],
                 weights: torch.Tensor, rule: str = "softmax") -> None:
        super().__init__()
        if rule not in SCORING_RULES:
            raise ValueError(f"unknown scoring rule {rule!r}; valid: {', '.join(SCORING_RULES)}")
        self.audit_model = model
        self.classnames = list(classnames)
        self.templates = list(templates)
        self.rule = rule
        self.register_buffer("weights", weights)

    def logits_from_embeddings(self, image_embeddings: torch.Tensor) -> torch.Tensor:
        emb = F.normalize(image_embeddings.float(), dim=-1)
        logits = self.audit_model.logit_scale * emb @ self.weights.T.float()
        if self.rule == "sigmoid":
            logits = logits + self.audit_model.logit_bias
        return logits

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, C) probabilities from this head's logits (B, C): a softmax over classes (rows sum
        to 1) or, for sigmoid models, one independent sigmoid per class (rows need not sum to 1)."""
        logits = logits.float()
        return torch.sigmoid(logits) if self.rule == "sigmoid" else torch.softmax(logits, dim=-1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.logits_from_embeddings(self.audit_model.encode_images(pixels, normalize=False))

    def index(self, classname: str) -> int:
        try:
            return self.classnames.index(classname)
        except ValueError:
            raise ClipauditError(f"class {classname!r} is not in the class list"
                                 f"{suggest(classname, self.classnames)}") from None


def check_finite(values: torch.Tensor, what: str, model: "AuditModel") -> torch.Tensor:
    """``values`` unchanged when every entry is finite; else one clear error.

    Why here: NaN or inf weights (a broken checkpoint, an fp16 overflow) make every downstream
    number meaningless yet quiet (argmax of NaN logits is class 0, NaN never beats a threshold),
    so the encoders every audit goes through refuse them once, for all audits.

    Raises:
        ClipauditError: naming the tensor, how many rows are affected and the model.
    """
    finite = torch.isfinite(values.detach())
    if bool(finite.all()):
        return values
    rows = int((~finite.reshape(len(values), -1).all(dim=1)).sum()) if values.ndim else 1
    raise ClipauditError(f"{model.name} ({model.pretrained}) produced non-finite {what} (NaN or inf) for {rows} of "
                         f"{max(len(values), 1) if values.ndim else 1} inputs: its weights are broken or overflow "
                         f"at --precision {model.precision}; check the checkpoint (or use --precision fp32)")


@dataclass
class AuditModel:
    """An open_clip CLIP plus what audits need to know about it.

    Attributes:
        model: the open_clip ``CLIP`` module (eval mode, on ``device``).
        name: the name it was loaded by (``toy-vit``, ``ViT-B-32``, a path...).
        pretrained: the weight tag or path; ``"none"`` means random init.
        arch: ``"resnet"`` or ``"vit"`` (the vision tower's kind).
        image_size: input side in pixels.
        mean, std: the normalisation applied inside every public method.
    """

    model: torch.nn.Module
    name: str
    pretrained: str
    tokenizer: Callable[[Sequence[str]], torch.Tensor]
    device: torch.device
    precision: str = "fp32"
    mean: tuple[float, ...] = OPENAI_MEAN
    std: tuple[float, ...] = OPENAI_STD
    preprocess_cfg: dict = field(default_factory=dict)
    _hash: str | None = field(default=None, repr=False)
    _layer_table: dict | None = field(default=None, repr=False)
    text_cache: bool = True  # read/write the on-disk text-embedding cache (clipaudit.textcache)
    classnames: tuple[str, ...] | None = None  # the class vocabulary of the model's world, when known (toy)
    pictures: Callable | None = None  # (concept, n, seed) -> fresh pictures from the model's world (toy)
    drawings: Callable | None = None  # (concept, n, seed) -> outline drawings of the concept (toy)
    interventions: list = field(default_factory=list, repr=False)  # edits audits run under (clipaudit.runner)
    input_stage: object | None = field(default=None, repr=False)  # a pre-processing stage inside the model (toy-masked)

    # -- facts --------------------------------------------------------------------------
    @property
    def random_init(self) -> bool:
        return self.pretrained == RANDOM_INIT

    @property
    def arch(self) -> str:
        from open_clip.modified_resnet import ModifiedResNet
        from open_clip.transformer import VisionTransformer

        if isinstance(self.model.visual, ModifiedResNet):
            return "resnet"
        if isinstance(self.model.visual, VisionTransformer):
            return "vit"
        return type(self.model.visual).__name__

    @property
    def image_size(self) -> int:
        size = getattr(self.model.visual, "image_size", 224)
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @property
    def dtype(self) -> torch.dtype:
        return _DTYPES[self.precision]

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.detach().float().exp()

    @property
    def logit_bias(self) -> torch.Tensor | None:
        """The learned logit bias of a sigmoid (SigLIP) model, else None."""
        bias = getattr(self.model, "logit_bias", None)
        return None if bias is None else bias.detach().float().reshape(())

    @property
    def scoring(self) -> str:
        """``sigmoid`` for models trained with the sigmoid loss (they carry a logit bias), else ``softmax``."""
        return "sigmoid" if self.logit_bias is not None else "softmax"

    def scoring_rule(self) -> dict:
        """The zero-shot scoring rule with its constants, as manifests record it."""
        out = {"rule": self.scoring, "scale": float(self.logit_scale)}
        if self.logit_bias is not None:
            out["bias"] = float(self.logit_bias)
        return out

    @property
    def weights_hash(self) -> str:
        """sha256 (first 16 hex digits) of every tensor of the state dict, in key order."""
        if self._hash is None:
            h = hashlib.sha256()
            for key, tensor in sorted(self.model.state_dict().items()):
                h.update(key.encode())
                h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
            self._hash = h.hexdigest()[:16]
        return self._hash

    def describe(self) -> dict:
        """The facts every manifest records about the model, with the preprocessing used."""
        return {"name": self.name, "pretrained": self.pretrained, "random_init": self.random_init,
                "arch": self.arch, "image_size": self.image_size, "weights_hash": self.weights_hash,
                "precision": self.precision, "device": str(self.device), "preprocess": self.preprocessing(),
                "scoring": self.scoring_rule(),
                **({"input_stage": self.input_stage.describe()} if self.input_stage is not None else {})}

    @contextlib.contextmanager
    def bpda(self) -> Iterator[None]:
        """Differentiate through the model's non-differentiable input stage as the identity (BPDA,
        Athalye et al. 2018) inside the block; forward values are unchanged.

        Raises:
            ClipauditError: the model has no input stage to approximate.
        """
        if self.input_stage is None:
            raise ClipauditError(f"--bpda needs a model with a known non-differentiable input stage (such as "
                                 f"toy-masked); {self.name} has none, so its gradients are already exact")
        before = self.input_stage.bpda
        self.input_stage.bpda = True
        try:
            yield
        finally:
            self.input_stage.bpda = before

    def preprocessing(self) -> dict:
        """Mean, std, resize mode, interpolation, activation and where they came from."""
        cfg = self.preprocess_cfg
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std],
                "resize_mode": cfg.get("resize_mode", "shortest"), "interpolation": cfg.get("interpolation", "bicubic"),
                "quick_gelu": bool(cfg.get("quick_gelu", False)), "source": cfg.get("source", "architecture defaults"),
                "assumed": bool(cfg.get("assumed", False))}

    # -- pixels -------------------------------------------------------------------------
    def to_pixels(self, images: Image.Image | Sequence[Image.Image]) -> torch.Tensor:
        """Resize + centre-crop PIL images to (B,3,S,S) floats in [0,1] (no normalisation).

        Each image is first decoded as a viewer shows it by :func:`clipaudit.data.to_rgb`, the
        decoder the CLI's loaders use (transparency on white, EXIF orientation, ICC profile,
        16-bit by bit depth ...); then open_clip's own eval transform with identity mean/std, so
        it equals the model's preprocessing up to the final normalisation.
        """
        from open_clip.transform import image_transform

        from clipaudit.data import to_rgb

        if isinstance(images, Image.Image):
            images = [images]
        images = [to_rgb(img) for img in images]
        tf = getattr(self, "_pixel_tf", None)
        if tf is None:
            cfg = self.preprocess_cfg
            tf = image_transform(self.image_size, is_train=False, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                                 resize_mode=cfg.get("resize_mode"), interpolation=cfg.get("interpolation"))
            object.__setattr__(self, "_pixel_tf", tf)
        return torch.stack([tf(img) for img in images]).to(self.device)

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        self._check_pixels(pixels)
        mean = torch.tensor(self.mean, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=pixels.device, dtype=pixels.dtype).view(1, 3, 1, 1)
        return (pixels - mean) / std

    def _check_pixels(self, pixels: torch.Tensor) -> None:
        if pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"pixels must be (B, 3, H, W), got shape {tuple(pixels.shape)}")
        if pixels.shape[-1] != self.image_size or pixels.shape[-2] != self.image_size:
            raise ValueError(f"pixels must be {self.image_size}x{self.image_size} for {self.name}, "
                             f"got {pixels.shape[-2]}x{pixels.shape[-1]}; use to_pixels() to resize")

    # -- encoders -----------------------------------------------------------------------
    def encode_images(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Image embeddings (B, D) for pixels in [0,1]; gradients flow when the input needs them."""
        x = self.normalize(pixels.to(self.device)).to(self.dtype)
        emb = check_finite(self.model.encode_image(x), "image embeddings", self)
        return F.normalize(emb.float(), dim=-1) if normalize else emb.float()

    @property
    def context_length(self) -> int:
        """Tokens the text tower reads (77 on OpenAI CLIPs, 16 on the toys); the rest is cut."""
        if getattr(self, "_context_length", None) is None:
            object.__setattr__(self, "_context_length", int(self.tokenizer(["a"]).shape[-1]))
        return self._context_length

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text including start and end tokens, before any cut to the context."""
        import open_clip

        tok = self.tokenizer
        encode = getattr(tok, "encode", None)
        if encode is None and getattr(tok, "__name__", "") == "<lambda>":  # the standard BPE tokenizer
            encode = open_clip.tokenizer._tokenizer.encode
        if encode is not None and not hasattr(tok, "tokenizer"):
            return [len(encode(str(t))) + 2 for t in texts]
        ids = self.tokenizer(list(texts))  # other tokenizers: a full last slot means the text was cut
        n = self.context_length
        return [n + 1 if int(row[-1]) != 0 else int((row != 0).sum()) for row in ids]

    def cut_texts(self, texts: Sequence[str]) -> list[str]:
        """The texts longer than :attr:`context_length` (the model never reads their end)."""
        n = self.context_length
        return [t for t, k in zip(texts, self.token_counts(texts)) if k > n]

    def _warn_cut(self, texts: Sequence[str]) -> None:
        cut = self.cut_texts(texts)
        if cut:
            more = f" and {len(cut) - 1} more" if len(cut) > 1 else ""
            warnings.warn(f"prompt {cut[0]!r}{more} longer than {self.name}'s {self.context_length}-token text "
                          "context: the model reads only its start", stacklevel=3)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], normalize: bool = True, batch_size: int = 256) -> torch.Tensor:
        """Text embeddings (N, D), computed in batches of ``batch_size``; prompts these weights
        already encoded come from the on-disk cache (:mod:`clipaudit.textcache`)."""
        from clipaudit.textcache import cached_encode

        texts = list(texts)
        if not texts:
            raise ValueError("encode_texts needs at least one text")
        self._warn_cut(texts)
        emb = cached_encode(self, texts, lambda todo: self._encode_text_batches(todo, batch_size))
        check_finite(emb, "text embeddings", self)
        return F.normalize(emb, dim=-1) if normalize else emb

    def _encode_text_batches(self, texts: list[str], batch_size: int) -> torch.Tensor:
        out = []
        for i in range(0, len(texts), batch_size):
            tokens = self.tokenizer(texts[i:i + batch_size]).to(self.device)
            out.append(self.model.encode_text(tokens).float())
        return torch.cat(out)

    def classifier(self, classnames: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES,
                   rule: str | None = None) -> ZeroShotHead:
        """A zero-shot head over ``classnames``: each class is the renormalised mean of its
        templates' normalised text embeddings (CLIP paper, section 3.1.4).

        ``rule`` (default: the model's own, :attr:`scoring`) must match how the model was
        trained. Raises ValueError for another rule: a sigmoid model has no softmax
        temperature and a softmax model has no learned bias."""
        rule = self.scoring if rule is None else rule
        if rule != self.scoring:
            raise ValueError(f"{self.name} scores with a {self.scoring} (its training loss"
                             f"{' has a learned logit bias' if self.scoring == 'sigmoid' else ' has no logit bias'}); "
                             f"a {rule} head over its logits is not its zero-shot classifier; use rule={self.scoring!r}")
        classnames = [str(c) for c in classnames]
        if not classnames:
            raise ValueError("classifier needs at least one class name")
        if len(set(classnames)) != len(classnames):
            dup = sorted({c for c in classnames if classnames.count(c) > 1})
            raise ValueError(f"class names must be unique; repeated: {', '.join(dup)}")
        templates = [check_template(t) for t in (list(templates) or list(DEFAULT_TEMPLATES))]
        texts = [t.format(c) for c in classnames for t in templates]
        self._refuse_identical_heads(classnames, texts, len(templates))
        emb = self.encode_texts(texts).view(len(classnames), len(templates), -1).mean(1)
        return ZeroShotHead(self, classnames, templates, F.normalize(emb, dim=-1), rule).to(self.device)

    def _refuse_identical_heads(self, classnames: list[str], texts: list[str], per_class: int) -> None:
        """Two classes whose every prompt reads the same after the cut would get one head twice."""
        if not self.cut_texts(texts):
            return
        ids = self.tokenizer(texts).view(len(classnames), per_class, -1)
        seen: dict[bytes, str] = {}
        for name, row in zip(classnames, ids):
            key = row.cpu().numpy().tobytes()
            if key in seen:
                raise ValueError(f"classes {seen[key]!r} and {name!r} read the same to {self.name}: their prompts "
                                 f"differ only past its {self.context_length}-token text context, so the second "
                                 "could never be predicted; shorten the class names")
            seen[key] = name


@contextlib.contextmanager
def eval_mode(model: "AuditModel | torch.nn.Module") -> Iterator[None]:
    """Run the block with every submodule in eval mode, then hand each back in the mode it was in.

    Why: in train mode BatchNorm updates its running statistics on every forward (an attack's
    dozens of forwards rewrite them) and dropout makes outputs random; an audit must measure the
    model as deployed and leave it as it found it.
    """
    module = model.model if isinstance(model, AuditModel) else model
    before = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in before:
            m.training = training


def in_eval_mode(audit_fn: Callable) -> Callable:
    """Decorator for audit entry points ``fn(model, ...)``: the call runs under :func:`eval_mode`."""
    import functools

    @functools.wraps(audit_fn)
    def wrapper(model, *args, **kwargs):
        with eval_mode(model):
            return audit_fn(model, *args, **kwargs)

    return wrapper


# ---------------------------------------------------------------------------- loading

def _tokenizer_for(model_name: str | None, context_length: int) -> Callable:
    import open_clip

    if model_name:
        try:
            return open_clip.get_tokenizer(model_name)
        except Exception:  # unknown to open_clip (a local path): the standard tokenizer
            pass
    return lambda texts: open_clip.tokenize(list(texts), context_length=context_length)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a .pt/.bin (``weights_only=True``) or .safetensors file."""
    if not path.is_file():
        raise ClipauditError(f"checkpoint {str(path)!r} does not exist; pass an existing file to --pretrained")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ClipauditError(f"cannot read checkpoint {str(path)!r} ({first[:160]}); is it a complete "
                             "PyTorch/safetensors state dict? Re-download or re-save it") from None
    if isinstance(sd, torch.jit.ScriptModule):  # pragma: no cover - torch refuses these under weights_only
        sd = sd.state_dict()
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ClipauditError(f"checkpoint {str(path)!r} holds no state dict of tensors; save model.state_dict()")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def _load_into(module: torch.nn.Module, sd: dict, source: str, arch_label: str) -> None:
    try:
        result = module.load_state_dict(sd, strict=True)
    except RuntimeError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        detail = lines[1][:160] if len(lines) > 1 else lines[0][:160]
        raise ClipauditError(f"checkpoint {source!r} does not fit architecture {arch_label} ({detail}); "
                             "pass the architecture it was trained with as the model name") from None
    del result


def _finish(module: torch.nn.Module, name: str, pretrained: str, tokenizer: Callable, device: str,
            precision: str, mean=OPENAI_MEAN, std=OPENAI_STD, preprocess_cfg: dict | None = None) -> AuditModel:
    if precision not in _DTYPES:
        raise ClipauditError(f"unknown precision {precision!r}; valid: {', '.join(_DTYPES)}")
    dev = pick_device(device)
    module = module.to(dev).to(_DTYPES[precision]).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    if pretrained == RANDOM_INIT:
        warnings.warn(f"{name}: RANDOM-INIT weights (pretrained='none'); results say nothing about a "
                      "trained CLIP", stacklevel=3)
    return AuditModel(module, name, pretrained, tokenizer, dev, precision, tuple(mean), tuple(std),
                      dict(preprocess_cfg or {}))


def _load_toy_variant(name: str, pretrained: str | None, device: str, precision: str, text_cache: bool,
                      pretrained_tag: str | None) -> AuditModel:
    """``toy-fare`` (its own weights on toy-rn's architecture) or ``toy-masked`` (toy-rn's weights
    behind :class:`clipaudit.toy.masked.QuantizedInput`)."""
    from clipaudit.toy import weights_path
    from clipaudit.toy.configs import TOY_VARIANTS

    arch, differs = TOY_VARIANTS[name]
    if pretrained_tag:
        raise ClipauditError(f"--pretrained-tag does not apply to {name}, clipaudit's toy, whose preprocessing is known")
    shipped = differs == "weights" and pretrained in (None, "")
    if shipped:
        path = weights_path(name)
        if not path.is_file():
            raise ClipauditError(f"the shipped weights for {name} are missing ({path}); reinstall clipaudit or "
                                 f"retrain with `clipaudit toy train --fare`")
        pretrained = str(path)
    model = load_model(arch, pretrained, device, precision, text_cache)
    model.name = name
    if shipped:
        model.pretrained = "shipped"
    if differs == "input_stage":
        from clipaudit.toy.masked import attach

        attach(model)
    return model


def toy_architectures() -> list[str]:
    """The toy CLIP architectures, registered with open_clip's model-config registry."""
    from clipaudit.toy.configs import architectures, register_with_open_clip

    register_with_open_clip()
    return architectures()


class _DropOpenClipRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "open_clip" not in record.pathname


@contextlib.contextmanager
def _quiet_open_clip() -> Iterator[None]:
    """Hold back open_clip's and huggingface_hub's log lines while a model is built here.

    open_clip logs "No pretrained weights loaded ..." or "Failed to download ..." on the root
    logger just before clipaudit raises its own one-line error (or warns about random init), so
    the user would read two accounts of one event. Only these records, only inside the block.
    """
    root, hub = logging.getLogger(), logging.getLogger("huggingface_hub")
    drop, hub_level = _DropOpenClipRecords(), hub.level
    root.addFilter(drop)
    hub.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        root.removeFilter(drop)
        hub.setLevel(hub_level)


def preprocess_from_tag(arch: str, tag: str) -> dict:
    """open_clip's published preprocessing for ``arch`` trained as ``tag`` (its pretrained config).

    Returns:
        ``mean``, ``std`` (3-tuples), ``resize_mode``, ``interpolation``, ``quick_gelu`` (whether
        the original weights were trained with QuickGELU) and ``source``.

    Raises:
        ClipauditError: ``tag`` is not one of open_clip's tags for ``arch`` (the valid ones listed).
    """
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg

    tags = open_clip.list_pretrained_tags_by_model(arch)
    if tag not in tags:
        raise ClipauditError(f"unknown --pretrained-tag {tag!r} for {arch}{suggest(tag, tags)} "
                             f"(valid: {', '.join(tags) or 'none: pass no tag'})")
    cfg = get_pretrained_cfg(arch, tag)
    return {"mean": tuple(cfg.get("mean") or OPENAI_MEAN), "std": tuple(cfg.get("std") or OPENAI_STD),
            "resize_mode": cfg.get("resize_mode") or "shortest", "interpolation": cfg.get("interpolation") or "bicubic",
            "quick_gelu": bool(cfg.get("quick_gelu", False)), "source": f"open_clip pretrained config {arch}/{tag}"}


def _assumed_note(name: str, pcfg: dict) -> str:
    return (f"{name} checkpoint of unknown origin: assumed the architecture's default preprocessing (mean "
            f"{tuple(round(v, 4) for v in pcfg.get('mean', OPENAI_MEAN))}, {pcfg.get('resize_mode', 'shortest')} "
            f"resize, {pcfg.get('interpolation', 'bicubic')}, "
            f"{'QuickGELU' if pcfg.get('quick_gelu') else 'GELU'}); pass --pretrained-tag TAG (e.g. openai) "
            "to use the published preprocessing of the weights it came from")


def _is_path(pretrained: str) -> bool:
    return (Path(pretrained).expanduser().exists() or os.sep in pretrained
            or pretrained.endswith((".pt", ".bin", ".safetensors")))


def _load_open_clip(name: str, pretrained: str | None, device: str, precision: str,
                    pretrained_tag: str | None = None, shipped: bool = False) -> AuditModel:
    import open_clip

    known = None
    if pretrained_tag and (name.startswith("hf-hub:") or pretrained in (None, "", RANDOM_INIT)
                           or not _is_path(pretrained)):
        raise ClipauditError("--pretrained-tag names where a checkpoint file came from; use it with "
                             "--model ARCH --pretrained PATH")
    if name.startswith("hf-hub:"):
        try:
            with _quiet_open_clip():
                module = open_clip.create_model(name, device="cpu")
        except Exception as err:
            raise ClipauditError(f"cannot load {name} from the Hugging Face hub or cache ({type(err).__name__}); "
                                 "offline, download it elsewhere and pass the file with --pretrained PATH") from None
        tag = name
    else:
        archs = open_clip.list_models()
        if name not in archs:
            raise ClipauditError(f"unknown model {name!r}{suggest(name, list(dict.fromkeys(archs + ['toy'])))} "
                                 "(run `python -c 'import open_clip; print(open_clip.list_models())'` for all)")
        if pretrained is None or pretrained == "":
            tags = open_clip.list_pretrained_tags_by_model(name)
            raise ClipauditError(f"{name} needs --pretrained: a tag ({', '.join(tags[:6]) or 'none known'}), "
                                 "a checkpoint path, or 'none' for random init")
        if pretrained == RANDOM_INIT:
            with _quiet_open_clip(), torch.random.fork_rng():
                torch.manual_seed(0)  # the same random init every time: same seed, same numbers
                module = open_clip.create_model(name, pretrained=None, device="cpu")
            tag = RANDOM_INIT
        elif _is_path(pretrained):
            path = Path(pretrained).expanduser()
            sd = _read_state_dict(path)
            known = preprocess_from_tag(name, pretrained_tag) if pretrained_tag else None
            with _quiet_open_clip():
                module = open_clip.create_model(name, pretrained=None, device="cpu",
                                                force_quick_gelu=bool(known and known["quick_gelu"]))
            for meta_key in ("input_resolution", "context_length", "vocab_size"):
                sd.pop(meta_key, None)
            _load_into(module, sd, str(path), name)
            tag = str(path)
        else:
            tags = open_clip.list_pretrained_tags_by_model(name)
            if pretrained not in tags:
                raise ClipauditError(f"unknown pretrained tag {pretrained!r} for {name}"
                                     f"{suggest(pretrained, tags)} (valid: {', '.join(tags) or 'none'})")
            try:
                with _quiet_open_clip():
                    module = open_clip.create_model(name, pretrained=pretrained, device="cpu")
            except Exception as err:
                from open_clip.pretrained import get_pretrained_cfg

                cfg = get_pretrained_cfg(name, pretrained)
                where = cfg.get("hf_hub") or cfg.get("url") or "its source"
                cache = os.environ.get("HF_HOME", str(Path.home() / ".cache" / "huggingface"))
                raise ClipauditError(f"cannot get {name}/{pretrained} weights ({type(err).__name__}); they are "
                                     f"fetched from {where} into {cache}; offline, copy the checkpoint here and "
                                     "pass --pretrained PATH") from None
            tag = pretrained
    pcfg = dict(open_clip.get_model_preprocess_cfg(module))
    pcfg["quick_gelu"] = bool((open_clip.get_model_config(name) or {}).get("quick_gelu", False)
                              or (known is not None and known["quick_gelu"]))
    if known is not None:
        pcfg.update(known)
    elif name.startswith("hf-hub:"):
        pcfg["source"] = f"open_clip config from {name}"
    elif tag == RANDOM_INIT:
        pcfg["source"] = "architecture defaults (random init)"
    elif name in toy_architectures():
        pcfg["source"] = "the toy's own training preprocessing (OpenAI mean/std, bicubic, shortest side)"
        if shipped:
            tag = "shipped"
    elif _is_path(str(pretrained)):
        pcfg.update(source=_assumed_note(name, pcfg), assumed=True)
        warnings.warn(pcfg["source"], stacklevel=3)
    else:
        pcfg.update(preprocess_from_tag(name, str(pretrained)))
    mean = pcfg.get("mean", OPENAI_MEAN)
    std = pcfg.get("std", OPENAI_STD)
    return _finish(module, name, tag, _tokenizer_for(name, 77), device, precision, mean, std, pcfg)


def _load_local_checkpoint(path: Path, device: str, precision: str) -> AuditModel:
    from open_clip.model import build_model_from_openai_state_dict

    sd = _read_state_dict(path)
    try:
        module = build_model_from_openai_state_dict(dict(sd), cast_dtype=torch.float32)
    except Exception as err:
        raise ClipauditError(f"cannot infer a CLIP architecture from {str(path)!r} ({type(err).__name__}); "
                             "pass the architecture as the model name and the file as --pretrained") from None
    pcfg = {"resize_mode": "shortest", "interpolation": "bicubic", "quick_gelu": True,
            "source": "OpenAI's preprocessing (an OpenAI-style state dict)"}
    return _finish(module, str(path), str(path), _tokenizer_for(None, 77), device, precision, preprocess_cfg=pcfg)


def load_model(name: str = "toy", pretrained: str | None = None, device: str = "auto",
               precision: str = "fp32", text_cache: bool = True, pretrained_tag: str | None = None) -> AuditModel:
    """Load a CLIP into an :class:`AuditModel` (see the module docstring for the lookup order).

    Args:
        name: ``toy``/``toy-vit``/``toy-rn``, an open_clip architecture, ``hf-hub:...``, or a path.
        pretrained: a tag, a checkpoint path, ``"none"`` (random init), or None (toy: shipped).
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:N``.
        precision: ``fp32``, ``fp16`` or ``bf16``.
        text_cache: reuse text embeddings cached on disk (:mod:`clipaudit.textcache`);
            False (``--no-cache``) encodes every prompt afresh and writes nothing.
        pretrained_tag: with ``name`` an open_clip architecture and ``pretrained`` a checkpoint
            path, the open_clip tag the weights came from (``openai``, ``meta`` ...): its
            published mean/std, resize mode, interpolation and QuickGELU are used. Without it a
            checkpoint path gets the architecture's defaults and a warning says so.

    Raises:
        ClipauditError: unknown name or tag, unreadable or mismatched checkpoint, weights
            unavailable offline.

    Example:
        >>> m = load_model("toy")
        >>> m.classifier(["apple", "pizza"])(torch.rand(2, 3, 64, 64)).shape
        torch.Size([2, 2])
    """
    name = str(name).strip()
    if not name:
        raise ClipauditError("empty model name; use toy, an open_clip architecture, hf-hub:..., or a path")
    from clipaudit.hf import resolve as _hf_folder
    from clipaudit.toy.configs import TOY_VARIANTS

    hf_folder = _hf_folder(name)  # a folder or a cached hub id: transformers CLIP/SigLIP
    if hf_folder is not None:
        from clipaudit.hf import load_hf

        model = load_hf(hf_folder, name, device, precision)
    elif Path(name).expanduser().is_file():  # a file is a checkpoint, whatever its name (toy_x.pt too)
        if pretrained_tag:
            raise ClipauditError("--pretrained-tag applies to an open_clip architecture loaded from a checkpoint "
                                 "path (--model ARCH --pretrained PATH)")
        model = _load_local_checkpoint(Path(name).expanduser(), device, precision)
    else:
        from clipaudit.toy import TOY_ALIASES, shipped_weights

        name = TOY_ALIASES.get(name, name)
        if name in TOY_VARIANTS:
            return _load_toy_variant(name, pretrained, device, precision, text_cache, pretrained_tag)
        shipped = pretrained in (None, "") and name in shipped_weights()
        if name in toy_architectures():
            if pretrained_tag:
                raise ClipauditError(f"--pretrained-tag applies to an open_clip architecture loaded from a checkpoint "
                                     f"path (--model ARCH --pretrained PATH); {name} is clipaudit's toy, whose "
                                     "preprocessing is known")
            if shipped and not shipped_weights()[name].is_file():
                raise ClipauditError(f"the shipped weights for {name} are missing ({shipped_weights()[name]}); "
                                     f"reinstall clipaudit or retrain with `clipaudit toy train --arch "
                                     f"{name.split('-')[1]}`")
        model = _load_open_clip(name, str(shipped_weights()[name]) if shipped else pretrained, device, precision,
                                pretrained_tag, shipped=shipped)
    model.text_cache = text_cache
    if model.name in toy_architectures() or model.name in TOY_VARIANTS:  # the toy knows the class vocabulary of its world
        from clipaudit.toy.styles import object_drawings
        from clipaudit.toy.world import OBJECT_CLASSES, object_pictures

        model.classnames = tuple(OBJECT_CLASSES)
        model.pictures = object_pictures
        model.drawings = object_drawings
    return model
