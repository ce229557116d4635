"""sql_pull_data: one read-only SELECT against a SQLite file or a SQLAlchemy URL.

Read-only is enforced in layers, because a query string is easy to get wrong:
1. the text must be exactly one SELECT (or WITH ... SELECT) once comments and quoted text are removed,
   and may not contain a write/admin keyword;
2. SQLite files open with ``mode=ro`` plus ``PRAGMA query_only`` and an authorizer that allows only
   reads; other SQLAlchemy databases run inside a transaction that is always rolled back.
"""
import re
import sqlite3
from pathlib import Path

import pandas as pd

from taskweaver.plugin import Plugin, register_plugin

# Words that never belong in a read-only query (outside quotes and comments).
FORBIDDEN_WORDS = frozenset(
    "insert update delete upsert merge create drop alter truncate attach detach pragma vacuum reindex "
    "grant revoke into begin commit rollback savepoint release lock copy call exec execute "
    "load_extension".split()
)
DEFAULT_MAX_ROWS = 1_000_000


def strip_quoted_and_comments(sql: str) -> str:
    """Replace comments by spaces and quoted text by placeholders, so only SQL keywords remain."""
    out, i, n = [], 0, len(sql)
    closers = {"'": "'", '"': '"', "`": "`", "[": "]"}
    while i < n:
        ch, pair = sql[i], sql[i:i + 2]
        if pair == "--":
            end = sql.find("\n", i)
            i = n if end < 0 else end
            out.append(" ")
        elif pair == "/*":
            end = sql.find("*/", i + 2)
            if end < 0:
                raise ValueError("sql_pull_data refused the query: unterminated /* comment")
            i = end + 2
            out.append(" ")
        elif ch in closers:
            end = _closing_quote(sql, i, closers[ch])
            out.append(" '' " if ch == "'" else " quoted_name ")
            i = end + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def _closing_quote(sql: str, start: int, closer: str) -> int:
    i = start + 1
    while True:
        end = sql.find(closer, i)
        if end < 0:
            raise ValueError("sql_pull_data refused the query: unterminated quoted text")
        if sql[end + 1:end + 2] == closer and closer != "]":  # doubled quote = an escaped quote
            i = end + 2
            continue
        return end


def check_read_only(query: str) -> None:
    """Raise ValueError unless ``query`` is a single SELECT / WITH ... SELECT statement."""
    bare = strip_quoted_and_comments(query)
    statements = [s.strip() for s in bare.split(";") if s.strip()]
    if not statements:
        raise ValueError("sql_pull_data refused the query: it is empty")
    if len(statements) > 1:
        raise ValueError("sql_pull_data refused the query: only one statement may run (found "
                         f"{len(statements)} separated by ';')")
    words = [w.lower() for w in re.findall(r"[A-Za-z_][A-Za-z0-9_$]*", statements[0])]
    verb = main_verb(statements[0])
    if verb != "select":
        raise ValueError(f"sql_pull_data refused the query: only SELECT queries run, this one is {verb.upper()}")
    bad = sorted(set(words) & FORBIDDEN_WORDS)
    if bad:
        raise ValueError(f"sql_pull_data refused the query: {', '.join(w.upper() for w in bad)} is not "
                         "allowed in a read-only SELECT (quote it if it is a column name)")


def main_verb(statement: str) -> str:
    """The statement's verb: its first word, or after WITH the first verb outside the CTE bodies' parentheses."""
    depth, first = 0, ""
    for token in re.findall(r"[A-Za-z_][A-Za-z0-9_$]*|[()]", statement):
        if token in "()":
            depth += 1 if token == "(" else -1
            continue
        word = token.lower()
        first = first or word
        if first != "with":
            return word
        if depth == 0 and word in ("select", "insert", "update", "delete", "replace", "values"):
            return word
    return first or "nothing"


def _authorize(action: int, arg1, arg2, db_name, trigger) -> int:
    allowed = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
               getattr(sqlite3, "SQLITE_RECURSIVE", 33)}
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() == "load_extension":
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK if action in allowed else sqlite3.SQLITE_DENY


def workspace_file(path_text: str) -> Path:
    """The SQLite file ``path_text`` names, which must lie inside the working directory (the workspace):
    no absolute paths elsewhere, no ``..`` or symlinks out, no ``file:`` URIs (their options could reopen it)."""
    if path_text.lower().startswith("file:"):
        raise ValueError("sql_pull_data refused the database: give the SQLite file's path relative to the working "
                         f"directory, not a file: URI ({path_text!r})")
    workspace = Path.cwd().resolve()
    path = (workspace / Path(path_text).expanduser()).resolve()
    if path != workspace and workspace not in path.parents:
        raise ValueError(f"sql_pull_data refused the database {path_text!r}: only SQLite files inside the working "
                         f"directory {workspace} can be read; copy the file there")
    return path


def open_sqlite_read_only(path_text: str) -> sqlite3.Connection:
    path = workspace_file(path_text)
    if not path.is_file():
        nearby = sorted(p.name for p in Path.cwd().glob("*.db")) + sorted(p.name for p in Path.cwd().glob("*.sqlite*"))
        hint = f"; SQLite files here: {', '.join(nearby)}" if nearby else ""
        raise FileNotFoundError(f"SQLite file {path_text!r} not found (working directory {Path.cwd()}){hint}")
    conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
    conn.execute("PRAGMA query_only = ON")
    conn.set_authorizer(_authorize)
    return conn


def _sqlite_tables(conn: sqlite3.Connection) -> str:
    conn.set_authorizer(None)
    names = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type IN ('table', 'view')")]
    return ", ".join(names) or "(none)"


def fetch_sqlite(path_text: str, query: str, max_rows: int) -> tuple[list[str], list[tuple]]:
    conn = open_sqlite_read_only(path_text)
    try:
        try:
            cursor = conn.execute(query)
        except sqlite3.DatabaseError as exc:
            raise ValueError(f"SQLite error: {exc}. Tables in {path_text}: {_sqlite_tables(conn)}") from None
        columns = [d[0] for d in cursor.description or ()]
        return columns, cursor.fetchmany(max_rows + 1)
    finally:
        conn.close()


def fetch_sqlalchemy(url: str, query: str, max_rows: int) -> tuple[list[str], list[tuple]]:
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            try:
                # exec_driver_sql: no bind-parameter parsing of ':' inside the user's SQL.
                result = conn.exec_driver_sql(query)
                columns = list(result.keys())
                rows = [tuple(r) for r in result.fetchmany(max_rows + 1)]
            finally:
                conn.rollback()  # nothing this connection did is ever kept
        return columns, rows
    finally:
        engine.dispose()


def sqlite_file_of(url: str):
    """The file path of a ``sqlite:///path`` URL (None for other URLs), so it gets the read-only path."""
    match = re.match(r"^sqlite(?:\+pysqlite)?:///(.+)$", url)
    if match and match.group(1) != ":memory:" and "?" not in match.group(1):
        return match.group(1)
    return None


def describe(df: pd.DataFrame, database: str, truncated_at: int) -> str:
    shown = ", ".join(f"{c} ({t})" for c, t in list(df.dtypes.astype(str).items())[:30])
    more = f" and {df.shape[1] - 30} more" if df.shape[1] > 30 else ""
    if df.empty:
        return f"The query on {database} returned no rows. Columns: {shown}{more}."
    text = f"Pulled {len(df)} rows and {df.shape[1]} columns from {database}. Columns: {shown}{more}."
    if truncated_at:
        text += f" Stopped at max_rows={truncated_at}: aggregate or add LIMIT in SQL to see everything."
    return text


@register_plugin
class SqlPullData(Plugin):
    def __call__(self, query: str, database: str):
        if not isinstance(query, str) or not isinstance(database, str):
            raise TypeError("sql_pull_data(query: str, database: str): both arguments must be strings")
        check_read_only(query)
        max_rows = self._max_rows()
        file_path = database if "://" not in database else sqlite_file_of(database)
        if file_path is None and database.lower().startswith("sqlite"):
            raise ValueError("sql_pull_data refused the database: a SQLite URL must be sqlite:///<file in the "
                             f"working directory> without options, got {database!r}")
        if file_path is not None:
            columns, rows = fetch_sqlite(file_path, query, max_rows)
        else:
            columns, rows = fetch_sqlalchemy(database, query, max_rows)
        truncated_at = max_rows if len(rows) > max_rows else 0
        df = pd.DataFrame.from_records(rows[:max_rows], columns=columns)
        return df, describe(df, database, truncated_at)

    def _max_rows(self) -> int:
        try:
            return max(1, int(self.get_env("max_rows")))
        except (KeyError, ValueError):
            return DEFAULT_MAX_ROWS
