"""The deployment files under deploy/ run real commands with real settings.

Every compose service, Kubernetes container and systemd unit must run a `landmarks` sub-command that exists or a
`celery -A workers.celery_app ...` command that Celery's own CLI parses, on queues the Celery app declares; every
LANDMARKS_* variable must be a field of Settings. Parsed offline: no Docker engine, cluster or systemd needed.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import tomllib
import typing
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import click
import pytest
import typer
import yaml
from pydantic import BaseModel

from shared.settings import Settings
from workers.bridge.webhook import DEFAULT_PATH as WEBHOOK_PATH
from workers.celery_app import QUEUES

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose" / "compose.yaml"
K8S = DEPLOY / "k8s"
SYSTEMD = DEPLOY / "systemd"
CELERY_APP = "workers.celery_app"
APP_IMAGE = re.compile(r"^landmarks:[a-z0-9.-]+$")
PINNED_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
SHELLS = {"sh", "bash"}
SHELL_OPERATORS = {"&&", "||", ";", "|"}


# --- what a command may be -----------------------------------------------------------------------------------


class NotARealCommand(AssertionError):
    """A deploy file runs something the project's CLIs do not accept."""


@cache
def landmarks_cli() -> Any:
    from workers.cli.main import app

    return typer.main.get_command(app)


@cache
def celery_root() -> tuple[click.Group, click.Context]:
    """Celery's click group with the context its sub-commands' option callbacks expect (ctx.obj.app)."""
    from celery.bin.base import CLIContext
    from celery.bin.celery import celery

    from workers.celery_app import app

    obj = CLIContext(app=app, no_color=True, workdir=None, quiet=True)
    return celery, click.Context(celery, info_name="celery", obj=obj)


def check_landmarks(args: list[str]) -> None:
    """Walk the Typer app by sub-command names, then let the leaf command parse the rest (options, types)."""
    command = landmarks_cli()
    context = None
    path = ["landmarks"]
    while hasattr(command, "list_commands"):
        if args == ["--help"]:
            return
        if not args or args[0].startswith("-"):
            raise NotARealCommand(f"`{' '.join(path)}` needs a sub-command, got {args}")
        name, args = args[0], args[1:]
        sub = command.get_command(context, name)
        if sub is None:
            raise NotARealCommand(f"`{' '.join(path)}` has no sub-command {name!r}")
        command, path = sub, [*path, name]
    try:
        command.make_context(" ".join(path), list(args))
    except Exception as exc:  # typer vendors click: its UsageError is not click's
        raise NotARealCommand(f"`{' '.join(path)}` rejects {args}: {exc}") from exc


def check_celery(args: list[str]) -> None:
    """`celery -A workers.celery_app <sub-command> ...`, parsed by Celery's own CLI; workers consume real queues."""
    if len(args) < 3 or args[0] not in ("-A", "--app") or args[1] != CELERY_APP:
        raise NotARealCommand(f"celery must start with `-A {CELERY_APP}`: {args}")
    name, rest = args[2], args[3:]
    group, root = celery_root()
    if name not in group.commands:
        raise NotARealCommand(f"celery has no sub-command {name!r}")
    if name == "flower":
        check_flower(rest)
        return
    try:
        context = group.commands[name].make_context(name, list(rest), parent=root)
    except click.ClickException as exc:
        raise NotARealCommand(f"`celery {name}` rejects {rest}: {exc.format_message()}") from exc
    if name == "worker":
        queues = context.params.get("queues") or []
        if not queues or not set(queues) <= set(QUEUES):
            raise NotARealCommand(f"worker queues {queues} are not among {QUEUES}")


def check_flower(args: list[str]) -> None:
    """Flower passes its arguments to tornado.options: each --name must be one of Flower's options."""
    from flower.options import options

    for arg in args:
        if not arg.startswith("--"):
            raise NotARealCommand(f"flower takes --name=value options only: {arg!r}")
        if arg[2:].split("=", 1)[0].replace("-", "_") not in options:
            raise NotARealCommand(f"flower has no option {arg!r}")


def check_python_module(args: list[str]) -> None:
    """`python -m workers.<module> ...`: an entry-point module of the project that exists."""
    if len(args) < 2 or args[0] != "-m" or not args[1].startswith("workers."):
        raise NotARealCommand(f"python may only run `-m workers.<module>`: {args}")
    if importlib.util.find_spec(args[1]) is None:
        raise NotARealCommand(f"no module {args[1]}")


def check_argv(argv: list[str]) -> str:
    """Raise unless ``argv`` is a real `landmarks`, `celery` or `python -m workers.*` command; return the program."""
    program = Path(argv[0]).name
    if program == "landmarks":
        check_landmarks(argv[1:])
    elif program == "celery":
        check_celery(argv[1:])
    elif program in ("python", "python3"):
        check_python_module(argv[1:])
    else:
        raise NotARealCommand(f"not a landmarks, celery or python -m workers.* command: {argv}")
    return program


def shell_commands(script: str) -> Iterator[list[str]]:
    """The simple commands of a shell one-liner (split at &&, ||, ; and |)."""
    lexer = shlex.shlex(script, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    current: list[str] = []
    for token in lexer:
        if token in SHELL_OPERATORS:
            if current:
                yield current
            current = []
        else:
            current.append(token)
    if current:
        yield current


def commands_in(value: str | list[str]) -> Iterator[list[str]]:
    """Argument vectors of a command as compose/Kubernetes write it: exec form, CMD/CMD-SHELL, `sh -c` or a string."""
    if isinstance(value, str):
        yield from shell_commands(value)
        return
    argv = [str(v) for v in value]
    if argv and argv[0] == "CMD":
        argv = argv[1:]
    elif argv and argv[0] == "CMD-SHELL":
        yield from shell_commands(" ".join(argv[1:]))
        return
    if len(argv) == 3 and Path(argv[0]).name in SHELLS and argv[1] == "-c":
        yield from shell_commands(argv[2])
        return
    yield argv


def app_commands(value: str | list[str]) -> list[list[str]]:
    """The landmarks/celery commands inside ``value`` (health checks may also run python or a shell builtin)."""
    return [argv for argv in commands_in(value) if argv and Path(argv[0]).name in ("landmarks", "celery")]


def worker_queues(argv: list[str]) -> set[str]:
    if Path(argv[0]).name != "celery" or "worker" not in argv:
        return set()
    value = argv[argv.index("-Q") + 1] if "-Q" in argv else argv[argv.index("--queues") + 1]
    return set(value.split(","))


# --- settings ------------------------------------------------------------------------------------------------


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def is_setting(variable: str) -> bool:
    """Whether pydantic-settings maps ``variable`` onto a field of Settings (prefix LANDMARKS_, nesting `__`)."""
    prefix = Settings.model_config["env_prefix"]
    delimiter = Settings.model_config["env_nested_delimiter"]
    if not variable.startswith(prefix):
        return False
    model: type[BaseModel] = Settings
    parts = variable[len(prefix) :].lower().split(delimiter)
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            return False
        if depth == len(parts) - 1:
            return True
        if typing.get_origin(field.annotation) is dict:
            return True  # keys are free (e.g. LANDMARKS_API_TOKENS__<client>__TOKEN)
        nested = _nested_model(field.annotation)
        if nested is None:
            return False
        model = nested
    return False


SETTING_REFERENCE = re.compile(r"(?<![A-Za-z0-9_])LANDMARKS_[A-Z0-9_]*[A-Z0-9]")


def deploy_text_files() -> list[Path]:
    files = [p for p in DEPLOY.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    return [p for p in files if p.suffix not in (".pyc",)]


# --- compose -------------------------------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def app_services() -> dict[str, dict[str, Any]]:
    services = compose()["services"]
    return {name: s for name, s in services.items() if APP_IMAGE.match(str(s.get("image", "")))}


def k8s_documents() -> list[tuple[Path, dict[str, Any]]]:
    """The Kubernetes objects (kustomization.yaml is kustomize's configuration, not an object)."""
    return [
        (path, doc)
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
        if doc is not None
    ]


def pod_containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    if doc.get("kind") not in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
        return []
    spec = doc["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


# --- the checker itself --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["landmarks", "bridge", "serve"],
        ["landmarks", "bridge", "run", "--source", "kafka"],
        ["landmarks", "db", "upgrade", "--no-such-option"],
        ["celery", "-A", CELERY_APP, "worker", "-Q", "no-such-queue"],
        ["celery", "-A", CELERY_APP, "worker", "-Q", "ingest", "--concurency", "2"],
        ["celery", "-A", "other.app", "beat"],
        ["celery", "-A", CELERY_APP, "flower", "--no-such-flower-option=1"],
        ["python", "-m", "workers.no_such_module"],
        ["python", "-c", "print()"],
        ["bash", "-c", "landmarks db upgrade"],
    ],
)
def test_the_checker_rejects_commands_that_do_not_exist(argv: list[str]) -> None:
    with pytest.raises(NotARealCommand):
        check_argv(argv)


def test_the_checker_accepts_the_commands_of_the_local_setup() -> None:
    """The commands deploy/ mirrors from `landmarks dev up` (devtools/stack/apps.py) pass the checker."""
    from devtools.stack.apps import app_specs

    mirrored = [
        spec
        for spec in app_specs(Settings(), Path("/venv/bin"))
        if spec.name in ("beat", "bridge", "flower") or spec.name.startswith("worker-")
    ]
    assert len(mirrored) == len(QUEUES) + 3
    assert {check_argv(list(spec.argv)) for spec in mirrored} == {"celery", "landmarks"}


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        ("LANDMARKS_DATABASE_URL", True),
        ("LANDMARKS_S3__SECRET_KEY", True),
        ("LANDMARKS_RECOGNITION__DEVICE", True),
        ("LANDMARKS_S3__NO_SUCH_KEY", False),
        ("LANDMARKS_S3_SECRET_KEY", False),  # one underscore: not nested
        ("LANDMARKS_DATABASE_URL__X", False),
        ("FLOWER_BASIC_AUTH", False),
    ],
)
def test_is_setting(variable: str, expected: bool) -> None:
    assert is_setting(variable) is expected


# --- every file ----------------------------------------------------------------------------------------------


def test_every_yaml_file_parses() -> None:
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert COMPOSE_FILE in files and len(files) > 5
    for path in files:
        documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert documents, f"{path} holds no YAML document"
        assert all(isinstance(d, dict) for d in documents), path


def test_every_landmarks_variable_is_a_setting() -> None:
    referenced = {
        (path.relative_to(DEPLOY).as_posix(), name)
        for path in deploy_text_files()
        for name in SETTING_REFERENCE.findall(path.read_text(errors="replace"))
    }
    assert len(referenced) > 20
    unknown = sorted(f"{file}: {name}" for file, name in referenced if not is_setting(name))
    assert not unknown, "not fields of shared.settings.Settings:\n" + "\n".join(unknown)


# --- compose -------------------------------------------------------------------------------------------------


def test_compose_services_run_real_commands() -> None:
    services = app_services()
    assert {"migrate", "bridge", "beat", "flower", "ingest", "recognize-gpu", "recognize-cpu"} <= set(services)
    for name, service in services.items():
        [argv] = list(commands_in(service["command"]))
        assert check_argv(argv), name
        for argv in app_commands(service.get("healthcheck", {}).get("test", [])):
            assert check_argv([a.replace("$$", "$") for a in argv]), name


def test_compose_runs_a_worker_for_every_queue() -> None:
    queues = set().union(*(worker_queues(next(commands_in(s["command"]))) for s in app_services().values()))
    assert queues == set(QUEUES)


def test_compose_migrates_before_the_workers_start() -> None:
    services = app_services()
    assert next(commands_in(services["migrate"]["command"])) == ["landmarks", "db", "upgrade"]
    for name, service in services.items():
        if worker_queues(next(commands_in(service["command"]))):
            assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name


def test_compose_recognize_workers_on_gpu_and_cpu_profiles() -> None:
    services = app_services()
    gpu, cpu = services["recognize-gpu"], services["recognize-cpu"]
    assert gpu["profiles"] == ["gpu"] and cpu["profiles"] == ["cpu"]
    [device] = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert gpu["environment"]["LANDMARKS_RECOGNITION__DEVICE"] == "cuda"
    assert cpu["environment"]["LANDMARKS_RECOGNITION__DEVICE"] == "cpu"
    assert "TORCH_INDEX_URL" in gpu["build"]["args"]


def test_compose_minio_notifies_the_bridge_webhook() -> None:
    services = compose()["services"]
    env = services["minio"]["environment"]
    target_ids = {k.removeprefix("MINIO_NOTIFY_WEBHOOK_ENABLE_") for k in env if "WEBHOOK_ENABLE_" in k}
    assert len(target_ids) == 1
    [target] = target_ids
    assert env[f"MINIO_NOTIFY_WEBHOOK_ENABLE_{target}"] == "on"
    bridge_argv = next(commands_in(services["bridge"]["command"]))
    port = bridge_argv[bridge_argv.index("--port") + 1]
    assert env[f"MINIO_NOTIFY_WEBHOOK_ENDPOINT_{target}"] == f"http://bridge:{port}{WEBHOOK_PATH}"
    # The token MinIO sends is the one the bridge checks.
    token = env[f"MINIO_NOTIFY_WEBHOOK_AUTH_TOKEN_{target}"]
    assert token.startswith("${LANDMARKS_WEBHOOK_TOKEN")
    assert services["bridge"]["environment"]["LANDMARKS_WEBHOOK_TOKEN"].startswith("${LANDMARKS_WEBHOOK_TOKEN")
    # The one-shot mc service subscribes the photos bucket to that target, for puts and deletes.
    setup = (COMPOSE_FILE.parent / "minio-setup.sh").read_text()
    assert f'ARN="arn:minio:sqs::{target}:webhook"' in setup
    assert re.search(r"mc event add .*PHOTOS_BUCKET.*\"\$ARN\" --event put,delete", setup)


def test_compose_pins_minio_by_digest() -> None:
    services = compose()["services"]
    for name in ("minio", "minio-setup"):
        assert PINNED_DIGEST.search(services[name]["image"]), f"{name} is not pinned by digest"


def test_compose_secrets_come_from_the_env_file() -> None:
    """Every variable compose requires (${VAR:?...}) has a line in .env.example, and no secret is inline."""
    text = COMPOSE_FILE.read_text()
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    example = (COMPOSE_FILE.parent / ".env.example").read_text()
    documented = set(re.findall(r"^([A-Z0-9_]+)=", example, flags=re.MULTILINE))
    assert required and required <= documented, required - documented
    assert {"POSTGRES_PASSWORD", "LANDMARKS_WEBHOOK_TOKEN", "LANDMARKS_FLOWER__PASSWORD"} <= required
    flower_env = compose()["services"]["flower"]["environment"]
    assert "LANDMARKS_FLOWER__PASSWORD" in flower_env["FLOWER_BASIC_AUTH"]


def test_compose_services_have_health_checks() -> None:
    services = compose()["services"]
    one_shots = {name for name, s in services.items() if s.get("restart") == "no"}
    assert {"migrate", "minio-setup"} <= one_shots
    missing = [
        name for name, s in services.items() if name not in one_shots and name != "beat" and "healthcheck" not in s
    ]
    assert not missing


def _compose_client() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    if standalone and subprocess.run([standalone, "version"], capture_output=True).returncode == 0:
        return [standalone]
    return None


def test_docker_compose_config_validates() -> None:
    client = _compose_client()
    if client is None:
        pytest.skip("no docker compose client (neither the `docker compose` plugin nor `docker-compose`)")
    result = subprocess.run(
        [*client, "--env-file", ".env.example", "-f", "compose.yaml", "--profile", "cpu", "--profile", "gpu",
         "--profile", "tools", "config", "--quiet"],
        cwd=COMPOSE_FILE.parent, capture_output=True, text=True, timeout=60,
        env={**os.environ, "COMPOSE_PROFILES": ""},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


# --- Kubernetes ----------------------------------------------------------------------------------------------


def test_k8s_containers_run_real_commands() -> None:
    checked = 0
    for path, doc in k8s_documents():
        for container in pod_containers(doc):
            assert APP_IMAGE.match(container["image"]), f"{path.name}: image {container['image']}"
            check_argv([*container.get("command", []), *container.get("args", [])])
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                for argv in app_commands(container.get(probe, {}).get("exec", {}).get("command", [])):
                    check_argv(argv)
            checked += 1
    assert checked >= 8


def test_k8s_has_one_worker_deployment_per_queue() -> None:
    queues: set[str] = set()
    for _, doc in k8s_documents():
        for container in pod_containers(doc):
            queues |= worker_queues(container["command"])
    assert queues == set(QUEUES)


def test_k8s_gpu_workers_request_nvidia_gpus() -> None:
    [gpu] = [doc for _, doc in k8s_documents() if doc["metadata"]["name"] == "landmarks-worker-recognize-gpu"]
    [container] = pod_containers(gpu)
    assert int(container["resources"]["limits"]["nvidia.com/gpu"]) == 1
    assert {"name": "LANDMARKS_RECOGNITION__DEVICE", "value": "cuda"} in container["env"]
    assert container["image"] == "landmarks:cuda"


def test_k8s_scaled_objects_watch_queue_lists_of_real_deployments() -> None:
    deployments = {doc["metadata"]["name"]: doc for _, doc in k8s_documents() if doc["kind"] == "Deployment"}
    scaled = [doc for _, doc in k8s_documents() if doc["kind"] == "ScaledObject"]
    assert scaled
    for doc in scaled:
        target = deployments[doc["spec"]["scaleTargetRef"]["name"]]
        consumed = worker_queues(pod_containers(target)[0]["command"])
        for trigger in doc["spec"]["triggers"]:
            assert trigger["type"] == "redis"
            # kombu's list for a priority step is "<queue>\x06\x16<step>" (kombu.transport.redis Channel.sep)
            queue = trigger["metadata"]["listName"].split("\x06\x16")[0]
            assert queue in consumed, f"{doc['metadata']['name']} watches {queue!r}, its workers consume {consumed}"
            assert int(trigger["metadata"]["listLength"]) > 0
    watched = {t["metadata"]["listName"] for doc in scaled for t in doc["spec"]["triggers"]}
    assert "recognize" in watched


def test_k8s_kustomization_lists_existing_files() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
    for generator in kustomization["secretGenerator"]:
        for env_file in generator["envs"]:
            assert (K8S / f"{env_file}.example").is_file(), env_file
    gitignore = (DEPLOY / ".gitignore").read_text().split()
    assert {"k8s/secrets.env", "k8s/ops-secrets.env", "compose/.env"} <= set(gitignore)


def test_k8s_env_is_loaded_from_the_configmap_and_secret() -> None:
    names = {doc["metadata"]["name"] for _, doc in k8s_documents() if doc["kind"] == "ConfigMap"}
    for path, doc in k8s_documents():
        for container in pod_containers(doc):
            refs = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
            assert refs == names | {"landmarks-env"}, path.name


# --- systemd -------------------------------------------------------------------------------------------------


def read_unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # keys are case-sensitive in systemd
    parser.read_string(path.read_text())
    return parser


def unit_instances(path: Path) -> list[str | None]:
    if path.name == "landmarks-worker@.service":
        return list(QUEUES)
    if path.name.endswith("@.service"):
        return ["0"]
    return [None]


def unit_environment(path: Path) -> dict[str, str]:
    """Every Environment= assignment (configparser keeps only the last of repeated keys; systemd keeps all)."""
    lines = re.findall(r"^Environment=(.*)$", path.read_text(), flags=re.MULTILINE)
    return dict(entry.split("=", 1) for line in lines for entry in shlex.split(line))


def exec_start(path: Path, instance: str | None) -> list[str]:
    """ExecStart as systemd would run it: specifiers and ${VAR} from the unit's Environment= expanded."""
    line = read_unit(path)["Service"]["ExecStart"].lstrip("-@:+!")
    environment = unit_environment(path)
    if instance is not None:
        line = re.sub(r"(?<!%)%i", instance, line)
    line = line.replace("%%", "%")
    line = re.sub(r"\$\{(\w+)\}", lambda m: environment[m.group(1)], line)
    return shlex.split(line)


def test_systemd_units_run_real_commands() -> None:
    units = sorted(SYSTEMD.glob("*.service"))
    assert {p.name for p in units} >= {
        "landmarks-worker@.service",
        "landmarks-bridge.service",
        "landmarks-flower.service",
        "landmarks-beat.service",
    }
    queues: set[str] = set()
    for path in units:
        unit = read_unit(path)
        assert unit["Service"]["EnvironmentFile"].startswith("/etc/landmarks/"), path.name
        for instance in unit_instances(path):
            argv = exec_start(path, instance)
            assert Path(argv[0]).is_absolute(), f"{path.name}: systemd needs an absolute path: {argv[0]}"
            check_argv(argv)
            queues |= worker_queues(argv)
    assert queues == set(QUEUES)


def test_systemd_worker_unit_shuts_down_warm() -> None:
    """SIGTERM to Celery's main process only: the pool children finish their tasks (KillMode=mixed)."""
    service = read_unit(SYSTEMD / "landmarks-worker@.service")["Service"]
    assert service["KillMode"] == "mixed" and service["KillSignal"] == "SIGTERM"
    assert "-n %i@%%h" in service["ExecStart"]  # Celery's %h, not systemd's home directory


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd's own parser: unknown keys or bad values print warnings (ExecStart pointed at this venv)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    venv = Path(os.environ.get("VIRTUAL_ENV") or REPO_ROOT / ".venv")
    if not (venv / "bin" / "celery").exists():
        pytest.skip(f"no celery in {venv}/bin to stand in for /opt/landmarks/.venv")
    copies = []
    for path in sorted(SYSTEMD.glob("*.service")) + sorted(SYSTEMD.glob("*.target")):
        copy = tmp_path / path.name.replace("@.", "@ingest.")
        copy.write_text(path.read_text().replace("/opt/landmarks/.venv", str(venv)))
        copies.append(str(copy))
    result = subprocess.run([analyze, "verify", "--man=no", *copies], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


# --- the image -----------------------------------------------------------------------------------------------


@cache
def requirements_module() -> Any:
    spec = importlib.util.spec_from_file_location("deploy_requirements", DEPLOY / "docker" / "requirements.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_image_requirements_split_torch_from_the_rest() -> None:
    """The image installs the hashed runtime lock less torch, torchvision and PyPI's CUDA libraries, then torch and
    torchvision at their locked versions from the PyTorch index the build chose."""
    module = requirements_module()
    lock = REPO_ROOT / "requirements" / "runtime.txt"
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    [excluded] = re.findall(r'runtime\.txt --exclude "([^"]+)"', dockerfile)
    pins = module.read_lock(lock)
    torch = module.select(pins, only={"torch", "torchvision"})
    rest = module.select(pins, exclude=module._names(excluded))
    cuda = module.select(pins, only={"nvidia-*", "cuda-*", "triton"})
    assert sorted(p.name for p in torch) == ["torch", "torchvision"]
    declared = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert {f"{p.name}=={p.version}" for p in torch} <= set(declared)  # pinned: the CPU/CUDA index serves that version
    assert not {p.name for p in rest} & {p.name for p in torch + cuda}
    assert len(torch) + len(rest) + len(cuda) == len(pins)
    assert all(p.hashes for p in rest) and all("#" not in p.line() for p in rest)
    assert [p.line(hashes=False) for p in torch] == [f"{p.name}=={p.version}" for p in torch]
    with pytest.raises(ValueError, match="not in the lock"):
        module.select(pins, only={"no-such-package"})


def test_dockerfile_builds_from_python_slim_with_cpu_torch_by_default() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", text, flags=re.MULTILINE)
    assert re.search(r"^ARG TORCH_INDEX_URL=https://download\.pytorch\.org/whl/cpu$", text, flags=re.MULTILINE)
    for source in re.findall(r"^COPY (\S+) ", text, flags=re.MULTILINE):
        assert source == "." or (REPO_ROOT / source).exists(), source
    assert re.search(r"^USER landmarks$", text, flags=re.MULTILINE)


def test_k8s_migration_job_bypasses_pgbouncer() -> None:
    """Migrations hold a session-level advisory lock, which PgBouncer's transaction mode cannot keep."""
    [job] = [doc for _, doc in k8s_documents() if doc["kind"] == "Job"]
    [container] = pod_containers(job)
    assert container["command"] == ["landmarks", "db", "upgrade"]
    [database_url] = [e for e in container["env"] if e["name"] == "LANDMARKS_DATABASE_URL"]
    key = database_url["valueFrom"]["secretKeyRef"]
    example = (K8S / "ops-secrets.env.example").read_text()
    assert key["name"] == "landmarks-ops" and re.search(rf"^{key['key']}=postgresql\+psycopg2://", example, re.M)
