"""Public API of the adversarial attacks (re-exported by ``clipaudit.attacks``)."""
from clipaudit.attacks.adversarial import (ATTACKS, MODES, NORMS, AttackOutput, Objective, attack,
                                           check_eps, classifier_attack, parse_eps, perturbation_norms,
                                           project, random_in_ball, random_noise)
from clipaudit.attacks.adversarial_audit import AdversarialConfig, audit as adversarial_audit, sanity_checks

__all__ = ["ATTACKS", "MODES", "NORMS", "AttackOutput", "Objective", "attack", "check_eps", "classifier_attack",
           "parse_eps", "perturbation_norms", "project", "random_in_ball", "random_noise", "AdversarialConfig",
           "adversarial_audit", "sanity_checks"]
