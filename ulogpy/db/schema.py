"""ulogpy's schema files, applied object by object (`ulogpy db init`).

A schema file is SQL cut into blocks by `-- @kind name [table]` lines.
For PostgreSQL each block runs only when its object is missing from the
target schema, so an existing ulogd database gets what it lacks and keeps
everything else; for SQLite every statement is IF NOT EXISTS.  All of it
in one transaction: a failure leaves the database as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_MARK = re.compile(r"^--\s*@(\w+)\s+(\S+)(?:\s+(\S+))?\s*$")


@dataclass(frozen=True)
class Block:
    kind: str    # table, view, sequence, index, function, constraint
    name: str
    table: str | None
    sql: str


def schema_text(name: str) -> str:
    return resources.files("ulogpy").joinpath("data", "schema", name).read_text()


def parse_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    head: tuple[str, str, str | None] | None = None
    lines: list[str] = []

    def close() -> None:
        if head is not None:
            blocks.append(Block(head[0], head[1], head[2], "\n".join(lines).strip() + "\n"))

    for line in text.splitlines():
        m = _MARK.match(line)
        if m:
            close()
            head = (m.group(1), m.group(2), m.group(3))
            lines = []
        elif head is not None:
            lines.append(line)
    close()
    return blocks


def sqlite_table_sql(table: str) -> str | None:
    """The statements creating `table` and its indexes, or None if the schema lacks it."""
    blocks = parse_blocks(schema_text("sqlite.sql"))
    mine = [b for b in blocks if (b.kind == "table" and b.name == table)
            or (b.kind == "index" and b.table == table)]
    if not any(b.kind == "table" for b in mine):
        return None
    return "".join(b.sql for b in mine)


# -- PostgreSQL ---------------------------------------------------------------------------

_EXISTS = {
    "relation": "SELECT to_regclass(quote_ident(%s) || '.' || quote_ident(%s)) IS NOT NULL",
    "function": "SELECT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n "
                "ON n.oid = p.pronamespace WHERE n.nspname = %s AND p.proname = %s)",
    "constraint": "SELECT EXISTS (SELECT 1 FROM pg_constraint c JOIN pg_namespace n "
                  "ON n.oid = c.connamespace WHERE n.nspname = %s AND c.conname = %s)",
}


def _exists(cur, schema: str, block: Block) -> bool:
    query = _EXISTS.get(block.kind, _EXISTS["relation"])
    cur.execute(query, (schema, block.name))
    return bool(cur.fetchone()[0])


def pg_init(conn, schema: str = "public") -> list[str]:
    """Create what is missing in `schema`; returns 'kind name' of each object created."""
    from psycopg import sql

    created: list[str] = []
    with conn.transaction():
        cur = conn.cursor()
        cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        cur.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
        for block in parse_blocks(schema_text("pgsql.sql")):
            if _exists(cur, schema, block):
                continue
            cur.execute(block.sql.encode())
            created.append(f"{block.kind} {block.name}")
    return created


def sqlite_init(conn) -> list[str]:
    """Create what is missing in an SQLite database; returns what was created."""
    before = {(r[0], r[1]) for r in conn.execute("SELECT type, name FROM sqlite_master")}
    conn.executescript("BEGIN;\n" + schema_text("sqlite.sql") + "\nCOMMIT;")
    after = [(r[0], r[1]) for r in conn.execute("SELECT type, name FROM sqlite_master")]
    return [f"{t} {n}" for t, n in after if (t, n) not in before and
            not n.startswith("sqlite_")]


# -- MySQL / MariaDB ----------------------------------------------------------------------

_MY_EXISTS = {
    "table": "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() "
             "AND table_name = %s",
    "view": "SELECT COUNT(*) FROM information_schema.views WHERE table_schema = DATABASE() "
            "AND table_name = %s",
    "function": "SELECT COUNT(*) FROM information_schema.routines WHERE "
                "routine_schema = DATABASE() AND routine_name = %s",
    "index": "SELECT COUNT(*) FROM information_schema.statistics WHERE "
             "table_schema = DATABASE() AND index_name = %s",
}


def mysql_init(conn) -> list[str]:
    """Create what is missing in the connection's database; returns what was created.

    MySQL commits each CREATE on its own, so unlike PostgreSQL a failure can leave the
    objects created before it (a second run completes the rest)."""
    created: list[str] = []
    with conn.cursor() as cur:
        for block in parse_blocks(schema_text("mysql.sql")):
            cur.execute(_MY_EXISTS[block.kind], (block.name,))
            if cur.fetchone()[0]:
                continue
            cur.execute(_one_statement(block.sql))
            created.append(f"{block.kind} {block.name}")
    return created


def _one_statement(text: str) -> str:
    """The block without its comment lines and final `;` (sent as one statement)."""
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("--")]
    return "\n".join(lines).strip().rstrip(";")
