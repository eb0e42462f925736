"""SQLITE3: rows into an SQLite table named by its columns (spec 4.15, 6.7).

As in ulogd, each column of `table` names the stack key that fills it
(`_` for `.`).  Unlike ulogd 2.0.8: unsigned values keep their value,
rows go in batched transactions from a writer thread in WAL mode, and a
full or read-only disk is reported once per outage and retried with the
rows kept, never fatal.  `merge_flows=1` merges each flow's NEW and
DESTROY into one row, as INSERT_OR_REPLACE_CT does in PostgreSQL;
`create_table=1` creates a missing table from ulogpy's SQLite schema.
"""

from __future__ import annotations

from dataclasses import dataclass

from ulogpy.core.plugin import Option, PluginError
from ulogpy.db.output import DbOutput, db_options
from ulogpy.db.schema import sqlite_table_sql
from ulogpy.db.sqlitesink import COMMIT_DELAY_S, SQLITE_BATCH_ROWS, SqliteSink


@dataclass(frozen=True, slots=True)
class _Unnamed(Option):
    """ulogd 2.0.8 declares a third, blank option (left over from a removed one)."""

    @property
    def info_line(self) -> str:
        return "\tVar:  (Unknown)"


def _flag(value: int) -> str | None:
    return None if value in (0, 1) else "must be 0 or 1"


class SQLITE3(DbOutput):
    name = "SQLITE3"
    description = "SQLite tables (flows or packets)"
    options = (
        Option("db", str, "", mandatory=True, help="database file (created if missing)"),
        Option("table", str, "", mandatory=True,
               help="table whose columns name the values to write"),
        _Unnamed("", str, "", help="unused"),
        Option("merge_flows", int, 0, ulogd=False, check=_flag,
               help="1: a DESTROY event updates its flow's row (NEW and DESTROY in one row, "
                    "as INSERT_OR_REPLACE_CT)"),
        Option("create_table", int, 0, ulogd=False, check=_flag,
               help="1: create the table if missing, from ulogpy's SQLite schema"),
        *db_options(batch_rows=SQLITE_BATCH_ROWS),
    )

    def configure(self) -> None:
        cfg = self.config
        self.create_sql = None
        if cfg.create_table:
            self.create_sql = sqlite_table_sql(cfg.table)
            if self.create_sql is None:
                raise PluginError(f"create_table: ulogpy's SQLite schema has no table "
                                  f"'{cfg.table}'")
        super().configure()

    def batching(self) -> tuple[int, float]:
        """Large transactions at burst rates (why: `sqlitesink.COMMIT_DELAY_S`)."""
        return self.config.batch_rows, COMMIT_DELAY_S

    def make_sink(self) -> SqliteSink:
        cfg = self.config
        return SqliteSink(label=str(self), path=cfg.db, table=cfg.table,
                          stack_keys=self.stack_keys, merge_flows=bool(cfg.merge_flows),
                          create_sql=self.create_sql)
