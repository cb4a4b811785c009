"""Benchmark: serve the Neurons page and its first 50 cards, and unit pages, for a run with 1,000 neurons.

Goal (issue 8): under 1 s on CPU. Everything goes through the real Flask/Dash server (its
test client, so no network noise): the index page, the layout, the page-router callback that
builds the Neurons page with its first 50 cards, then the 50 card images. Prints seconds and
the ratio to the goal; cold = first request after start (tables read from disk), warm = median
of later ones (tables cached).

Unit pages (issue 22, goal: each under 1 s on a 1,000-unit run): the router callback for
``/unit/neuron/<run>/<layer>/<i>`` plus the unit's three pictures, for --units sampled neurons
spread over the run; printed as cold (first page after start) and median / max over the rest.

    python benchmarks/dashboard.py [--neurons 1000] [--repeats 5] [--units 50]
"""
from __future__ import annotations

import argparse
import sys
import re
import statistics
import tempfile
import time
from pathlib import Path

import torch

GOAL_S = 1.0


def _route_payload(run: str) -> dict:
    from clipaudit.dashboard import ids

    return {"output": f"{ids.PAGE}.children", "outputs": {"id": ids.PAGE, "property": "children"},
            "inputs": [{"id": ids.URL, "property": "pathname", "value": "/neurons"},
                       {"id": ids.RUN_A, "property": "value", "value": run},
                       {"id": ids.RUN_B, "property": "value", "value": None}],
            "changedPropIds": [f"{ids.URL}.pathname"],
            "state": [{"id": ids.URL, "property": "search", "value": ""}]}


def _unit_payload(path: str) -> dict:
    payload = _route_payload("")
    payload["inputs"][0]["value"] = path
    payload["inputs"][1]["value"] = None
    return payload


def serve_unit_page(client, path: str) -> float:
    """Seconds to route ``path`` (a unit page) and fetch its pictures."""
    t0 = time.perf_counter()
    r = client.post("/_dash-update-component", json=_unit_payload(path))
    assert r.status_code == 200, r.data[:200]
    body = r.get_data(as_text=True).replace("\\u002f", "/")
    if "unit-label" not in body:
        raise SystemExit(f"{path}: no unit label in the page")
    for u in re.findall(r'"src":\s*"(/runfile/[^"]+)"', body):
        assert client.get(u).status_code == 200
    return time.perf_counter() - t0


def serve_neurons_page(client, run: str) -> tuple[float, float, int]:
    """(seconds for page + first 50 cards, seconds for their 50 images, number of cards)."""
    t0 = time.perf_counter()
    assert client.get("/").status_code == 200
    assert client.get("/_dash-layout").status_code == 200
    r = client.post("/_dash-update-component", json=_route_payload(run))
    assert r.status_code == 200, r.data[:200]
    t1 = time.perf_counter()
    body = r.get_data(as_text=True).replace("\\u002f", "/")
    urls = re.findall(r'"src":\s*"(/runfile/[^"]+)"', body)
    n_cards = len(re.findall(r'"className":\s*"neuron-card"', body))
    t2 = time.perf_counter()
    if len(urls) < min(50, n_cards):
        raise SystemExit(f"expected a card image per card, found {len(urls)} image URLs for {n_cards} cards")
    for u in urls[:50]:
        assert client.get(u).status_code == 200
    t3 = time.perf_counter()
    return t1 - t0, t3 - t2, n_cards


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--neurons", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--units", type=int, default=50, help="unit pages to time")
    args = p.parse_args()
    torch.set_num_threads(1)
    from clipaudit.dashboard.app import create_app

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the synthetic runs are a test fixture
    from tests.fixtures.synthetic_runs import write_synthetic_runs

    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        write_synthetic_runs(Path(tmp), n_neurons=args.neurons, n_rendered=args.neurons)
        print(f"wrote a synthetic run with {args.neurons} neurons (all rendered) in {time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        app = create_app(tmp)
        start = time.perf_counter() - t
        client = app.server.test_client()
        cold, cold_img, n_cards = serve_neurons_page(client, "neurons-synth")
        warm = [serve_neurons_page(client, "neurons-synth") for _ in range(args.repeats)]
        page_warm = statistics.median(w[0] for w in warm)
        img_warm = statistics.median(w[1] for w in warm)
        unit_app = create_app(tmp).server.test_client()  # a fresh server: the first unit page is cold
        picks = [round(i * (args.neurons - 1) / max(1, args.units - 1)) for i in range(args.units)]
        unit_times = [serve_unit_page(unit_app, f"/unit/neuron/neurons-synth/penultimate/{i}") for i in picks]
    print(f"create_app: {start:.3f} s")
    print(f"cards built per request: {n_cards}")
    print(f"neurons page + first 50 cards, cold: {cold:.3f} s   ratio to 1 s goal: {cold / GOAL_S:.2f}")
    print(f"neurons page + first 50 cards, warm: {page_warm:.3f} s   ratio to 1 s goal: {page_warm / GOAL_S:.2f}")
    print(f"50 card images (cold / warm): {cold_img:.3f} s / {img_warm:.3f} s")
    rest = unit_times[1:] or unit_times
    print(f"unit page (route + pictures), cold: {unit_times[0]:.3f} s   ratio to 1 s goal: {unit_times[0] / GOAL_S:.2f}")
    print(f"unit page over {len(rest)} more neurons: median {statistics.median(rest):.3f} s, max {max(rest):.3f} s   "
          f"ratio of max to 1 s goal: {max(rest) / GOAL_S:.2f}  ({'meets' if max(unit_times) < GOAL_S else 'misses'} "
          "the goal)")
    total = cold + cold_img
    print(f"cold total incl. images: {total:.3f} s   ratio to 1 s goal: {total / GOAL_S:.2f}  "
          f"({'meets' if total < GOAL_S else 'misses'} the goal)")


if __name__ == "__main__":
    main()
