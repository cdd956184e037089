from libs.store import run_migrations
from services.feedback.tables import Base

run_migrations(Base.metadata)
