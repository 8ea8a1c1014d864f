"""The entries of `compare.methods`: one student each (method, labels, ablated terms, unlabelled data, steps).

    parse_entry("evdistill+labels-recon@u2:900") -> Entry
"""
from __future__ import annotations

import re
from dataclasses import dataclass

SPLITS = ("normal", "night", "fast")
# training and test data never share a simulator seed
# ablation name -> the loss weights it zeroes (the A2E generator only serves the crafted pairs)
ABLATIONS = {"recon": ("recon",), "pixel": ("pixel",), "affinity": ("affinity",), "a2e": ("a2e", "a2e_gen")}
_ENTRY = re.compile(r"^(supervised|kd|evdistill)(\+labels)?((?:-[a-z0-9]+)*)(?:@u(\d+))?(?::(\d+))?$")


@dataclass(frozen=True)
class Entry:
    """One student of the comparison."""
    method: str
    use_labels: bool = False
    without: tuple[str, ...] = ()
    unlabelled: int = 0  # multiples of the labelled training sequences added without labels
    steps: int | None = None  # training steps (None: student.steps)

    @property
    def name(self) -> str:
        return (f"student_{self.method}" + ("_labels" if self.use_labels else "")
                + "".join(f"_no_{t}" for t in self.without) + (f"_u{self.unlabelled}x" if self.unlabelled else "")
                + (f"_{self.steps}steps" if self.steps else ""))

    @property
    def base(self) -> "Entry":
        """The same student without the unlabelled data (the curve's point at 0)."""
        return Entry(self.method, self.use_labels, self.without, 0, self.steps)

    def weights(self, weights: dict) -> dict:
        w = dict(weights)
        for term in self.without:
            for key in ABLATIONS[term]:
                w[key] = 0.0
        return w


def parse_entry(text: str) -> Entry:
    """"evdistill+labels-recon@u2" -> Entry; ValueError naming the grammar otherwise."""
    m = _ENTRY.match(str(text).strip())
    if not m:
        raise ValueError(f"compare.methods: cannot read {text!r} (METHOD[+labels][-TERM...][@uK], METHOD one of "
                         f"supervised, kd, evdistill; TERM one of {', '.join(ABLATIONS)})")
    method, labels, terms, k, steps = (m.group(1), bool(m.group(2)), tuple(t for t in m.group(3).split("-") if t),
                                       m.group(4), m.group(5))
    if labels and method != "evdistill":
        raise ValueError(f"compare.methods: {text!r}: +labels is for evdistill ({method} uses labels or not by itself)")
    bad = [t for t in terms if t not in ABLATIONS]
    if bad:
        raise ValueError(f"compare.methods: {text!r}: no loss term {bad[0]!r} (ablations: {', '.join(ABLATIONS)})")
    if terms and method != "evdistill":
        raise ValueError(f"compare.methods: {text!r}: ablations are of evdistill's terms")
    if k is not None and (method == "supervised" or int(k) < 1):
        raise ValueError(f"compare.methods: {text!r}: unlabelled data (@uK, K >= 1) needs a distilled student")
    if steps is not None and int(steps) < 1:
        raise ValueError(f"compare.methods: {text!r}: steps (:N) must be >= 1")
    return Entry(method, labels, tuple(sorted(set(terms), key=list(ABLATIONS).index)), int(k or 0),
                 int(steps) if steps else None)
