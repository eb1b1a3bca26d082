"""knowmix: Chinese text + a knowledge graph -> pretraining shards, and a trainer that reads them.

The subpackages ``knowmix.corpora``, ``knowmix.kg``, ``knowmix.pipelines`` and ``knowmix.trainer`` live in the
repository's top-level folders of those names; an installed knowmix has them inside this package (setup.cfg's
``package_dir`` maps them), so ``import knowmix.trainer`` is the only way in and another distribution's
top-level ``trainer`` cannot shadow ours. In a source checkout (tests, ``python -m knowmix.cli`` from the
repository) they are found beside this folder: the checkout's root joins this package's search path, after it.
"""

import os as _os

__version__ = "0.1.0"


def _checkout_root() -> str | None:
    root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
    marks = ("setup.cfg", _os.path.join("trainer", "__init__.py"), _os.path.join("pipelines", "__init__.py"))
    return root if all(_os.path.exists(_os.path.join(root, m)) for m in marks) else None


if not _os.path.isdir(_os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "trainer")):
    _root = _checkout_root()
    if _root is not None:
        __path__.append(_root)  # noqa: F821  (a package's __path__)
