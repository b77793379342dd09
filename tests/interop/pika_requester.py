"""A RabbitMQ RPC client written as the RabbitMQ tutorials and Spring AMQP's
RabbitTemplate.convertSendAndReceive write one, with pika and direct reply-to: it publishes
plain JSON requests {"n": i} to --queue with reply_to=amq.rabbitmq.reply-to and its own
correlation_id, and prints one JSON line per reply:
{"n": ..., "matched": bool, "data": <the reply's data>, "content_type": ...}.
Exits 0 when every request got its reply within --timeout."""

import argparse
import json
import sys
import time
import uuid

import pika


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--queue", required=True)
    p.add_argument("--count", type=int, default=5)
    p.add_argument("--timeout", type=float, default=60)
    a = p.parse_args()

    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672))
    ch = conn.channel()
    waiting = {}

    def on_reply(_ch, _method, props, body):
        n = waiting.pop(props.correlation_id, None)
        value = json.loads(body)
        # Structured mode (RabbitMQ's default in mq): the data is inside the envelope.
        data = value.get("data") if isinstance(value, dict) and "specversion" in value else value
        print(json.dumps({"n": n, "matched": n is not None, "data": data,
                          "content_type": props.content_type}), flush=True)

    # Direct reply-to: consume the pseudo-queue with auto-ack before publishing.
    ch.basic_consume("amq.rabbitmq.reply-to", on_reply, auto_ack=True)
    for n in range(a.count):
        corr = str(uuid.uuid4())
        waiting[corr] = n
        ch.basic_publish(
            exchange="",
            routing_key=a.queue,
            body=json.dumps({"n": n}).encode(),
            properties=pika.BasicProperties(
                reply_to="amq.rabbitmq.reply-to",
                correlation_id=corr,
                content_type="application/json",
            ),
        )
    deadline = time.monotonic() + a.timeout
    while waiting and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.2)
    conn.close()
    if waiting:
        print(json.dumps({"timeout": True, "unanswered": sorted(waiting.values())}), flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
