"""The whole local stack: infrastructure first (postgres, redis, s3), then the app processes; down in reverse.

These are the service functions behind `landmarks dev up|down|status`; they take the settings object and return
one :class:`Outcome` per service, leaving presentation to the CLI.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

from devtools.stack import lifecycle, postgres, redis_server, seaweed
from devtools.stack.apps import AppSpec, app_specs
from devtools.stack.outcome import Outcome
from devtools.stack.registry import PidRecord, Registry
from shared.settings import Settings

# Each module offers up(settings, registry, timeout=), down(settings, registry), status(settings, registry).
INFRA: dict[str, ModuleType] = {"postgres": postgres, "redis": redis_server, "s3": seaweed}


def _absolute(settings: Settings) -> Settings:
    """Resolve a relative state folder once, so PID files and logs mean the same from any working directory."""
    return settings.model_copy(update={"state_dir": Path(settings.state_dir).resolve()})


def default_apps(settings: Settings) -> list[AppSpec]:
    """The app table with programs from this virtual environment's bin folder."""
    return app_specs(settings, Path(sys.executable).parent)


def select(
    only: Collection[str] | None, apps: Sequence[AppSpec], *, services_only: bool = False
) -> tuple[list[str], list[AppSpec]]:
    """The infrastructure names and app entries chosen by --only / --services-only (all when neither)."""
    if only is None:
        return list(INFRA), ([] if services_only else list(apps))
    known = {*INFRA, *(spec.name for spec in apps)}
    unknown = sorted(set(only) - known)
    if unknown:
        raise ValueError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    infra = [name for name in INFRA if name in only]
    chosen = [] if services_only else [spec for spec in apps if spec.name in only]
    return infra, chosen


def up(
    settings: Settings,
    *,
    only: Collection[str] | None = None,
    services_only: bool = False,
    apps: Sequence[AppSpec] | None = None,
    timeout: float = 60.0,
) -> list[Outcome]:
    """Start what is not running; apps are launched together and then awaited (they boot in parallel)."""
    settings = _absolute(settings)
    registry = Registry(settings.state_dir)
    infra, chosen = select(only, default_apps(settings) if apps is None else apps, services_only=services_only)
    with registry.lock():
        return _up(settings, registry, infra, chosen, timeout)


def _up(
    settings: Settings, registry: Registry, infra: list[str], chosen: list[AppSpec], timeout: float
) -> list[Outcome]:
    outcomes = [INFRA[name].up(settings, registry, timeout=timeout) for name in infra]
    if any(o.failed for o in outcomes):
        failed = ", ".join(o.name for o in outcomes if o.failed)
        return outcomes + [Outcome(s.name, "skipped", None, s.address, f"{failed} failed") for s in chosen]
    launched: list[tuple[AppSpec, PidRecord]] = []
    results: dict[str, Outcome] = {}
    for spec in chosen:
        record = registry.live(spec.name)
        if record is not None:
            detail = f"already running (pid {record.pid})"
            results[spec.name] = Outcome(spec.name, "already running", record.pid, spec.address, detail)
            continue
        started = lifecycle.launch(
            registry, spec.name, spec.argv, state_dir=settings.state_dir, env=spec.env, address=spec.address
        )
        if isinstance(started, Outcome):
            results[spec.name] = started
        else:
            launched.append((spec, started))
    for spec, record in launched:
        results[spec.name] = lifecycle.settle(registry, record, spec.ready, timeout)
    return outcomes + [results[spec.name] for spec in chosen]


def down(
    settings: Settings,
    *,
    only: Collection[str] | None = None,
    apps: Sequence[AppSpec] | None = None,
) -> list[Outcome]:
    """Stop what we started, apps first; with no selection also any other process recorded in the state folder."""
    settings = _absolute(settings)
    registry = Registry(settings.state_dir)
    table = default_apps(settings) if apps is None else apps
    infra, chosen = select(only, table)
    addresses = {spec.name: spec.address for spec in table}
    with registry.lock():
        names = [spec.name for spec in reversed(chosen)]
        if only is None:
            names += [n for n in reversed(registry.names()) if n not in INFRA and n not in names]
        # Apps stop in parallel: each may take its grace period (a Celery worker finishing its task).
        with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
            outcomes = list(pool.map(lambda n: lifecycle.stop(registry, n, address=addresses.get(n, "")), names))
        return outcomes + [INFRA[name].down(settings, registry) for name in reversed(infra)]


def status(settings: Settings, *, apps: Sequence[AppSpec] | None = None) -> list[Outcome]:
    """Each service: running (ours), reused (someone else's server answers) or stopped."""
    settings = _absolute(settings)
    registry = Registry(settings.state_dir)
    table = default_apps(settings) if apps is None else apps
    outcomes = [module.status(settings, registry) for module in INFRA.values()]
    names = [spec.name for spec in table]
    names += [n for n in registry.names() if n not in INFRA and n not in names]
    addresses = {spec.name: spec.address for spec in table}
    for name in names:
        record = registry.live(name)
        state = "running" if record is not None else "stopped"
        outcomes.append(Outcome(name, state, record.pid if record else None, addresses.get(name, "")))
    return outcomes
