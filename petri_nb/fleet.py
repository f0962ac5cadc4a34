"""Fleets: run one VM experiment many times on a Dask cluster and collect every run.

Soak tests need hundreds of VM runs, more than one notebook host, and no home-made
scheduler. Each run is one Dask task: a worker process boots the guest, hands the
blocking ``Vm`` to the experiment, tears the VM down and returns its outcome and
timeline. The client streams each finished timeline to ``<rundir>/<run>.parquet``
and a line to ``<rundir>/outcomes.jsonl``, so a half-finished fleet can already be
analysed. Timelines carry their run's metadata columns (host, qemu_version...: run_meta).

A worker process dying mid-run takes its QEMU with it (QEMU carries a parent-death
signal tied to the worker's runtime-loop thread). The local cluster is configured so
Dask does not retry such a task elsewhere (``allowed-failures = 0``) and hands a worker
only the task it is running (``worker-saturation = 1.0``): the run is reported
``lost`` with the reason instead of silently re-run or lost with its neighbours.

``%petri fleet NAME -n N [--workers W | --address ADDR]`` (petri_nb.notebook.magics) is ``run`` with
``local_client(W)`` or ``connect(ADDR)``. Bad input raises PetriError before any cluster starts.
"""

from __future__ import annotations

import collections
import contextvars
import importlib.util
import json
import os
import pickle
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import dask
import pandas as pd
from distributed import Client, as_completed, get_worker
from distributed.scheduler import KilledWorker

from .errors import PetriError, VmHalted
from .guests import describe
from .records.persist import read_timelines, write_parquet
from .records.run_meta import with_meta_columns
from .records.timeline import empty_frame
from .runtime.validation import checked
from .vm.facade import VM_OPTIONS, Vm, launch

Experiment = Callable[[Vm], Any]

#: Scheduler settings that make a dead worker's run "lost" rather than retried elsewhere.
FLEET_DASK_CONFIG = {
    "distributed.scheduler.allowed-failures": 0,
    "distributed.scheduler.worker-saturation": 1.0,
}
OUTCOME_COLUMNS = ("index", "run", "worker", "status", "halt_reason", "error", "duration_s", "value")
STATUSES = ("ok", "error", "timeout", "lost")


# -- what a run sees -----------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    """Which run of which fleet the current experiment call is."""

    fleet: str
    index: int
    run: str
    worker: str


_current: contextvars.ContextVar[RunInfo | None] = contextvars.ContextVar("petri_nb_fleet_run", default=None)


def current_run() -> RunInfo:
    """The run being executed; lets an experiment vary with the run index."""
    info = _current.get()
    if info is None:
        raise PetriError("petri_nb.fleet.current_run() is only available inside a fleet experiment")
    return info


@dataclass(frozen=True)
class HaltEach:
    """Built-in experiment: send one of the guest's halt commands per run (cycling through
    ``Guest.halt_commands``, or ``commands`` when given) and wait for the halt."""

    commands: tuple[str, ...] | None = None
    timeout: float = 30.0

    def __call__(self, vm: Vm) -> str:
        commands = self.commands or tuple(vm.guest.halt_commands.values())
        if not commands:
            raise PetriError(f"guest {vm.guest.name!r} declares no halt_commands for the halt-each experiment")
        command = commands[current_run().index % len(commands)]
        vm.console.write(command + "\n")
        return vm.wait_for_halt(timeout=self.timeout).reason.name


EXPERIMENTS: dict[str, Experiment] = {"halt-each": HaltEach()}


def _resolve_experiment(experiment: str | Experiment) -> Experiment:
    if isinstance(experiment, str):
        if experiment not in EXPERIMENTS:
            known = ", ".join(sorted(EXPERIMENTS))
            raise PetriError(f"unknown experiment {experiment!r}; built-in experiments: {known}")
        return EXPERIMENTS[experiment]
    if not callable(experiment):
        kind = type(experiment).__name__
        raise PetriError(f"experiment must be a callable taking a Vm or a built-in name, not {kind}")
    try:
        cloudpickle.dumps(experiment)
    except Exception as e:
        raise PetriError(f"experiment {experiment!r} cannot be sent to workers (not picklable: {e})") from None
    return experiment


# -- on the worker -----------------------------------------------------------------


def _worker_address() -> str:
    try:
        return get_worker().address
    except ValueError:
        return f"pid-{os.getpid()}"


def _run_one(experiment: Experiment, fleet: str, index: int, run: str, guest: str,
             options: dict[str, Any], run_timeout: float | None = None) -> tuple[dict[str, Any], pd.DataFrame]:
    """One run on a worker. Never raises for the experiment's sake: failures are outcomes.

    ``run_timeout`` tears the VM down under a stuck experiment, whose pending VM call
    then fails (a worker thread cannot be killed, a VM can).
    """
    info = RunInfo(fleet, index, run, _worker_address())
    outcome: dict[str, Any] = {"index": index, "run": run, "worker": info.worker, "status": "ok",
                               "halt_reason": None, "error": None, "value": None}
    start = time.monotonic()
    vm = None
    expired = threading.Event()
    watchdog = None
    token = _current.set(info)
    try:
        vm = launch(guest, name=f"{fleet}-{index}", **options)
        if run_timeout is not None:
            watchdog = threading.Timer(run_timeout, _expire, (vm, expired))
            watchdog.start()
        value = experiment(vm)
        pickle.dumps(value)  # fail here, as this run's error, rather than in Dask's transport
        outcome["value"] = value
    except Exception as e:
        outcome["status"] = "error"
        outcome["error"] = f"{type(e).__name__}: {e}"
        if isinstance(e, VmHalted):
            outcome["halt_reason"] = e.halt.reason.name
    finally:
        _current.reset(token)
        if watchdog is not None:
            watchdog.cancel()
        if expired.is_set():
            outcome["status"] = "timeout"
            outcome["error"] = f"run timed out after {run_timeout:g} s; VM torn down ({outcome['error']})"
        frame, meta = empty_frame(), {}
        if vm is not None:
            try:
                vm.teardown()
            except Exception as e:
                outcome["error"] = outcome["error"] or f"teardown: {type(e).__name__}: {e}"
            frame, meta = vm.timeline(), vm.run_meta
            if vm.last_halt is not None:
                outcome["halt_reason"] = vm.last_halt.reason.name
    outcome["duration_s"] = time.monotonic() - start
    frame = with_meta_columns(frame, meta)  # saved in the run's Parquet file; read_timelines reads it back
    # The fleet's run id replaces the VM's own launch id: lost runs have no VM, and
    # the timeline and the outcomes must share one key.
    frame["run"] = pd.array([run] * len(frame), dtype="string")
    frame["worker"] = pd.array([info.worker] * len(frame), dtype="string")
    return outcome, frame


def _expire(vm: Vm, expired: threading.Event) -> None:
    expired.set()
    vm.teardown()


# -- clusters ------------------------------------------------------------------------


def local_client(n_workers: int | None = None) -> Client:
    """A Client on a new LocalCluster of worker *processes* (one VM at a time each).

    Processes, not threads: each worker gets its own petri_nb runtime loop, and a dying
    worker takes only its own QEMU with it. Closing the client closes the cluster.
    """
    if n_workers is None:
        n_workers = len(os.sched_getaffinity(0))
    if not isinstance(n_workers, int) or n_workers < 1:
        raise PetriError(f"n_workers must be a positive integer, not {n_workers!r}")
    with dask.config.set(FLEET_DASK_CONFIG):
        try:  # the dashboard on loopback only: nothing of a fleet listens on other interfaces
            return Client(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0")
        except RuntimeError as e:  # Dask's "Nanny failed to start": a script without a __main__ guard
            raise PetriError(f"the fleet's Dask workers did not start ({e}); from a script, put the fleet under "
                             "`if __name__ == '__main__':` (each worker imports the script again)") from None


def connect(address: str) -> Client:
    """A Client on an existing cluster; checks that every worker can start QEMU.

    The scheduler's own ``distributed.scheduler.allowed-failures`` applies there: start it
    with 0 to get a dead worker's run reported ``lost`` instead of re-run elsewhere.
    """
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError) as e:
        raise PetriError(f"cannot connect to the Dask scheduler at {address!r}: {e}") from None
    missing = [w for w, ok in client.run(_has_qemu).items() if not ok]
    if missing:
        client.close()
        raise PetriError(f"these Dask workers have no qemu-system-x86_64 on PATH: {', '.join(missing)}")
    return client


def _has_qemu() -> bool:
    import shutil

    return shutil.which("qemu-system-x86_64") is not None


def dashboard(client: Client) -> str:
    """The dashboard link, or why there is none (it needs bokeh, an optional dependency)."""
    if importlib.util.find_spec("bokeh") is None:
        return "no Dask dashboard: it needs bokeh>=3.1 (pip install bokeh)"
    return client.dashboard_link


# -- results ---------------------------------------------------------------------------


@dataclass
class FleetResult:
    """All runs of a fleet: one timeline frame (with worker and run columns) and one outcome row per run."""

    timeline: pd.DataFrame
    outcomes: pd.DataFrame
    rundir: Path
    dashboard: str = ""

    def halt_counts(self) -> pd.Series:
        """Runs per halt reason (or status, for runs that ended without a halt)."""
        key = self.outcomes["halt_reason"].fillna(self.outcomes["status"])
        return key.value_counts()

    def __repr__(self) -> str:
        counts = {str(k): int(v) for k, v in self.outcomes["status"].value_counts().items()}
        return f"<FleetResult {len(self.outcomes)} runs {counts} in {self.rundir}>"


def outcomes_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(OUTCOME_COLUMNS))
    frame = frame.sort_values("index", kind="stable").reset_index(drop=True)
    for col in ("run", "worker", "halt_reason", "error"):
        frame[col] = frame[col].astype("string")
    frame["status"] = pd.Categorical(frame["status"], categories=STATUSES)
    frame["index"] = frame["index"].astype("int64")
    frame["duration_s"] = frame["duration_s"].astype("float64")
    return frame


def _append_outcome(rundir: Path, outcome: dict[str, Any]) -> None:
    line = json.dumps({k: outcome[k] for k in OUTCOME_COLUMNS if k != "value"} | {"value": repr(outcome["value"])})
    with open(rundir / "outcomes.jsonl", "a", encoding="utf-8") as f:
        f.write(line + "\n")


@checked
def read_fleet(rundir: str | os.PathLike[str]) -> FleetResult:
    """Reload a (possibly half-finished) fleet from its run directory.

    The timelines are ``<rundir>/*.parquet`` (``petri_nb.read_timelines`` reads them too,
    without the worker column); the outcomes are ``<rundir>/outcomes.jsonl``.
    """
    rundir = Path(rundir)
    if not rundir.is_dir():
        raise PetriError(f"fleet run directory {rundir} does not exist")
    rows = []
    log = rundir / "outcomes.jsonl"
    if log.exists():
        try:
            text = log.read_text(encoding="utf-8", errors="replace")
            lines = text.splitlines()[:None if text.endswith("\n") else -1]  # a line cut off (or being written)
            rows = [json.loads(line) for line in lines if line.strip()]
        except (ValueError, OSError) as e:
            raise PetriError(f"cannot read the fleet's outcomes {log}: {e}") from e
    outcomes = outcomes_frame(rows)
    files = sorted(rundir.glob("*.parquet"))
    timeline = read_timelines([str(f) for f in files]) if files else empty_frame()
    timeline = timeline[timeline["run"].isin(outcomes["run"])].reset_index(drop=True)  # outcome not yet: not done
    workers = dict(zip(outcomes["run"], outcomes["worker"], strict=True))
    timeline["worker"] = timeline["run"].map(workers).astype("string")
    return FleetResult(timeline, outcomes, rundir)


def _empty_timeline() -> pd.DataFrame:
    frame = with_meta_columns(empty_frame(), None)
    frame["worker"] = pd.array([], dtype="string")
    return frame


# -- the fleet -----------------------------------------------------------------------------


def run(experiment: str | Experiment, runs: int = 1, guest: str = "tmk", client: Client | None = None, *,
        rundir: str | os.PathLike[str] | None = None, progress: bool = True, run_timeout: float | None = 600.0,
        **launch_options: Any) -> FleetResult:
    """Run ``experiment(vm)`` on ``runs`` fresh VMs of ``guest`` across a Dask cluster.

    ``client`` defaults to a LocalCluster sized to this machine (closed afterwards).
    Each run's outcome is ``ok``, ``error`` (the experiment or launch raised; the
    message is kept), ``timeout`` (still running after ``run_timeout`` seconds: its VM
    was torn down) or ``lost`` (the worker died or the cluster went away).
    """
    experiment = _resolve_experiment(experiment)
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise PetriError(f"runs must be a positive integer, not {runs!r}")
    if run_timeout is not None and (isinstance(run_timeout, bool) or not isinstance(run_timeout, (int, float))
                                    or run_timeout <= 0):
        raise PetriError(f"run_timeout must be a positive number of seconds or None, not {run_timeout!r}")
    if "name" in launch_options:
        raise PetriError("a fleet names its VMs itself; drop the name= launch option")
    # Fail here, once, rather than on every worker: bad guest names and options are LaunchErrors.
    describe(guest, **{k: v for k, v in launch_options.items() if k not in VM_OPTIONS})
    fleet = f"fleet-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    rundir = Path(rundir) if rundir is not None else Path.cwd() / "petri_nb-runs" / fleet
    rundir.mkdir(parents=True, exist_ok=True)
    own = client is None
    if own:
        client = local_client(min(len(os.sched_getaffinity(0)), runs))
    try:
        return _run_fleet(client, experiment, fleet, runs, guest, launch_options, rundir, progress, run_timeout)
    finally:
        if own:
            client.close()


def _run_fleet(client: Client, experiment: Experiment, fleet: str, runs: int, guest: str,
               options: dict[str, Any], rundir: Path, progress: bool, run_timeout: float | None) -> FleetResult:
    from tqdm.auto import tqdm

    link = dashboard(client)
    ids = [str(uuid.uuid4()) for _ in range(runs)]
    futures = {
        client.submit(_run_one, experiment, fleet, i, ids[i], guest, options, run_timeout,
                      pure=False, key=f"{fleet}-run-{i}"): i
        for i in range(runs)
    }
    outcomes: list[dict[str, Any]] = []
    frames: list[pd.DataFrame] = []
    counts: collections.Counter[str] = collections.Counter()
    bar = tqdm(total=runs, desc=fleet, unit="run", disable=not progress)
    if progress:
        bar.write(f"{fleet}: {runs} runs of {guest} in {rundir}; dashboard: {link}")
    try:
        for fut in as_completed(list(futures)):
            i = futures[fut]
            outcome, frame = _collect(fut, i, ids[i])
            if frame is not None and not frame.empty:
                write_parquet(frame, rundir / f"{ids[i]}.parquet")  # atomic: readers never see half a file
                frames.append(frame)
            _append_outcome(rundir, outcome)
            outcomes.append(outcome)
            counts[outcome["halt_reason"] or outcome["status"]] += 1
            bar.set_postfix(dict(sorted(counts.items())), refresh=False)
            bar.update(1)
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise
    finally:
        bar.close()
    timeline = pd.concat(frames, ignore_index=True) if frames else _empty_timeline()
    timeline = timeline.sort_values(["wall", "t"], kind="stable").reset_index(drop=True)
    return FleetResult(timeline, outcomes_frame(outcomes), rundir, link)


def _collect(fut: Any, index: int, run: str) -> tuple[dict[str, Any], pd.DataFrame | None]:
    """A finished task -> (outcome, timeline); a task that died with its worker -> a lost outcome."""
    lost = {"index": index, "run": run, "worker": None, "status": "lost", "halt_reason": None,
            "error": None, "value": None, "duration_s": float("nan")}
    try:
        return fut.result()
    except KilledWorker as e:
        worker = getattr(e.last_worker, "address", None) if hasattr(e, "last_worker") else None
        lost |= {"worker": worker, "error": f"worker {worker or '?'} died during the run"}
    except Exception as e:
        lost["error"] = f"{type(e).__name__}: {e}"
    return lost, None
