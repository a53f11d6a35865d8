"""The MedNNS model zoo: the database of (dataset, subnet, accuracy) records (`database`: SQLite by default,
PostgreSQL for many writers), supernet checkpoints with content digests (`checkpoint`), and the one resumable,
sharded builder that trains supernets and evaluates sampled subnets into it (`builder`). See docs/mednns.md."""

from .builder import DEFAULT_BRANCHING, build_zoo, config_groups, ensure_supernet, evaluate_groups
from .checkpoint import load_supernet, save_supernet, supernet_meta, weights_digest
from .database import SCHEMA_VERSION, Zoo, ZooRecord

__all__ = ["DEFAULT_BRANCHING", "SCHEMA_VERSION", "Zoo", "ZooRecord", "build_zoo", "config_groups", "ensure_supernet",
           "evaluate_groups", "load_supernet", "save_supernet", "supernet_meta", "weights_digest"]
