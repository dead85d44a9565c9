"""The run directory: atomic files, the lock, checkpoints, config.json and metrics.csv.

    config.json        what was run (algorithm, Config, seeds, sweep, intervals); --resume reads it
    metrics.csv        one row per run per log point, appended and fsynced after every chunk
    checkpoint.npz     the training state (one array per leaf, leading axis = runs) and the host state
    checkpoint.prev.npz  the checkpoint before it, kept in case the newest is damaged
    summary.json, curve.png   written at the end
    lock               pid and host of the process using the directory

Every file is written to a temp file beside it, fsynced, then renamed over the old one, so a crash
leaves the old or the new file, never a mix. A write that fails (disk full, read-only) removes its
temp file and raises `OutputError` naming the path.
"""
from __future__ import annotations

import csv
import errno
import json
import math
import os
import socket
import zipfile
from typing import Any, List, Optional, Tuple

import numpy as np

from .config import ConfigError

CHECKPOINT = "checkpoint.npz"
PREVIOUS = "checkpoint.prev.npz"
CONFIG = "config.json"
METRICS = "metrics.csv"
LOCK = "lock"
OUTPUTS = (CHECKPOINT, PREVIOUS, METRICS, "summary.json", "curve.png")  # what overwrite removes


class OutputError(ConfigError):
    """A file of the run directory could not be written or read back."""


def json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def nan_to_none(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def _write_failed(path: str, e: OSError) -> OSError:
    return OSError(e.errno or errno.EIO, e.strerror or str(e), path)


def atomic_write(path: str, write, keep_old_as: Optional[str] = None) -> None:
    """`write(f)` into a temp file beside `path`, fsync, rename over `path` (the old file renamed to
    `keep_old_as` first, where given)."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if keep_old_as and os.path.exists(path):
            os.replace(path, keep_old_as)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise _write_failed(path, e) from None


def atomic_write_json(path: str, obj) -> None:
    data = (json.dumps(obj, indent=2, default=json_default) + "\n").encode()
    atomic_write(path, lambda f: f.write(data))


def read_json(path: str, what: str = "") -> dict:
    """A JSON object from `path`, or a ConfigError naming the file and what is wrong with it."""
    try:
        with open(path) as f:
            obj = json.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file{what}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg}); "
                          f"it is damaged or not an rlx file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} cannot be read: {e}") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{path} holds a JSON {type(obj).__name__}, not an object; it is not an rlx file")
    return obj


# --------------------------------------------------------------------------------------------
# the lock


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lock:
    """`out/lock` holds {"pid", "host"} while a process uses the directory. A lock left by a process
    of this host that no longer runs is taken over; a live one (or one from another host) refuses."""

    def __init__(self, out: str, flag: str):
        self.path = os.path.join(out, LOCK)
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode()
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    with open(self.path) as f:
                        held = json.load(f)
                    pid, host = int(held["pid"]), str(held["host"])
                except (OSError, ValueError, KeyError, TypeError):
                    pid, host = -1, socket.gethostname()  # unreadable: half-written by a crashed process
                if host != socket.gethostname() or (pid > 0 and _pid_alive(pid)):
                    raise ConfigError(f"{flag} {out} is in use by process {pid} on {host} (lock file {self.path}); "
                                      f"wait for it to finish or choose another directory. If that process is "
                                      f"gone, delete {self.path}") from None
                print(f"taking over the stale lock {self.path} of process {pid}, which no longer runs", flush=True)
                try:
                    os.remove(self.path)
                except FileNotFoundError:
                    pass
                if pid > 0:
                    remove_temp_files(out, pid)  # what the dead process was writing when it stopped
                continue
            except OSError as e:
                raise OutputError(f"{flag} {out!r} is not writable ({e.strerror}); choose another directory") from None
            try:
                os.write(fd, me)
            finally:
                os.close(fd)
            return
        raise ConfigError(f"{flag} {out}: could not take the lock {self.path}")

    def release(self) -> None:
        try:
            os.remove(self.path)
        except OSError:
            pass


# --------------------------------------------------------------------------------------------
# checkpoints


def save_checkpoint(out: str, leaves: List[np.ndarray], host: dict) -> None:
    """Write checkpoint.npz atomically, keeping the one before as checkpoint.prev.npz."""
    path, prev = os.path.join(out, CHECKPOINT), os.path.join(out, PREVIOUS)
    arrays = {"host": np.asarray(json.dumps(host, default=json_default)),
              **{f"leaf_{i}": np.asarray(x) for i, x in enumerate(leaves)}}
    atomic_write(path, lambda f: np.savez(f, **arrays), keep_old_as=prev)


def read_checkpoint(path: str) -> Tuple[List[np.ndarray], dict]:
    """(leaves, host state) of a checkpoint, every array read (and its CRC checked); ConfigError
    naming the file and what is wrong when it is damaged."""
    try:
        with np.load(path) as z:
            host = json.loads(str(z["host"]))
            n = sum(1 for k in z.files if k.startswith("leaf_"))
            leaves = [z[f"leaf_{i}"] for i in range(n)]
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (zipfile.BadZipFile, EOFError, ValueError, KeyError, OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is damaged ({type(e).__name__}: {e}); it was cut short or overwritten") from None
    check_host = {"chunk", "csv_bytes"} - set(host)
    if check_host:
        raise ConfigError(f"{path} lacks the host state {sorted(check_host)}; it was not written by this version of rlx")
    return leaves, host


def restore(path: str, leaves: List[np.ndarray], template):
    """Put checkpoint `leaves` into the structure of `template` (shapes checked)."""
    import jax

    leaves_t, treedef = jax.tree.flatten(template)
    if len(leaves) != len(leaves_t):
        raise ConfigError(f"{path} holds {len(leaves)} arrays but this run's state has {len(leaves_t)}: "
                          f"it was written by a different configuration or version")
    for i, (a, t) in enumerate(zip(leaves, leaves_t)):
        if a.shape != tuple(t.shape):
            raise ConfigError(f"{path}: array {i} has shape {a.shape}, expected {tuple(t.shape)}")
    return jax.tree.unflatten(treedef, leaves)


def load_latest_checkpoint(out: str, what: str) -> Tuple[str, List[np.ndarray], dict]:
    """The newest readable checkpoint of `out`: checkpoint.npz, else (with a printed notice)
    checkpoint.prev.npz, which then becomes checkpoint.npz; the damaged file is kept beside it."""
    path, prev = os.path.join(out, CHECKPOINT), os.path.join(out, PREVIOUS)
    if not os.path.exists(path) and not os.path.exists(prev):
        raise ConfigError(f"{what}: no {CHECKPOINT} in {out}; nothing to resume")
    try:
        return (path, *read_checkpoint(path))
    except ConfigError as e:
        if not os.path.exists(prev):
            raise ConfigError(f"{what}: {e}; there is no earlier checkpoint ({PREVIOUS}) to fall back to. "
                              f"Start again with a new directory") from None
        try:
            leaves, host = read_checkpoint(prev)
        except ConfigError as e2:
            raise ConfigError(f"{what}: {e}; and {e2}. Start again with a new directory") from None
        print(f"{e}; resuming from the checkpoint before it ({PREVIOUS}, chunk {host['chunk']})", flush=True)
        if os.path.exists(path):
            os.replace(path, os.path.join(out, "checkpoint.damaged.npz"))
        os.replace(prev, path)
        return path, leaves, host


# --------------------------------------------------------------------------------------------
# config.json and the directory


class RunDir:
    """An output directory in use: created/checked and locked by `open`, started by `begin` (old
    outputs removed, config.json written) once the run has passed every check, released by `close`
    (which removes the directory again if this process created it and nothing was written)."""

    def __init__(self, out: str, resume: bool, overwrite: bool, meta: dict, names: dict):
        """`names` spells the options in messages (flags for the command line, keywords for Python)."""
        self.out, self.resume, self.meta = out, resume, meta
        flag = names["out"]
        self.created = not os.path.isdir(out)
        try:
            os.makedirs(out, exist_ok=True)
            probe = os.path.join(out, f".write_test{os.getpid()}")
            with open(probe, "w") as f:
                f.write("ok")
            os.remove(probe)
        except OSError as e:
            raise OutputError(f"{flag} {out!r} is not writable ({e.strerror}); choose another directory") from None
        self.lock = Lock(out, flag)
        try:
            cfg_path = os.path.join(out, CONFIG)
            if resume:
                saved = read_json(cfg_path, f"; is {out} an rlx run directory?")
                diffs = diff(saved, json.loads(json.dumps(meta, default=json_default)))
                if diffs:
                    raise ConfigError(f"{resume_hint(names, out)}: this run's settings differ from the saved ones in "
                                      f"{cfg_path}: {'; '.join(diffs)}. Resume with the same settings, or start a "
                                      f"new {flag}")
            elif not overwrite and (os.path.exists(os.path.join(out, CHECKPOINT)) or
                                    os.path.exists(os.path.join(out, PREVIOUS))):
                raise ConfigError(f"{flag} {out} already holds a run; continue it with {resume_hint(names, out)} "
                                  f"or replace it with {names['overwrite']} (or choose a new {flag})")
        except BaseException:
            self.close()
            raise

    def begin(self) -> None:
        if not self.resume:
            for f in OUTPUTS:
                if os.path.exists(os.path.join(self.out, f)):
                    os.remove(os.path.join(self.out, f))
            atomic_write_json(os.path.join(self.out, CONFIG), self.meta)

    def close(self) -> None:
        remove_temp_files(self.out)
        self.lock.release()
        if self.created:
            try:
                os.rmdir(self.out)  # only if empty: a run refused before it began leaves nothing behind
            except OSError:
                pass


def resume_hint(names: dict, out: str) -> str:
    """How to continue the run in `out`: `--resume OUT` on the command line, `resume=True` in Python."""
    return f"{names['resume']} {out}" if names["resume"].startswith("--") else names["resume"]


def diff(a, b, path="") -> List[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += diff(a.get(k), b.get(k), f"{path}.{k}" if path else k)
        return out
    return [] if a == b else [f"{path}: saved {a!r}, now {b!r}"]


# --------------------------------------------------------------------------------------------
# metrics.csv


def append_csv(path: str, rows: List[dict]) -> int:
    """Append rows (header first if the file is new), fsync; returns the file's size."""
    try:
        exists = os.path.exists(path) and os.path.getsize(path) > 0
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
            if not exists:
                w.writeheader()
            w.writerows(rows)
            f.flush()
            os.fsync(f.fileno())
            return f.tell()
    except OSError as e:
        raise _write_failed(path, e) from None


def truncate(path: str, nbytes: int) -> None:
    if os.path.exists(path):
        with open(path, "r+b") as f:
            f.truncate(nbytes)


def read_csv(path: Optional[str]) -> List[dict]:
    if not path or not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        rows = []
        for row in csv.DictReader(f):
            conv: dict[str, Any] = {}
            for k, v in row.items():
                try:
                    conv[k] = int(v) if v.lstrip("-").isdigit() else float(v)
                except ValueError:
                    conv[k] = v
            rows.append(conv)
        return rows


def remove_temp_files(out: str, pid: Optional[int] = None) -> None:
    """Temp files that process `pid` (default: this one) left in `out` (after a failed write or a kill)."""
    tag = f".tmp{pid or os.getpid()}"
    try:
        for name in os.listdir(out):
            if tag in name:
                try:
                    os.remove(os.path.join(out, name))
                except OSError:
                    pass
    except OSError:
        pass
