"""A command whose standard output's reader leaves (`modbusd check FILE | head`, `modbusd log -f | head`) ends
quietly: exit code 0, no traceback, no misleading error. Real pipes, real children, real servers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_cli import child_env, closed_pipe
from tests.test_cli_watch import Launch, connect, serve

WAIT = 20.0  # seconds: the machine is loaded


def many_points(path: Path, count: int) -> Path:
    lines = ["[[device]]"]
    for i in range(count):
        lines += ["[[device.point]]", f'name = "p{i}"', f'address = "{i}.hr"', f"value = {i}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def into_closed_pipe(*words: str) -> subprocess.Popen[str]:
    """`modbusd WORDS…` started with its standard output's reader already gone."""
    write_end = closed_pipe()
    try:
        return subprocess.Popen([sys.executable, "-m", "modbusd", *words], stdout=write_end, stderr=subprocess.PIPE,
                                text=True, env=child_env(), cwd="/")  # fmt: skip
    finally:
        os.close(write_end)


def ended_quietly(proc: subprocess.Popen[str]) -> None:
    _, stderr = proc.communicate(timeout=WAIT)
    assert (proc.returncode, stderr) == (0, "")


def test_check_whose_reader_leaves_after_one_line_ends_quietly(tmp_path: Path) -> None:
    """As `| head -1`: the reader takes a line and closes while modbusd still has far more than a pipe holds."""
    file = many_points(tmp_path / "big.toml", 3000)  # ~100 kB of summary: more than the 64 kB a pipe buffers
    proc = subprocess.Popen([sys.executable, "-m", "modbusd", "check", str(file)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=child_env(), cwd="/")  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().decode().endswith("big.toml: OK\n")
        proc.stdout.close()
        stderr = proc.stderr.read().decode()
        assert proc.wait(WAIT) == 0, stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)
    assert stderr == ""


def test_log_whose_reader_left_ends_quietly_not_as_a_lost_api(launch: Launch) -> None:
    """`modbusd log --follow | head`: a closed pipe is not the control API going away (exit 2 and a wrong line)."""
    port, api = serve(launch)
    follow = into_closed_pipe("log", "--follow", "--http", str(api))
    client = connect(port)
    try:
        deadline = time.monotonic() + WAIT  # requests until the follower has one to print, and leaves
        while follow.poll() is None and time.monotonic() < deadline:
            assert not client.read_holding_registers(7, count=1).isError()
            time.sleep(0.1)
    finally:
        client.close()
        if follow.poll() is None:
            follow.kill()
    ended_quietly(follow)
    ended_quietly(into_closed_pipe("log", "--http", str(api)))  # and the kept log, printed at once


@pytest.mark.parametrize("words", [["get", "0.hr:100"], ["watch", "0.hr:10"]], ids=["get", "watch"])
def test_api_clients_whose_reader_left_end_quietly(launch: Launch, words: list[str]) -> None:
    _, api = serve(launch)
    ended_quietly(into_closed_pipe(*words, "--http", str(api)))


def test_clone_to_standard_output_whose_reader_left_ends_quietly(launch: Launch) -> None:
    port, _ = serve(launch)
    proc = into_closed_pipe("clone", f"tcp:127.0.0.1:{port}", "--ranges", "hr:0-9", "--rate", "0")
    _, stderr = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, stderr
    assert all(line.startswith("modbusd clone: ") for line in stderr.splitlines()), stderr  # progress only
