"""Start kopf in-process with Hemostat's handlers and settings."""

from __future__ import annotations

import asyncio
import logging

import kopf

from .config import OperatorConfig


def configure_logging(level: str = "INFO", fmt: str = "plain") -> None:
    """Plain lines for people, or one JSON object per line (kopf's formatter) for log pipelines."""
    if fmt == "json":
        # kopf's JSON formatter; records about an object carry its reference under "object"
        kopf.configure(log_format=kopf.LogFormat.JSON, log_refkey="object")
    else:
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per query would drown the log


def run_operator(config: OperatorConfig, log_level: str = "INFO", log_format: str = "plain") -> None:
    from . import handlers  # noqa: F401  (registers the handlers)

    configure_logging(log_level, log_format)
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
