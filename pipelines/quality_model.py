"""A learned quality signal: a fastText classifier (``__label__good`` vs ``__label__bad``) over segmented text.

Rules catch junk; a classifier ranks text by how much it looks like a chosen positive set (FineWeb-Edu and DCLM
do the same). fastText splits its input on whitespace, and Chinese has none: a whole paragraph would be one
"word". So a text is fed as words from the same jieba segmentation knowmix uses elsewhere
(``pipelines.minhash._word_cutter``: rjieba), or, with ``tokenizer = "char"``, as single characters (fastText's
word n-grams then are character n-grams). The tokenizer a model was trained with is written beside it
(``MODEL.json``, with the validation metrics) and read back wherever the model is used.

The model file's sha256 goes into every manifest that used it. Training needs a fastText build with
``train_supervised`` (fasttext-numpy2); scoring works with any (fasttext-predict too).
"""

from __future__ import annotations

import json
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from knowmix.errors import UserError
from knowmix.fileio import sha256_of  # the one sha256 helper of the shard contract

GOOD, BAD = "__label__good", "__label__bad"
TOKENIZERS = ("jieba", "char")
MAX_CHARS = 2000  # like language id: the score is settled long before; the cap bounds the cost per document
_SPACE = re.compile(r"\s+")
_LOCK = threading.Lock()
_MODELS: dict[tuple[str, str], Any] = {}  # (path, sha256) -> loaded model, once per process


# ---------------------------------------------------------------------------------------------- features


def fasttext_line(text: str, tokenizer: str = "jieba", max_chars: int = MAX_CHARS) -> str:
    """``text`` as one fastText input line: words (or characters) separated by single spaces."""
    text = _SPACE.sub(" ", text[:max_chars]).strip()
    if not text:
        return ""
    if tokenizer == "char":
        return " ".join(ch for ch in text if not ch.isspace())
    from knowmix.pipelines.minhash import _word_cutter

    return " ".join(w for w in _word_cutter()(text) if w.strip())


def sidecar_path(model_path: str) -> str:
    """Where the model's training record (tokenizer, options, metrics) lives: ``MODEL.json``."""
    return model_path + ".json"


# ---------------------------------------------------------------------------------------------- the model


def _load_fasttext(path: str, sha: str):
    key = (path, sha)
    model = _MODELS.get(key)
    if model is None:
        with _LOCK:
            model = _MODELS.get(key)
            if model is None:
                import fasttext

                try:
                    model = fasttext.load_model(path)
                    labels = _labels_of(model)
                except Exception as exc:  # fastText raises ValueError / RuntimeError for a corrupt file
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    raise UserError(f"{path}: not a fastText model ({first})") from None
                if not {GOOD, BAD} <= labels:
                    raise UserError(f"{path}: a fastText model without the labels {GOOD} and {BAD} (got {sorted(labels)[:4]})")
                _MODELS[key] = model
    return model


def _labels_of(model) -> set[str]:
    """The model's labels; fasttext-predict has no ``get_labels``, so there: a prediction of every label (k=-1)."""
    if hasattr(model, "get_labels"):
        return set(model.get_labels())
    labels, _ = model.predict("的 是", k=-1)
    return set(labels)


def _predict_lines(model, lines: list[str]):
    """(labels, probabilities) per line, k=2: one ``multilinePredict`` call with the full fastText build.
    fasttext-predict's multi-line call returns labels without probabilities, so there: one call per line."""
    if hasattr(model, "get_labels"):
        return model.predict(lines, k=2)
    results = [model.predict(line, k=2) for line in lines]
    return [r[0] for r in results], [r[1] for r in results]


class QualityModel:
    """``score_many(texts) -> float32 array`` of P(good), with one fastText predict call for all of them.

    Picklable for Beam: only the path, its sha256 and the tokenizer travel; the model loads lazily, once per
    process (and refuses a file whose sha256 changed since the job was planned).
    """

    def __init__(self, path: str, sha256: str | None = None, tokenizer: str | None = None):
        if not os.path.isfile(path):
            raise UserError(f"{path}: quality model not found")
        self.path = path
        self.sha256 = sha256 or sha256_of(path)
        self.tokenizer = tokenizer or read_sidecar(path).get("tokenizer", "jieba")
        if self.tokenizer not in TOKENIZERS:
            raise UserError(f"{sidecar_path(path)}: tokenizer must be one of {', '.join(TOKENIZERS)}, got {self.tokenizer!r}")
        self._model = None

    def __getstate__(self) -> dict:
        return {"path": self.path, "sha256": self.sha256, "tokenizer": self.tokenizer}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._model = None

    @property
    def model(self):
        if self._model is None:
            if (self.path, self.sha256) not in _MODELS and sha256_of(self.path) != self.sha256:
                raise UserError(f"{self.path}: the quality model changed while the job ran (sha256 differs)")
            self._model = _load_fasttext(self.path, self.sha256)
        return self._model

    def check(self) -> "QualityModel":
        """Load now (a corrupt file is a one-line UserError before any work starts)."""
        _ = self.model
        return self

    def score_many(self, texts: Sequence[str]) -> np.ndarray:
        lines = [fasttext_line(t, self.tokenizer) for t in texts]
        scores = np.zeros(len(lines), dtype=np.float32)
        present = [i for i, line in enumerate(lines) if line]
        if not present:
            return scores
        labels, probs = _predict_lines(self.model, [lines[i] for i in present])
        for i, labs, ps in zip(present, labels, probs):
            p = dict(zip(labs, map(float, ps)))
            scores[i] = p[GOOD] if GOOD in p else 1.0 - p.get(BAD, 1.0)
        return np.clip(scores, 0.0, 1.0)


def read_sidecar(model_path: str) -> dict:
    path = sidecar_path(model_path)
    if not os.path.isfile(path):
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except ValueError as exc:
        raise UserError(f"{path}: not valid JSON ({exc})") from None


# ---------------------------------------------------------------------------------------------- [quality]


@dataclass
class QualitySettings:
    """The clean job's ``[quality]`` table: ``model``, ``threshold`` (a number, or a table per source kind),
    ``kinds`` (the source kinds scored; default: every kind named in a per-kind threshold, else all)."""

    model: str
    thresholds: dict[str, float] = field(default_factory=dict)  # kind -> threshold
    default_threshold: float = 0.5
    kinds: tuple[str, ...] | None = None  # None: every kind
    sha256: str | None = None  # the model file's, set when the job is planned (``load``)

    KEYS = ("model", "threshold", "kinds")

    @staticmethod
    def from_dict(table: Mapping[str, Any], where: str, base: str) -> "QualitySettings":
        from knowmix.corpora.document import SOURCE_KINDS

        if not isinstance(table, Mapping):
            raise UserError(f"{where}: [quality] must be a table")
        unknown = sorted(set(table) - set(QualitySettings.KEYS))
        if unknown:
            raise UserError(f"{where}: unknown key [quality] {unknown[0]!r} (expected {', '.join(QualitySettings.KEYS)})")
        model = table.get("model")
        if not isinstance(model, str) or not model:
            raise UserError(f"{where}: [quality] model must be the path of a fastText model file")
        if not os.path.isabs(model) and "://" not in model:
            model = os.path.join(base, model)

        def number(value, name):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise UserError(f"{where}: [quality] {name} must be a number in [0, 1], got {value!r}")
            return float(value)

        threshold = table.get("threshold", 0.5)
        thresholds: dict[str, float] = {}
        default = 0.5
        if isinstance(threshold, Mapping):
            for kind, value in threshold.items():
                if kind != "default" and kind not in SOURCE_KINDS:
                    raise UserError(f"{where}: [quality.threshold] {kind!r} is not a source kind")
                if kind == "default":
                    default = number(value, "threshold.default")
                else:
                    thresholds[kind] = number(value, f"threshold.{kind}")
        else:
            default = number(threshold, "threshold")
        kinds = table.get("kinds")
        if kinds is not None:
            if not isinstance(kinds, list) or not all(k in SOURCE_KINDS for k in kinds):
                raise UserError(f"{where}: [quality] kinds must be a list of source kinds ({', '.join(SOURCE_KINDS)})")
            kinds = tuple(sorted(set(kinds)))
        elif thresholds and "default" not in threshold:
            kinds = tuple(sorted(thresholds))
        return QualitySettings(model, thresholds, default, kinds)

    def load(self, where: str = "[quality]") -> QualityModel:
        """The model, checked now (a missing or corrupt file is a one-line UserError before any work)."""
        model = QualityModel(self.model).check()
        self.sha256 = model.sha256
        return model

    def threshold_for(self, kind: str) -> float:
        return self.thresholds.get(kind, self.default_threshold)

    def scores(self, kind: str) -> bool:
        return self.kinds is None or kind in self.kinds

    def to_options(self) -> dict:
        return {
            "model": self.model,
            "sha256": self.sha256,
            "threshold": {"default": self.default_threshold, **self.thresholds},
            "kinds": list(self.kinds) if self.kinds is not None else None,
        }


class QualityScorer:
    """The clean job's quality step, a chunk at a time: the kept rows of a chunk (of the kinds scored) get a
    ``quality_score`` from one predict call; those below their kind's threshold become ``low_quality`` drops.

    Works on ReadAndClean's ``(tag, value)`` outputs; ``with_rows``: a drop also carries its row (for
    ``keep_dropped``) as ``("dropped_doc", (reason, row))``.
    """

    REASON = "low_quality"

    def __init__(self, settings: QualitySettings, model: QualityModel):
        self.settings, self.model = settings, model

    def apply(self, outputs: Iterable[tuple[str, Any]], with_rows: bool = False):
        outputs = list(outputs)
        wanted = [
            i for i, (tag, value) in enumerate(outputs) if tag == "kept" and self.settings.scores(value["source_kind"])
        ]
        scores = self.model.score_many([outputs[i][1]["text"] for i in wanted]) if wanted else []
        score_of = dict(zip(wanted, scores))
        for i, (tag, value) in enumerate(outputs):
            if i not in score_of:
                yield tag, value
                continue
            score = float(score_of[i])
            value["quality_score"] = score
            kind = value["source_kind"]
            if score < self.settings.threshold_for(kind):
                yield "dropped", (self.REASON, kind)
                if with_rows:
                    yield "dropped_doc", (self.REASON, value)
            else:
                yield tag, value


# ---------------------------------------------------------------------------------------------- metrics


def roc_auc(scores_pos: Sequence[float], scores_neg: Sequence[float]) -> float:
    """Mann-Whitney U / (n_pos * n_neg): the chance a random positive scores above a random negative (ties 1/2).
    Computed from ranks (average ranks for ties), O(n log n)."""
    pos = np.asarray(scores_pos, dtype=np.float64)
    neg = np.asarray(scores_neg, dtype=np.float64)
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    allv = np.concatenate([pos, neg])
    order = np.argsort(allv, kind="mergesort")
    sorted_v = allv[order]
    ranks = np.empty(allv.size, dtype=np.float64)
    # average rank for each run of equal values
    boundaries = np.flatnonzero(np.diff(sorted_v)) + 1
    starts = np.concatenate(([0], boundaries))
    ends = np.concatenate((boundaries, [allv.size]))
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = (s + e + 1) / 2.0  # ranks s+1 .. e
    u = ranks[: pos.size].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (pos.size * neg.size))


def pr_curve(scores_pos: Sequence[float], scores_neg: Sequence[float]) -> list[tuple[float, float, float]]:
    """(threshold, precision, recall) at every distinct score, highest threshold first."""
    scores = np.concatenate([np.asarray(scores_pos, float), np.asarray(scores_neg, float)])
    labels = np.concatenate([np.ones(len(scores_pos)), np.zeros(len(scores_neg))])
    order = np.argsort(-scores, kind="mergesort")
    scores, labels = scores[order], labels[order]
    tp = np.cumsum(labels)
    fp = np.cumsum(1 - labels)
    last = np.concatenate((np.flatnonzero(np.diff(scores)), [scores.size - 1])) if scores.size else np.array([], int)
    total_pos = max(len(scores_pos), 1)
    return [(float(scores[i]), float(tp[i] / (tp[i] + fp[i])), float(tp[i] / total_pos)) for i in last]


def metrics(scores_pos: Sequence[float], scores_neg: Sequence[float], threshold: float = 0.5) -> dict:
    pos = np.asarray(scores_pos, float)
    neg = np.asarray(scores_neg, float)
    tp, fp = int((pos >= threshold).sum()), int((neg >= threshold).sum())
    fn = int(pos.size - tp)
    return {
        "positives": int(pos.size),
        "negatives": int(neg.size),
        "threshold": threshold,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "roc_auc": roc_auc(pos, neg),
    }
