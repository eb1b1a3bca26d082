"""The clean job's configuration: TOML (``--config job.toml``) and/or ``--source KIND[:FORMAT]=GLOB`` shorthands.

```toml
[[sources]]              # see corpora.sources.SourceSpec
kind = "qa"
paths = ["data/zhidao/*.csv"]
[output]
dir = "out/docs"
num_shards = "auto"      # rows are hash-partitioned by id; "auto": ~64 MB of input per shard, >= 4
cluster_table = false    # also write doc_id -> cluster_id, cluster_size (near duplicates) under OUT/clusters/
keep_dropped = false     # also write every dropped document, with its reason, under OUT/dropped/
[normalize]
keep_words = "words.txt" # optional: names (one a line) left as written inside converted documents
keep_kg = ["kg.tsv"]      # optional: KG files whose entity names and aliases are left as written too
t2s_threshold = 0.5      # a mixed-script document is converted when its traditional share reaches this
[normalize.web]          # per source kind: any of pipelines.normalize.STEPS = true/false
t2s = "auto"             # "auto" (default): convert traditional documents only; true: all; false: none
[rules.web]              # per source kind: any key of pipelines.quality.DEFAULT_RULES[kind]
min_chars = 200
[input]
split_bytes = 67108864   # plain jsonl / txt-line files larger than this are read as byte ranges (0: never)
[dedup]
exact = true
near = true              # and the keys of pipelines.neardup.NearDedupConfig
[quality]                # optional: a fastText quality classifier (knowmix quality-train), pipelines.quality_model
model = "models/quality.bin"
threshold = 0.5          # or a table per source kind: threshold = { web = 0.5, qa = 0.3 }
kinds = ["web", "qa"]    # the source kinds scored (default: all)
```
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from knowmix.corpora.document import SOURCE_KINDS
from knowmix.corpora.sources import DEFAULT_SPLIT_BYTES, SourceSpec, check_split_bytes, source_from_dict, source_from_shorthand
from knowmix.errors import UserError

TOP_KEYS = {"sources", "input", "output", "normalize", "rules", "dedup", "quality"}
INPUT_KEYS = {"split_bytes"}
OUTPUT_KEYS = {"dir", "num_shards", "cluster_table", "keep_dropped"}


@dataclass
class CleanConfig:
    sources: list[SourceSpec]
    output_dir: str
    num_shards: int | str = "auto"
    cluster_table: bool = False
    normalize: dict[str, dict[str, bool | str]] = field(default_factory=dict)  # kind -> step -> on/off (overrides)
    keep_words: str | None = None  # [normalize] keep_words: a word-list file (names kept as written by t2s)
    keep_kg: tuple[str, ...] = ()  # [normalize] keep_kg: KG files whose names and aliases t2s leaves as written
    t2s_threshold: float = 0.5  # [normalize] t2s_threshold: see pipelines.normalize.DEFAULT_T2S_THRESHOLD
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)  # kind -> rule -> threshold (overrides)
    exact_dedup: bool = True
    dedup: dict[str, Any] = field(default_factory=dict)  # NearDedupConfig keys
    keep_dropped: bool = False  # [output] keep_dropped: write the dropped documents (pipelines.dropped)
    quality: Any = None  # [quality]: a pipelines.quality_model.QualitySettings, or None
    # [input] split_bytes: see corpora.sources.DEFAULT_SPLIT_BYTES; None (not set): the default, or for a local
    # run on several workers a size that gives each worker a few ranges (pipelines.clean.auto_local_run)
    split_bytes: int | None = None
    # the per-kind tables resolved, once, by load_config (``validate``): what the job's steps take
    resolved: "ResolvedTables | None" = field(default=None, repr=False, compare=False)

    def to_options(self) -> dict:
        """A JSON-able record of the configuration for the manifest."""
        return {
            "sources": [
                {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(s).items()} for s in self.sources
            ],
            "input": {"split_bytes": self.split_bytes if self.split_bytes is not None else DEFAULT_SPLIT_BYTES},
            "output": {"dir": self.output_dir, "num_shards": self.num_shards, "cluster_table": self.cluster_table},
            "normalize": {**self.normalize, "keep_words": self.keep_words, "keep_kg": list(self.keep_kg),
                          "t2s_threshold": self.t2s_threshold},
            "rules": self.rules,
            "dedup": {"exact": self.exact_dedup, **self.dedup},
            **({"keep_dropped": True} if self.keep_dropped else {}),
            **({"quality": self.quality.to_options()} if self.quality is not None else {}),
        }


@dataclass(frozen=True)
class ResolvedTables:
    """The configuration's per-kind tables as the steps take them, for every source kind: ``steps`` (the
    ``Normalizer`` settings, ``steps_for``), ``rules`` (``pipelines.quality.rules_for``) and ``near`` (a
    ``pipelines.neardup.NearDedupConfig``). Resolving them is also what checks them, so it happens once, in
    ``load_config``, before the pipeline starts."""

    steps: dict[str, dict[str, Any]]
    rules: dict[str, dict[str, Any]]
    near: Any


def _boolean(value: Any, what: str) -> bool:
    """A TOML boolean; anything else (``"false"``, ``"no"``, 0) is an error, never read as true or false."""
    if not isinstance(value, bool):
        raise UserError(f"{what} must be true or false (a TOML boolean, unquoted), got {value!r}")
    return value


def _check_kind_tables(table: Any, section: str, where: str) -> dict[str, dict]:
    if not isinstance(table, dict):
        raise UserError(f"{where}: [{section}] must be a table of source kinds")
    for kind, values in table.items():
        if kind not in SOURCE_KINDS:
            raise UserError(f"{where}: [{section}.{kind}] is not a source kind (expected one of {', '.join(SOURCE_KINDS)})")
        if not isinstance(values, dict):
            raise UserError(f"{where}: [{section}.{kind}] must be a table")
    return {k: dict(v) for k, v in table.items()}


def load_config(
    config_path: str | None,
    shorthands: list[str] | None = None,
    output_dir: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> CleanConfig:
    """Build the job configuration; every problem a user can cause is a one-line UserError."""
    raw: dict[str, Any] = {}
    where = config_path or "command line"
    if config_path:
        if not os.path.isfile(config_path):
            raise UserError(f"{config_path}: config file not found")
        try:
            with open(config_path, "rb") as fh:
                raw = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"{config_path}: not valid TOML ({exc})") from None
        except UnicodeDecodeError as exc:
            raise UserError(f"{config_path}: not UTF-8 text ({exc.reason} at byte {exc.start}); TOML is UTF-8") from None
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise UserError(f"{where}: unknown section {sorted(unknown)[0]!r} (expected {', '.join(sorted(TOP_KEYS))})")

    base = os.path.dirname(os.path.abspath(config_path)) if config_path else os.getcwd()
    sources = []
    if not isinstance(raw.get("sources", []), list):
        raise UserError(f"{where}: sources must be an array of tables ([[sources]])")
    for i, table in enumerate(raw.get("sources", [])):
        spec = source_from_dict(table, f"{where} [[sources]] #{i + 1}")
        # relative globs in a config file are relative to the file, so a job runs from any directory
        paths = tuple(p if "://" in p else os.path.normpath(os.path.join(base, p)) for p in spec.paths)
        sources.append(replace(spec, paths=paths))
    for shorthand in shorthands or []:
        sources.append(source_from_shorthand(shorthand))
    if not sources:
        raise UserError(f"{where}: no sources (give [[sources]] in --config or --source KIND[:FORMAT]=GLOB)")

    output = raw.get("output", {})
    if not isinstance(output, dict):
        raise UserError(f"{where}: [output] must be a table")
    unknown = set(output) - OUTPUT_KEYS
    if unknown:
        raise UserError(f"{where}: unknown key [output] {sorted(unknown)[0]!r}")
    out_dir = output_dir or output.get("dir")
    if out_dir is not None and not isinstance(out_dir, str):
        raise UserError(f"{where}: [output] dir must be a string (a directory), got {out_dir!r}")
    if not out_dir:
        raise UserError(f"{where}: no output directory (give [output] dir or --output)")
    if config_path and not output_dir and not os.path.isabs(out_dir) and "://" not in out_dir:
        out_dir = os.path.join(base, out_dir)
    num_shards = output.get("num_shards", "auto")
    if num_shards != "auto" and (isinstance(num_shards, bool) or not isinstance(num_shards, int) or num_shards < 1):
        raise UserError(f'{where}: [output] num_shards must be a positive integer or "auto", got {num_shards!r}')

    # [normalize] holds the options beside the per-kind tables: pop them before the tables are checked
    normalize = raw.get("normalize", {})
    keep_words, keep_kg, t2s_threshold = None, [], 0.5
    if isinstance(normalize, dict):
        normalize = dict(normalize)
        keep_words = normalize.pop("keep_words", None)
        keep_kg = normalize.pop("keep_kg", [])
        t2s_threshold = normalize.pop("t2s_threshold", 0.5)
        for key, value in normalize.items():
            if key not in SOURCE_KINDS and not isinstance(value, dict):
                raise UserError(
                    f"{where}: unknown key [normalize] {key!r}"
                    " (expected keep_words, keep_kg, t2s_threshold, or a [normalize.KIND] table)"
                )
    if keep_words is not None:
        if not isinstance(keep_words, str) or not keep_words:
            raise UserError(f"{where}: [normalize] keep_words must be a file path, got {keep_words!r}")
        if config_path and not os.path.isabs(keep_words):
            keep_words = os.path.join(base, keep_words)

    if isinstance(keep_kg, str):
        keep_kg = [keep_kg]
    if not isinstance(keep_kg, list) or not all(isinstance(k, str) and k for k in keep_kg):
        raise UserError(f"{where}: [normalize] keep_kg must be a list of KG file paths, got {keep_kg!r}")
    keep_kg = tuple(os.path.join(base, k) if config_path and not os.path.isabs(k) else k for k in keep_kg)

    input_table = raw.get("input", {})
    if not isinstance(input_table, dict):
        raise UserError(f"{where}: [input] must be a table")
    unknown = set(input_table) - INPUT_KEYS
    if unknown:
        raise UserError(f"{where}: unknown key [input] {sorted(unknown)[0]!r} (expected split_bytes)")
    split_bytes = input_table.get("split_bytes")
    if split_bytes is not None:
        split_bytes = check_split_bytes(split_bytes, f"{where} [input]")

    if not isinstance(raw.get("dedup", {}), dict):
        raise UserError(f"{where}: [dedup] must be a table")
    dedup = dict(raw.get("dedup", {}))
    config = CleanConfig(
        sources=sources,
        output_dir=out_dir,
        num_shards=num_shards,
        cluster_table=_boolean(output.get("cluster_table", False), f"{where}: [output] cluster_table"),
        normalize=_check_kind_tables(normalize, "normalize", where),
        keep_words=keep_words,
        keep_kg=keep_kg,
        t2s_threshold=t2s_threshold,
        rules=_check_kind_tables(raw.get("rules", {}), "rules", where),
        exact_dedup=_boolean(dedup.pop("exact", True), f"{where}: [dedup] exact"),
        dedup=dedup,
        keep_dropped=bool(output.get("keep_dropped", False)),
        quality=_quality(raw.get("quality"), where, base if config_path else os.getcwd()),
        split_bytes=split_bytes,
    )
    for key, value in (overrides or {}).items():
        if key == "near_dedup":  # --no-near-dedup: a key of the [dedup] table
            config.dedup = {**config.dedup, "near": value}
        else:
            setattr(config, key, value)
    config.resolved = validate(config, where)
    return config


def validate(config: CleanConfig, where: str) -> ResolvedTables:
    """Resolve every per-kind table now, so a typo fails before the pipeline starts; the job uses the result."""
    from knowmix.pipelines.neardup import NearDedupConfig
    from knowmix.pipelines.normalize import check_t2s_threshold
    from knowmix.pipelines.quality import rules_for

    config.t2s_threshold = check_t2s_threshold(config.t2s_threshold, f"{where} [normalize]")
    if config.keep_words:
        _keep_words(config.keep_words, f"{where} [normalize]")
    steps = {kind: steps_for(config, kind, where=f"{where} [normalize.{kind}]") for kind in SOURCE_KINDS}
    rules = {kind: rules_for(kind, config.rules.get(kind), where=f"{where} [rules.{kind}]") for kind in SOURCE_KINDS}
    near = NearDedupConfig.from_dict(config.dedup, where=f"{where} [dedup]")
    if config.quality is not None:
        config.quality.load(f"{where} [quality]")  # a missing or corrupt model: one line, before any work
    return ResolvedTables(steps, rules, near)


def _quality(table: Any, where: str, base: str):
    if table is None:
        return None
    from knowmix.pipelines.quality_model import QualitySettings

    return QualitySettings.from_dict(table, where, base)


def steps_for(config: CleanConfig, kind: str, where: str = "config") -> dict[str, Any]:
    """The normalisation settings of a source kind (what ``pipelines.normalize.Normalizer`` takes): its default
    steps with the config's [normalize.KIND] overrides, plus the [normalize] options where they are set."""
    from knowmix.pipelines import normalize

    settings: dict[str, Any] = normalize.steps_for(kind, config.normalize.get(kind), where=where)
    if config.keep_words or config.keep_kg:
        words = set(_keep_words(config.keep_words, where)) if config.keep_words else set()
        words.update(_kg_names(config.keep_kg))
        settings["keep_words"] = tuple(sorted(words))
    if config.t2s_threshold != normalize.DEFAULT_T2S_THRESHOLD:
        settings["t2s_threshold"] = config.t2s_threshold
    return settings


def _keep_words(path: str, where: str) -> tuple[str, ...]:
    """The keep-words file's words, read once per file version (steps_for runs once per kind)."""
    from knowmix.pipelines.normalize import load_keep_words

    try:
        stat = os.stat(path)
        key = (path, stat.st_mtime_ns, stat.st_size)
    except OSError:
        key = (path, None, None)
    if key not in _KEEP_WORDS:
        _KEEP_WORDS[key] = load_keep_words(path, where)
    return _KEEP_WORDS[key]


_KEEP_WORDS: dict[tuple, tuple[str, ...]] = {}


def _kg_names(paths: tuple[str, ...]) -> tuple[str, ...]:
    """Every entity name and alias of the KG files (``kg.graph.load_raw``: the loader kg-samples uses), read
    once per set of files: the names the knowledge stage must find in the cleaned text as the KG spells them."""
    if not paths:
        return ()
    if paths not in _KG_NAMES:
        from knowmix.kg.graph import load_raw

        graph = load_raw(paths)
        _KG_NAMES[paths] = tuple(sorted({n for e in graph.entities.values() for n in (e.name, *e.aliases) if n}))
    return _KG_NAMES[paths]


_KG_NAMES: dict[tuple, tuple[str, ...]] = {}
