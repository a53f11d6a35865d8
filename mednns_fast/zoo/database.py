"""The model zoo: one record per (dataset, subnet config), in a database through SQLAlchemy Core.

SQLite file by default (WAL journal, a busy timeout so several local processes can write), PostgreSQL when
several machines or jobs write one zoo (``postgresql+psycopg://user@host:port/db``). Writes are idempotent:
(dataset, config key) is unique and `add` skips rows already present, so a killed build rerun neither loses
nor duplicates records. One `add` call is one transaction.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ..nas.ofa.config_space import canonical_config, config_key
from .checkpoint import load_supernet

__all__ = ["SCHEMA_VERSION", "TransferRecord", "Zoo", "ZooRecord", "load_supernet"]

# 2: the `transfers` table (a version-1 zoo gains it, empty, when opened)
SCHEMA_VERSION = 2


@dataclass
class ZooRecord:
    """One evaluated subnet on one dataset. Accuracies are fractions in [0, 1]; losses are mean cross-entropy.

    flops: multiply-accumulates per image. supernet_digest + config re-derive the weights (never stored).
    """

    dataset: str
    config: dict
    params: int
    flops: int
    val_acc: float
    val_loss: float
    test_acc: float
    test_loss: float
    supernet_digest: str

    @property
    def key(self) -> str:
        return config_key(self.config)


@dataclass
class TransferRecord:
    """One subnet of `source`'s supernet measured on another dataset, `target`, under a transfer `protocol`
    (`zoo.transfer.TransferProtocol.key`: BN recalibrated on the target, then a fixed short adaptation).
    Only the target's train (fit) and validation (score) splits are used: accuracy is a fraction in [0, 1]."""

    source: str
    config: dict
    target: str
    protocol: str
    val_acc: float
    val_loss: float

    @property
    def key(self) -> str:
        return config_key(self.config)


_metadata = sa.MetaData()
_meta_table = sa.Table("zoo_meta", _metadata, sa.Column("key", sa.String(64), primary_key=True),
                       sa.Column("value", sa.Text, nullable=False))
_supernets = sa.Table(
    "supernets", _metadata,
    sa.Column("dataset", sa.String(128), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("meta", sa.Text, nullable=False),
    sa.Column("created", sa.Float, nullable=False),
)
_records = sa.Table(
    "records", _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dataset", sa.String(128), nullable=False),
    sa.Column("config_key", sa.Text, nullable=False),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("params", sa.BigInteger, nullable=False),
    sa.Column("flops", sa.BigInteger, nullable=False),
    sa.Column("val_acc", sa.Float, nullable=False),
    sa.Column("val_loss", sa.Float, nullable=False),
    sa.Column("test_acc", sa.Float, nullable=False),
    sa.Column("test_loss", sa.Float, nullable=False),
    sa.Column("supernet_digest", sa.String(64), nullable=False),
    sa.UniqueConstraint("dataset", "config_key", name="uq_records_dataset_config"),
)
_transfers = sa.Table(
    "transfers", _metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(128), nullable=False),
    sa.Column("config_key", sa.Text, nullable=False),
    sa.Column("config", sa.Text, nullable=False),
    sa.Column("target", sa.String(128), nullable=False),
    sa.Column("protocol", sa.String(128), nullable=False),
    sa.Column("val_acc", sa.Float, nullable=False),
    sa.Column("val_loss", sa.Float, nullable=False),
    sa.UniqueConstraint("source", "config_key", "target", "protocol", name="uq_transfers"),
)


def _config_row(record, kind: type) -> dict:
    """A record of dataclass `kind` as a table row: its fields, the canonical config as JSON and its key."""
    if not isinstance(record, kind):
        raise TypeError(f"records must be {kind.__name__}, got {type(record).__name__}")
    config = canonical_config(record.config)
    row = asdict(record)
    row.update(config=json.dumps(config, sort_keys=True), config_key=config_key(config))
    return row


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=60000")  # other writers (ranks, jobs) wait instead of failing
    # Readers never block the writer; commits are durable and atomic. Switching a new file to WAL needs an
    # exclusive lock, and when two processes open it at the same moment SQLite refuses one of them at once
    # (no busy wait, to avoid a deadlock): try again until one has switched it (the mode is stored in the file).
    for attempt in range(100):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == 99:
                raise
            time.sleep(0.05)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


class Zoo:
    """A model zoo on a database URL (default: ``sqlite:///zoo.db``)."""

    def __init__(self, url: str = "sqlite:///zoo.db") -> None:
        if not isinstance(url, str) or "://" not in url:
            raise ValueError(f"url must be a database URL such as 'sqlite:///zoo.db', got {url!r}")
        try:
            self.engine = sa.create_engine(url, pool_pre_ping=True)
        except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
            raise ValueError(f"zoo database URL {url!r} is not usable: {exc}") from exc
        self.url = self.engine.url.render_as_string(hide_password=True)
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            with self.engine.connect():
                pass
        except sa.exc.OperationalError as exc:
            raise ConnectionError(f"cannot reach the zoo database at {self.url}: {exc.orig}") from exc
        for attempt in range(5):
            try:
                self._create_schema()
                break
            except sa.exc.DBAPIError:  # another process created the tables at the same moment: look again
                if attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))

    def _create_schema(self) -> None:
        with self.engine.begin() as conn:
            _metadata.create_all(conn, checkfirst=True)
            self._insert_ignore(conn, _meta_table, [{"key": "schema_version", "value": str(SCHEMA_VERSION)}],
                                ["key"])
            stored = conn.execute(sa.select(_meta_table.c.value).where(_meta_table.c.key == "schema_version"))
            version = int(stored.scalar_one())
            if version == 1:  # create_all has just added the transfers table: nothing else changed
                conn.execute(sa.update(_meta_table).where(_meta_table.c.key == "schema_version")
                             .values(value=str(SCHEMA_VERSION)))
                version = SCHEMA_VERSION
        if version != SCHEMA_VERSION:
            raise RuntimeError(f"zoo database {self.url} has schema version {version}; this code writes "
                               f"version {SCHEMA_VERSION}")

    def _insert_ignore(self, conn, table: sa.Table, rows: list[dict], keys: Sequence[str]) -> int:
        """INSERT ... ON CONFLICT DO NOTHING; returns the number of rows actually inserted."""
        if not rows:
            return 0
        if self.dialect == "postgresql":
            stmt = postgresql.insert(table).on_conflict_do_nothing(index_elements=list(keys))
        elif self.dialect == "sqlite":
            stmt = sqlite.insert(table).on_conflict_do_nothing(index_elements=list(keys))
        else:
            raise ValueError(f"zoo supports sqlite and postgresql databases, not {self.dialect}")
        first = list(table.primary_key.columns)[0]
        return len(conn.execute(stmt.returning(first), rows).all())

    # -- records ---------------------------------------------------------------------------------------
    def add(self, records: Iterable[ZooRecord]) -> int:
        """Insert records in one transaction; rows whose (dataset, config) exist are skipped. Returns the
        number of rows inserted."""
        rows = [_config_row(r, ZooRecord) for r in records]
        with self.engine.begin() as conn:
            return self._insert_ignore(conn, _records, rows, ["dataset", "config_key"])

    @staticmethod
    def _count(conn, dataset: str | None) -> int:
        q = sa.select(sa.func.count()).select_from(_records)
        if dataset is not None:
            q = q.where(_records.c.dataset == dataset)
        return int(conn.execute(q).scalar_one())

    def count(self, dataset: str | None = None) -> int:
        with self.engine.connect() as conn:
            return self._count(conn, dataset)

    def keys(self, dataset: str) -> set[str]:
        """Config keys already stored for `dataset` (what a resumed build skips)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(_records.c.config_key).where(_records.c.dataset == dataset))
            return {r[0] for r in rows}

    def records(self, dataset: str | None = None) -> list[ZooRecord]:
        q = sa.select(_records).order_by(_records.c.dataset, _records.c.config_key)
        if dataset is not None:
            q = q.where(_records.c.dataset == dataset)
        with self.engine.connect() as conn:
            return [ZooRecord(dataset=r.dataset, config=json.loads(r.config), params=int(r.params),
                              flops=int(r.flops), val_acc=r.val_acc, val_loss=r.val_loss, test_acc=r.test_acc,
                              test_loss=r.test_loss, supernet_digest=r.supernet_digest)
                    for r in conn.execute(q)]

    def datasets(self) -> list[str]:
        with self.engine.connect() as conn:
            q = sa.select(_records.c.dataset).distinct().order_by(_records.c.dataset)
            return [r[0] for r in conn.execute(q)]

    # -- transfer records ------------------------------------------------------------------------------
    def add_transfers(self, records: Iterable[TransferRecord]) -> int:
        """Insert transfer records in one transaction; rows whose (source, config, target, protocol) exist are
        skipped. Returns the number of rows inserted."""
        rows = []
        for r in records:
            row = _config_row(r, TransferRecord)
            if r.source == r.target:
                raise ValueError(f"a transfer record needs two datasets, got source = target = {r.source!r}")
            rows.append(row)
        with self.engine.begin() as conn:
            return self._insert_ignore(conn, _transfers, rows, ["source", "config_key", "target", "protocol"])

    def transfer_keys(self, source: str, target: str, protocol: str) -> set[str]:
        """Config keys of `source` already measured on `target` under `protocol` (what a resumed build skips)."""
        t = _transfers.c
        q = sa.select(t.config_key).where(t.source == source, t.target == target, t.protocol == protocol)
        with self.engine.connect() as conn:
            return {r[0] for r in conn.execute(q)}

    def transfers(self, target: str | None = None, source: str | None = None,
                  protocol: str | None = None) -> list[TransferRecord]:
        """Transfer records, optionally of one target, source and/or protocol (ordered by target, source, key)."""
        t = _transfers.c
        q = sa.select(_transfers).order_by(t.target, t.source, t.config_key)
        for column, value in ((t.target, target), (t.source, source), (t.protocol, protocol)):
            if value is not None:
                q = q.where(column == value)
        with self.engine.connect() as conn:
            return [TransferRecord(source=r.source, config=json.loads(r.config), target=r.target,
                                   protocol=r.protocol, val_acc=r.val_acc, val_loss=r.val_loss)
                    for r in conn.execute(q)]

    def count_transfers(self, protocol: str | None = None) -> int:
        q = sa.select(sa.func.count()).select_from(_transfers)
        if protocol is not None:
            q = q.where(_transfers.c.protocol == protocol)
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar_one())

    # -- supernets -------------------------------------------------------------------------------------
    def register_supernet(self, dataset: str, digest: str, path: str, meta: dict | None = None) -> None:
        """Record (or replace) the supernet a dataset's records come from."""
        row = {"dataset": dataset, "digest": digest, "path": str(path), "meta": json.dumps(meta or {}),
               "created": time.time()}
        with self.engine.begin() as conn:
            conn.execute(sa.delete(_supernets).where(_supernets.c.dataset == dataset))
            conn.execute(sa.insert(_supernets), [row])

    def supernet(self, dataset: str) -> tuple[str, str]:
        """(path, digest) of the dataset's supernet; KeyError when none is registered."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_supernets).where(_supernets.c.dataset == dataset)).first()
        if row is None:
            raise KeyError(f"no supernet registered for dataset {dataset!r} in {self.url}")
        return row.path, row.digest

    def supernet_meta(self, dataset: str) -> dict:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(_supernets.c.meta).where(_supernets.c.dataset == dataset)).first()
        if row is None:
            raise KeyError(f"no supernet registered for dataset {dataset!r} in {self.url}")
        return json.loads(row[0])

    def close(self) -> None:
        self.engine.dispose()
