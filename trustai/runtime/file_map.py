"""Per-file work over datasets' files, in this process or spread over Ray workers.

Data audits split into a map over the dataset's files and an exact merge of the partial results in
file order; both paths call the same map function through ``map_files``, so a Ray run gives the same
result as the single-process one by construction. With ``use_ray`` the calls run as Ray tasks (one
CPU each) on the Ray that ``trustai.runtime.ray_session`` connects to (``RAY_ADDRESS``, else a local
Ray on every core, stopped again afterwards). Workers read the files from the paths they are given, so
they need the same filesystem view.
"""

from collections.abc import Callable, Sequence

from trustai.runtime.ray_session import session


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

    with session():
        task = ray.remote(_call)
        shared = ray.put(fn)  # what every call shares (the dataset's info, a sampling plan) goes once
        return ray.get([task.remote(shared, item) for item in items])
