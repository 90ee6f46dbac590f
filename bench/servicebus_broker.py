"""Local broker throughput with the real sync SDK: batched send and peek-lock receive + complete.

Targets on the 2-core reference machine: batched send >= 5,000 msg/s; peek-lock receive + complete >= 1,500 msg/s.
Run: `make bench` or `.venv/bin/python bench/servicebus_broker.py [--messages N]`.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceiveMode

from local.processes import emulator_connection, free_port, python_module, start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    queue = {"Name": "bench", "Properties": {"LockDuration": "PT1M", "MaxDeliveryCount": 10}}
    config = {"UserConfig": {"Namespaces": [{"Name": "bench", "Queues": [queue]}]}}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "Config.json"
        path.write_text(json.dumps(config))
        port = free_port()
        broker = start(
            "servicebus",
            python_module("local.servicebus", "--config", str(path), "--port", str(port), "--log-level", "WARNING"),
            (port,),
        )
        try:
            broker.wait_ready(30)
            return run(emulator_connection(port), args.messages, args.batch, broker.pid)
        finally:
            broker.stop()


def cpu_seconds(pid: int) -> float:
    """User + system CPU a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(connection: str, n: int, batch_size: int, broker_pid: int) -> int:
    body = json.dumps({"entity": "CustomersV3", "fields": {"CustomerAccount": "US-001", "Name": "x" * 200}})
    with ServiceBusClient.from_connection_string(connection) as client:
        with client.get_queue_sender("bench") as sender:
            # What the broker serves: batches built beforehand (building them is SDK CPU, not broker work) ...
            batches = []
            for offset in range(0, n, batch_size):
                batch = sender.create_message_batch()
                for i in range(offset, min(n, offset + batch_size)):
                    batch.add_message(ServiceBusMessage(body, message_id=str(i)))
                batches.append(batch)
            started = time.perf_counter()
            for batch in batches:
                sender.send_messages(batch)
            send_rate = n / (time.perf_counter() - started)
            del batches, batch  # 20k live SDK messages would tax this process's collector in the phases below
            gc.collect()
            # ... and what an application sees, building each batch as it goes.
            started = time.perf_counter()
            for offset in range(0, n, batch_size):
                sender.send_messages([ServiceBusMessage(body) for _ in range(min(batch_size, n - offset))])
            send_with_build_rate = n / (time.perf_counter() - started)
        received = 0
        with client.get_queue_receiver("bench", prefetch_count=batch_size) as receiver:
            started, sdk_cpu, broker_cpu = time.perf_counter(), time.process_time(), cpu_seconds(broker_pid)
            while received < n:
                messages = receiver.receive_messages(max_message_count=batch_size, max_wait_time=5)
                if not messages:
                    break
                for m in messages:
                    receiver.complete_message(m)
                received += len(messages)
            receive_rate = received / (time.perf_counter() - started)
            # Each complete waits for the broker's echo, so the two processes take turns: the rate is bounded by
            # the sum of both CPU costs per message.
            sdk_us = (time.process_time() - sdk_cpu) / max(received, 1) * 1e6
            broker_us = (cpu_seconds(broker_pid) - broker_cpu) / max(received, 1) * 1e6
        # The peek-lock receiver's last prefetch (up to one batch) stays locked for the lock duration once it has
        # closed, as in Service Bus: drain what the second send phase left besides those.
        to_drain = n - batch_size
        drained = 0
        with client.get_queue_receiver(
            "bench", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE, prefetch_count=batch_size
        ) as receiver:
            started = time.perf_counter()
            while drained < to_drain:
                messages = receiver.receive_messages(max_message_count=batch_size, max_wait_time=5)
                if not messages:
                    break
                drained += len(messages)
            rad_rate = drained / (time.perf_counter() - started)
    verdict = {True: "OK", False: "BELOW"}
    print(f"messages per run: {n}, batch size: {batch_size}, body {len(body)} bytes")
    print(f"batched send (prebuilt batches):   {send_rate:8,.0f} msg/s  target 5,000  {verdict[send_rate >= 5000]}")
    print(f"batched send incl. SDK building:   {send_with_build_rate:8,.0f} msg/s  (information)")
    print(
        f"peek-lock receive + complete:      {receive_rate:8,.0f} msg/s  target 1,500  {verdict[receive_rate >= 1500]}"
    )
    print(f"  CPU per received + completed message: SDK {sdk_us:,.0f} µs, broker {broker_us:,.0f} µs")
    print(f"receive-and-delete:                {rad_rate:8,.0f} msg/s  (information)")
    return 0 if received == n and drained >= to_drain else 1


if __name__ == "__main__":
    sys.exit(main())
