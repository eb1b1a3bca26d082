"""``knowmix export-parquet OUT --output DIR``: a stage's Arrow shards as Parquet files, for DuckDB, Spark,
BigQuery, pandas and polars users.

One Parquet file per shard (``DIR/part-00000-of-00004.parquet``, the shard's name), the same rows in the same
order with the same Arrow schema (stored in the file, so list and struct columns round-trip exactly), zstd
compressed. The source shards are verified against their manifest first (sha256, rows). Beside the files,
``DIR/_knowmix.json`` records the source manifest's kind, counts and tokenizer entry and each file's rows;
its leading underscore makes Spark, pyarrow datasets and Hive-style readers skip it. Files are written under
a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
import os
import sys

from knowmix.errors import UserError
from knowmix import fileio
from knowmix.manifest import ContractError, open_shard_dir

INFO_NAME = "_knowmix.json"


def export_parquet(src: str, out_dir: str, verify: bool = True, compression: str = "zstd") -> dict:
    """Write the Parquet files; return the ``_knowmix.json`` record (``files``: name, rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        shards = open_shard_dir(src, verify=verify)
    except ContractError as exc:
        raise UserError(str(exc)) from None
    if os.path.abspath(out_dir) == os.path.abspath(src):
        raise UserError(f"--output {out_dir}: must differ from the shard directory")
    os.makedirs(out_dir, exist_ok=True)
    stale = [n for n in os.listdir(out_dir) if n.endswith(".parquet")]
    for name in stale:  # a rerun replaces the whole set, never mixes two
        os.unlink(os.path.join(out_dir, name))
    files = []
    for i, entry in enumerate(shards.manifest["shards"]):
        table = shards.open_shard(i)  # a remote source's shard is checked as it is read (ShardDir.deferred)
        name = os.path.splitext(os.path.basename(entry["path"]))[0] + ".parquet"
        fileio.atomic_write(os.path.join(out_dir, name), lambda fh: pq.write_table(table, fh, compression=compression),
                            opener=lambda tmp: pa.OSFile(tmp, "wb"))
        files.append({"path": name, "rows": table.num_rows})
    info = {
        "source": os.path.abspath(src),
        "kind": shards.kind,
        "counts": shards.manifest["counts"],
        "files": files,
        **({"tokenizer": shards.manifest["tokenizer"]} if "tokenizer" in shards.manifest else {}),
    }
    fileio.write_text(os.path.join(out_dir, INFO_NAME), json.dumps(info, ensure_ascii=False, indent=2) + "\n")
    return info


def export_parquet_main(argv: list[str]) -> int:
    from knowmix.args import Parser

    ap = Parser("knowmix export-parquet", __doc__)
    ap.add_argument("dir", metavar="OUT", help="an output directory of any stage (holds manifest.json)")
    ap.add_argument("--output", required=True, metavar="DIR", help="directory for the Parquet files")
    ap.add_argument("--no-verify", dest="verify", action="store_false",
                    help="skip the sha256 check of the source shards")
    ap.add_argument("--compression", default="zstd", choices=("zstd", "snappy", "gzip", "none"),
                    help="Parquet compression codec")
    args = ap.parse_args(argv)
    info = export_parquet(args.dir, args.output, args.verify, args.compression)
    rows = sum(f["rows"] for f in info["files"])
    print(f"knowmix export-parquet: {info['kind']}: {rows} rows in {len(info['files'])} files -> {args.output}",
          file=sys.stderr)
    return 0
