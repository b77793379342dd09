"""A requester written the way Spring's ReplyingKafkaTemplate writes one, with aiokafka (the
client FastStream uses): it sends plain JSON requests to --topic carrying Spring's headers
(kafka_replyTopic, kafka_correlationId as 16 random bytes), reads --reply-topic, and prints
one JSON line per reply: {"n": ..., "data": <the reply's value>, "matched": true|false}.
Exits 0 when every request got the reply with its own correlation id within --timeout."""

import argparse
import asyncio
import json
import os
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition


async def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--reply-topic", required=True)
    p.add_argument("--count", type=int, default=5)
    p.add_argument("--timeout", type=float, default=60)
    a = p.parse_args()

    consumer = AIOKafkaConsumer(bootstrap_servers=a.bootstrap, enable_auto_commit=False)
    await consumer.start()
    producer = AIOKafkaProducer(bootstrap_servers=a.bootstrap)
    await producer.start()
    try:
        parts = None
        for _ in range(100):
            parts = consumer.partitions_for_topic(a.reply_topic)
            if parts:
                break
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        tps = [TopicPartition(a.reply_topic, p) for p in sorted(parts or [0])]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)

        waiting = {}
        for n in range(a.count):
            corr = os.urandom(16)
            waiting[corr] = n
            headers = [
                ("kafka_replyTopic", a.reply_topic.encode()),
                ("kafka_correlationId", corr),
                ("content-type", b"application/json"),
            ]
            body = json.dumps({"n": n}).encode()
            await producer.send_and_wait(a.topic, body, key=str(n).encode(), headers=headers)

        async def collect():
            while waiting:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    for r in records:
                        h = dict(r.headers or [])
                        corr = h.get("kafka_correlationId")
                        n = waiting.pop(corr, None)
                        print(json.dumps({
                            "n": n,
                            "matched": n is not None,
                            "data": json.loads(r.value) if r.value else None,
                            "headers": {k: v.decode("utf-8", "replace") for k, v in h.items()
                                        if k != "kafka_correlationId"},
                        }), flush=True)

        await asyncio.wait_for(collect(), a.timeout)
        return 0
    except asyncio.TimeoutError:
        print(json.dumps({"timeout": True, "unanswered": sorted(waiting.values())}), flush=True)
        return 1
    finally:
        await producer.stop()
        await consumer.stop()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
