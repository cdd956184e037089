from herald.libs.store import run_migrations
from herald.services.adapters.tables import Base

run_migrations(Base.metadata)
