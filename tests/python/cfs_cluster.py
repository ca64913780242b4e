"""A real ChainFS cluster and mount for the Python integration tests, the
Python twin of tests/integ/integ_env.c: `chainfs up --dir D/data --mount
D/mnt` in a private temp dir, `chainfs down` at the end with the same
checks (every recorded process gone, none needed SIGKILL, no sanitizer
report in any log, the mount point no longer mounted). Exit status 77
(skip) only when /dev/fuse is missing.

    run_tests(module_name)  runs the module's unittest cases between up and
                            down and exits with the combined status.
"""

import atexit
import os
import shutil
import subprocess
import signal
import sys
import tempfile
import unittest

CFS_BIN = os.environ.get("CFS_BIN", "chainfs")


class Cluster:
    def __init__(self, tag):
        self.dir = tempfile.mkdtemp(prefix="cfs-%s-" % tag, dir=os.environ.get("TMPDIR"))
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.mnt = os.path.join(self.dir, "mnt")
        self.is_up = False
        atexit.register(self._cleanup)

    def _run(self, args, log, timeout):
        # Under ASan the interpreter runs with LD_PRELOAD=libasan and leak
        # checks off (tests/python/CMakeLists.txt); the chainfs processes are
        # linked with ASan themselves and keep their default checks.
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)
        env.pop("ASAN_OPTIONS", None)
        with open(log, "ab") as out:
            try:
                return subprocess.run([CFS_BIN] + args, stdout=out, stderr=subprocess.STDOUT,
                                      timeout=timeout, env=env).returncode
            except subprocess.TimeoutExpired:
                return -1

    def up(self):
        log = os.path.join(self.dir, "up.out")
        self.is_up = True
        rc = self._run(["up", "--dir", self.data, "--mount", self.mnt, "--timeout-ms", "60000"],
                       log, 180)
        if rc != 0:
            sys.stderr.write(open(log, errors="replace").read())
            raise RuntimeError("chainfs up failed: %d" % rc)
        if os.stat(self.mnt).st_ino != 1:
            raise RuntimeError("%s is not the ChainFS root" % self.mnt)

    def _pids(self):
        procs = []
        pdir = os.path.join(self.data, "pids")
        for name in sorted(os.listdir(pdir)) if os.path.isdir(pdir) else []:
            if name.endswith(".pid"):
                with open(os.path.join(pdir, name)) as f:
                    parts = f.read().split()
                if len(parts) >= 2:
                    procs.append((name, int(parts[0]), parts[1]))
        return procs

    @staticmethod
    def _alive(pid, start):
        try:
            with open("/proc/%d/stat" % pid) as f:
                stat = f.read()
        except OSError:
            return False
        fields = stat[stat.rindex(")") + 2:].split()
        return fields[19] == start and fields[0] not in ("Z", "X")

    def down(self):
        """Stops the cluster; returns a list of problems (empty: clean)."""
        problems = []
        procs = self._pids()
        if len(procs) < 3:
            problems.append("only %d pid files" % len(procs))
        log = os.path.join(self.dir, "down.out")
        rc = self._run(["down", "--dir", self.data], log, 120)
        self.is_up = False
        out = open(log, errors="replace").read()
        if rc != 0:
            problems.append("chainfs down exited %d:\n%s" % (rc, out))
        if "SIGKILL" in out:
            problems.append("a role needed SIGKILL:\n" + out)
        for name, pid, start in procs:
            if self._alive(pid, start):
                problems.append("still alive after down: %s pid %d" % (name, pid))
        logs = os.path.join(self.data, "logs")
        for name in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
            text = open(os.path.join(logs, name), errors="replace").read()
            if "Sanitizer" in text or "runtime error:" in text:
                problems.append("sanitizer report in %s:\n%s" % (name, text[-4000:]))
        if os.path.ismount(self.mnt):
            problems.append("%s is still mounted" % self.mnt)
        return problems

    def _cleanup(self):
        if self.is_up:
            self._run(["down", "--dir", self.data], os.devnull, 120)
            self.is_up = False
        shutil.rmtree(self.dir, ignore_errors=True)


cluster = None


def run_tests(module_name, tag):
    """Brings a cluster up, runs every TestCase of MODULE_NAME against it
    (they read cfs_cluster.cluster), brings it down with its checks, and
    exits 0 only when both went well."""
    global cluster
    if not os.path.exists("/dev/fuse"):
        sys.stderr.write("skip: /dev/fuse is missing\n")
        sys.exit(77)
    cluster = Cluster(tag)
    # A SIGTERM (ctest's timeout, a killed run) must still bring the
    # cluster down: turn it into SystemExit so the finally below runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    cluster.up()
    ok = False
    try:
        suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[module_name])
        result = unittest.TextTestRunner(verbosity=2).run(suite)
        ok = result.wasSuccessful() and not result.skipped
    finally:
        problems = cluster.down()
    for p in problems:
        sys.stderr.write("down: %s\n" % p)
    sys.exit(0 if ok and not problems else 1)
