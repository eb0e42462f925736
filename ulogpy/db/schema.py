"""ulogpy's schema files, applied object by object (`ulogpy db init`).

A schema file is SQL cut into blocks by `-- @kind name [table]` lines.
For PostgreSQL each block runs only when its object is missing from the
target schema, so an existing ulogd database gets what it lacks and keeps
everything else; for SQLite every statement is IF NOT EXISTS.  All of it
in one transaction: a failure leaves the database as it was.  MySQL works
like PostgreSQL (without the transaction: its DDL commits itself), and a
block's `-- @stale QUERY` lines name what makes an existing object wrong
(ulogd's signed `mac_protocol`): then the object is redone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

_MARK = re.compile(r"^--\s*@(\w+)\s+(\S+)(?:\s+(\S+))?\s*$")
_STALE = re.compile(r"^--\s*@stale\s+(.*?)\s*$")


@dataclass(frozen=True)
class Block:
    kind: str    # table, view, sequence, index, function, procedure, constraint, column
    name: str
    table: str | None
    sql: str
    stale: str | None = None  # MySQL: counts > 0 when the existing object must be redone


def schema_text(name: str) -> str:
    return resources.files("ulogpy").joinpath("data", "schema", name).read_text()


def parse_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    head: tuple[str, str, str | None] | None = None
    lines: list[str] = []
    stale: list[str] = []

    def close() -> None:
        if head is not None:
            blocks.append(Block(head[0], head[1], head[2], "\n".join(lines).strip() + "\n",
                                " ".join(stale) or None))

    for line in text.splitlines():
        m = _MARK.match(line)
        s = _STALE.match(line)
        if s and head is not None:
            stale.append(s.group(1))
        elif m:
            close()
            head = (m.group(1), m.group(2), m.group(3))
            lines, stale = [], []
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
             "AND table_name = %(name)s AND table_type = 'BASE TABLE'",
    "view": "SELECT COUNT(*) FROM information_schema.views WHERE table_schema = DATABASE() "
            "AND table_name = %(name)s",
    "function": "SELECT COUNT(*) FROM information_schema.routines WHERE "
                "routine_schema = DATABASE() AND routine_name = %(name)s "
                "AND routine_type = 'FUNCTION'",
    "procedure": "SELECT COUNT(*) FROM information_schema.routines WHERE "
                 "routine_schema = DATABASE() AND routine_name = %(name)s "
                 "AND routine_type = 'PROCEDURE'",
    "index": "SELECT COUNT(*) FROM information_schema.statistics WHERE "
             "table_schema = DATABASE() AND table_name = %(table)s AND index_name = %(name)s",
    "constraint": "SELECT COUNT(*) FROM information_schema.table_constraints WHERE "
                  "constraint_schema = DATABASE() AND table_name = %(table)s AND "
                  "constraint_name = %(name)s AND constraint_type = 'FOREIGN KEY'",
    "column": "SELECT COUNT(*) FROM information_schema.columns WHERE "
              "table_schema = DATABASE() AND table_name = %(table)s AND column_name = %(name)s",
}
#: Objects that a stale block drops and creates again; a stale column is altered in place.
_MY_REPLACEABLE = ("view", "function", "procedure")


def mysql_init(conn) -> list[str]:
    """Create what is missing in the connection's database, and redo the objects whose
    `@stale` query says they are wrong; returns what it did, one line each
    ('kind name' for a creation, 'replaced kind name' / 'changed column t.c').

    MySQL commits each CREATE on its own, so unlike PostgreSQL a failure can leave the
    objects created before it (a second run completes the rest)."""
    done: list[str] = []
    with conn.cursor() as cur:
        for block in parse_blocks(schema_text("mysql.sql")):
            cur.execute(_MY_EXISTS[block.kind], {"name": block.name, "table": block.table})
            if not cur.fetchone()[0]:
                if block.kind == "column":
                    continue  # its table's block creates it right
                for statement in _statements(block):
                    cur.execute(statement)
                done.append(f"{block.kind} {block.name}")
                continue
            if block.stale is None:
                continue
            cur.execute(block.stale)
            if not cur.fetchone()[0]:
                continue
            if block.kind in _MY_REPLACEABLE:
                cur.execute(f"DROP {block.kind.upper()} `{block.name}`")
                for statement in _statements(block):
                    cur.execute(statement)
                done.append(f"replaced {block.kind} {block.name}")
            else:
                for statement in _statements(block):
                    cur.execute(statement)
                done.append(f"changed {block.kind} {block.table}.{block.name}")
    return done


def _statements(block: Block) -> list[str]:
    """The block's statements without comment lines, each without its final `;`.  A
    routine is one statement (its body holds `;`); other blocks split at a line's end."""
    lines = [ln for ln in block.sql.splitlines() if not ln.lstrip().startswith("--")]
    text = "\n".join(lines).strip()
    if block.kind in ("function", "procedure"):
        return [text.rstrip(";")]
    return [s.strip() for s in re.split(r";\s*$", text, flags=re.MULTILINE) if s.strip()]
