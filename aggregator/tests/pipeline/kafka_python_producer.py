"""Produces usage events with kafka-python, a client nobody here wrote.

usage: kafka_python_producer.py BROKERS TOPIC TENANT COUNT TIME
Event i carries data.n = i; the tenant id is the record key, as the
pipeline's contract asks. TIME (RFC 3339) is every event's time: the
test's clock, not this machine's.
"""
import json
import sys

from kafka import KafkaProducer

brokers, topic, tenant, count, now = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
producer = KafkaProducer(bootstrap_servers=brokers, acks="all", linger_ms=5)
for i in range(count):
    event = {
        "specversion": "1.0",
        "id": f"py-{i}",
        "source": "//isp/python",
        "type": "py.sample",
        "time": now,
        "data": {"n": i, "kind": "even" if i % 2 == 0 else "odd"},
    }
    producer.send(topic, key=tenant.encode(), value=json.dumps(event).encode())
producer.flush(timeout=60)
producer.close()
print(f"produced {count}")
