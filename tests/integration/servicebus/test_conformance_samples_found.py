"""What the SDK's own samples found wrong with the local broker (issue 17), driven through the real SDK."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
import urllib.parse
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.credentials import AzureSasCredential
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    AutoLockRenewer,
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusReceivedMessage,
)
from azure.servicebus.aio import ServiceBusClient as AsyncServiceBusClient
from azure.servicebus.exceptions import OperationTimeoutError

Fresh = Callable[[str], str]


@pytest.fixture
def client(sb_connection: str) -> Iterator[ServiceBusClient]:
    with ServiceBusClient.from_connection_string(sb_connection, retry_total=1, retry_backoff_factor=0.1) as c:
        yield c


def _namespace(connection: str) -> str:
    """`127.0.0.1:port` from the emulator connection string."""
    endpoint = next(p for p in connection.split(";") if p.startswith("Endpoint="))
    return endpoint[len("Endpoint=sb://") :].rstrip("/")


# --- next available session: a refusal the SDK recognises --------------------------------------------------------


def test_waiting_for_a_session_on_an_empty_queue_times_out(client: ServiceBusClient, fresh_queue: Fresh) -> None:
    # As the SDK's session_pool_receive sample does: the timeout must surface on opening the receiver, not as a
    # session called NEXT_AVAILABLE without a lock. Service Bus answers the attach with a null source, then detaches
    # with com.microsoft:timeout; the SDK treats only a null source or target as a refusal.
    q = fresh_queue("session")
    opened: list[str | None] = []
    with (
        pytest.raises(OperationTimeoutError),
        client.get_queue_receiver(q, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1) as receiver,
    ):
        opened.append(receiver.session.session_id)
        receiver.session.set_state("OPEN")
    assert opened == []


async def test_waiting_for_a_session_on_an_empty_queue_times_out_aio(sb_connection: str, fresh_queue: Fresh) -> None:
    q = fresh_queue("session")
    opened: list[str | None] = []
    async with AsyncServiceBusClient.from_connection_string(sb_connection, retry_total=1) as client:
        with pytest.raises(OperationTimeoutError):
            async with client.get_queue_receiver(q, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1) as receiver:
                opened.append(receiver.session.session_id)
                await receiver.session.set_state("OPEN")
    assert opened == []


# --- renewing several locks at once ------------------------------------------------------------------------------


def test_auto_lock_renewer_keeps_several_messages_locked(client: ServiceBusClient, fresh_queue: Fresh) -> None:
    # auto_lock_renew sample: one renewer thread per message, all on the same receiver's $management link.
    q = fresh_queue("renew-many")  # LockDuration PT10S: the SDK renews a lock when 6.75 s or less of it are left
    with client.get_queue_sender(q) as sender:
        sender.send_messages([ServiceBusMessage(f"long {i}") for i in range(10)])
    failures: list[object] = []
    # One renewer thread per message for its whole registration (the SDK's design): enough threads for all ten.
    with client.get_queue_receiver(q, prefetch_count=10) as receiver, AutoLockRenewer(max_workers=12) as renewer:
        got = []
        while len(got) < 10:
            batch = receiver.receive_messages(max_message_count=10, max_wait_time=2)
            if not batch:
                break
            got += batch
        assert len(got) == 10
        for m in got:
            renewer.register(
                receiver, m, max_lock_renewal_duration=30, on_lock_renew_failure=lambda r, e: failures.append(e)
            )
        time.sleep(11)  # more than a lock duration: only renewals keep the locks
        for m in got:
            receiver.complete_message(m)
    assert failures == []
    with client.get_queue_receiver(q, max_wait_time=1) as receiver:
        assert receiver.receive_messages(max_wait_time=1) == []


async def test_renewing_several_locks_concurrently_aio(sb_connection: str, fresh_queue: Fresh) -> None:
    q = fresh_queue("plain")
    async with AsyncServiceBusClient.from_connection_string(sb_connection, retry_total=0) as client:
        async with client.get_queue_sender(q) as sender:
            await sender.send_messages([ServiceBusMessage(f"m{i}") for i in range(8)])
        async with client.get_queue_receiver(q, prefetch_count=8) as receiver:
            got: list = []  # type: ignore[type-arg]
            while len(got) < 8:
                batch = await receiver.receive_messages(max_message_count=8, max_wait_time=2)
                if not batch:
                    break
                got += batch
            for _ in range(3):
                await asyncio.gather(*(receiver.renew_message_lock(m) for m in got))
            for m in got:
                await receiver.complete_message(m)


# --- listing sessions, SAS over the plain resource URI ----------------------------------------------------------


def test_list_sessions_honours_state_updated_after(client: ServiceBusClient, fresh_queue: Fresh) -> None:
    q = fresh_queue("session")
    with client.get_queue_sender(q) as sender:
        sender.send_messages([ServiceBusMessage("a", session_id="old"), ServiceBusMessage("b", session_id="new")])
    with client.get_queue_receiver(q, session_id="old", max_wait_time=1) as receiver:
        receiver.session.set_state("early")
    time.sleep(0.3)
    between = datetime.now(UTC)
    time.sleep(0.3)
    with client.get_queue_receiver(q, session_id="new", max_wait_time=1) as receiver:
        receiver.session.set_state("late")
    # Without a date: every session with messages or state (Service Bus's default listing).
    assert sorted(client.list_queue_sessions(q)) == ["new", "old"]
    assert list(client.list_queue_sessions(q, state_updated_after=between)) == ["new"]
    assert list(client.list_queue_sessions(q, state_updated_after=datetime.now(UTC) + timedelta(hours=1))) == []


def _sas_token(uri: str, key_name: str, key: str, ttl: int) -> str:
    # As the SDK's authenticate_using_azure_sas_credential sample builds it: the plain URI, not URL-encoded.
    expiry = str(int(time.time() + ttl))
    digest = hmac.HMAC(key.encode(), f"{uri}\n{expiry}".encode(), hashlib.sha256).digest()
    signature = urllib.parse.quote(base64.b64encode(digest))
    return f"SharedAccessSignature sr={uri}&sig={signature}&se={expiry}&skn={key_name}"


def test_a_sas_token_signed_over_the_plain_uri_is_accepted(sb_connection: str, fresh_queue: Fresh) -> None:
    q = fresh_queue("plain")
    namespace = _namespace(sb_connection)
    token = _sas_token(f"sb://{namespace}/{q}", "RootManageSharedAccessKey", "SAS_KEY_VALUE", 300)
    with ServiceBusClient(namespace, AzureSasCredential(token), use_tls=False, retry_total=0) as client:
        with client.get_queue_sender(q) as sender:
            sender.send_messages(ServiceBusMessage("hello"))
        with client.get_queue_receiver(q, max_wait_time=2) as receiver:
            (m,) = receiver.receive_messages(max_wait_time=2)
            receiver.complete_message(m)


# --- a long-lived peek-lock receiver -----------------------------------------------------------------------------


def test_messages_delivered_to_a_receiver_stay_locked_and_counted_after_it_closes(
    client: ServiceBusClient, fresh_queue: Fresh
) -> None:
    # A long-lived peek-lock receiver with prefetch: every message transferred to it is locked to it, handed to the
    # application or not. When it closes (the SDK releases its unread prefetched messages), Service Bus keeps them
    # locked until the lock expires and counts the delivery: a new receiver must not get them at delivery count 0.
    q = fresh_queue("renew")  # LockDuration PT5S
    with client.get_queue_sender(q) as sender:
        sender.send_messages([ServiceBusMessage(f"m{i}") for i in range(4)])
    with client.get_queue_receiver(q, prefetch_count=4, max_wait_time=2) as receiver:
        assert len(receiver.peek_messages(max_message_count=10)) == 4
        (first,) = receiver.receive_messages(max_message_count=1, max_wait_time=2)
        receiver.defer_message(first)
        (second,) = receiver.receive_messages(max_message_count=1, max_wait_time=2)
        receiver.complete_message(second)
        time.sleep(0.3)  # the other two are in the client's prefetch buffer now
    closed = time.monotonic()
    with client.get_queue_receiver(q, max_wait_time=1) as other:
        early = other.receive_messages(max_message_count=10, max_wait_time=0.5)
        assert early == [] or time.monotonic() - closed > 4, [(str(m), m.delivery_count) for m in early]
        late: list[ServiceBusReceivedMessage] = []
        deadline = time.monotonic() + 10
        while len(late) < 2 and time.monotonic() < deadline:
            late += other.receive_messages(max_message_count=10, max_wait_time=2)
        assert sorted((str(m), m.delivery_count) for m in late) == [("m2", 1), ("m3", 1)]
        for m in late:
            other.complete_message(m)
