"""Exact decomposition of a CLIP image embedding into direct contributions of its parts.

Why: since Gandelsman, Efros & Steinhardt ("Interpreting CLIP's image representation via text-based
decomposition", ICLR 2024) CLIP's vision tower is read through its residual stream. The image
embedding is a *sum* of direct contributions: the embedding term, every attention head (split
further by the image token it reads from), every MLP and the biases. The reference code
re-implements open_clip's attention module to reach per-head outputs; here every number comes
from activations captured on the unmodified model (:func:`clipaudit.hooks.run_with_cache`):
attention weights and per-head values are re-derived from each block's captured ``ln_1`` output
and the module's own ``in_proj``/``out_proj`` weights.

ViT (``pool_type='tok'``): the CLS token leaving the transformer is
``ln_pre(x)[0] + sum_l (attn_l[0] + mlp_l[0])``. ``ln_post`` is treated as linear with its scale
frozen per image (``g * (c - mean(c)) / sigma`` for each part ``c``, ``sigma`` from the real
stream), its shift ``beta`` is a part of its own, then everything goes through ``proj``.
ResNet: the attention-pooling layer's output for its query token is split by head and spatial
position (the mean token's share is spread evenly over the positions it averages), plus per head
its positional-embedding and value-bias parts and the output bias. Nothing else is nonlinear
after ``layer4``, so the sum is exact.

Everything is computed in float64; :attr:`Decomposition.max_rel_error` is the relative error of the
sum against the model's own ``encode_images`` (captum's ``return_convergence_delta`` idea).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from clipaudit.errors import ClipauditError
from clipaudit.hooks import run_with_cache


@dataclass
class Decomposition:
    """Direct contributions to the unnormalised image embedding (float64, on the model's device).

    Attributes:
        arch: ``vit`` or ``resnet``.
        heads: (B, L, H, D) per attention layer and head (ResNet: L = 1, the pooling layer; the
            head's content part summed over positions, plus its positional and value-bias parts).
        tokens: (B, L, H, T, D) per source token, or None when not asked for. ViT: T includes
            CLS at 0, then the patches row by row; ResNet: T = the h*w positions of ``layer4``
            (content only: ``heads`` = ``tokens.sum(3)`` + ``head_extra``).
        head_extra: (B, L, H, D) per-head parts no token owns (ResNet positional + value bias;
            zeros for ViT, whose heads' value biases ride on their tokens).
        mlps: (B, L, D) per MLP (ViT; zeros (B, 0, D) for ResNet).
        attn_bias: (B, L, D) each attention layer's output-projection bias.
        embed: (B, D) the embedding term (ViT: ``ln_pre`` output of the CLS token).
        post_bias: (B, D) ``ln_post``'s shift through ``proj`` (ViT; zeros for ResNet).
        attention: (B, L, H, T) the query token's attention weights (ViT: the CLS row over all
            tokens; ResNet: the pooling query's weights over positions, the mean token's share
            spread evenly).
        embedding: (B, D) the model's own ``encode_images(normalize=False)`` output.
        grid: (rows, cols) of the patch / position grid.
    """

    arch: str
    heads: torch.Tensor
    tokens: torch.Tensor | None
    head_extra: torch.Tensor
    mlps: torch.Tensor
    attn_bias: torch.Tensor
    embed: torch.Tensor
    post_bias: torch.Tensor
    attention: torch.Tensor
    embedding: torch.Tensor
    grid: tuple[int, int]

    @property
    def n_layers(self) -> int:
        return int(self.heads.shape[1])

    @property
    def n_heads(self) -> int:
        return int(self.heads.shape[2])

    def total(self) -> torch.Tensor:
        """(B, D) the sum of every part (equals :attr:`embedding` up to rounding)."""
        return (self.heads.sum((1, 2)) + self.mlps.sum(1) + self.attn_bias.sum(1) + self.embed + self.post_bias)

    @property
    def rel_error(self) -> torch.Tensor:
        """(B,) ||sum of parts - embedding|| / ||embedding|| per image."""
        emb = self.embedding.double()
        return (self.total() - emb).norm(dim=-1) / emb.norm(dim=-1).clamp_min(1e-30)

    @property
    def max_rel_error(self) -> float:
        return float(self.rel_error.max())

    def components(self) -> tuple[list[str], torch.Tensor]:
        """(names, (B, K, D)) every part as one stacked tensor: ``embed``, per layer ``L{l}.H{h}``
        ..., ``L{l}.attn_bias``, ``L{l}.mlp``, then ``post_bias``; they sum to :meth:`total`."""
        names, parts = ["embed"], [self.embed[:, None]]
        for l in range(self.n_layers):
            names += [f"L{l}.H{h}" for h in range(self.n_heads)] + [f"L{l}.attn_bias"]
            parts += [self.heads[:, l], self.attn_bias[:, l, None]]
            if self.mlps.shape[1]:
                names.append(f"L{l}.mlp")
                parts.append(self.mlps[:, l, None])
        names.append("post_bias")
        parts.append(self.post_bias[:, None])
        return names, torch.cat(parts, dim=1)


def attention_layers(model) -> list[str]:
    """Module paths of the vision tower's attention layers (ViT blocks or the ResNet pooling).

    Raises:
        ClipauditError: the tower has no attention this module can read (names its layers).
    """
    visual = model.model.visual
    blocks = getattr(getattr(visual, "transformer", None), "resblocks", None)
    if blocks is not None and len(blocks) and all(isinstance(getattr(b, "attn", None), torch.nn.MultiheadAttention)
                                                  for b in blocks):
        return [f"visual.transformer.resblocks.{i}" for i in range(len(blocks))]
    if hasattr(visual, "attnpool") and hasattr(getattr(visual, "attnpool"), "num_heads"):
        return ["visual.attnpool"]
    hf = _hf_layers(visual)
    if hf is not None:
        return [f"visual.body.encoder.layers.{i}" for i in range(len(hf))]
    names = [n for n, _ in visual.named_children()]
    raise ClipauditError(f"{getattr(model, 'name', 'this model')}'s vision tower ({type(visual).__name__}) has no "
                         f"attention heads clipaudit can read; its layers are: {', '.join(names)} "
                         "(heads needs an open_clip ViT or ModifiedResNet, or a transformers CLIP)")


def _hf_layers(visual) -> torch.nn.ModuleList | None:
    """The encoder layers of a transformers CLIP/SigLIP vision tower (clipaudit.hf), else None."""
    layers = getattr(getattr(getattr(visual, "body", None), "encoder", None), "layers", None)
    if layers is None or not len(layers):
        return None
    if not all(hasattr(getattr(l, "self_attn", None), "q_proj") for l in layers):
        return None
    return layers


def n_heads(model) -> tuple[int, int]:
    """(attention layers, heads per layer) of the vision tower."""
    layers = attention_layers(model)
    visual = model.model.visual
    if layers == ["visual.attnpool"]:
        return 1, int(visual.attnpool.num_heads)
    if _hf_layers(visual) is not None:
        return len(layers), int(_hf_layers(visual)[0].self_attn.num_heads)
    return len(layers), int(visual.transformer.resblocks[0].attn.num_heads)


def _check_vit(visual) -> None:
    if getattr(visual, "attn_pool", None) is not None or getattr(visual, "pool_type", "tok") != "tok":
        raise ClipauditError("heads decomposes ViTs that pool the CLS token (pool_type 'tok', no attentional "
                             f"pooler); this one has pool_type {getattr(visual, 'pool_type', '?')!r}")
    for blk in visual.transformer.resblocks:
        if hasattr(blk, "ln_1_kv") or type(blk).__name__ != "ResidualAttentionBlock":
            raise ClipauditError(f"heads reads open_clip's standard ResidualAttentionBlock, not {type(blk).__name__}")


def _nld(act: torch.Tensor, layout: str) -> torch.Tensor:
    """Batch-first (B, T, C) view of a token activation of declared layout nld or lnd."""
    return act.permute(1, 0, 2) if layout == "lnd" else act


def _scale_of(mod: torch.nn.Module, dim: int, device, dtype) -> torch.Tensor:
    """The LayerScale gamma (dim,) of ``ls_1``/``ls_2``, or ones for an Identity."""
    gamma = getattr(mod, "gamma", None)
    return gamma.detach().to(device, dtype) if gamma is not None else torch.ones(dim, device=device, dtype=dtype)


def head_values(attn: torch.nn.MultiheadAttention, x: torch.Tensor, query: slice | None = None,
                heads: Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention weights and per-head values of an ``nn.MultiheadAttention`` from its input.

    Args:
        attn: the module (self-attention, packed ``in_proj_weight``).
        x: (B, T, C) its input (the block's ``ln_1`` output), batch first.
        query: the query tokens to keep (None: all).
        heads: the heads to compute (None: all); only their rows of ``in_proj`` are used.

    Returns:
        (weights (B, H', Tq, T), values (B, H', T, dh)) for the H' heads asked, in ``x``'s dtype.
    """
    b, t, c = x.shape
    dh = c // attn.num_heads
    idx = list(range(attn.num_heads)) if heads is None else [int(i) for i in heads]
    h = len(idx)
    rows = torch.cat([torch.arange(i * dh, (i + 1) * dh) for i in idx]).to(x.device)
    w = attn.in_proj_weight.detach().to(x.dtype).view(3, c, c)[:, rows]  # (3, h*dh, C)
    bias = attn.in_proj_bias.detach().to(x.dtype).view(3, c)[:, rows] if attn.in_proj_bias is not None \
        else torch.zeros(3, h * dh, dtype=x.dtype, device=x.device)
    xq = x if query is None else x[:, query]
    q = (xq @ w[0].T + bias[0]).view(b, -1, h, dh).transpose(1, 2)
    k = (x @ w[1].T + bias[1]).view(b, t, h, dh).transpose(1, 2)
    v = (x @ w[2].T + bias[2]).view(b, t, h, dh).transpose(1, 2)
    weights = torch.softmax((q @ k.transpose(-1, -2)) / dh ** 0.5, dim=-1)
    return weights, v


def _decompose_vit(model, pixels: torch.Tensor, tokens: bool) -> Decomposition:
    visual = model.model.visual
    _check_vit(visual)
    blocks = attention_layers(model)
    wanted = ["visual", "visual.ln_pre", "visual.transformer"] + [f"{p}.ln_1" for p in blocks] + \
        [f"{p}.ls_2" for p in blocks]
    with torch.no_grad():
        _, cache = run_with_cache(model, pixels, wanted)
    emb = cache["visual"].float()  # the tower's own, unnormalised output
    f64 = torch.float64
    dev = pixels.device if pixels.device.type == model.device.type else model.device
    lay = cache.layout("visual.transformer")
    resid = _nld(cache["visual.transformer"], lay)[:, 0].to(dev, f64)  # (B, C) CLS into ln_post
    g = visual.ln_post.weight.detach().to(dev, f64)
    beta = visual.ln_post.bias.detach().to(dev, f64)
    proj = visual.proj.detach().to(dev, f64)
    sigma = torch.sqrt(resid.var(-1, unbiased=False, keepdim=True) + visual.ln_post.eps)  # (B, 1)

    def out(c: torch.Tensor) -> torch.Tensor:  # (..., C) a part of the CLS stream -> embedding space
        return ((c - c.mean(-1, keepdim=True)) * g / sigma.view(-1, *([1] * (c.ndim - 2)), 1)) @ proj

    embed = out(_nld(cache["visual.ln_pre"], cache.layout("visual.ln_pre"))[:, 0].to(dev, f64))
    heads, toks, biases, mlps, attns = [], [], [], [], []
    for i, path in enumerate(blocks):
        blk = visual.transformer.resblocks[i]
        x = _nld(cache[f"{path}.ln_1"], cache.layout(f"{path}.ln_1")).to(dev, f64)
        weights, v = head_values(blk.attn, x, query=slice(0, 1))  # (B,H,1,T), (B,H,T,dh)
        b, h, t, dh = v.shape
        c = x.shape[-1]
        gamma = _scale_of(blk.ls_1, c, dev, f64)
        w_o = blk.attn.out_proj.weight.detach().to(dev, f64).view(c, h, dh) * gamma[:, None, None]  # (C, H, dh)
        per_tok = weights[:, :, 0, :, None] * v  # (B, H, T, dh)
        contrib = torch.einsum("bhtd,chd->bhtc", per_tok, w_o)  # (B, H, T, C) residual space
        o_bias = blk.attn.out_proj.bias
        bias_c = (o_bias.detach().to(dev, f64) * gamma) if o_bias is not None else torch.zeros(c, dtype=f64, device=dev)
        if tokens:
            tk = out(contrib)
            toks.append(tk)
            heads.append(tk.sum(2))
        else:
            heads.append(out(contrib.sum(2)))
        biases.append(out(bias_c.expand(b, c)))
        mlps.append(out(_nld(cache[f"{path}.ls_2"], cache.layout(f"{path}.ls_2"))[:, 0].to(dev, f64)))
        attns.append(weights[:, :, 0])
    grid = visual.grid_size if hasattr(visual, "grid_size") else None
    rows, cols = (int(grid[0]), int(grid[1])) if grid is not None else (0, 0)
    b = pixels.shape[0]
    dim = proj.shape[1]
    return Decomposition(
        "vit", torch.stack(heads, 1), torch.stack(toks, 1) if tokens else None,
        torch.zeros(b, len(blocks), heads[0].shape[1], dim, dtype=f64, device=dev),
        torch.stack(mlps, 1), torch.stack(biases, 1), embed, (beta @ proj).expand(b, dim).clone(),
        torch.stack(attns, 1), emb.detach().to(dev), (rows, cols))


class _PackedAttention:
    """A transformers attention module seen as ``nn.MultiheadAttention`` by :func:`head_values`:
    its ``q_proj``/``k_proj``/``v_proj`` stacked into one ``in_proj`` (CLIP's scale is
    ``head_dim ** -0.5``, the same as :func:`head_values` applies)."""

    def __init__(self, attn: torch.nn.Module) -> None:
        self.num_heads = int(attn.num_heads)
        self.in_proj_weight = torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]).detach()
        biases = [attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]
        self.in_proj_bias = None if any(b is None for b in biases) else torch.cat(biases).detach()
        scale = float(getattr(attn, "scale", (attn.head_dim) ** -0.5))
        if abs(scale - attn.head_dim ** -0.5) > 1e-9:
            raise ClipauditError(f"attention scale {scale} is not head_dim^-0.5; heads cannot re-derive it")


def _decompose_hf_vit(model, pixels: torch.Tensor, tokens: bool) -> Decomposition:
    """A transformers CLIP vision tower: ``pre_layrnorm`` output, then per encoder layer the heads
    (re-derived from ``layer_norm1``'s output with ``q/k/v_proj``, through ``out_proj``), its
    output bias and the MLP, on the CLS token; ``post_layernorm`` linear with its scale frozen per
    image, then ``visual_projection``."""
    visual = model.model.visual
    body = visual.body
    layers = _hf_layers(visual)
    if getattr(body, "head", None) is not None or not hasattr(body, "post_layernorm"):
        raise ClipauditError("heads decomposes ViTs that pool the CLS token; this transformers vision tower "
                             f"({type(body).__name__}) pools with an attention head (SigLIP's MAP pooling), whose "
                             "softmax over tokens is not a sum of per-head parts")
    paths = attention_layers(model)
    wanted = ["visual", "visual.body.pre_layrnorm"] + [f"{p}.layer_norm1" for p in paths] + [f"{p}.mlp" for p in paths]
    with torch.no_grad():
        _, cache = run_with_cache(model, pixels, wanted)
    f64 = torch.float64
    dev = pixels.device if pixels.device.type == model.device.type else model.device
    emb = cache["visual"].float()
    embed_c = _nld(cache["visual.body.pre_layrnorm"], cache.layout("visual.body.pre_layrnorm"))[:, 0].to(dev, f64)
    heads_c, toks_c, biases_c, mlps_c, attns = [], [], [], [], []
    for i, path in enumerate(paths):
        attn = layers[i].self_attn
        x = _nld(cache[f"{path}.layer_norm1"], cache.layout(f"{path}.layer_norm1")).to(dev, f64)
        weights, v = head_values(_PackedAttention(attn), x, query=slice(0, 1))  # (B,H,1,T), (B,H,T,dh)
        b, h, t, dh = v.shape
        c = x.shape[-1]
        w_o = attn.out_proj.weight.detach().to(dev, f64).view(c, h, dh)
        contrib = torch.einsum("bhtd,chd->bhtc", weights[:, :, 0, :, None] * v, w_o)  # (B, H, T, C)
        toks_c.append(contrib)
        heads_c.append(contrib.sum(2))
        ob = attn.out_proj.bias
        biases_c.append((ob.detach().to(dev, f64) if ob is not None else torch.zeros(c, dtype=f64, device=dev)).expand(b, c))
        mlps_c.append(_nld(cache[f"{path}.mlp"], cache.layout(f"{path}.mlp"))[:, 0].to(dev, f64))
        attns.append(weights[:, :, 0])
    resid = embed_c + sum(hc.sum(1) for hc in heads_c) + sum(biases_c) + sum(mlps_c)  # the CLS stream
    ln = body.post_layernorm
    g, beta = ln.weight.detach().to(dev, f64), ln.bias.detach().to(dev, f64)
    sigma = torch.sqrt(resid.var(-1, unbiased=False, keepdim=True) + ln.eps)
    projection = visual.projection
    proj = projection.weight.detach().to(dev, f64).T if hasattr(projection, "weight") else \
        torch.eye(g.shape[0], dtype=f64, device=dev)
    proj_bias = getattr(projection, "bias", None)

    def out(part: torch.Tensor) -> torch.Tensor:
        return ((part - part.mean(-1, keepdim=True)) * g / sigma.view(-1, *([1] * (part.ndim - 2)), 1)) @ proj

    b = pixels.shape[0]
    dim = proj.shape[1]
    post = (beta @ proj).expand(b, dim).clone()
    if proj_bias is not None:
        post = post + proj_bias.detach().to(dev, f64)
    heads = torch.stack([out(hc) for hc in heads_c], 1)
    cfg = getattr(model, "hf_config", {}).get("vision_config", {})
    side = int(cfg.get("image_size", model.image_size)) // int(cfg.get("patch_size", 1) or 1)
    return Decomposition(
        "vit", heads, torch.stack([out(tc) for tc in toks_c], 1) if tokens else None,
        torch.zeros_like(heads), torch.stack([out(m) for m in mlps_c], 1), torch.stack([out(bc) for bc in biases_c], 1),
        out(embed_c), post, torch.stack(attns, 1), emb.detach().to(dev), (side, side))


def _decompose_resnet(model, pixels: torch.Tensor, tokens: bool) -> Decomposition:
    visual = model.model.visual
    pool = visual.attnpool
    with torch.no_grad():
        _, cache = run_with_cache(model, pixels, ["visual", "visual.layer4"])
    emb = cache["visual"].float()
    f64 = torch.float64
    dev = model.device
    fmap = cache["visual.layer4"].to(dev, f64)  # (B, C, h, w)
    b, c, hh, ww = fmap.shape
    n = hh * ww
    x = fmap.flatten(2).transpose(1, 2)  # (B, n, C)
    pos = pool.positional_embedding.detach().to(dev, f64)  # (n+1, C)
    seq = torch.cat([x.mean(1, keepdim=True), x], 1) + pos  # (B, n+1, C)
    heads = int(pool.num_heads)
    dh = c // heads
    wq, bq = pool.q_proj.weight.detach().to(dev, f64), pool.q_proj.bias.detach().to(dev, f64)
    wk, bk = pool.k_proj.weight.detach().to(dev, f64), pool.k_proj.bias.detach().to(dev, f64)
    wv, bv = pool.v_proj.weight.detach().to(dev, f64), pool.v_proj.bias.detach().to(dev, f64)
    wc, bc = pool.c_proj.weight.detach().to(dev, f64), pool.c_proj.bias.detach().to(dev, f64)
    q = (seq[:, :1] @ wq.T + bq).view(b, 1, heads, dh).transpose(1, 2)  # (B, H, 1, dh)
    k = (seq @ wk.T + bk).view(b, n + 1, heads, dh).transpose(1, 2)
    a = torch.softmax(q @ k.transpose(-1, -2) / dh ** 0.5, dim=-1)[:, :, 0]  # (B, H, n+1)
    spread = a[:, :, 1:] + a[:, :, :1] / n  # the mean token's share spread over its positions
    wv_h = wv.view(heads, dh, c)
    wc_h = wc.view(-1, heads, dh)  # (D, H, dh)
    vx = torch.einsum("bnc,hdc->bhnd", x, wv_h)  # content values (B, H, n, dh)
    content = torch.einsum("bhn,bhnd,ohd->bhno", spread, vx, wc_h)  # (B, H, n, D)
    vpos = torch.einsum("nc,hdc->hnd", pos, wv_h)  # (H, n+1, dh)
    pos_part = torch.einsum("bhn,hnd,ohd->bho", a, vpos, wc_h)
    bias_part = torch.einsum("hd,ohd->ho", bv.view(heads, dh), wc_h).expand(b, -1, -1)  # weights sum to 1
    extra = pos_part + bias_part
    head = content.sum(2) + extra
    dim = wc.shape[0]
    zeros = torch.zeros(b, dim, dtype=f64, device=dev)
    return Decomposition("resnet", head[:, None], content[:, None] if tokens else None, extra[:, None],
                         torch.zeros(b, 0, dim, dtype=f64, device=dev), bc.expand(b, 1, dim).clone(), zeros,
                         zeros.clone(), spread[:, None], emb.to(dev), (hh, ww))


def decompose(model, pixels: torch.Tensor, tokens: bool = False) -> Decomposition:
    """Split ``model``'s image embeddings of ``pixels`` into direct contributions.

    Args:
        model: an :class:`~clipaudit.model.AuditModel` with an open_clip ViT (CLS pooling) or
            ModifiedResNet (attention pooling) vision tower, or a transformers CLIP
            (:mod:`clipaudit.hf`); it is not modified.
        pixels: (B, 3, S, S) in [0, 1].
        tokens: also keep the per-source-token split (B, L, H, T, D) (memory: B*L*H*T*D*8 bytes).

    Returns:
        a :class:`Decomposition` whose parts sum to ``encode_images(pixels, normalize=False)``;
        its ``max_rel_error`` says how closely (float64 arithmetic: ~1e-7 on the toys).

    Raises:
        ClipauditError: a vision tower without readable attention heads.

    Example:
        >>> d = decompose(load_model("toy-vit"), pixels)
        >>> d.heads.shape, d.max_rel_error < 1e-4      # (B, 4, 4, 128), True

    Reference: Gandelsman, Efros & Steinhardt, ICLR 2024, section 3 (the residual decomposition).
    """
    layers = attention_layers(model)
    if layers == ["visual.attnpool"]:
        return _decompose_resnet(model, pixels, tokens)
    if _hf_layers(model.model.visual) is not None:
        return _decompose_hf_vit(model, pixels, tokens)
    return _decompose_vit(model, pixels, tokens)


def project(parts: torch.Tensor, decomposition: Decomposition, directions: torch.Tensor,
            scale: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Direct contribution of ``parts`` (B, ..., D) to logits along ``directions`` (C, D).

    The logit of class c is ``scale * <e / ||e||, w_c>``, linear in ``e`` once ``||e||`` is frozen
    per image, so each part contributes ``scale * <part, w_c> / ||e||``; summed over all parts
    this is the logit. Returns (B, ..., C).
    """
    norm = decomposition.embedding.double().norm(dim=-1).view(-1, *([1] * (parts.ndim - 1)))
    return torch.as_tensor(scale, dtype=torch.float64) * (parts / norm) @ directions.double().to(parts.device).T


__all__ = ["Decomposition", "attention_layers", "decompose", "head_values", "n_heads", "project"]
