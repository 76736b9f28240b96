"""An existing Ray cluster: `ray start --head` on the loopback address, with token authentication.

The head is started as a new user would (`ray start --head --port=P --node-ip-address=127.0.0.1
--num-cpus=2`) with its own token (Ray 2.60 turns token authentication on by default when a token
exists). Ray rewrites a loopback address to the machine's outward IP unless
`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` (its switch for a single-machine cluster), so that variable is
set for the head and for the clients. The clients run in subprocesses (Ray's client state and the
token environment are process-global): one shows the one-line error without and with a wrong token
and then runs a sweep with ``token=``; one lets Ray rewrite the loopback address and gets the
one-line error naming the variable; one passes the token as ``RAY_AUTH_TOKEN``. Their numbers
must equal the local pool's. The head runs with ``--block`` in its own session and is stopped by
its process id in a ``finally`` (``ray stop`` would kill every Ray on the machine).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from multilens.experiments.executors import LocalExecutor
from multilens.experiments.store import Store
from multilens.experiments.sweep import run_sweep
from multilens.lenses.scaling.study import TASK, ScalingConfig, design

try:
    import ray  # noqa: F401

    HAVE_RAY = True
except ImportError:
    HAVE_RAY = False

pytestmark = [pytest.mark.ray, pytest.mark.skipif(not HAVE_RAY, reason="`ray` cannot be imported")]

SRC = str(Path(__file__).resolve().parents[2] / "src")


def tiny_configs(n: int = 2) -> list[dict]:
    cfg = ScalingConfig(budgets=(2e5, 4e5, 8e5), widths=(2, 4, 8), min_examples=64, max_examples=4096, n_test=256)
    return design(cfg)[:n]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(
        PYTHONPATH=SRC + os.pathsep + env.get("PYTHONPATH", ""),
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
        RAY_USAGE_STATS_ENABLED="0",
    )
    env.update(extra)
    return env


@pytest.fixture
def ray_head(tmp_path):
    """A token-protected Ray head on 127.0.0.1; yields (address, token); always stopped."""
    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    assert ray_bin, "the `ray` command is not installed next to this Python"
    # Ray's unix sockets live under the temp dir and must stay below ~107 characters.
    temp_dir = tmp_path / "ray" if len(str(tmp_path)) < 40 else Path(tempfile.mkdtemp(prefix="mlray", dir="/tmp"))
    port, token = _free_port(), secrets.token_hex(32)
    log = tmp_path / "ray_head.log"
    cmd = [ray_bin, "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
           f"--temp-dir={temp_dir}", "--include-dashboard=false", "--disable-usage-stats"]  # fmt: skip
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            env=_env(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token),
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text():
            assert proc.poll() is None, f"`ray start --head` exited:\n{log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"`ray start --head` not up after 120 s:\n{log.read_text()[-2000:]}"
            time.sleep(0.5)
        yield f"127.0.0.1:{port}", token
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # --block: ray start stops its own processes
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # leftovers of the session this test started, if any
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)
        if not str(temp_dir).startswith(str(tmp_path)):
            shutil.rmtree(temp_dir, ignore_errors=True)


CLIENT = textwrap.dedent(
    """
    import json, sys
    from multilens.errors import ConfigError
    from multilens.experiments.executors import make_executor
    from multilens.experiments.store import Store
    from multilens.experiments.sweep import run_sweep
    from multilens.lenses.scaling.study import TASK

    args = json.loads(sys.argv[1])
    out = {"errors": {}}
    for name, tok in (("no_token", None), ("wrong_token", "0" * 64)):
        if name in args["try"]:
            try:
                make_executor("ray", workers=2, address=args["address"], token=tok).close()
                out["errors"][name] = None
            except ConfigError as e:
                out["errors"][name] = str(e)
    ex = make_executor("ray", workers=2, address=args["address"], token=args.get("token"))
    try:
        with Store(args["store"]) as s:
            rep = run_sweep("t", TASK, args["configs"], args["seeds"], s, ex)
            out["failed"] = rep.failed
            out["errors_runs"] = [r.error[:500] for r in s.runs(status="failed")]
    finally:
        ex.close()
    print("RESULT " + json.dumps(out))
    """
)


def _client(args: dict, env: dict[str, str]) -> dict:
    p = subprocess.run(
        [sys.executable, "-c", CLIENT, json.dumps(args)], env=env, capture_output=True, text=True, timeout=300
    )
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    assert p.returncode == 0 and lines, f"client failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT ") :])


def _metrics(path: Path) -> dict:
    with Store(path) as s:
        return {
            (r.config_hash, r.seed): {k: v for k, v in r.metrics.items() if not k.endswith("wall_time_s")}
            for r in s.runs(status="done")
        }


def test_existing_token_cluster_sweep_matches_local_pool_and_names_the_token(ray_head, tmp_path):
    address, token = ray_head
    cfgs, seeds = tiny_configs(2), [0, 1]
    local = LocalExecutor(workers=2)
    try:
        with Store(tmp_path / "local.sqlite") as s:
            assert run_sweep("t", TASK, cfgs, seeds, s, local).failed == 0
    finally:
        local.close()
    want = _metrics(tmp_path / "local.sqlite")
    assert len(want) == 4

    # A new user: no token, then a wrong one; then the token as an option.
    out = _client(
        {"address": address, "token": token, "try": ["no_token", "wrong_token"], "configs": cfgs, "seeds": seeds,
         "store": str(tmp_path / "ray_opt.sqlite")},
        _env(),
    )  # fmt: skip
    no_tok, wrong = out["errors"]["no_token"], out["errors"]["wrong_token"]
    assert no_tok is not None and "\n" not in no_tok
    assert "requires an authentication token and none was sent" in no_tok
    assert "RAY_AUTH_TOKEN" in no_tok and "ray get-auth-token" in no_tok and address in no_tok
    assert "check the address" not in no_tok
    assert wrong is not None and "rejected the token" in wrong and "RAY_AUTH_TOKEN" in wrong
    assert out["failed"] == 0, out["errors_runs"]
    assert _metrics(tmp_path / "ray_opt.sqlite") == want

    # A client that lets Ray rewrite the loopback address (the default) is told why it cannot connect.
    code = (
        "from multilens.errors import ConfigError\n"
        "from multilens.experiments.executors import make_executor\n"
        f"try:\n    make_executor('ray', workers=2, address={address!r}, token={token!r}).close()\n"
        "except ConfigError as e:\n    print('ERROR ' + str(e))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], env=_env(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="1"),
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    err = [ln for ln in p.stdout.splitlines() if ln.startswith("ERROR ")]
    assert err, p.stdout[-1000:] + p.stderr[-2000:]
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0" in err[0] and "where nothing listens" in err[0]

    # The token in the environment variable, as the CLI user passes it.
    out = _client(
        {"address": address, "try": [], "configs": cfgs, "seeds": seeds, "store": str(tmp_path / "ray_env.sqlite")},
        _env(RAY_AUTH_TOKEN=token),
    )
    assert out["failed"] == 0, out["errors_runs"]
    assert _metrics(tmp_path / "ray_env.sqlite") == want


def test_nothing_listening_says_check_the_address():
    from multilens.errors import ConfigError
    from multilens.experiments.executors import RayExecutor

    port = _free_port()  # bound and released: nothing listens there now
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as e:
        RayExecutor(address=f"127.0.0.1:{port}", workers=1)
    msg = str(e.value)
    assert "\n" not in msg and "could not connect" in msg and "check the address" in msg and "token" not in msg
    assert time.monotonic() - t0 < 30  # not Ray's 40 s reconnect window


# Metrics that measure time differ between any two runs, wherever they run; everything else must match.
_TIMING = ("timing", "wall", "speed", "latency", "_time", "throughput", "straggler", "comm_", "latency_front")


def _smoke_run(out: Path, env: dict[str, str], policy: Path, *extra: str) -> dict:
    cmd = [sys.executable, "-m", "multilens.cli", "run", "--profile", "smoke", "--no-stress", "--workers", "2",
           "--config", str(policy), "--out", str(out), *extra]  # fmt: skip
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200)
    assert p.returncode == 0, f"exit {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    summary = json.loads((out / "summary.json").read_text())
    return {k: v for k, v in summary["metrics"].items() if not any(t in k for t in _TIMING)}


def test_smoke_protocol_on_an_existing_cluster_gives_the_local_pool_numbers(ray_head, tmp_path):
    """`multilens run --executor ray --address ...` (token in RAY_AUTH_TOKEN) against the local pool."""
    address, token = ray_head
    default = (Path(SRC) / "multilens/defaults/policy.toml").read_text()
    policy = tmp_path / "warn.toml"  # smoke models are barely trained: release gates only warn here
    policy.write_text(default.replace('action = "stop"', 'action = "warn"').replace('then = "stop"', 'then = "warn"'))
    config = tmp_path / "run.toml"
    config.write_text(f'policy = "{policy}"\n')
    local = _smoke_run(tmp_path / "local", _env(), config)
    on_ray = _smoke_run(tmp_path / "ray", _env(RAY_AUTH_TOKEN=token), config, "--executor", "ray", "--address", address)
    assert len(local) > 100
    assert on_ray.keys() == local.keys()
    differ = {k: (local[k], on_ray[k]) for k in local if local[k] != on_ray[k]}
    assert not differ, differ
