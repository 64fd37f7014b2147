"""Semi-supervised methods: one base method plus any additive terms, named by an algorithm string.

An algorithm string joins components with `+`: `"supervised"`, `"ns3l"` (short for
`"supervised+ns3l"`). Adding a method is a new module here and one registry line.
"""

import dataclasses

from ns3l_tf.methods.base import BaseOutputs, Contribution, Term
from ns3l_tf.methods.ns3l import NS3L
from ns3l_tf.methods.supervised import Supervised

# Base methods decide what is fed through the network: name -> factory(model).
BASE_METHODS = {
    "supervised": lambda model: Supervised(),
}
# Additive terms only read the base method's outputs: name -> factory(model).
ADDITIVE_TERMS = {
    "ns3l": lambda model: NS3L(threshold=model.ns3l_threshold, weight=model.ns3l_weight),
}


@dataclasses.dataclass(frozen=True)
class AlgorithmSpec:
    """A parsed algorithm string: the base method and the additive terms, in order."""

    base: str
    terms: tuple[str, ...]


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
    "NS3L",
    "Supervised",
    "Term",
    "parse_algorithm",
]
