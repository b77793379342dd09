"""A RabbitMQ RPC server written as the RabbitMQ tutorials and a Spring AMQP @RabbitListener
with a return value answer: it consumes --queue and, for each message with reply_to,
publishes {"n": .., "twice": n*2} as plain JSON to reply_to through the default exchange
with the request's correlation_id. Answers --count requests, then exits 0."""

import argparse
import json
import sys
import time

import pika


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--queue", required=True)
    p.add_argument("--count", type=int, default=5)
    p.add_argument("--timeout", type=float, default=60)
    a = p.parse_args()

    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672))
    ch = conn.channel()
    ch.queue_declare(queue=a.queue, durable=True)
    answered = 0

    def on_request(ch, method, props, body):
        nonlocal answered
        value = json.loads(body)
        # mq writes RabbitMQ events in structured mode: the data is inside the envelope.
        req = value.get("data") if "specversion" in value else value
        if props.reply_to:
            ch.basic_publish(
                exchange="",
                routing_key=props.reply_to,
                properties=pika.BasicProperties(
                    correlation_id=props.correlation_id,
                    content_type="application/json",
                ),
                body=json.dumps({"n": req["n"], "twice": req["n"] * 2}).encode(),
            )
            answered += 1
        ch.basic_ack(delivery_tag=method.delivery_tag)

    ch.basic_consume(queue=a.queue, on_message_callback=on_request)
    deadline = time.monotonic() + a.timeout
    while answered < a.count and time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.2)
    conn.close()
    print(json.dumps({"answered": answered}), flush=True)
    return 0 if answered >= a.count else 1


if __name__ == "__main__":
    sys.exit(main())
