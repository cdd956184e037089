from libs.store import run_migrations
from services.intake.tables import Base

run_migrations(Base.metadata)
