"""Alembic environment: the URL comes from the caller (crm.migrate) or the environment."""

from alembic import context

from crm.db import database_url, get_engine
from crm.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url") or database_url()

with get_engine(url).connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
