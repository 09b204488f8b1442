"""The call list: a call task for the call-center, with its script, priority and deadline."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine

from channels.base import ChannelError, Message, Receipt
from crm.models import CallTask
from crm.upsert import insert_ignore


class CallListChannel:
    """Puts the call on the call-center's list (the `call_tasks` table)."""

    name = "call"

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def from_settings(cls, settings: object, engine: Engine) -> CallListChannel:
        return cls(engine)

    def send(self, message: Message) -> Receipt:
        if message.due_by is None:
            raise ChannelError("a call task needs a due time", permanent=True)
        row = {
            "delivery_id": message.delivery_id,
            "customer_id": message.customer_id,
            "vehicle_id": message.vehicle_id,
            "campaign": message.campaign,
            "phone": message.recipient,
            "script": message.body,
            "priority": message.priority,
            "due_by": message.due_by,
            "status": "open",
            "created_at": datetime.now(UTC),
        }
        with self.engine.begin() as conn:
            conn.execute(insert_ignore(conn, CallTask, ["delivery_id"]), [row])
        return Receipt(provider_id=f"call-{message.delivery_id}")
