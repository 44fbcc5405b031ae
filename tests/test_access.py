"""Storage and data that this process may not use are refused in one line, before any work: wrong
credentials at an S3 endpoint (moto's S3 server, on 127.0.0.1, with its IAM checks on: every key
is unknown to it, as a revoked or mistyped key is to AWS), and a folder the user may not write
(a real denial: mode 0555, and immutable when the tests run as root, whom no mode bit stops)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rxsweep.cluster import free_port

RXSWEEP = str(Path(sys.executable).with_name("rxsweep"))


@pytest.fixture
def s3_that_denies():
    """The environment of a client with wrong credentials, pointed at a local S3 server."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and server.poll() is None, "moto's S3 server did not start"
                time.sleep(0.2)
        # Keys in the environment come first in the AWS chain: nothing asks the EC2 metadata
        # service or any host but this one.
        yield {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "AKIAREVOKEDEXAMPLE",
               "AWS_SECRET_ACCESS_KEY": "not-the-secret", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_EC2_METADATA_DISABLED": "true"}
    finally:
        server.kill()
        server.wait(timeout=30)


def refused_in_one_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("rxsweep sweep: error:")]
    assert len(errors) == 1, done.stderr[-3000:]
    return errors[0]


@pytest.mark.parametrize("option", ["--storage", "--data"])
def test_wrong_credentials_at_a_uri_are_one_line_before_any_data_is_made(s3_that_denies, tmp_path, option):
    uri = "s3://lab-bucket/rxsweep"
    staging = tmp_path / "staging"
    args = ["--storage", uri] if option == "--storage" else ["--data", uri, "--storage", str(tmp_path / "store")]
    done = subprocess.run([RXSWEEP, "sweep", *args], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env={**s3_that_denies, "RXSWEEP_STAGING": str(staging)})
    said = refused_in_one_line(done)
    action = "cannot write there" if option == "--storage" else "cannot read it"
    assert f"{option} {uri}: {action}:" in said and "ACCESS_DENIED" in said, said
    assert "AWS_ACCESS_KEY_ID" in said  # what to check
    # refused before the synthetic data was generated and ingested (that took 27 s, then failed)
    assert not staging.exists() and not (tmp_path / "store" / "shards").exists()


@pytest.mark.parametrize("as_uri", [False, True])
def test_a_storage_folder_this_user_may_not_write_is_one_line_naming_it(tmp_path, as_uri):
    """A folder this user may not write: mode 0555, and for root (whom no mode bit stops) also
    immutable (chattr +i: a write is refused with EPERM, as on a read-only export)."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    immutable = os.geteuid() == 0
    if immutable and subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        pytest.skip("running as root on a filesystem without chattr +i: no folder here refuses a write")
    try:
        storage = f"file://{locked}/results" if as_uri else f"{locked}/results"
        done = subprocess.run([RXSWEEP, "sweep", "--storage", storage], capture_output=True, text=True, timeout=300,
                              cwd=tmp_path)
        said = refused_in_one_line(done)
        assert f"--storage {storage}: cannot write there:" in said, said
        assert ("Operation not permitted" if immutable else "Permission denied") in said, said
        assert "may write there" in said and list(locked.iterdir()) == []
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(locked)], check=True)
        locked.chmod(0o755)


def test_a_tune_failure_of_the_sweep_folders_files_is_said_as_the_file_and_its_cause(tmp_path):
    """Tune raises its loop's failures as a TuneError of traceback text; the sweep's error names
    the file and the cause instead (the whole path is run in tests/test_sweep.py)."""
    from rxsweep.tuning.tune_errors import said_as_os_error

    sqlite = ("Traceback (most recent call last):\n  File \"optuna/storages/_rdb/storage.py\", line 98\n"
              "sqlite3.OperationalError: unable to open database file\n\nThe above exception was the direct cause\n"
              "optuna.exceptions.StorageInternalError: An exception is raised during the commit. This typically "
              "happens due to invalid data in the commit, e.g. exceeding max length.\n")
    said = said_as_os_error(sqlite, tmp_path)
    assert str(said).startswith(f"{tmp_path / 'optuna.db'}: the search's Optuna study could not be written "
                                "(SQLite: unable to open database file)")
    full = said_as_os_error("Traceback\n  File \"x\"\nOSError: [Errno 28] No space left on device: '/s/tune/a.json'\n",
                            tmp_path)
    assert full.errno == 28 and str(full).startswith("[Errno 28] No space left on device: '/s/tune/a.json'")
    assert said_as_os_error("Traceback\nValueError: a trial's own bug\n", tmp_path) is None  # not ours to reword
