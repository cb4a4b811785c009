"""Component ids, in one place, so pages, callbacks and browser tests agree on them."""
from __future__ import annotations

URL = "url"
PAGE = "page"
RUN_A = "run-a"
RUN_B = "run-b"
RUN_NOTE = "run-note"

# overview
RUNS_TABLE = "runs-table"
BROKEN_LIST = "broken-runs"

# model card panel
MODELCARD = "modelcard-panel"

# neurons
NEURON_SEARCH = "neuron-search"
NEURON_SORT = "neuron-sort"
NEURON_MULTIMODAL = "neuron-multimodal-only"
NEURON_PAGE = "neuron-page"
NEURON_PREV = "neuron-prev"
NEURON_NEXT = "neuron-next"
NEURON_COUNT = "neuron-count"
NEURON_GRID = "neuron-grid"
NEURON_CARD = "neuron-card"  # pattern-matching type: {"type": NEURON_CARD, "index": neuron}
NEURON_DETAIL = "neuron-detail"

# compare
COMPARE_TABLE = "compare-table"
COMPARE_MESSAGE = "compare-message"


def kpi(section: str, key: str) -> str:
    """Id of the element showing ``summary[section][key]``."""
    return f"kpi-{section}-{key}"


def card_id(neuron: int) -> dict:
    return {"type": NEURON_CARD, "index": int(neuron)}


def compare_left_out(audit: str) -> str:
    """Id of the note saying why ``audit`` was left out of a comparison."""
    return f"compare-left-out-{audit}"
