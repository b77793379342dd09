"""A responder written the way a Spring @KafkaListener with @SendTo answers, with aiokafka
(the client FastStream uses): it reads --topic from the beginning, and for each request
carrying kafka_replyTopic and kafka_correlationId it sends {"n": .., "cents": n*3} as plain
JSON (content-type application/json, as Spring's JsonSerializer writes it) to that topic
(and kafka_replyPartition when given) with the same kafka_correlationId. Answers --count
requests, then exits 0; prints one line per answer."""

import argparse
import asyncio
import json
import struct
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--count", type=int, default=5)
    p.add_argument("--timeout", type=float, default=60)
    a = p.parse_args()

    consumer = AIOKafkaConsumer(a.topic, bootstrap_servers=a.bootstrap,
                                group_id=a.topic + "-py", auto_offset_reset="earliest")
    producer = AIOKafkaProducer(bootstrap_servers=a.bootstrap)
    await consumer.start()
    await producer.start()
    answered = 0
    try:
        async def serve():
            nonlocal answered
            async for r in consumer:
                h = dict(r.headers or [])
                reply_topic = h.get("kafka_replyTopic")
                corr = h.get("kafka_correlationId")
                if reply_topic is None or corr is None:
                    continue
                # Binary-mode CloudEvents (mq's Kafka default) or plain JSON: the value is the data.
                req = json.loads(r.value)
                partition = None
                if "kafka_replyPartition" in h:
                    partition = struct.unpack(">i", h["kafka_replyPartition"])[0]
                body = json.dumps({"n": req["n"], "cents": req["n"] * 3}).encode()
                await producer.send_and_wait(
                    reply_topic.decode(), body, partition=partition,
                    headers=[("kafka_correlationId", corr),
                             ("content-type", b"application/json")])
                answered += 1
                print(json.dumps({"answered": req["n"]}), flush=True)
                if answered >= a.count:
                    return

        await asyncio.wait_for(serve(), a.timeout)
        return 0
    except asyncio.TimeoutError:
        print(json.dumps({"timeout": True, "answered": answered}), flush=True)
        return 1
    finally:
        await producer.stop()
        await consumer.stop()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
