#!/usr/bin/env python3
"""A Kafka consumer outside the project: confluent-kafka's Consumer, SchemaRegistryClient and
AvroDeserializer pointed at erp-toolkit's registry, decoding Avro records of a topic.

  avro-consumer.py BROKERS REGISTRY_URL TOKEN TOPIC COUNT

Reads TOPIC from the beginning until COUNT records were decoded (or 60 s passed) and prints one
JSON line per record: {"schema_id", "value"}. Exits 1 when fewer were decoded. The token is sent
as the basic-auth password, as most Kafka clients' registry settings send credentials.
"""

import json
import sys
import time
import uuid

from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def main() -> int:
    brokers, registry_url, token, topic, count = sys.argv[1:6]
    count = int(count)
    registry = SchemaRegistryClient(
        {"url": registry_url, "basic.auth.user.info": f"platform:{token}"}
    )
    deserializer = AvroDeserializer(registry)
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"avro-consumer-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "broker.address.family": "v4",
        }
    )
    consumer.subscribe([topic])
    decoded = 0
    deadline = time.monotonic() + 60
    try:
        while decoded < count and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None:
                continue
            if message.error():
                print(f"consume error: {message.error()}", file=sys.stderr)
                continue
            raw = message.value()
            if not raw or raw[0] != 0:
                continue  # a JSON record of the migration: not ours to decode here
            schema_id = int.from_bytes(raw[1:5], "big")
            value = deserializer(raw, SerializationContext(topic, MessageField.VALUE))
            print(json.dumps({"schema_id": schema_id, "value": value}, default=str))
            decoded += 1
    finally:
        consumer.close()
    if decoded < count:
        print(f"decoded {decoded} of {count} records", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
