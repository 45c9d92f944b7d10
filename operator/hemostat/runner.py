"""Start kopf in-process with Hemostat's handlers and settings."""

from __future__ import annotations

import asyncio
import logging

import kopf

from .config import OperatorConfig


def run_operator(config: OperatorConfig, log_level: str = "INFO") -> None:
    from . import handlers  # noqa: F401  (registers the handlers)

    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per query would drown the log
    liveness = f"http://{config.bind_address}:{config.health_port}/healthz" if config.health_port else None
    asyncio.run(
        kopf.operator(
            clusterwide=not config.namespaces,
            namespaces=list(config.namespaces),
            standalone=config.standalone,
            priority=config.priority,
            liveness_endpoint=liveness,
            memo=kopf.Memo(config=config),
        )
    )
