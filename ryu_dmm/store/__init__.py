"""The CMD's binding store: one interface (``base.BindingStore``), an embedded SQLite backend (the
default), an in-memory one and Redis (docs/deploy-cmds.md), and the sans-IO durability gate
(docs/store.md)."""
from .base import Batch, BindingStore, Loaded, StoreError, long_lived
from .gate import DurabilityGate
from .memory import MemoryStore
from .sqlite import SqliteStore

__all__ = ["Batch", "BindingStore", "DurabilityGate", "Loaded", "MemoryStore", "SqliteStore", "StoreError", "long_lived",
           "open_store"]


def open_store(settings) -> BindingStore:
    """The backend ``[store]`` names (``domainconf.StoreSettings``); nothing is read yet."""
    if settings.backend == "memory":
        return MemoryStore()
    if settings.backend == "redis":
        from .redisstore import RedisStore  # (imports redis-py only when used)
        return RedisStore(settings)
    return SqliteStore(settings.path, settings.synchronous)
