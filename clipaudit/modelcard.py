"""The CLIP model card's limitations as data, in our own words, each tied to what measures it.

Why data: the dashboard and the reports put every measured figure next to the claim it tests,
and say plainly which claims a run did not measure. Source: the "Limitations" and "Out-of-scope
use cases" sections of OpenAI's CLIP model card (openai/CLIP, model-card.md), paraphrased.

Which audit measures which limitation is *not* kept here: each audit declares it in its
registry entry (``clipaudit.AUDITS[name].limitations``: limitation id -> summary keys), and
:func:`card` joins the two, so a new audit joins the model card without this file changing.
``metrics`` are dotted keys into a run's ``summary.json`` (``typographic.attack_success_rate``);
the first one present is the headline figure for that limitation (audits named in the
limitation's ``prefer`` first, then registry order).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Limitation:
    id: str
    title: str
    claim: str  # our paraphrase of the model card
    how_measured: str = ""
    prefer: tuple[str, ...] = ()  # audits whose figure heads this limitation when several measure it
    audits: tuple[str, ...] = ()  # filled from the registry by card()
    metrics: tuple[str, ...] = ()  # filled from the registry by card(): summary.json keys, most telling first


_CARD: tuple[Limitation, ...] = (
    Limitation("L-fine-grained", "Fine-grained classes and counting",
               "CLIP struggles to tell apart closely related classes and to count objects."),
    Limitation("L-abstract", "Abstract and systematic tasks",
               "Tasks that need systematic reasoning, such as counting or judging distances, are weak spots."),
    Limitation("L-ood", "Data unlike its training data",
               "Accuracy falls on images far from its web training distribution, such as handwritten digits."),
    Limitation("L-shift", "Distribution shift",
               "Zero-shot CLIP keeps much more of its accuracy on shifted versions of a dataset (sketches, renditions, "
               "new photos of the same classes) than models trained on that dataset, but accuracy still falls, and "
               "adapting it to the dataset with a linear probe gives part of that robustness back.",
               how_measured="largest zero-shot accuracy drop from the base set to a shifted set (95% CI); "
                            "effective robustness (Taori et al. 2020) against base-trained linear probes"),
    Limitation("L-typographic", "Typographic attacks",
               "Words written in an image can outweigh what the image shows, so a label can flip the prediction.",
               how_measured="share of images predicted as the written target word (zero-shot, with 95% CI)",
               prefer=("typographic",)),
    Limitation("L-adversarial", "Adversarial perturbations",
               "Small, deliberately crafted pixel changes can change its predictions.",
               how_measured="zero-shot accuracy under a bounded gradient attack (PGD/APGD) at the stated eps"),
    Limitation("L-bias", "Social bias and class design",
               "It reproduces social biases, and its outputs depend strongly on which classes and wording are offered.",
               how_measured="change in group rates when neutral classes are added; WEAT effect size; MaxSkew@k"),
    Limitation("L-denigration", "Denigrating labels by group",
               "In a FairFace study some demographic groups were given non-human or crime-related labels more often than others.",
               how_measured="harmful-label rate per group, the ratio of the highest to the lowest, with CIs and adjusted p"),
    Limitation("L-surveillance", "Surveillance and face recognition",
               "Using it for surveillance or to recognise faces is outside its intended use.",
               how_measured="scope statement; clipaudit's bias probe is a measurement tool, not a face classifier"),
    Limitation("L-deployment", "Deployment",
               "It is a research artefact; deployed uses, commercial or not, are out of scope without thorough in-domain testing.",
               how_measured="scope statement"),
    Limitation("L-english", "English only",
               "It was trained and evaluated on English text, so other languages are untested.",
               how_measured="typographic word search accepts non-Latin words when a font covers them"),
    Limitation("L-data-skew", "Skewed training population",
               "Its internet training data over-represent people and places from wealthier countries, "
               "younger people and men.",
               how_measured="retrieval skew (MaxSkew@k, NDKL) over groups"),
)


def card() -> tuple[Limitation, ...]:
    """The limitations with ``audits``/``metrics`` joined from :data:`clipaudit.AUDITS`."""
    from clipaudit.audits import AUDITS

    out = []
    for lim in _CARD:
        measuring = [a for a in AUDITS.values() if lim.id in a.limitations]
        measuring.sort(key=lambda a: (a.name not in lim.prefer, lim.prefer.index(a.name) if a.name in lim.prefer else 0))
        metrics = tuple(f"{a.name}.{key}" for a in measuring for key in a.limitations[lim.id])
        out.append(replace(lim, audits=tuple(a.name for a in measuring), metrics=metrics))
    return tuple(out)


def __getattr__(name: str) -> Any:
    if name == "LIMITATIONS":  # computed on access: audits registered at run time are included
        return card()
    raise AttributeError(name)


def get_limitation(limitation_id: str) -> Limitation:
    for lim in card():
        if lim.id == limitation_id:
            return lim
    from clipaudit.errors import ClipauditError, suggest

    raise ClipauditError(f"unknown limitation {limitation_id!r}{suggest(limitation_id, [l.id for l in _CARD])}")


def limitations_for(audit: str) -> list[Limitation]:
    """The limitations an audit measures (the dashboard's panel for that page)."""
    return [lim for lim in card() if audit in lim.audits]


def lookup(summary: dict, key: str) -> Any:
    node: Any = summary
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


@dataclass
class Measured:
    limitation: Limitation
    metric: str | None
    value: Any
    extra: dict = field(default_factory=dict)

    @property
    def measured(self) -> bool:
        return self.metric is not None


def measured_figures(summary: dict, audit: str | None = None) -> list[Measured]:
    """Each limitation (of ``audit``, or all) with its headline figure from ``summary`` or None."""
    out = []
    for lim in (limitations_for(audit) if audit else card()):
        found = next(((k, lookup(summary, k)) for k in lim.metrics if lookup(summary, k) is not None), (None, None))
        out.append(Measured(lim, found[0], found[1]))
    return out
