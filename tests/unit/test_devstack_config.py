"""How `dev up` turns settings into addresses and command lines (nothing is started here)."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from devtools.stack import postgres, redis_server, seaweed, stack
from devtools.stack.addresses import endpoint_host_port, host_port, is_local
from devtools.stack.apps import QUEUE_CONCURRENCY, AppSpec, app_specs, flower_login
from devtools.stack.readiness import CeleryPing, PortOpen, StaysAlive
from shared.settings import FlowerSettings, S3Settings, SeaweedSettings, Settings


@pytest.mark.parametrize(
    ("url", "default", "expected"),
    [
        ("redis://127.0.0.1:6379/0", 6379, ("127.0.0.1", 6379)),
        ("redis://:pw@localhost/1", 6379, ("localhost", 6379)),
        ("postgresql+psycopg2://postgres@127.0.0.1:55432/landmarks", 5432, ("127.0.0.1", 55432)),
        ("postgresql://u:p%40ss@db.example.com/x", 5432, ("db.example.com", 5432)),
        ("redis://[::1]:7000", 6379, ("::1", 7000)),
    ],
)
def test_host_port(url: str, default: int, expected: tuple[str, int]) -> None:
    assert host_port(url, default) == expected


def test_endpoint_without_scheme() -> None:
    assert endpoint_host_port("127.0.0.1:8333", 80) == ("127.0.0.1", 8333)
    assert endpoint_host_port("s3.example.com", 443) == ("s3.example.com", 443)


def test_url_without_host_is_an_error() -> None:
    with pytest.raises(ValueError, match="no host"):
        host_port("redis:///0", 6379)


def test_only_loopback_is_local() -> None:
    assert is_local("127.0.0.1") and is_local("localhost") and is_local("::1")
    assert not is_local("10.0.0.5")


def test_postgres_target_from_url() -> None:
    target = postgres.Target.from_url("postgresql+psycopg2://alice:s%3Acret@127.0.0.1:55432/albums")

    assert (target.host, target.port, target.user, target.password, target.database) == (
        "127.0.0.1", 55432, "alice", "s:cret", "albums",
    )  # fmt: skip
    assert target.address == "127.0.0.1:55432"


def test_postgres_target_defaults() -> None:
    target = postgres.Target.from_url("postgresql://127.0.0.1")
    assert (target.port, target.user, target.database) == (5432, "postgres", "postgres")


def test_redis_argv_binds_loopback_in_foreground(tmp_path: Path) -> None:
    argv = redis_server.server_argv("/usr/bin/redis-server", 16379, tmp_path)

    assert argv[0] == "/usr/bin/redis-server"
    options = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert options == {"--bind": "127.0.0.1", "--port": "16379", "--daemonize": "no", "--dir": str(tmp_path)}


def _flags(argv: list[str]) -> dict[str, str]:
    return dict(arg.lstrip("-").split("=", 1) for arg in argv[2:])


def test_weed_argv_has_every_port_explicit(tmp_path: Path) -> None:
    ports = SeaweedSettings(
        master_port=1001, master_grpc_port=1002, volume_port=1003, volume_grpc_port=1004, filer_port=1005,
        filer_grpc_port=1006, s3_port=1007, webdav_port=1008, admin_port=1009, admin_grpc_port=1010,
    )  # fmt: skip
    argv = seaweed.weed_argv("/venv/bin/weed", ports, tmp_path, tmp_path / "ids.json")
    flags = _flags(argv)

    assert argv[:2] == ["/venv/bin/weed", "mini"]
    assert flags["ip"] == flags["ip.bind"] == "127.0.0.1"
    ported = {k: int(v) for k, v in flags.items() if k.endswith((".port", ".grpc"))}
    assert ported == {
        "master.port": 1001, "master.port.grpc": 1002, "volume.port": 1003, "volume.port.grpc": 1004,
        "filer.port": 1005, "filer.port.grpc": 1006, "s3.port": 1007, "s3.port.grpc": 11007,
        "webdav.port": 1008, "admin.port": 1009, "admin.port.grpc": 1010,
    }  # fmt: skip
    assert flags["s3.port.iceberg"] == flags["s3.port.lance"] == "0"
    assert flags["s3.config"] == str(tmp_path / "ids.json")
    assert flags["master.telemetry"] == "false"
    # Everything weed writes stays in the state folder (not /tmp).
    for key in ("dir", "filer.localSocket", "s3.localSocket", "webdav.cacheDir", "admin.dataDir"):
        assert Path(flags[key]).is_relative_to(tmp_path), key


def test_s3_identity_config_grants_our_keys() -> None:
    config = seaweed.s3_identity_config("key", "secret")

    (identity,) = config["identities"]
    assert identity["credentials"] == [{"accessKey": "key", "secretKey": "secret"}]
    assert {"Admin", "Read", "Write", "List"} <= set(identity["actions"])
    json.dumps(config)  # it is written as JSON


def test_weed_binary_is_found_next_to_the_interpreter() -> None:
    assert Path(seaweed.weed_binary()).parent == Path(sys.executable).parent


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        state_dir=tmp_path,
        broker_url="redis://127.0.0.1:6390/0",
        flower=FlowerSettings(port=5999, user="u", password=SecretStr("hunter2")),
        s3=S3Settings(endpoint="127.0.0.1:8333"),
    )


def test_app_table_has_one_worker_per_queue(tmp_path: Path) -> None:
    specs = app_specs(_settings(tmp_path), Path("/venv/bin"))
    workers = [s for s in specs if s.name.startswith("worker-")]

    assert [s.name for s in workers] == [f"worker-{q}" for q in QUEUE_CONCURRENCY]
    for spec in workers:
        queue = spec.name.removeprefix("worker-")
        argv = list(spec.argv)
        assert argv[:4] == ["/venv/bin/celery", "-A", "workers.celery_app", "worker"]
        assert argv[argv.index("-Q") + 1] == queue
        assert argv[argv.index("-n") + 1] == f"{queue}@%h"
        assert argv[argv.index("--concurrency") + 1] == str(QUEUE_CONCURRENCY[queue])
        assert isinstance(spec.ready, CeleryPing)
        assert spec.ready.node.startswith(f"{queue}@") and spec.ready.broker_url == "redis://127.0.0.1:6390/0"


def test_app_table_beat_bridge_flower(tmp_path: Path) -> None:
    specs = {s.name: s for s in app_specs(_settings(tmp_path), Path("/venv/bin"))}

    beat = list(specs["beat"].argv)
    assert "beat" in beat and beat[beat.index("--schedule") + 1] == str(tmp_path / "celerybeat-schedule")
    assert specs["bridge"].argv == ("/venv/bin/landmarks", "bridge", "run")
    flower = specs["flower"]
    assert "--port=5999" in flower.argv and "--address=127.0.0.1" in flower.argv
    assert flower.ready == PortOpen("127.0.0.1", 5999)
    # The password goes through the environment, never the command line (visible to every user in `ps`).
    assert flower.env == {"FLOWER_BASIC_AUTH": "u:hunter2"}
    assert not any("hunter2" in arg for spec in specs.values() for arg in spec.argv)


def test_queue_table_matches_the_celery_app() -> None:
    from workers.celery_app import QUEUES

    assert set(QUEUE_CONCURRENCY) == set(QUEUES)


DUMMY = AppSpec("sleeper", ("sleep", "60"), ready=StaysAlive(0.1))


def test_select_everything_by_default() -> None:
    infra, apps = stack.select(None, [DUMMY])
    assert infra == ["postgres", "redis", "s3"] and apps == [DUMMY]


def test_select_services_only() -> None:
    assert stack.select(None, [DUMMY], services_only=True) == (["postgres", "redis", "s3"], [])


def test_select_only_keeps_table_order() -> None:
    assert stack.select(["s3", "postgres", "sleeper"], [DUMMY]) == (["postgres", "s3"], [DUMMY])


def test_select_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown service.*nope.*known: .*postgres"):
        stack.select(["nope", "redis"], [DUMMY])


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A folder under /tmp anyone may enter (pytest's own tmp_path sits in a root-only folder)."""
    path = Path(tempfile.mkdtemp(prefix="devstack-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_unreachable_parent_names_the_blocking_folder(open_tmp: Path) -> None:
    locked = open_tmp / "locked"
    (locked / "inner").mkdir(parents=True)
    locked.chmod(0o700)
    nobody = 65534

    assert postgres.unreachable_parent(locked / "inner" / "postgres", nobody) == locked
    assert postgres.unreachable_parent(open_tmp / "postgres", nobody) is None
    assert postgres.unreachable_parent(locked / "inner" / "postgres", 0) is None


def test_dev_status_says_how_to_sign_in_to_flower() -> None:
    assert (
        flower_login(FlowerSettings())
        == "Flower http://127.0.0.1:5555: user 'admin', password 'landmarks' (the default)"
    )
    own = flower_login(FlowerSettings(user="ops", password=SecretStr("s3cret"), port=5600))
    assert own == "Flower http://127.0.0.1:5600: user 'ops', the password in LANDMARKS_FLOWER__PASSWORD"
    assert "s3cret" not in own
