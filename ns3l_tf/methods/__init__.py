"""Semi-supervised methods: one base method plus any additive terms, named by an algorithm string.

An algorithm string joins one base method and any additive terms with `+`: `"supervised"`,
`"ns3l"` (short for `"supervised+ns3l"`), `"vat+entmin+ns3l"`, `"pseudo_label+ns3l"`,
`"mixmatch+ns3l"`. Adding a
method is a new module here and one registry line. Each factory takes the `SSLModel`, which
owns the hyperparameters (as Variables where a callback may change them).
"""

import dataclasses

from ns3l_tf.methods.base import BaseOutputs, Contribution, Term
from ns3l_tf.methods.entmin import EntMin
from ns3l_tf.methods.mixmatch import MixMatch
from ns3l_tf.methods.ns3l import NS3L
from ns3l_tf.methods.pseudo_label import PseudoLabel
from ns3l_tf.methods.supervised import Supervised
from ns3l_tf.methods.vat import VAT

# Base methods decide what is fed through the network: name -> factory(model).
BASE_METHODS = {
    "supervised": lambda m: Supervised(),
    "pseudo_label": lambda m: PseudoLabel(
        m.pseudo_label_threshold, m.pseudo_label_weight, m.consistency_rampup
    ),
    "vat": lambda m: VAT(
        m.vat_epsilon, m.vat_xi, m.vat_weight, m.seed_generator, m.consistency_rampup
    ),
    "mixmatch": lambda m: MixMatch(
        m.num_classes,
        m.mixmatch_temperature,
        m.mixmatch_alpha,
        m.mixmatch_weight,
        m.seed_generator,
        m.mixmatch_rampup,
    ),
}
# Additive terms only read the base method's outputs: name -> factory(model).
ADDITIVE_TERMS = {
    "entmin": lambda m: EntMin(m.entmin_weight, m.consistency_rampup),
    "ns3l": lambda m: NS3L(m.negative_selector, m.ns3l_weight, m.consistency_rampup),
}


@dataclasses.dataclass(frozen=True)
class AlgorithmSpec:
    """A parsed algorithm string: the base method and the additive terms, in order."""

    base: str
    terms: tuple[str, ...]

    def active_terms(self, ns3l_weight: float) -> tuple[str, ...]:
        """The terms that contribute: NS³L with weight 0 is left out altogether."""
        return tuple(t for t in self.terms if not (t == "ns3l" and ns3l_weight == 0.0))

    def needs_unlabeled(self, ns3l_weight: float) -> bool:
        """Whether batches must carry unlabeled images: every base method but supervised
        forwards them, and so does the supervised base when a term is active."""
        return self.base != "supervised" or bool(self.active_terms(ns3l_weight))


def parse_algorithm(algorithm: str) -> AlgorithmSpec:
    """Parses `"base+term+term"`; the base defaults to `supervised` when only terms are named.

    Raises:
      ValueError: naming the unknown component and the allowed ones, or a second base method.
    """
    components = [c.strip() for c in algorithm.lower().split("+") if c.strip()]
    allowed = sorted(BASE_METHODS) + sorted(ADDITIVE_TERMS)
    unknown = [c for c in components if c not in allowed]
    if not components or unknown:
        raise ValueError(
            f"unknown algorithm {algorithm!r}: components must be one of {', '.join(allowed)} "
            "joined by '+'"
        )
    bases = [c for c in components if c in BASE_METHODS]
    if len(bases) > 1:
        raise ValueError(f"algorithm {algorithm!r} names more than one base method: {bases}")
    terms = tuple(c for c in components if c in ADDITIVE_TERMS)
    if len(set(terms)) != len(terms):
        raise ValueError(f"algorithm {algorithm!r} repeats a term")
    return AlgorithmSpec(base=bases[0] if bases else "supervised", terms=terms)


__all__ = [
    "ADDITIVE_TERMS",
    "BASE_METHODS",
    "AlgorithmSpec",
    "BaseOutputs",
    "Contribution",
    "EntMin",
    "MixMatch",
    "NS3L",
    "PseudoLabel",
    "Supervised",
    "VAT",
    "Term",
    "parse_algorithm",
]
