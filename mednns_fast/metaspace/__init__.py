"""MedNNS meta-space side: the model zoo (database), supernet training and zoo building."""

from .checkpoint import load_supernet, save_supernet, weights_digest
from .zoo import SCHEMA_VERSION, Zoo, ZooRecord

__all__ = ["SCHEMA_VERSION", "Zoo", "ZooRecord", "load_supernet", "save_supernet", "weights_digest"]
