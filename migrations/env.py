"""Alembic environment for the daydream ledger.

daydream drives Alembic from code (``daydream.ledger.db.migrate``) and hands it an open connection through
``config.attributes["connection"]``; there is no ``alembic.ini``. Running ``alembic`` by hand works
too with ``-x db=PATH``.
"""

from alembic import context
from sqlalchemy import create_engine

config = context.config
connection = config.attributes.get("connection")

if connection is None:  # plain `alembic -x db=ledger.db upgrade head`
    db = context.get_x_argument(as_dictionary=True).get("db", "ledger.db")
    engine = create_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=None, transactional_ddl=True)
        with context.begin_transaction():
            context.run_migrations()
        conn.commit()
else:
    context.configure(connection=connection, target_metadata=None, transactional_ddl=True)
    with context.begin_transaction():
        context.run_migrations()
