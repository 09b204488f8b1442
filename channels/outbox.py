"""The outbox: keeps the rendered message instead of sending it (dry runs, demo, tests)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine

from channels.base import Message, Receipt
from crm.models import OutboxMessage
from crm.upsert import insert_ignore


class OutboxChannel:
    """Stores messages in the `outbox` table; nothing leaves the machine."""

    name = "outbox"

    def __init__(self, engine: Engine, channel: str = "outbox") -> None:
        self.engine = engine
        self.channel = channel

    def send(self, message: Message) -> Receipt:
        row = {
            "delivery_id": message.delivery_id,
            "channel": self.channel,
            "recipient": message.recipient,
            "subject": message.subject,
            "body": message.body,
            "segments": message.segments,
            "created_at": datetime.now(UTC),
        }
        # Keyed on the delivery: a retried job finds its message already kept.
        with self.engine.begin() as conn:
            conn.execute(insert_ignore(conn, OutboxMessage, ["delivery_id"]), [row])
        return Receipt(provider_id=f"outbox-{message.delivery_id}")
