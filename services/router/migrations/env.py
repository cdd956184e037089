from libs.store import run_migrations
from services.router.tables import Base

run_migrations(Base.metadata)
