from herald.libs.store import run_migrations
from herald.services.feedback.tables import Base

run_migrations(Base.metadata)
