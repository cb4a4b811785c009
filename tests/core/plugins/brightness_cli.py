"""The plugin audit's command: flags -> config -> clipaudit.runner.run_audit."""
from __future__ import annotations

from clipaudit.cli import add_command, model_from_args, progress


def register(sub) -> None:
    p = add_command(sub, "brightness", "Toy plugin audit.", "clipaudit brightness --n 12", _run)
    p.add_argument("--n", type=int, default=64, help="toy scenes")


def _run(args) -> int:
    from clipaudit.data import toy_source
    from clipaudit.runner import run_audit

    from tests.core.plugins.brightness_audit import BrightnessConfig

    model = model_from_args(args)
    result, run = run_audit("brightness", model, toy_source(args.n, seed=args.seed, kind="object"),
                            BrightnessConfig(), out=args.out, seed=args.seed, progress=progress)
    print(f"accuracy {result.summary['accuracy']:.3f}; written to {run.path}")
    return 0
