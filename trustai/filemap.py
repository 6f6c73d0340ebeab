"""Per-file work over datasets' files, in this process or spread over Ray workers.

With ``use_ray`` the calls run as Ray tasks: on the cluster named by ``RAY_ADDRESS`` when it is set,
else on a local Ray started with 2 CPUs and no dashboard (and stopped again afterwards). Workers
read the files from the paths they are given, so they need the same filesystem view.
"""

import os
from collections.abc import Callable, Sequence

LOCAL_RAY_CPUS = 2


def _call[T, R](fn: Callable[[T], R], item: T) -> R:
    return fn(item)


def map_files[T, R](fn: Callable[[T], R], items: Sequence[T], *, use_ray: bool = False) -> list[R]:
    """Return ``[fn(item) for item in items]``, in order; with ``use_ray`` each call is a Ray task.

    An item names one file's work (a path, or a tuple holding one); ``fn`` and the items must be
    picklable (``fn`` a module-level function or a ``functools.partial`` of one).
    """
    if not use_ray:
        return [fn(item) for item in items]
    import ray

    started = not ray.is_initialized()
    if started:
        if os.environ.get("RAY_ADDRESS"):
            ray.init(log_to_driver=False)
        else:
            ray.init(num_cpus=LOCAL_RAY_CPUS, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(_call)
        return ray.get([task.remote(fn, item) for item in items])
    finally:
        if started:
            ray.shutdown()
