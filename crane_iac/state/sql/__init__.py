"""The SQL state store (SQLAlchemy Core) on SQLite or PostgreSQL, one module per job:

- ``schema``: the tables and the schema version they make;
- ``migrations``: bringing an older database forward, one step per version;
- ``locks``: a stack's lock, a row on SQLite, an advisory lock on PostgreSQL;
- ``rows``: rows read back into crane's values;
- ``dump``: a stack's whole state as a value and back (`crane state migrate`);
- ``dialects``: what differs by dialect below the store (SQLite's file and transactions, the upserting INSERT);
- ``writes``: the statements of each write to a stack's state (commit, forget, move, a setting), serial first;
- ``store``: ``SqlStateStore``, which opens the database, reads a stack's state and runs each write in a
  transaction.
"""

from crane_iac.state.sql.migrations import MIGRATIONS
from crane_iac.state.sql.schema import SCHEMA, SCHEMA_VERSION
from crane_iac.state.sql.store import SqlStateStore

__all__ = ["MIGRATIONS", "SCHEMA", "SCHEMA_VERSION", "SqlStateStore"]
