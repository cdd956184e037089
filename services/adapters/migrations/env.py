from libs.store import run_migrations
from services.adapters.tables import Base

run_migrations(Base.metadata)
