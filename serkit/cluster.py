"""serkit's work as Dask tasks on an existing cluster (the optional extra ``serkit[cluster]``).

Without a cluster everything runs on this machine as before: feature extraction in ``n_jobs``
worker processes, folds one after another. With one, :func:`open_runner` connects a
``distributed.Client`` to a running Dask scheduler and wraps it in a :class:`DaskRunner`, and the
pipeline hands it its units of work:

- feature extraction, a task per chunk of files (:mod:`serkit.features.remote`; the feature
  cache is shared when the workers see it, else filled by this process), and fixed derived
  features, a task per chunk of utterances (:meth:`serkit.pipeline.FeaturePlan.materialise`);
- training, a task per fold (:func:`serkit.experiment.run_experiment`); a sweep puts the folds
  of all its runs in flight together (:mod:`serkit.sweep`).

Which cluster: ``serkit experiment --cluster ADDRESS`` sets the recipe key ``cluster``; a recipe
without one takes the environment variable :data:`ENV`; ``local`` (either place) means this
machine. ADDRESS is a scheduler address (``tcp://host:8786``, ``tls://…``) or the JSON file
``dask scheduler --scheduler-file`` writes. How to start a cluster: ``docs/scaling.md``.

What a task computes does not depend on where it runs (the same code, seeds and data), so a
cluster run's predictions equal the local run's for every deterministic model; torch code can
differ in float rounding with the thread count. Each task limits its BLAS, OpenMP and torch
threads to the cores of its host divided by the worker threads on that host (at least one), so
that workers do not oversubscribe cores.

Faults: the scheduler reruns the task of a worker that died on another worker (the computation
is the same, so is the result); a task that killed ``distributed.scheduler.allowed-failures`` + 1
workers in a row (often memory) is a :class:`~serkit.errors.ClusterError`. Data scattered to the
workers (a run's features, which every fold task reads) that was lost with the workers holding
it is scattered again and the tasks that needed it are resubmitted. A scheduler that cannot be
reached within dask's ``distributed.comm.timeouts.connect``, or has no worker within
:data:`WAIT_FOR_WORKERS_S`, or whose workers run another serkit version, is a ClusterError before
any work starts.

Security: Dask moves pickled Python objects between this process, the scheduler and the workers.
Run a cluster only on machines you trust (``tls://`` addresses with dask's security settings
across networks); nothing serkit reads from disk is a pickle.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import serkit
from serkit.errors import ClusterError, ConfigError
from serkit.io import atomic_write_text

log = logging.getLogger(__name__)

#: Environment variable naming the cluster of a recipe without a ``cluster`` key.
ENV = "SERKIT_CLUSTER"
#: The ``cluster`` value that means this machine.
LOCAL = "local"
#: Seconds :func:`connect` waits for the scheduler's first worker.
WAIT_FOR_WORKERS_S = 60.0
#: Times a task is resubmitted after the data it reads was lost with its workers.
RESUBMISSIONS = 3


def cluster_address(recipe: Mapping[str, Any]) -> str | None:
    """The scheduler a recipe's work goes to: its ``cluster`` key, else ``$SERKIT_CLUSTER``; None for local.

    Raises:
        ConfigError: ``cluster`` is neither a non-empty string nor null.
    """
    value = recipe.get("cluster")
    if value is None:
        value = os.environ.get(ENV, "").strip() or None
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"recipe: cluster must be a Dask scheduler address, a scheduler file or {LOCAL!r}, got {value!r}")
    return None if value.strip() == LOCAL else value.strip()


@contextmanager
def open_runner(recipe: Mapping[str, Any]) -> Iterator[DaskRunner | None]:
    """A :class:`DaskRunner` connected to the recipe's cluster (:func:`cluster_address`) and closed
    afterwards, or ``None`` when the work runs here.

    Raises:
        ClusterError, ConfigError: as :func:`connect` and :func:`cluster_address`.
    """
    address = cluster_address(recipe)
    if address is None:
        yield None
        return
    runner = connect(address)
    try:
        yield runner
    finally:
        runner.close()


def connect(address: str, *, wait_s: float = WAIT_FOR_WORKERS_S) -> DaskRunner:
    """Connect to a running Dask scheduler and check its workers before any work.

    Args:
        address: ``tcp://host:port`` (or another Dask address), or a scheduler file (``*.json``).
        wait_s: seconds to wait for at least one worker.

    Returns:
        A runner owning the connection (close it with :meth:`DaskRunner.close`).

    Raises:
        ClusterError: ``dask.distributed`` is not installed; the scheduler file is missing; the
            scheduler does not answer within ``distributed.comm.timeouts.connect``; no worker
            joins within ``wait_s``; a worker cannot run serkit or runs another serkit version.
    """
    try:
        from distributed import Client
    except ImportError as exc:
        raise ClusterError(f"cluster {address}: needs the cluster extra: pip install 'serkit[cluster]' ({exc})") from exc
    if address.endswith(".json") and not Path(address).is_file():
        raise ClusterError(f"cluster {address}: no such scheduler file")
    where = {"scheduler_file": address} if address.endswith(".json") else {"address": address}
    try:
        client = Client(**where, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise ClusterError(f"cluster {address}: cannot reach the Dask scheduler ({exc})") from exc
    runner = DaskRunner(client, owns_client=True)
    try:
        client.wait_for_workers(1, timeout=wait_s)
    except TimeoutError as exc:
        runner.close()
        raise ClusterError(
            f"cluster {address}: the scheduler has no workers (waited {wait_s:.0f} s); start some: dask worker {address}"
        ) from exc
    try:
        runner.check_workers()
    except BaseException:
        runner.close()
        raise
    return runner


class DaskRunner:
    """Runs serkit's units of work as tasks of a ``distributed.Client`` (module docstring).

    Args:
        client: a connected client (e.g. of a ``LocalCluster``).
        shared_cache: whether the workers share this process's feature cache folders; ``None``
            (default) asks them (:meth:`sees`).
        owns_client: :meth:`close` closes the client.
    """

    def __init__(self, client: Any, *, shared_cache: bool | None = None, owns_client: bool = False):
        self.client = client
        self.shared_cache = shared_cache
        self._owns_client = owns_client
        self._seen: dict[Path, bool] = {}
        self._cores: dict[str, int] = {}
        self._scattered: dict[int, tuple[Any, Any]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ the cluster

    @property
    def address(self) -> str:
        """The scheduler's address."""
        return str(self.client.scheduler.address)

    def _workers(self) -> dict[str, dict[str, Any]]:
        return dict(self.client.scheduler_info(n_workers=-1)["workers"])

    def threads(self) -> int:
        """Worker threads in the cluster now (at least 1): how many tasks run at once."""
        return max(1, sum(int(info["nthreads"]) for info in self._workers().values()))

    def describe(self) -> dict[str, Any]:
        """Where the work ran, for ``metrics.json``: scheduler, workers, threads, hosts."""
        workers = self._workers()
        hosts = sorted({str(info["host"]) for info in workers.values()})
        threads = sum(int(info["nthreads"]) for info in workers.values())
        return {"kind": "dask", "scheduler": self.address, "workers": len(workers), "threads": threads, "hosts": hosts}

    def check_workers(self) -> None:
        """Learn each worker host's cores and check that every worker runs this serkit version.

        Raises:
            ClusterError: a worker cannot import serkit or runs another version.
        """
        try:
            facts = self.client.run(_worker_facts)
        except Exception as exc:  # the worker could not unpickle serkit.cluster._worker_facts
            raise ClusterError(f"cluster {self.address}: the workers cannot run serkit (installed there?): {exc}") from exc
        other = {addr: fact["serkit"] for addr, fact in facts.items() if fact["serkit"] != serkit.__version__}
        if other:
            raise ClusterError(
                f"cluster {self.address}: workers run serkit {sorted(set(other.values()))}, this process "
                f"{serkit.__version__} (e.g. {next(iter(other))}); results and cache keys need one version"
            )
        self._cores.update({_host(addr): int(fact["cores"]) for addr, fact in facts.items()})

    def _thread_budget(self) -> dict[str, int]:
        """Host -> threads one task may use: the host's cores over its worker threads (at least 1)."""
        workers = self._workers()
        if any(_host(addr) not in self._cores for addr in workers):
            self.check_workers()
        threads = Counter()
        for addr, info in workers.items():
            threads[_host(addr)] += int(info["nthreads"])
        return {host: max(1, self._cores.get(host, 1) // n) for host, n in threads.items()}

    def sees(self, folder: Path) -> bool:
        """Whether every worker reads and may write ``folder`` as this process does (a shared file system).

        Answered by a probe file written here and read by each worker (once per folder), or by
        ``shared_cache`` when it was given.
        """
        if self.shared_cache is not None:
            return self.shared_cache
        folder = Path(folder).resolve()
        if folder not in self._seen:
            folder.mkdir(parents=True, exist_ok=True)
            token = secrets.token_hex(8)
            probe = atomic_write_text(folder / f".serkit-probe-{token}", token)
            try:
                answers = self.client.run(_reads, str(probe), token)
            finally:
                probe.unlink(missing_ok=True)
            self._seen[folder] = bool(answers) and all(answers.values())
            log.info("cache %s: %s", folder, "shared with the workers" if self._seen[folder] else "kept by this process")
        return self._seen[folder]

    # ------------------------------------------------------------------ tasks

    def map(
        self, fn: Callable[..., Any], items: Iterable[Any], *args: Any, name: str, share: tuple[int, ...] = ()
    ) -> Iterator[tuple[int, Any]]:
        """``(i, fn(items[i], *args))`` for every item, in the order the tasks finish.

        Args:
            fn: a module-level function (workers import it by name).
            items: one task each.
            args: the same for every task; those whose positions are in ``share`` are scattered
                to the workers once (by identity, kept until :meth:`release`) instead of being
                sent with every task.
            name: the tasks' key prefix (``serkit-<name>-<i>-…``), shown in Dask's dashboard.

        Raises:
            ClusterError: a task killed too many workers, or its data was lost more than
                :data:`RESUBMISSIONS` times.
            Whatever ``fn`` raised (the other tasks are cancelled).
        """
        from distributed import KilledWorker
        from distributed.client import FutureCancelledError, as_completed

        items = list(items)
        budget = self._thread_budget()
        token = secrets.token_hex(4)
        lost = Counter()

        def submit(i: int) -> Any:
            values = [self._scatter(value) if j in share else value for j, value in enumerate(args)]
            key = f"serkit-{name}-{i}-{token}-{lost[i]}"
            return self.client.submit(_task, fn, budget, items[i], *values, key=key, pure=False)

        pending = {submit(i): i for i in range(len(items))}
        finished = as_completed(list(pending))
        try:
            for future in finished:
                i = pending.pop(future)
                try:
                    result = future.result()
                except FutureCancelledError as exc:  # lost dependencies: the scattered data is gone
                    lost[i] += 1
                    if lost[i] > RESUBMISSIONS:
                        raise ClusterError(f"cluster {self.address}: task {future.key} lost its data {lost[i]} times ({exc})") from exc
                    log.warning("task %s lost its data (%s); scattering it again", future.key, exc)
                    again = submit(i)
                    pending[again] = i
                    finished.add(again)
                    continue
                except KilledWorker as exc:
                    raise ClusterError(
                        f"cluster {self.address}: task {future.key} killed every worker that ran it (out of memory?): {exc}"
                    ) from exc
                yield i, result
        finally:
            if pending:
                self.client.cancel(list(pending))

    def _scatter(self, value: Any) -> Any:
        """The future of ``value`` on the workers, scattered now unless it still is."""
        with self._lock:
            held = self._scattered.get(id(value))
            if held is None or held[1].status != "finished":
                future = self.client.scatter([value], hash=False)[0]
                held = self._scattered[id(value)] = (value, future)
            return held[1]

    def release(self, value: Any) -> None:
        """Let the workers drop a value :meth:`map` scattered (no-op for one it did not)."""
        with self._lock:
            self._scattered.pop(id(value), None)

    def close(self) -> None:
        """Drop scattered values and, when this runner owns it, close the client."""
        with self._lock:
            self._scattered.clear()
        if self._owns_client:
            self.client.close()


# --------------------------------------------------------------------------- on the workers


def _host(address: str) -> str:
    from distributed.comm import get_address_host

    return get_address_host(address)


def _worker_facts() -> dict[str, Any]:
    """Runs on each worker: its serkit version and the cores it may use."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return {"serkit": serkit.__version__, "cores": cores}


def _reads(path: str, token: str) -> bool:
    """Runs on each worker: whether it reads ``token`` from ``path`` and may write beside it."""
    probe = Path(path)
    try:
        return probe.read_text() == token and os.access(probe.parent, os.W_OK)
    except OSError:
        return False


def _task(fn: Callable[..., Any], budget: Mapping[str, int], item: Any, *args: Any) -> Any:
    """Runs on a worker: ``fn(item, *args)`` with at most ``budget[this host]`` threads."""
    from distributed import get_worker

    _limit_threads(budget.get(_host(get_worker().address), 1))
    return fn(item, *args)


def _limit_threads(n: int) -> None:
    """At most ``n`` threads for the BLAS / OpenMP libraries loaded now or later and for torch."""
    from threadpoolctl import threadpool_limits

    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = str(n)  # libraries loaded later read these
    threadpool_limits(n)
    torch = sys.modules.get("torch")
    if torch is not None and torch.get_num_threads() != n:
        torch.set_num_threads(n)
