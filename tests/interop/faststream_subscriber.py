"""A FastStream Kafka subscriber, as a Python service would write one, for tests/interop_faststream.rs.

Two subscribers on one topic, each in its own consumer group, reading from the earliest offset:

- ``typed`` takes the data as a pydantic model (``Order``), the usual FastStream handler;
- ``raw`` takes whatever FastStream's decoder produced, untyped, and reports its Python type.

Every outcome is printed as one JSON line on stdout:

- ``{"subscriber": "typed", "order": {...}}`` when FastStream decoded the record into ``Order``;
- ``{"subscriber": "typed", "error": "<exception type>", "detail": "..."}`` when it could not
  (FastStream logs the handler's failure; the log record is turned into this line);
- ``{"subscriber": "raw", "python_type": "dict" | "bytes" | ..., "body": ...}``;
- ``{"ready": true}`` once both subscribers have started.

The script exits 0 after ``--expect`` typed outcomes and ``--expect`` raw ones, and exits 2
after ``--timeout`` seconds without them.

Usage: ``python3 faststream_subscriber.py --bootstrap 127.0.0.1:9092 --topic T --expect 3``
"""

import argparse
import asyncio
import json
import logging
import sys
import uuid
from typing import Any

from faststream.kafka import KafkaBroker
from pydantic import BaseModel


class Order(BaseModel):
    """The data of mq's test events."""

    order_id: int
    product_id: int
    quantity: int


def emit(line: dict) -> None:
    print(json.dumps(line), flush=True)


class Outcomes:
    """Counts what the subscribers reported and says when enough arrived."""

    def __init__(self, expect: int) -> None:
        self.expect = expect
        self.typed = 0
        self.raw = 0
        self.done = asyncio.Event()

    def count(self, subscriber: str) -> None:
        if subscriber == "typed":
            self.typed += 1
        else:
            self.raw += 1
        if self.typed >= self.expect and self.raw >= self.expect:
            self.done.set()


class HandlerErrors(logging.Handler):
    """Turns FastStream's log record of a failed handler into a ``typed`` error line."""

    def __init__(self, outcomes: Outcomes, typed_group: str) -> None:
        super().__init__(level=logging.ERROR)
        self.outcomes = outcomes
        self.typed_group = typed_group

    def emit(self, record: logging.LogRecord) -> None:  # noqa: D102
        if record.exc_info is None or record.exc_info[1] is None:
            return
        # FastStream's log records of a message carry its subscriber's group.
        if getattr(record, "group_id", None) != self.typed_group:
            return
        error = record.exc_info[1]
        emit({"subscriber": "typed", "error": type(error).__name__, "detail": str(error)[:300]})
        self.outcomes.count("typed")


def jsonable(body: Any) -> Any:
    if isinstance(body, bytes):
        return body.decode("utf-8", errors="replace")
    return body


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()

    outcomes = Outcomes(args.expect)
    typed_group = f"faststream-typed-{uuid.uuid4().hex[:8]}"
    raw_group = f"faststream-raw-{uuid.uuid4().hex[:8]}"
    logger = logging.getLogger("faststream-interop")
    logger.setLevel(logging.INFO)
    logger.addHandler(HandlerErrors(outcomes, typed_group))
    logger.propagate = False

    broker = KafkaBroker(args.bootstrap, logger=logger)

    @broker.subscriber(args.topic, group_id=typed_group, auto_offset_reset="earliest")
    async def typed(order: Order) -> None:
        emit({"subscriber": "typed", "order": order.model_dump()})
        outcomes.count("typed")

    @broker.subscriber(args.topic, group_id=raw_group, auto_offset_reset="earliest")
    async def raw(body: Any) -> None:
        emit({"subscriber": "raw", "python_type": type(body).__name__, "body": jsonable(body)})
        outcomes.count("raw")

    async with broker:
        await broker.start()
        emit({"ready": True})
        try:
            await asyncio.wait_for(outcomes.done.wait(), timeout=args.timeout)
        except asyncio.TimeoutError:
            emit({"timeout": True, "typed": outcomes.typed, "raw": outcomes.raw})
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
