"""One student's code in one fresh, limited process.

Layers, each one used where the machine offers it (`features()` says which are on):

  rlimits        address space (a memory bomb gets MemoryError), CPU seconds, file size
                 (an output flood gets EFBIG), processes (RLIMIT_NPROC; not enforced for root)
  pids cgroup    a hard cap on the processes of this one submission (fork bomb), and a way
                 to kill all of them at once; needs a writable cgroup (root, or delegated)
  network ns     `unshare(CLONE_NEWNET)`: no interface but a downed loopback (root, or an
                 unprivileged user namespace where the kernel allows it)
  capabilities   as root, every capability is dropped before the student's code runs, so it
                 cannot raise its limits, leave the namespace or read files it does not own
  Landlock       (Linux >= 5.13) read-only access to the Python installation and the llmlab
                 package, read-write to the submission's own temporary folder, nothing else:
                 not the other submissions, the grade files, the solutions or ~/.ssh. From
                 ABI 4 also no TCP connect/bind, from ABI 6 no signals to processes outside
  environment    an allow-list (no tokens, no credentials), one CPU thread, HOME = the temp dir

What none of this is: a container. The kernel is shared; Landlock does not cover UDP or
/proc of the process itself; and where a layer is unavailable the grader says so in
`run.json` and carries on with the others. High-stakes exams belong in a container or VM.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

RUNNER = Path(__file__).with_name("runner.py")


@dataclass(frozen=True)
class Limits:
    # Time limits count the submission's own time (see OwnClock): wall-clock seconds minus those it
    # spent waiting for a CPU, so a busy grading machine does not fail a correct notebook.
    cell_timeout: float = 30.0  # own seconds for one notebook cell or one probe
    submission_timeout: float = 120.0  # own seconds for a whole submission, all attempts, start-up excluded
    memory_mb: int = 2048  # address space of the student's process (torch alone maps ~1 GB)
    max_processes: int = 32  # processes/threads of one submission (pids cgroup) or extra ones (RLIMIT_NPROC)
    cpu_threads: int = 1  # torch / OpenMP / MKL threads in the student's process
    max_file_mb: int = 16  # largest file the student's process may write (its own stdout log included)
    attempts: int = 4  # a cell that kills its process is skipped and the notebook re-run, this many times at most

    def __post_init__(self):
        for name in ("cell_timeout", "submission_timeout", "memory_mb", "max_processes", "cpu_threads", "max_file_mb", "attempts"):
            if not getattr(self, name) > 0:
                raise ValueError(f"Limits.{name}={getattr(self, name)!r}: expected a positive number")


# ----------------------------------------------------------------------------- Landlock
_SYS_CREATE, _SYS_ADD, _SYS_RESTRICT = 444, 445, 446  # the same on every Linux architecture
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 14, 1 << 15
_NET_ALL = (1 << 0) | (1 << 1)  # bind and connect TCP
_SCOPE_ALL = (1 << 0) | (1 << 1)  # abstract unix sockets, signals
_PR_SET_NO_NEW_PRIVS, _PR_CAPBSET_DROP, _PR_SET_SECUREBITS = 38, 24, 28
_CLONE_NEWUSER, _CLONE_NEWNET = 0x10000000, 0x40000000

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64), ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


@lru_cache(maxsize=None)
def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 where Landlock is missing or disabled."""
    if not sys.platform.startswith("linux"):
        return 0
    v = _libc.syscall(_SYS_CREATE, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(int(v), 0)


def _fs_rights(abi: int) -> int:
    rights = (1 << 13) - 1  # ABI 1: execute ... make_sym
    if abi >= 2:
        rights |= 1 << 13  # refer
    if abi >= 3:
        rights |= _FS_TRUNCATE
    if abi >= 5:
        rights |= _FS_IOCTL_DEV
    return rights


def _landlock_restrict(abi: int, read_paths: list[str], write_paths: list[str]) -> None:
    """Runs in the child before exec: from here on, only these paths exist for it."""
    handled = _fs_rights(abi)
    attr = _RulesetAttr(handled, _NET_ALL if abi >= 4 else 0, _SCOPE_ALL if abi >= 6 else 0)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    fd = _libc.syscall(_SYS_CREATE, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    if fd < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset failed")
    file_rights = _FS_EXECUTE | _FS_WRITE_FILE | _FS_READ_FILE | (_FS_TRUNCATE if abi >= 3 else 0) | (_FS_IOCTL_DEV if abi >= 5 else 0)
    for paths, rights in ((read_paths, _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR), (write_paths, handled)):
        for p in paths:
            try:
                pfd = os.open(p, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            allowed = rights if os.path.isdir(p) else rights & file_rights
            rule = _PathBeneath(allowed & handled, pfd)
            if _libc.syscall(_SYS_ADD, ctypes.c_int(fd), ctypes.c_int(1), ctypes.byref(rule), ctypes.c_uint32(0)) != 0:
                os.close(pfd)
                raise OSError(ctypes.get_errno(), f"landlock_add_rule failed for {p}")
            os.close(pfd)
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")
    if _libc.syscall(_SYS_RESTRICT, ctypes.c_int(fd), ctypes.c_uint32(0)) != 0:
        raise OSError(ctypes.get_errno(), "landlock_restrict_self failed")
    os.close(fd)


# ----------------------------------------------------------------------------- what the student's Python may read
@lru_cache(maxsize=None)
def python_read_paths() -> tuple[str, ...]:
    """Everything a fresh `python -I` with torch and llmlab needs to read, and no more:
    the interpreter's prefixes, its sys.path, the llmlab and torch package folders, system
    libraries. Not the folder the course sits in (solutions/ lives there)."""
    import llmlab

    probe = subprocess.run([sys.executable, "-I", "-c", "import sys, json; print(json.dumps([sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path]))"],
                           capture_output=True, text=True, timeout=60, env=minimal_env(Path("/nonexistent")))
    entries = json.loads(probe.stdout) if probe.returncode == 0 else [sys.prefix, sys.base_prefix, *sys.path]
    paths = {os.path.realpath(p) for p in entries if p and os.path.exists(p)}
    paths.add(os.path.realpath(os.path.dirname(llmlab.__file__)))  # an editable install lives outside site-packages
    paths.add(os.path.realpath(sys.executable))
    for p in ("/usr/lib", "/usr/lib64", "/usr/local/lib", "/lib", "/lib64", "/usr/share/zoneinfo", "/etc/ld.so.cache",
              "/etc/localtime", "/etc/nsswitch.conf", "/dev/urandom", "/dev/random", "/proc/cpuinfo", "/sys/devices/system/cpu"):
        if os.path.exists(p):
            paths.add(p)
    repo = os.path.realpath(os.path.dirname(os.path.dirname(llmlab.__file__)))
    # a plain sys.path entry at the repo root would open solutions/ too: keep only the package
    return tuple(sorted(p for p in paths if p != repo))


# ----------------------------------------------------------------------------- pids cgroup
def _pids_cgroup_root() -> Path | None:
    for p in (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")):
        if (p / "cgroup.procs").exists() and os.access(p, os.W_OK) and ((p / "tasks").exists() or "pids" in _read(p / "cgroup.subtree_control")):
            return p
    return None


def _read(p: Path) -> str:
    try:
        return p.read_text()
    except OSError:
        return ""


class PidsCgroup:
    """A cgroup capping the number of processes of one submission; kills them all on exit."""

    def __init__(self, name: str, max_pids: int):
        self.path: Path | None = None
        root = _pids_cgroup_root()
        if root is None:
            return
        try:
            path = root / name
            path.mkdir()
            (path / "pids.max").write_text(str(max_pids))
            self.path = path
        except OSError:
            self.path = None

    def join_self(self) -> None:  # in the child, before exec
        if self.path is not None:
            with open(self.path / "cgroup.procs", "w") as f:
                f.write(str(os.getpid()))

    def kill_all(self) -> None:
        if self.path is None:
            return
        if (self.path / "cgroup.kill").exists():
            try:
                (self.path / "cgroup.kill").write_text("1")
            except OSError:
                pass
        for _ in range(200):  # cgroup v1: signal until empty (a fork bomb refills while we kill)
            pids = [int(p) for p in _read(self.path / "cgroup.procs").split()]
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.01)

    def remove(self) -> None:
        if self.path is None:
            return
        self.kill_all()
        for _ in range(100):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.02)


# ----------------------------------------------------------------------------- the child process
def minimal_env(home: Path, threads: int = 1) -> dict[str, str]:
    """An allow-list, not a deny-list: nothing of the grader's environment leaks through."""
    t = str(threads)
    return {
        "PATH": "/usr/bin:/bin", "HOME": str(home), "TMPDIR": str(home), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
        "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8",
        "OMP_NUM_THREADS": t, "MKL_NUM_THREADS": t, "OPENBLAS_NUM_THREADS": t, "NUMEXPR_NUM_THREADS": t,
        "MPLBACKEND": "Agg", "MPLCONFIGDIR": str(home / ".matplotlib"), "CUDA_VISIBLE_DEVICES": "",
        "LLMLAB_FAST": "1", "LLMLAB_DEVICE": "cpu",
    }


def _count_own_tasks() -> int:
    uid, n = os.getuid(), 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.stat(f"/proc/{d}").st_uid == uid:
                    n += len(os.listdir(f"/proc/{d}/task"))
            except OSError:
                pass
    return n


@lru_cache(maxsize=None)
def features() -> dict[str, bool | int]:
    """Which isolation layers this machine gives the student's process (recorded in run.json)."""
    root = os.geteuid() == 0
    return {
        "landlock_abi": landlock_abi(),
        "network_namespace": root or _userns_ok(),
        "pids_cgroup": _pids_cgroup_root() is not None,
        "drop_capabilities": root,
        "rlimit_nproc_enforced": not root,
    }


@lru_cache(maxsize=None)
def _userns_ok() -> bool:
    try:
        r = subprocess.run(["unshare", "--user", "--net", "true"], capture_output=True, timeout=10)
        return r.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def _drop_capabilities() -> None:
    """Root in the sandbox keeps uid 0 but loses every capability, for good (securebits
    NOROOT: exec does not give them back)."""
    for cap in range(64):
        _libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)
    _libc.prctl(_PR_SET_SECUREBITS, 0x2F, 0, 0, 0)  # NOROOT | NO_SETUID_FIXUP | KEEP_CAPS_LOCKED, all locked
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()  # effective, permitted, inheritable (x2) = 0
    if _libc.capset(ctypes.byref(header), ctypes.byref(data)) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def spawn(io_dir: Path, work_dir: Path, log_path: Path, limits: Limits, cgroup: PidsCgroup) -> subprocess.Popen:
    """Start the runner on io_dir, in work_dir, inside every available layer."""
    feats = features()
    abi = int(feats["landlock_abi"])
    read_paths = list(python_read_paths()) if abi else []
    write_paths = [str(work_dir), str(io_dir), "/dev/null"]
    nproc = None
    if feats["rlimit_nproc_enforced"]:
        nproc = _count_own_tasks() + limits.max_processes
    mem = limits.memory_mb << 20
    cpu = int(limits.submission_timeout) + 5
    fsize = limits.max_file_mb << 20
    root = os.geteuid() == 0
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    log = open(log_path, "wb")

    def preexec() -> None:  # in the child, between fork and exec: keep it simple
        cgroup.join_self()
        if cpus is not None:  # joining a cgroup resets the CPU affinity: keep the grader's (`taskset -c 2,3 llmlab grade`)
            os.sched_setaffinity(0, cpus)
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if nproc is not None:
            resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        if feats["network_namespace"]:
            flags = _CLONE_NEWNET if root else (_CLONE_NEWUSER | _CLONE_NEWNET)
            if _libc.unshare(flags) != 0:
                os.write(2, b"llmlab-sandbox: unshare(network) failed\n")
        if root:
            _drop_capabilities()
        if abi:
            _landlock_restrict(abi, read_paths, write_paths)

    try:
        return subprocess.Popen(
            [sys.executable, "-I", str(RUNNER), str(io_dir)],
            cwd=work_dir, env=minimal_env(work_dir, limits.cpu_threads), stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=preexec, close_fds=True,
        )
    finally:
        log.close()


def _run_delay(pid: int) -> float | None:
    """Seconds the process's main thread has spent runnable but waiting for a CPU (Linux
    schedstat), or None where the kernel does not say."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


class OwnClock:
    """The time a process has had to itself: wall-clock minus its wait for a CPU.

    A CPU-bound cell that takes 2 s alone takes 6 s of wall-clock on two cores shared with five
    other processes, but still 2 s of own time; a `time.sleep` or a blocking read counts in full
    (sleeping is not waiting for a CPU). Where /proc/PID/schedstat is missing (not Linux), this
    is plain wall-clock."""

    def __init__(self, pid: int):
        self.pid, self.t0 = pid, time.monotonic()
        d = _run_delay(pid)
        self._delay0, self._delay = d or 0.0, d or 0.0

    def __call__(self) -> float:
        d = _run_delay(self.pid)
        if d is not None:  # None once the process has ended: keep the last reading
            self._delay = d
        return time.monotonic() - self.t0 - (self._delay - self._delay0)


def kill_tree(proc: subprocess.Popen, cgroup: PidsCgroup) -> None:
    """Kill the runner, its process group, and (with a cgroup) everything it forked."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    cgroup.kill_all()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        why = {"SIGKILL": " (killed: a time or memory limit, or the code killed itself)", "SIGXCPU": " (CPU time limit)",
               "SIGXFSZ": " (file size limit: output flood?)", "SIGSEGV": " (crash)"}.get(name, "")
        return f"{name}{why}"
    return f"exit code {returncode}"


def limits_dict(limits: Limits) -> dict:
    return asdict(limits)
