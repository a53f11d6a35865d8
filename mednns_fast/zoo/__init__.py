"""The MedNNS model zoo: the database of (dataset, subnet, accuracy) records (`database`: SQLite by default,
PostgreSQL for many writers), supernet checkpoints with content digests (`checkpoint`), and the one resumable,
sharded builder that trains supernets and evaluates sampled subnets into it (`builder`), with transfer labels
(`transfer`: subnets measured on other datasets). See docs/mednns.md."""

from .builder import DEFAULT_BRANCHING, build_zoo, config_groups, ensure_supernet, evaluate_groups, warm_supernet
from .checkpoint import load_supernet, save_supernet, supernet_meta, weights_digest
from .database import SCHEMA_VERSION, TransferRecord, Zoo, ZooRecord
from .transfer import TransferProtocol, build_transfers, measure_transfers

__all__ = ["DEFAULT_BRANCHING", "SCHEMA_VERSION", "TransferProtocol", "TransferRecord", "Zoo", "ZooRecord",
           "build_transfers", "build_zoo", "measure_transfers", "config_groups", "ensure_supernet",
           "evaluate_groups", "load_supernet", "save_supernet", "supernet_meta", "warm_supernet", "weights_digest"]
