"""``clipaudit dashboard``: serve the Dash app over a folder of run folders."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clipaudit.errors import ClipauditError

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def check_args(args: argparse.Namespace) -> Path:
    """Validate --runs/--host/--port before starting the server; return the runs folder."""
    runs = Path(args.runs).expanduser()
    if not runs.exists():
        raise ClipauditError(f"--runs {args.runs!r} does not exist; pass the folder that holds your run folders "
                             "(default runs/, made by any audit command)")
    if not runs.is_dir():
        raise ClipauditError(f"--runs {args.runs!r} is a file, not a folder; pass the folder that holds your run folders")
    if not 1 <= args.port <= 65535:
        raise ClipauditError(f"--port must be between 1 and 65535, got {args.port}; the default is 8050")
    if not args.host or any(c.isspace() for c in args.host):
        raise ClipauditError(f"--host {args.host!r} is not a host name or address; use 127.0.0.1 (default)")
    return runs


def _cmd_dashboard(args: argparse.Namespace) -> int:
    runs = check_args(args)
    from .app import create_app

    model = None
    if args.model:
        from clipaudit.model import load_model

        model = load_model(args.model, pretrained=args.pretrained, device=args.device)
    app = create_app(runs, model=model)
    n = len(app.clipaudit_store.runs())
    if args.host not in LOCAL_HOSTS:
        print(f"WARNING: serving on {args.host}: anyone who can reach this address can read these runs",
              file=sys.stderr)
    live = f"; live bench with {args.model} at /bench" if model is not None else " (read-only)"
    print(f"clipaudit dashboard: {n} run(s) in {runs.resolve()}{live} -> http://{args.host}:{args.port}/  (Ctrl-C stops)")
    try:
        app.run(host=args.host, port=args.port, debug=False)
    except OSError as err:
        raise ClipauditError(f"cannot listen on {args.host}:{args.port} ({err.strerror or err}); "
                             "choose another --port") from None
    return 0


def register(sub) -> None:
    from clipaudit.cli import add_command

    p = add_command(sub, "dashboard", "Browse run folders in an interactive dashboard beside the CLIP model card.",
                    "clipaudit dashboard --runs runs --port 8050", _cmd_dashboard, model=False, run=False)
    p.add_argument("--runs", default="runs", help="folder of run folders (or one run folder)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind; keep 127.0.0.1 unless you mean to share")
    p.add_argument("--port", type=int, default=8050, help="port to serve on")
    p.add_argument("--model", default=None, help="load this model (e.g. toy) for the live bench at /bench; "
                                                 "without it the dashboard only reads run folders")
    p.add_argument("--pretrained", default=None, help="weights for --model (tag or path)")
    p.add_argument("--device", default="auto", help="device for --model: auto, cpu, cuda ...")
