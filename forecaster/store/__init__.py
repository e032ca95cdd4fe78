"""DuckDB storage: schema, migrations, ingest merges and reads. All SQL lives in this package."""

from forecaster.store.migrations import LATEST_VERSION, current_version, migrate
from forecaster.store.store import IngestOptions, Source, Store

__all__ = ["LATEST_VERSION", "IngestOptions", "Source", "Store", "current_version", "migrate"]
