"""`python -m local.servicebus --config FILE [--host 127.0.0.1] [--port 5672]`: the local Service Bus broker.

In memory: messages live as long as the process. Connect with the emulator's connection string:
`Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;`
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
import time
from pathlib import Path

from pydantic import ValidationError

from local.servicebus.auth import SasValidator
from local.servicebus.config import DEFAULT_CONFIG, TopicsNotSupported, load_config
from local.servicebus.engine import Namespace
from local.servicebus.loop import run
from local.servicebus.server import BrokerHandler

log = logging.getLogger("local.servicebus")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m local.servicebus", description=__doc__)
    parser.add_argument(
        "--config", type=Path, default=DEFAULT_CONFIG, help="entity config (emulator Config.json format)"
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5672)
    parser.add_argument("--key-name", default="RootManageSharedAccessKey")
    parser.add_argument("--key", default="SAS_KEY_VALUE", help="SAS key that tokens must be signed with")
    parser.add_argument("--no-auth", action="store_true", help="accept any token")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("proton").setLevel(logging.CRITICAL)  # it logs every peer hang-up as an error
    try:
        config = load_config(args.config)
    except TopicsNotSupported as exc:
        log.error("%s: %s", args.config, exc)
        return 2
    except (OSError, ValueError, ValidationError) as exc:
        log.error("cannot read the entity config %s: %s", args.config, exc)
        return 2
    namespace = Namespace.from_queues(config.queues())
    sas = SasValidator(None, None) if args.no_auth else SasValidator(args.key_name, args.key)

    handler = BrokerHandler(namespace, args.host, args.port, sas, time.time)
    # Queued messages are long-lived and hold no reference cycles: with the default thresholds the cyclic
    # collector walks every one of them again and again, and a deep queue slows every operation.
    gc.set_threshold(100_000, 50, 1000)

    def stop(*_: object) -> None:
        handler.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        run(handler, args.host, args.port)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", args.host, args.port, exc)
        return 1
    log.info("broker stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
