"""Registers the attack subcommands: ``typographic`` and ``adversarial``."""
from __future__ import annotations


def register(sub) -> None:
    from clipaudit.attacks import adversarial_cli, typographic_cli

    typographic_cli.register(sub)
    adversarial_cli.register(sub)
