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

# unit pages
UNIT_TITLE = "unit-title"
UNIT_LABEL = "unit-label"
UNIT_LABELS = "unit-labels"
UNIT_EXPORT_JSON = "unit-export-json"
UNIT_EXPORT_PARQUET = "unit-export-parquet"
UNIT_PREV = "unit-prev"
UNIT_NEXT = "unit-next"
UNIT_ERROR = "unit-error"

# search
SEARCH_INPUT = "search-input"
SEARCH_RESULTS = "search-results"
SEARCH_COUNT = "search-count"

# live bench
BENCH_SCENE = "bench-scene"
BENCH_SCENE_INDEX = "bench-scene-index"
BENCH_UPLOAD = "bench-upload"
BENCH_WORD = "bench-word"
BENCH_SIZE = "bench-size"
BENCH_POSITION = "bench-position"
BENCH_STYLE = "bench-style"
BENCH_UNIT = "bench-unit"
BENCH_VALUE = "bench-value"
BENCH_HEADS = "bench-heads"
BENCH_IMAGE = "bench-image"
BENCH_PROBS = "bench-probs"
BENCH_TOP = "bench-top"
BENCH_MESSAGE = "bench-message"
BENCH_ABLATION = "bench-ablation"
BENCH_SOURCE = "bench-source"  # store: the uploaded image as a data URL (or None: use the scene)
BENCH_UPLOAD_MESSAGE = "bench-upload-message"
