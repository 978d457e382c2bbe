"""When does fanning files out to Dask pay off? `vae-anomaly score` timed end to end.

Set up the way a user would, each part a process of its own: a Prefect server
(`prefect server start`), a Dask cluster (`dask scheduler` and `dask worker --nworkers 2
--nthreads 1`, with `OMP_NUM_THREADS=1` as docs/operations.md advises), a model trained by
`vae-anomaly train`. Then for each batch shape (files x rows of the sample table's columns,
CSV) the same folder is scored (`--force`) sequentially, on that cluster
(`VAE_ANOMALY_SCORING__DASK_ADDRESS`) and on a local cluster started for the run
(`VAE_ANOMALY_SCORING__EXECUTOR=dask` without an address). Wall time of the whole command:
what a scheduler waits for.

    .venv/bin/python -m benchmarks.dask_crossover [--shapes 3x5000 4x100000 4x400000]

Writes benchmarks/results/dask.md. About 30 minutes on 2 cores with 3 repeats.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from benchmarks.common import DEFAULT_OUT, machine_description, md_header, md_row
from pipeline.sample_data import make_table

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(command, env=env, stdout=handle, stderr=subprocess.STDOUT)


def timed(command: list[str], env: dict[str, str], log: Path) -> tuple[float, int]:
    """Wall seconds of ``command`` and the number of lines it wrote to stderr (kept in ``log``)."""
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - started
    log.write_text(done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"{command} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds, len(done.stderr.strip().splitlines())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shapes", nargs="+", default=["3x5000", "4x100000", "4x400000", "4x1600000"]
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of each way (median)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/vae-anomaly-dask"))
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT / "dask.md")
    args = parser.parse_args()
    # a terminated benchmark stops the servers it started (the finally block below)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    prefect_port, dask_port = free_port(), free_port()
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{args.work / 'mlruns' / 'mlflow.db'}",
        "PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api",
        "PREFECT_HOME": str(args.work / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "VAE_ANOMALY_SCORING__OUTPUT_ROOT": str(args.work / "scored"),
        "VAE_ANOMALY_TRAINING__MAX_EPOCHS": "10",
    }
    workers_env = {**env, "OMP_NUM_THREADS": "1"}
    processes = []
    try:
        processes.append(
            start(
                [
                    str(BIN / "prefect"),
                    "server",
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(prefect_port),
                ],
                env,
                args.work / "prefect-server.log",
            )
        )
        wait_for(f"http://127.0.0.1:{prefect_port}/api/health")
        address = f"tcp://127.0.0.1:{dask_port}"
        processes.append(
            start(
                [
                    str(BIN / "dask"),
                    "scheduler",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(dask_port),
                    "--no-dashboard",
                ],
                workers_env,
                args.work / "dask-scheduler.log",
            )
        )
        processes.append(
            start(
                [
                    str(BIN / "dask"),
                    "worker",
                    address,
                    "--nworkers",
                    "2",
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                ],
                workers_env,
                args.work / "dask-workers.log",
            )
        )
        train = args.work / "train.csv"
        make_table(20000, seed=1).to_csv(train, index=False)
        cli = str(BIN / "vae-anomaly")
        subprocess.run([cli, "train", str(train), "--no-progress"], env=env, check=True)
        # the first run on a fresh cluster: each worker process imports the code and loads the
        # model once (then keeps it for later runs)
        warm = args.work / "in-warm-up"
        warm.mkdir()
        make_table(1000, seed=99).to_csv(warm / "part0.csv", index=False)
        remote_env = {
            **env,
            "VAE_ANOMALY_SCORING__EXECUTOR": "dask",
            "VAE_ANOMALY_SCORING__DASK_ADDRESS": address,
        }
        cold, _ = timed(
            [cli, "score", str(warm), "--top", "0", "--run-date", "2026-01-01"],
            remote_env,
            args.work / "warm-up.stderr",
        )
        print(f"first run on the fresh cluster: {cold:.1f} s", flush=True)
        rows = []
        for shape in args.shapes:
            n_files, n_rows = (int(v) for v in shape.split("x"))
            folder = args.work / f"in-{shape}"
            folder.mkdir()
            for i in range(n_files):
                make_table(n_rows, seed=100 + i).to_csv(folder / f"part{i}.csv", index=False)
            # outputs of each shape apart: the same file names hold other rows in each shape
            score = [cli, "score", str(folder), "--force", "--top", "0"]
            score += ["--output-root", str(args.work / f"scored-{shape}"), "--run-date"]
            logs = args.work / f"logs-{shape}"
            logs.mkdir()
            local_env = {**env, "VAE_ANOMALY_SCORING__EXECUTOR": "dask", "OMP_NUM_THREADS": "1"}
            runs: dict[str, list[float]] = {"sequential": [], "cluster": [], "local": []}
            lines_of: dict[str, int] = {}
            for repeat in range(args.repeats):
                # the three ways in turn, so a slow spell of the machine hits each alike
                for day, (name, how) in enumerate(
                    [("sequential", env), ("cluster", remote_env), ("local", local_env)], 1
                ):
                    seconds, n_lines = timed(
                        [*score, f"2026-01-0{day}"], how, logs / f"{name}-{repeat}.stderr"
                    )
                    runs[name].append(seconds)
                    lines_of[name] = max(n_lines, lines_of.get(name, 0))
            sequential, remote, local = (
                statistics.median(runs[k]) for k in ("sequential", "cluster", "local")
            )
            remote_lines, local_lines = lines_of["cluster"], lines_of["local"]
            row = (shape, n_files * n_rows, sequential, remote, local, remote_lines, local_lines)
            print(row, flush=True)
            rows.append(row)
    finally:
        for process in reversed(processes):
            process.send_signal(signal.SIGINT)  # as Ctrl-C: each stops its children too
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    lines = [
        "# Dask fan-out against sequential scoring: `vae-anomaly score` end to end",
        "",
        f"`python -m benchmarks.dask_crossover --shapes {' '.join(args.shapes)} --repeats "
        f"{args.repeats}` on "
        f"{machine_description()}. Each batch: files of the sample table's columns (CSV), "
        "scored with `--force`; median wall time over the repeats (the three ways taken in turn) "
        "of the whole command (process start, Prefect flow, "
        "resolving and loading the model, scoring, writing). Sequential: the flow's process, "
        "torch on every core. Dask cluster: `dask scheduler` + `dask worker --nworkers 2 "
        "--nthreads 1` started beforehand (`OMP_NUM_THREADS=1`). Local cluster: "
        "`VAE_ANOMALY_SCORING__EXECUTOR=dask` without an address (2 worker processes started "
        "and stopped by each run). A Prefect server (`prefect server start`) serves all runs. "
        f"The cluster was warmed up by one run of 1,000 rows first ({cold:.1f} s: each worker "
        "process imports the code and loads the model once, then keeps it).",
        "",
        *md_header(
            [
                "files x rows",
                "rows",
                "sequential s",
                "Dask cluster s",
                "speed-up",
                "local cluster s",
                "speed-up",
                "stderr lines, most (cluster, local)",
            ],
            "lrrrrrrr",
        ),
        *[
            md_row(
                shape,
                f"{total:,}",
                f"{seq:.1f}",
                f"{remote:.1f}",
                f"{seq / remote:.2f}x",
                f"{local:.1f}",
                f"{seq / local:.2f}x",
                f"{rl}, {ll}",
            )
            for shape, total, seq, remote, local, rl, ll in rows
        ],
        "",
    ]
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
