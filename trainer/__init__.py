"""knowmix's trainer: dual-path knowledge pretraining of a BERT-compatible encoder on the token shards.

Modules: ``config`` (TOML + overrides), ``model`` (the encoder, Hugging Face names), ``heads`` (MLM, relation,
substitution, triple-mask), ``masking``, ``data`` (memory-mapped shards per rank, resumable streams),
``dual_path`` (step composition, loss normalisation, prefetch), ``distributed`` (torchrun, FSDP2/DDP),
``checkpoint`` (DCP), ``export`` (Hugging Face in/out), ``integrity`` (what is checked before it is trusted:
manifest paths, shard and tokenizer checksums, checkpoint manifests), ``flops`` (MFU: FLOPs done, device peaks),
``loop``, ``cli`` (``train_main``, ``export_main``).

Reads shard directories only through ``knowmix.manifest``; never imports ``pipelines`` (or Apache Beam).
"""
