"""DRUM's environment: worker defaults that scale with the host, a listening socket per worker,
the user's settings kept; its address checked before anything starts."""

import socket
from pathlib import Path

import pytest

from tests.helpers import plan_of
from vllm_dropin.config import runtime_params
from vllm_dropin.contract import Layout, VllmEndpoint, WorkerContract
from vllm_dropin.errors import ExitCode, StartupError
from vllm_dropin.launch import drum_server

ADDRESS = "0.0.0.0:8080"
LAYOUT = Path("/run/vllm-dropin/layout.json")


@pytest.mark.parametrize(
    ("cpus", "workers"), [(None, 1), (1, 1), (2, 1), (3, 1), (4, 2), (8, 4), (16, 8), (64, 8), (128, 8)]
)
def test_default_workers(cpus, workers):
    assert drum_server.default_workers(cpus) == workers


@pytest.mark.parametrize(("user", "cpus", "workers"), [({}, 16, "8"), ({}, 4, "2"), ({"MAX_WORKERS": "3"}, 16, "3")])
def test_workers_follow_the_cores_the_plan_counted_and_the_users_count_wins(tmp_path, user, cpus, workers):
    settings = runtime_params.parse({"model": "m"})
    launch = plan_of(settings, [], tmp_path, cpus=cpus)  # the pipeline counts the cores it may run on
    env = drum_server.drum_env(launch, VllmEndpoint("http://x/v1", "k", "m"), user, ADDRESS, LAYOUT)
    assert env["MAX_WORKERS"] == workers


def test_workers_read_back_what_the_supervisor_wrote(tmp_path):
    launch = plan_of(runtime_params.parse({"model": "m", "max_tokens": 7}), [], tmp_path)
    endpoint = VllmEndpoint("http://127.0.0.1:1/v1", "key")
    env = drum_server.drum_env(launch, endpoint, {"TARGET_NAME": "answer"}, ADDRESS, LAYOUT)
    contract = WorkerContract.from_env(env)
    assert contract == WorkerContract(endpoint, launch.batch, launch.startup_timeout, str(LAYOUT), "answer")
    assert contract.batch.max_tokens == 7


@pytest.mark.parametrize(("set_rows", "rows"), [(None, 1024), (64, 64)])
def test_workers_take_rows_in_flight_from_the_layout_vllms_process_wrote(tmp_path, set_rows, rows):
    launch = plan_of(runtime_params.parse({"model": "m", "max_concurrent_rows": set_rows}), [], tmp_path)
    vllm_process_decided = Layout(1, 1, 2, 2, launch.batch.max_concurrent_rows or 1024, "data parallel 2")
    vllm_process_decided.write(tmp_path / "layout.json")
    env = drum_server.drum_env(launch, VllmEndpoint("http://x/v1", "k"), {}, ADDRESS, tmp_path / "layout.json")
    contract = WorkerContract.from_env(env)
    assert contract.batch.max_concurrent_rows == set_rows  # the supervisor does not guess it
    assert contract.batch_in(Layout.read(contract.layout_file)).max_concurrent_rows == rows


@pytest.mark.parametrize(
    ("address", "bound"),
    [
        ("0.0.0.0:8080", ("0.0.0.0", 8080)),
        ("[::]:8080", ("::", 8080)),
        ("localhost:9000", ("localhost", 9000)),
        ("tcp://0.0.0.0:8080", ("0.0.0.0", 8080)),
        ("unix:/tmp/drum.sock", None),
        ("fd://3", None),
        ("host:http", None),
    ],
)
def test_tcp_address(address, bound):
    assert drum_server.tcp_address(address) == bound


@pytest.mark.parametrize(
    ("address", "user", "args"),
    [
        (ADDRESS, {}, "--reuse-port"),  # a listening socket per worker: the kernel spreads connections
        ("unix:/tmp/drum.sock", {}, None),  # each worker's bind would unlink the others' socket file
        (ADDRESS, {"GUNICORN_CMD_ARGS": "--backlog 64"}, "--backlog 64"),
    ],
)
def test_workers_listen_on_sockets_of_their_own_unless_the_user_sets_gunicorns_args(tmp_path, address, user, args):
    launch = plan_of(runtime_params.parse({"model": "m"}), [], tmp_path)
    env = drum_server.drum_env(launch, VllmEndpoint("http://x/v1", "k", "m"), user, address, LAYOUT)
    assert env.get("GUNICORN_CMD_ARGS") == args


@pytest.mark.parametrize("shared", [False, True], ids=["plain", "SO_REUSEPORT"])
def test_an_address_another_process_listens_on_stops_the_launch(shared):
    with socket.socket() as other:  # with SO_REUSEPORT: a left-behind DRUM worker, which would share the port
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, int(shared))
        other.bind(("127.0.0.1", 0))
        other.listen()
        address = f"127.0.0.1:{other.getsockname()[1]}"
        with pytest.raises(StartupError) as raised:
            drum_server.check_address(address)
    assert raised.value.exit_code == ExitCode.STARTUP
    assert str(raised.value).startswith(f"DRUM's address {address} cannot be bound (Address already in use); ")
    assert "another process listens there: stop it, or give the entrypoint a free address" in str(raised.value)


def test_a_free_address_and_a_foreign_one():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = f"127.0.0.1:{probe.getsockname()[1]}"
    drum_server.check_address(free)
    drum_server.check_address("unix:/tmp/drum.sock")  # gunicorn binds it as before
    with pytest.raises(StartupError, match=r"^DRUM's address 192\.0\.2\.1:8080 cannot be bound \(.+\); give the"):
        drum_server.check_address("192.0.2.1:8080")  # not an address of this host
