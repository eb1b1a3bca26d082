"""Scoring of main-text extraction against hand-checked text.

``char_f1`` is the character-level F1 that the magic-html benchmark uses: both texts are reduced to the
multiset (bag) of their non-whitespace characters, and precision/recall are computed on the size of the
multiset intersection. Order and whitespace are ignored, so paragraph breaks and line wrapping do not matter.
"""

from __future__ import annotations

from collections import Counter

__all__ = ["char_f1", "char_precision_recall"]


def _bag(text: str) -> Counter:
    return Counter(ch for ch in text if not ch.isspace())


def char_precision_recall(predicted: str, reference: str) -> tuple[float, float]:
    """(precision, recall) of ``predicted`` against ``reference`` on multisets of non-whitespace characters."""
    pred, ref = _bag(predicted or ""), _bag(reference or "")
    n_pred, n_ref = sum(pred.values()), sum(ref.values())
    if n_pred == 0 or n_ref == 0:
        return (1.0, 1.0) if n_pred == n_ref else (0.0, 0.0)
    common = sum((pred & ref).values())
    return common / n_pred, common / n_ref


def char_f1(predicted: str, reference: str) -> float:
    """Character-level F1 on multisets of non-whitespace characters (the magic-html benchmark's score).

    Whitespace is ignored; each other character counts as often as it occurs. Two empty texts score 1.0,
    one empty text against a non-empty one 0.0.
    """
    p, r = char_precision_recall(predicted, reference)
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)
