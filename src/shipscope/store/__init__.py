"""The store: journal and normalized tables on DuckDB or PostgreSQL. The only package that speaks SQL."""

from shipscope.store.database import EventPage, ReprocessReport, Store, duckdb_path

__all__ = ["EventPage", "ReprocessReport", "Store", "duckdb_path"]
