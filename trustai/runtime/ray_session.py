"""Joining a Ray cluster or starting a local one: one place for every Ray user in trustai (the Ray
executor, per-file data work), with the same rules.

The address is the one given, else ``RAY_ADDRESS``; an address that nothing answers is refused within
seconds (Ray itself retries for minutes). A local Ray has no dashboard, ``num_cpus`` CPUs (default:
every core) and no GPUs unless asked for. Workers inherit ``TRUSTAI_AUDIT_PLUGINS`` so they find the
same audits as this process.
"""

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from trustai.core.audit import PLUGINS_ENV
from trustai.errors import TrustaiUserError

ADDRESS_FIX = (
    "pass --ray-address HOST:PORT of a running cluster's head (see `ray status`), or drop it for a local Ray"
)


def connect(address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = 0) -> bool:
    """Make sure this process is connected to Ray; return True when this call started the connection
    (the caller then owns it and calls ``ray.shutdown()``), False when one already existed. A local Ray
    gets ``num_gpus`` GPUs (default none: training keeps its GPUs; None: every GPU Ray finds).

    Raises TrustaiUserError when the cluster at ``address`` cannot be reached.
    """
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    plugins = os.environ.get(PLUGINS_ENV)
    runtime_env = {"env_vars": {PLUGINS_ENV: plugins}} if plugins else None
    if address:
        _require_reachable(address)
        try:
            ray.init(address=address, log_to_driver=False, runtime_env=runtime_env)
        except ConnectionError as exc:
            raise TrustaiUserError(
                f"cannot join the Ray cluster: {exc}", where=address, fix=ADDRESS_FIX
            ) from None
    else:
        # "local", not None: with no address Ray would join whatever cluster `ray start` last left in
        # /tmp/ray, someone else's, which may be shut down under us.
        ray.init(
            address="local",
            num_cpus=num_cpus or os.cpu_count() or 1,
            num_gpus=num_gpus,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env=runtime_env,
        )
    return True


@contextmanager
def session(
    address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = 0
) -> Iterator[None]:
    """Ray for the duration of a ``with`` block (``connect``'s arguments), shut down afterwards only if
    the block started it."""
    import ray

    started = connect(address, num_cpus, num_gpus)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def _require_reachable(address: str) -> None:
    """Fail fast when a ``host:port`` or ``ray://host:port`` address has nothing listening."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise TrustaiUserError("not a Ray cluster address (HOST:PORT)", where=address, fix=ADDRESS_FIX)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise TrustaiUserError(
            f"no Ray cluster answers there ({exc.strerror or exc})", where=address, fix=ADDRESS_FIX
        ) from None
