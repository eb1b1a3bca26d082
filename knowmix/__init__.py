"""knowmix: Chinese text + a knowledge graph -> pretraining shards, and a trainer that reads them."""

__version__ = "0.1.0"
