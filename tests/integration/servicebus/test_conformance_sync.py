"""The local broker, driven only through the real azure-servicebus SDK (sync client)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.servicebus import (
    NEXT_AVAILABLE_SESSION,
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusMessageState,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)
from azure.servicebus.exceptions import (
    MessageLockLostError,
    OperationTimeoutError,
    ServiceBusAuthenticationError,
    ServiceBusError,
    SessionCannotBeLockedError,
)

Fresh = Callable[[str], str]


@pytest.fixture
def client(sb_connection: str) -> Iterator[ServiceBusClient]:
    with ServiceBusClient.from_connection_string(sb_connection, retry_total=1, retry_backoff_factor=0.1) as c:
        yield c


def _send(client: ServiceBusClient, queue: str, *messages: ServiceBusMessage) -> None:
    with client.get_queue_sender(queue) as sender:
        sender.send_messages(list(messages))


def _drain(client: ServiceBusClient, queue: str, wait: float = 1.0, **kwargs: object) -> list[str]:
    bodies = []
    with client.get_queue_receiver(queue, max_wait_time=wait, **kwargs) as receiver:  # type: ignore[arg-type]
        for message in receiver:
            bodies.append(str(message))
            receiver.complete_message(message)
    return bodies


# --- sending ---------------------------------------------------------------------------------------------------


def test_single_list_and_batch_sends_arrive_in_order_with_their_metadata(
    client: ServiceBusClient, fresh_queue: Fresh
) -> None:
    q = fresh_queue("plain")
    with client.get_queue_sender(q) as sender:
        sender.send_messages(
            ServiceBusMessage(
                "one",
                message_id="m-1",
                correlation_id="corr-1",
                content_type="application/json",
                subject="subj",
                application_properties={"source": "fno", "n": 7},
            )
        )
        sender.send_messages([ServiceBusMessage("two"), ServiceBusMessage("three")])
        batch = sender.create_message_batch()
        for body in ("four", "five"):
            batch.add_message(ServiceBusMessage(body))
        sender.send_messages(batch)
    with client.get_queue_receiver(q, max_wait_time=2) as receiver:
        received = receiver.receive_messages(max_message_count=10, max_wait_time=2)
        while len(received) < 5:
            more = receiver.receive_messages(max_message_count=10, max_wait_time=2)
            if not more:
                break
            received += more
        assert [str(m) for m in received] == ["one", "two", "three", "four", "five"]
        first = received[0]
        assert first.message_id == "m-1" and first.correlation_id == "corr-1"
        assert first.content_type == "application/json" and first.subject == "subj"
        assert first.application_properties == {b"source": b"fno", b"n": 7}
        assert first.delivery_count == 0
        assert [m.sequence_number for m in received] == sorted(m.sequence_number for m in received)
        assert first.enqueued_time_utc is not None and first.locked_until_utc is not None
        assert first.lock_token is not None
        for m in received:
            receiver.complete_message(m)
    assert _drain(client, q) == []


def test_unknown_entity_is_not_found(client: ServiceBusClient) -> None:
    # As in Azure: put-token answers 404 and the SDK raises ServiceBusAuthenticationError carrying it.
    with pytest.raises(ServiceBusAuthenticationError) as info, client.get_queue_sender("no-such-queue") as sender:
        sender.send_messages(ServiceBusMessage("x"))
    assert "Status code: 404" in info.value.exc_msg and "could not be found" in info.value.exc_msg


def test_a_token_signed_with_the_wrong_key_is_refused(sb_connection: str, fresh_queue: Fresh) -> None:
    wrong = sb_connection.replace("SAS_KEY_VALUE", "not-the-key")
    with ServiceBusClient.from_connection_string(wrong, retry_total=0) as client:
        with pytest.raises(ServiceBusAuthenticationError) as info, client.get_queue_sender(fresh_queue("plain")) as s:
            s.send_messages(ServiceBusMessage("x"))
    assert "Status code: 401" in info.value.exc_msg


def test_session_queue_rejects_a_message_without_session_id(client: ServiceBusClient, fresh_queue: Fresh) -> None:
    q = fresh_queue("session")
    with pytest.raises(ServiceBusError) as info, client.get_queue_sender(q) as sender:
        sender.send_messages(ServiceBusMessage("no session"))
    assert "SessionId" in str(info.value)


def test_duplicate_message_ids_are_dropped_within_the_window(client: ServiceBusClient, fresh_queue: Fresh) -> None:
    q = fresh_queue("dedupe")
    _send(client, q, ServiceBusMessage("a", message_id="same"), ServiceBusMessage("b", message_id="other"))
    _send(client, q, ServiceBusMessage("a again", message_id="same"))
    assert _drain(client, q) == ["a", "b"]
    time.sleep(3.2)  # the window is PT3S
    _send(client, q, ServiceBusMessage("after the window", message_id="same"))
    assert _drain(client, q) == ["after the window"]


# --- settling --------------------------------------------------------------------------------------------------


def test_abandon_redelivers_with_a_higher_delivery_count(client: ServiceBusClient, fresh_queue: Fresh) -> None:
    q = fresh_queue("plain")
    _send(client, q, ServiceBusMessage("retry me"))
    with client.get_queue_receiver(q, max_wait_time=2) as receiver:
        (m,) = receiver.receive_messages(max_wait_time=2)
        assert m.delivery_count == 0
        receiver.abandon_message(m)
        (again,) = receiver.receive_messages(max_wait_time=2)
        assert str(again) == "retry me" and again.delivery_count == 1
        assert again.sequence_number == m.sequence_number
        receiver.complete_message(again)


def test_max_delivery_count_dead_letters_with_the_reason(client: ServiceBusClient, fresh_queue: Fresh) -> None:
    q = fresh_queue("plain")  # MaxDeliveryCount 3
    _send(client, q, ServiceBusMessage("poison"))
    with client.get_queue_receiver(q, max_wait_time=1) as receiver:
        for _ in range(3):
            (m,) = receiver.receive_messages(max_wait_time=2)
            receiver.abandon_message(m)
        assert receiver.receive_messages(max_wait_time=1) == []
    with client.get_queue_receiver(q, sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=2) as dlq:
        (dead,) = dlq.receive_messages(max_wait_time=2)
        assert str(dead) == "poison"
        assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
        assert dead.dead_letter_source == q
        dlq.complete_message(dead)


def test_explicit_dead_letter_carries_reason_and_description(client: ServiceBusClient, fresh_queue: Fresh) -> None:
    q = fresh_queue("plain")
    _send(client, q, ServiceBusMessage("bad", application_properties={"keep": "me"}))
    with client.get_queue_receiver(q, max_wait_time=2) as receiver:
        (m,) = receiver.receive_messages(max_wait_time=2)
        receiver.dead_letter_message(m, reason="ValidationError", error_description="CustomerGroupId is required")
    with client.get_queue_receiver(q, sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=2) as dlq:
        (dead,) = dlq.receive_messages(max_wait_time=2)
        assert dead.dead_letter_reason == "ValidationError"
        assert dead.dead_letter_error_description == "CustomerGroupId is required"
        assert dead.application_properties is not None
        assert dead.application_properties[b"keep"] == b"me"
        dlq.complete_message(dead)
    assert _drain(client, q, sub_queue=ServiceBusSubQueue.DEAD_LETTER) == []


def test_defer_and_receive_deferred_by_sequence_number(client: ServiceBusClient, fresh_queue: Fresh) -> None:
    q = fresh_queue("plain")
    _send(client, q, ServiceBusMessage("later"), ServiceBusMessage("now"))
    with client.get_queue_receiver(q, max_wait_time=2) as receiver:
        first = receiver.receive_messages(max_wait_time=2)[0]
        receiver.defer_message(first)
        (second,) = receiver.receive_messages(max_wait_time=2)
        assert str(second) == "now"
        receiver.complete_message(second)
        assert receiver.receive_messages(max_wait_time=1) == []
        (deferred,) = receiver.receive_deferred_messages([first.sequence_number])
        assert str(deferred) == "later" and deferred.state == ServiceBusMessageState.DEFERRED
        receiver.complete_message(deferred)
        with pytest.raises(ServiceBusError):
            receiver.receive_deferred_messages([first.sequence_number])


def test_receive_and_delete_removes_at_once(client: ServiceBusClient, fresh_queue: Fresh) -> None:
    q = fresh_queue("plain")
    _send(client, q, *(ServiceBusMessage(f"m{i}") for i in range(5)))
    got: list[str] = []
    with client.get_queue_receiver(q, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE, max_wait_time=1) as r:
        while len(got) < 5:
            batch = r.receive_messages(max_message_count=5, max_wait_time=2)
            if not batch:
                break
            got += [str(m) for m in batch]
    assert got == [f"m{i}" for i in range(5)]
    assert _drain(client, q) == []


def test_peek_does_not_lock_or_remove(client: ServiceBusClient, fresh_queue: Fresh) -> None:
    q = fresh_queue("plain")
    _send(client, q, *(ServiceBusMessage(f"p{i}") for i in range(3)))
    with client.get_queue_receiver(q) as receiver:
        peeked = receiver.peek_messages(max_message_count=10)
        assert [str(m) for m in peeked] == ["p0", "p1", "p2"]
        from_second = receiver.peek_messages(max_message_count=10, sequence_number=peeked[1].sequence_number)
        assert [str(m) for m in from_second] == ["p1", "p2"]
    assert _drain(client, q) == ["p0", "p1", "p2"]
    with client.get_queue_receiver(q) as receiver:
        assert receiver.peek_messages(max_message_count=10) == []


# --- locks -------------------------------------------------------------------------------------------------------


def test_lock_expiry_redelivers_and_late_settle_is_lock_lost(client: ServiceBusClient, fresh_queue: Fresh) -> None:
    q = fresh_queue("plain")  # LockDuration PT2S
    _send(client, q, ServiceBusMessage("slow"))
    with client.get_queue_receiver(q, max_wait_time=2) as receiver:
        (m,) = receiver.receive_messages(max_wait_time=2)
        time.sleep(2.5)
        (again,) = receiver.receive_messages(max_wait_time=3)
        assert str(again) == "slow" and again.delivery_count == 1
        with pytest.raises(MessageLockLostError):
            receiver.complete_message(m)
        receiver.complete_message(again)


def test_renew_lock_extends_it(client: ServiceBusClient, fresh_queue: Fresh) -> None:
    q = fresh_queue("plain")  # LockDuration PT2S
    _send(client, q, ServiceBusMessage("long work"))
    with client.get_queue_receiver(q, max_wait_time=2) as receiver:
        (m,) = receiver.receive_messages(max_wait_time=2)
        for _ in range(3):
            time.sleep(1.0)
            new_until = receiver.renew_message_lock(m)
            assert new_until > datetime.now(UTC) + timedelta(seconds=1)
        receiver.complete_message(m)  # 3 s after receipt: only possible because the lock was renewed
    assert _drain(client, q) == []


# --- scheduling and TTL ----------------------------------------------------------------------------------------


def test_scheduled_messages_appear_on_time_and_can_be_cancelled(client: ServiceBusClient, fresh_queue: Fresh) -> None:
    q = fresh_queue("plain")
    at = datetime.now(UTC) + timedelta(seconds=4)
    with client.get_queue_sender(q) as sender:
        (keep,) = sender.schedule_messages(ServiceBusMessage("scheduled"), at)
        (cancel,) = sender.schedule_messages(ServiceBusMessage("cancelled"), at)
        assert keep != cancel
        sender.cancel_scheduled_messages(cancel)
    with client.get_queue_receiver(q, max_wait_time=8) as receiver:
        (peeked,) = receiver.peek_messages(max_message_count=10)
        assert peeked.state == ServiceBusMessageState.SCHEDULED and peeked.sequence_number == keep
        (m,) = receiver.receive_messages(max_wait_time=8)
        arrived = datetime.now(UTC)
        assert str(m) == "scheduled"
        assert arrived >= at - timedelta(milliseconds=100), "delivered before its scheduled time"
        receiver.complete_message(m)
        assert receiver.receive_messages(max_wait_time=0.5) == []


def test_expired_messages_are_dead_lettered_when_the_queue_says_so(
    client: ServiceBusClient, fresh_queue: Fresh
) -> None:
    q = fresh_queue("ttl-dlq")  # default TTL PT1S, dead-lettering on expiration
    _send(
        client, q, ServiceBusMessage("short-lived"), ServiceBusMessage("shorter", time_to_live=timedelta(seconds=0.3))
    )
    time.sleep(1.5)
    assert _drain(client, q) == []
    with client.get_queue_receiver(q, sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=2) as dlq:
        dead = dlq.receive_messages(max_message_count=5, max_wait_time=2)
        assert sorted(str(m) for m in dead) == ["short-lived", "shorter"]
        assert {m.dead_letter_reason for m in dead} == {"TTLExpiredException"}
        for m in dead:
            dlq.complete_message(m)


def test_expired_messages_are_dropped_otherwise(client: ServiceBusClient, fresh_queue: Fresh) -> None:
    q = fresh_queue("ttl-drop")
    _send(client, q, ServiceBusMessage("gone"))
    time.sleep(1.3)
    assert _drain(client, q) == []
    assert _drain(client, q, sub_queue=ServiceBusSubQueue.DEAD_LETTER) == []


# --- sessions ----------------------------------------------------------------------------------------------------


def test_sessions_are_fifo_with_state_and_renewable_locks(client: ServiceBusClient, fresh_queue: Fresh) -> None:
    q = fresh_queue("session")
    _send(client, q, *(ServiceBusMessage(f"a{i}", session_id="row-a") for i in range(4)))
    with client.get_queue_receiver(q, session_id="row-a", max_wait_time=2) as receiver:
        session = receiver.session
        assert session.session_id == "row-a"
        assert session.get_state() in (None, b"")
        session.set_state(b"checkpoint-1")
        assert session.get_state() == b"checkpoint-1"
        before = session.locked_until_utc
        time.sleep(0.2)
        session.renew_lock()
        assert session.locked_until_utc is not None and before is not None and session.locked_until_utc > before
        got = []
        while len(got) < 4:
            batch = receiver.receive_messages(max_message_count=2, max_wait_time=2)
            if not batch:
                break
            for m in batch:
                assert m.session_id == "row-a"
                got.append(str(m))
                receiver.complete_message(m)
        assert got == ["a0", "a1", "a2", "a3"]


def test_next_available_session_and_one_receiver_per_session(
    client: ServiceBusClient, sb_connection: str, fresh_queue: Fresh
) -> None:
    q = fresh_queue("session")
    _send(client, q, ServiceBusMessage("x", session_id="s-1"), ServiceBusMessage("y", session_id="s-2"))
    with client.get_queue_receiver(q, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=2) as first:
        taken = first.session.session_id
        assert taken in ("s-1", "s-2")
        # No retries: the SDK retries this error, and a retry that outlives the link deadline reports a timeout.
        with ServiceBusClient.from_connection_string(sb_connection, retry_total=0) as other:
            with pytest.raises(SessionCannotBeLockedError), other.get_queue_receiver(q, session_id=taken) as clash:
                clash.receive_messages(max_wait_time=1)
        with client.get_queue_receiver(q, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=2) as second:
            assert second.session.session_id not in (taken, None)
            (m,) = second.receive_messages(max_wait_time=2)
            second.complete_message(m)
        (m,) = first.receive_messages(max_wait_time=2)
        first.complete_message(m)


def test_next_available_session_times_out_when_none_has_messages(client: ServiceBusClient, fresh_queue: Fresh) -> None:
    q = fresh_queue("session")
    started = time.monotonic()
    with (
        pytest.raises(OperationTimeoutError),
        client.get_queue_receiver(q, session_id=NEXT_AVAILABLE_SESSION, max_wait_time=1) as receiver,
    ):
        receiver.receive_messages(max_wait_time=1)
    assert time.monotonic() - started < 30


def test_a_closed_session_receiver_frees_its_session_and_messages(client: ServiceBusClient, fresh_queue: Fresh) -> None:
    q = fresh_queue("session")
    _send(client, q, ServiceBusMessage("held", session_id="s"))
    with client.get_queue_receiver(q, session_id="s", max_wait_time=2) as receiver:
        (m,) = receiver.receive_messages(max_wait_time=2)
        assert str(m) == "held"  # not settled: the close releases it
    with client.get_queue_receiver(q, session_id="s", max_wait_time=2) as receiver:
        (m,) = receiver.receive_messages(max_wait_time=2)
        assert str(m) == "held"
        receiver.complete_message(m)


def test_session_messages_dead_letter_after_max_deliveries(client: ServiceBusClient, fresh_queue: Fresh) -> None:
    q = fresh_queue("session")  # MaxDeliveryCount 3
    _send(client, q, ServiceBusMessage("poison", session_id="s"))
    with client.get_queue_receiver(q, session_id="s", max_wait_time=2) as receiver:
        for expected_count in range(3):
            (m,) = receiver.receive_messages(max_wait_time=2)
            assert m.delivery_count == expected_count
            receiver.abandon_message(m)
        assert receiver.receive_messages(max_wait_time=1) == []
    with client.get_queue_receiver(q, sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=2) as dlq:
        (dead,) = dlq.receive_messages(max_wait_time=2)
        assert dead.dead_letter_reason == "MaxDeliveryCountExceeded" and dead.session_id == "s"
        dlq.complete_message(dead)
