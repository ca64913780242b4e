#!/usr/bin/python3
"""netns_cluster.py - a true multi-host ChainFS cluster on one machine (issue 16).

Every host is a Linux network namespace created here, joined to a private
bridge by a veth pair, with an address from the benchmarking range
198.18.0.0/15 (never a private or public range), and the root namespace
gets a blackhole route for 198.18.0.0/15 so no packet of the cluster can
leave the machine. The bridge has no address: the hosts reach only each
other. Processes join a host's network namespace only (`nsenter --net`),
so the FUSE mounts of the client hosts are ordinary mounts of the root
mount namespace that tests and users read and write.

    netns_cluster.py up   --dir D [--bin build/chainfs] [--loop-mb 1024]
    netns_cluster.py down --dir D          # also: down --all (leftovers)
    netns_cluster.py status --dir D
    netns_cluster.py kill|restart|stop|cont ROLE --dir D
    netns_cluster.py partition HOST [PEER] --dir D   # link down / drop to PEER
    netns_cluster.py heal HOST [PEER] --dir D
    netns_cluster.py netem HOST --delay 50ms --loss 2% --dir D (--clear)
    netns_cluster.py fill TARGET --dir D             # storage1/t1: ENOSPC
    netns_cluster.py corrupt --dir D [--storage storage1]
    netns_cluster.py exec HOST -- cmd ...            # run in a host's netns
    netns_cluster.py admin -- list-chains            # chainfs admin from client1

Topology (docs/operations.md "Several hosts"): etcd1..3 (Debian etcd),
mgmtd1..2 (one primary by lease), meta1..2, storage1..4 with three targets
each (chain table R = 3: 12 targets, 4 chains), client1..2 with a mount each at D/mnt1, D/mnt2.
Host i of a kind has address 198.18.0.(base + i): etcd 11.., mgmtd 21..,
meta 41.., storage 31.., client 51...

Everything created (namespaces, veths, bridge, route, loop mounts, pids
with their start times) is recorded in D/state.json before it is created,
so `down` removes exactly that, also after a failed `up` (which calls
down itself) or a killed test; `down --all` removes leftovers of any run
(names starting with "cfn"). Needs root and iproute2; `fill` needs loop
devices (`up --loop-mb N` puts every target on its own N MiB ext4 image,
sparse; N >= 64: space groups that do not fit whole are reserved block by
block, and a full target follows docs/operations.md "A full disk").

As a library (tests/netns): Cluster(dir).up(), .kill(role), .restart(role),
.partition(host), .heal(host), .admin(args), .down().
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

RANGE = "198.18.0.0/15"
PREFIX = "cfn"            # every bridge, veth and netns name starts so
ETCD_BIN = os.environ.get("CFS_ETCD_BIN", "/usr/bin/etcd")

HOSTS = ([("etcd%d" % i, 10 + i) for i in (1, 2, 3)] +
         [("mgmtd%d" % i, 20 + i) for i in (1, 2)] +
         [("storage%d" % i, 30 + i) for i in (1, 2, 3, 4)] +
         [("meta%d" % i, 40 + i) for i in (1, 2)] +
         [("client%d" % i, 50 + i) for i in (1, 2)])

# Timing: a lease and heartbeat timeout short enough for tests; storage and
# meta fence at half the heartbeat timeout (docs/mgmtd.md).
LEASE = "3s"
HB_TIMEOUT_MS = 6000
FENCE_MS = HB_TIMEOUT_MS // 2
# Targets per storage host: the chain table generator needs the number of
# targets (4 hosts x T) to be a multiple of R = 3, so 3 (4 chains), not 2.
TARGETS = 3
# Smallest loop image a target accepts (ext4 overhead + the free floor).
LOOP_MIN_MB = 64


class Error(Exception):
    pass


def sh(*cmd, check=True, timeout=30, quiet=False):
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise Error("%s: exit %d: %s" % (" ".join(cmd), r.returncode, r.stderr.strip()))
    return r


def proc_start(pid):
    """The start time of PID from /proc (field 22), or None."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    rest = s[s.rfind(")") + 2:].split()
    if rest[0] in ("Z", "X"):
        return None
    return int(rest[19])


def check_environment():
    """Raises Error naming what is missing for network namespaces."""
    if os.geteuid() != 0:
        raise Error("needs root (ip netns add, veth, bridge)")
    for b in ("ip", "nsenter", "tc"):
        if not shutil.which(b):
            raise Error("%s not found (apt-get install iproute2 util-linux)" % b)
    if not os.access(ETCD_BIN, os.X_OK):
        raise Error("%s not found (apt-get install etcd-server)" % ETCD_BIN)
    if not os.path.exists("/dev/fuse"):
        raise Error("/dev/fuse is missing (load the fuse module)")
    probe = "%sprobe%d" % (PREFIX, os.getpid() % 100000)
    r = sh("ip", "netns", "add", probe, check=False)
    if r.returncode != 0:
        raise Error("cannot create a network namespace (ip netns add): %s" % r.stderr.strip())
    try:
        r = sh("ip", "link", "add", probe + "a", "type", "veth", "peer", "name", probe + "b",
               check=False)
        if r.returncode != 0:
            raise Error("cannot create a veth pair: %s" % r.stderr.strip())
        sh("ip", "link", "del", probe + "a", check=False)
        r = sh("ip", "link", "add", probe + "br", "type", "bridge", check=False)
        if r.returncode != 0:
            raise Error("cannot create a bridge: %s" % r.stderr.strip())
        sh("ip", "link", "del", probe + "br", check=False)
    finally:
        sh("ip", "netns", "del", probe, check=False)


class Cluster:
    def __init__(self, d, bin_path=None, log=None):
        self.dir = os.path.abspath(d)
        self.statef = os.path.join(self.dir, "state.json")
        self.log = log or (lambda m: print(m, file=sys.stderr, flush=True))
        if os.path.exists(self.statef):
            with open(self.statef) as f:
                self.st = json.load(f)
        else:
            self.st = {"id": None, "bin": None, "netns": [], "links": [], "bridge": None,
                       "route": False, "loops": [], "procs": {}, "argv": {}, "mounts": []}
        if bin_path:
            self.st["bin"] = os.path.abspath(bin_path)

    # ------------------------------------------------------------ state
    def save(self):
        os.makedirs(self.dir, exist_ok=True)
        tmp = self.statef + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.st, f, indent=1)
        os.replace(tmp, self.statef)

    def ns(self, host):
        return "%s%s-%s" % (PREFIX, self.st["id"], host)

    @staticmethod
    def ip(host):
        return "198.18.0.%d" % dict(HOSTS)[host]

    def secret(self):
        return os.path.join(self.dir, "secret")

    def mgmtd_addrs(self):
        return ",".join("%s:8000" % self.ip(h) for h in ("mgmtd1", "mgmtd2"))

    def etcd_url(self):
        eps = ",".join("%s:2379" % self.ip("etcd%d" % i) for i in (1, 2, 3))
        return "etcd://%s/chainfs" % eps

    def veth(self, host):
        return "%s%s%d" % (PREFIX, self.st["id"], dict(HOSTS)[host])

    # ------------------------------------------------------------ network
    def create_network(self):
        check_environment()
        os.makedirs(os.path.join(self.dir, "logs"), exist_ok=True)
        self.st["id"] = "%04x" % random.randrange(1 << 16)
        br = "%s%sbr" % (PREFIX, self.st["id"])
        self.st["bridge"] = br
        self.save()
        sh("ip", "link", "add", br, "type", "bridge")
        sh("ip", "link", "set", br, "up")
        # Nothing addressed 198.18.0.0/15 leaves the root namespace. Another
        # run may have added it already: then it is not ours to remove.
        r = sh("ip", "route", "add", "blackhole", RANGE, check=False)
        if r.returncode == 0:
            self.st["route"] = True
            self.save()
        for host, _ in HOSTS:
            ns, v = self.ns(host), self.veth(host)
            self.st["netns"].append(ns)
            self.st["links"].append(v)
            self.save()
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", v, "type", "veth", "peer", "name", v + "p")
            sh("ip", "link", "set", v + "p", "netns", ns)
            sh("ip", "link", "set", v, "master", br)
            sh("ip", "link", "set", v, "up")
            sh("ip", "-n", ns, "link", "set", v + "p", "name", "eth0")
            sh("ip", "-n", ns, "addr", "add", self.ip(host) + "/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")

    def exec_argv(self, host, argv):
        return ["nsenter", "--net=/run/netns/" + self.ns(host), "--"] + list(argv)

    def run_in(self, host, argv, timeout=30):
        return subprocess.run(self.exec_argv(host, argv), capture_output=True, text=True,
                              timeout=timeout)

    def port_open(self, host, ip, port):
        r = self.run_in(host, ["bash", "-c", "exec 3<>/dev/tcp/%s/%d" % (ip, port)],
                        timeout=5)
        return r.returncode == 0

    # ------------------------------------------------------------ processes
    def spawn(self, role, host, argv):
        """Starts ARGV in HOST's netns, in its own session, log in logs/ROLE.log."""
        logf = open(os.path.join(self.dir, "logs", role + ".log"), "ab")
        p = subprocess.Popen(self.exec_argv(host, argv), stdout=logf, stderr=logf,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        logf.close()
        # nsenter execs ARGV (no --fork), so the pid is the role's pid.
        time.sleep(0.05)
        self.st["procs"][role] = [p.pid, proc_start(p.pid), host]
        self.st["argv"][role] = [host, argv]
        self.save()
        return p.pid

    def pid(self, role):
        e = self.st["procs"].get(role)
        if not e or e[1] is None or proc_start(e[0]) != e[1]:
            return None
        return e[0]

    def alive(self, role):
        return self.pid(role) is not None

    def signal(self, role, sig):
        pid = self.pid(role)
        if pid is None:
            raise Error("%s is not running" % role)
        os.kill(pid, sig)
        if sig == signal.SIGKILL:
            deadline = time.time() + 10
            while self.pid(role) is not None and time.time() < deadline:
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    pass
                time.sleep(0.02)

    def kill(self, role):
        self.signal(role, signal.SIGKILL)
        if role.startswith("client"):
            self.umount(role)

    def stop(self, role):
        self.signal(role, signal.SIGSTOP)

    def cont(self, role):
        self.signal(role, signal.SIGCONT)

    def restart(self, role, wait=True):
        if self.alive(role):
            raise Error("%s is running" % role)
        host, argv = self.st["argv"][role]
        self.spawn(role, host, argv)
        if wait:
            self.wait_role(role)

    def wait(self, cond, timeout, what):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if cond():
                return
            time.sleep(0.1)
        raise Error("timed out after %ds waiting for %s" % (timeout, what))

    def wait_role(self, role, timeout=60):
        host = self.st["argv"][role][0]
        port = {"etcd": 2379, "mgmtd": 8000, "storage": 8100, "meta": 9000}.get(
            role.rstrip("0123456789"))

        def ok():
            if not self.alive(role):
                raise Error("%s exited; log tail:\n%s" % (role, self.tail(role)))
            if port:
                return self.port_open(host, self.ip(host), port)
            return self.mounted(self.mnt(role))
        self.wait(ok, timeout, role)

    def tail(self, role, n=20):
        try:
            with open(os.path.join(self.dir, "logs", role + ".log"), errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def mnt(self, client):
        return os.path.join(self.dir, "mnt" + client[len("client"):])

    @staticmethod
    def mounted(path):
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == path for line in f)

    def umount(self, client):
        m = self.mnt(client)
        if self.mounted(m):
            if sh("fusermount3", "-u", "-z", m, check=False).returncode != 0:
                sh("umount", "-l", m, check=False)

    # ------------------------------------------------------------ cluster
    def chainfs(self, *args):
        return [self.st["bin"]] + list(args)

    def common(self):
        return ["--cluster-id", "netns", "--secret-file", self.secret()]

    def admin(self, *args, host="client1", timeout=30):
        """`chainfs admin ARGS` from HOST; (exit status, stdout + stderr)."""
        r = self.run_in(host, self.chainfs("admin", *args, "--mgmtd", self.mgmtd_addrs(),
                                           *self.common()), timeout=timeout)
        return r.returncode, r.stdout + r.stderr

    def admin_until(self, timeout, *args):
        """Retries `chainfs admin ARGS` until it succeeds; Error with its output."""
        deadline = time.time() + timeout
        while True:
            rc, out = self.admin(*args)
            if rc == 0:
                return out
            if time.time() > deadline:
                raise Error("admin %s failed: %s" % (" ".join(args), out.strip()))
            time.sleep(0.5)

    def all_serving(self):
        rc, out = self.admin("list-chains")
        return rc == 0 and "(serving)" in out and not any(
            s in out for s in ("(offline)", "(syncing)", "(waiting)", "(lastsrv)"))

    def up(self, loop_mb=0):
        if loop_mb and loop_mb < LOOP_MIN_MB:
            raise Error("--loop-mb %d: a target needs at least %d MiB" % (loop_mb, LOOP_MIN_MB))
        if not self.st["bin"] or not os.access(self.st["bin"], os.X_OK):
            raise Error("chainfs binary not found (--bin)")
        if self.st["netns"]:
            raise Error("%s already holds a cluster (down first)" % self.dir)
        try:
            self._up(loop_mb)
        except BaseException:
            self.log("netns_cluster: up failed, removing what it created")
            self.down()
            raise

    def _up(self, loop_mb):
        os.makedirs(self.dir, exist_ok=True)
        self.create_network()
        with open(self.secret(), "w") as f:
            f.write(os.urandom(16).hex())
        os.chmod(self.secret(), 0o600)
        self.st["cluster_id"] = "netns"
        # etcd
        initial = ",".join("etcd%d=http://%s:2380" % (i, self.ip("etcd%d" % i))
                           for i in (1, 2, 3))
        for i in (1, 2, 3):
            h = "etcd%d" % i
            ip = self.ip(h)
            self.spawn(h, h, [
                ETCD_BIN, "--name", h, "--data-dir", os.path.join(self.dir, h),
                "--listen-client-urls", "http://%s:2379" % ip,
                "--advertise-client-urls", "http://%s:2379" % ip,
                "--listen-peer-urls", "http://%s:2380" % ip,
                "--initial-advertise-peer-urls", "http://%s:2380" % ip,
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--initial-cluster-token", "cfn" + self.st["id"],
                "--quota-backend-bytes", str(256 << 20),
                "--auto-compaction-mode", "revision", "--auto-compaction-retention", "10000",
                "--heartbeat-interval", "100", "--election-timeout", "1000",
                "--logger", "zap", "--log-outputs", "stderr", "--enable-pprof=false"])
        for i in (1, 2, 3):
            self.wait_role("etcd%d" % i)
        self.wait(lambda: self.etcd_health(), 30, "an etcd leader")
        # mgmtd x2, then init-cluster
        for i in (1, 2):
            h = "mgmtd%d" % i
            self.spawn(h, h, self.chainfs(
                "mgmtd", "--kv", self.etcd_url(), "--listen", "%s:8000" % self.ip(h),
                "--lease", LEASE, "--heartbeat-timeout", "%dms" % HB_TIMEOUT_MS,
                *self.common()))
        for i in (1, 2):
            self.wait_role("mgmtd%d" % i)
        self.admin_until(30, "init-cluster")
        # storage x4, two targets each
        for i in (1, 2, 3, 4):
            h = "storage%d" % i
            ts = []
            for t in range(1, TARGETS + 1):
                td = os.path.join(self.dir, h, "t%d" % t)
                os.makedirs(td, exist_ok=True)
                if loop_mb:
                    self.loop_mount(td, loop_mb)
                ts.append(td)
            self.spawn(h, h, self.chainfs(
                "storage", "--targets", ",".join(ts), "--listen", "%s:8100" % self.ip(h),
                "--mgmtd", self.mgmtd_addrs(), "--fence-ms", str(FENCE_MS), *self.common()))
        for i in (1, 2, 3, 4):
            self.wait_role("storage%d" % i)
        self.admin_until(60, "create-chain-table", "--replicas", "3")
        rc, out = self.admin("list-chains")
        nchains = sum(1 for line in out.splitlines() if "(serving)" in line)
        self.st["chains"] = nchains
        # meta x2 over etcd; the first formats the root
        for i in (1, 2):
            h = "meta%d" % i
            self.spawn(h, h, self.chainfs(
                "meta", "--kv", self.etcd_url(), "--listen", "%s:9000" % self.ip(h),
                "--mgmtd", self.mgmtd_addrs(), "--stripe", str(max(1, min(nchains, 4))),
                "--storage", "chains", "--fence-ms", str(FENCE_MS),
                "--session-check-ms", "1000", *self.common()))
            self.wait_role(h)
        # a mount on each client host
        for i in (1, 2):
            h = "client%d" % i
            m = self.mnt(h)
            os.makedirs(m, exist_ok=True)
            os.chmod(self.dir, 0o755)
            self.st["mounts"].append(m)
            self.spawn(h, h, self.chainfs("mount", "--mgmtd", self.mgmtd_addrs(),
                                          *self.common(), m))
            self.wait_role(h)
        self.save()

    def etcd_health(self, member="etcd1"):
        r = self.run_in(member, ["etcdctl", "--endpoints",
                                 "http://%s:2379" % self.ip(member), "--command-timeout=2s",
                                 "endpoint", "status", "-w", "json"], timeout=10)
        if r.returncode != 0:
            return False
        try:
            return json.loads(r.stdout)[0]["Status"]["leader"] != 0
        except (ValueError, KeyError, IndexError):
            return False

    def etcd_put(self, member, key, value, timeout_s=3):
        """etcdctl put through MEMBER only; True when it committed."""
        r = self.run_in(member, ["etcdctl", "--endpoints", "http://%s:2379" % self.ip(member),
                                 "--command-timeout=%ds" % timeout_s, "put", key, value],
                        timeout=timeout_s + 10)
        return r.returncode == 0

    def loop_mount(self, path, mb):
        img = path + ".img"
        with open(img, "wb") as f:
            f.truncate(mb << 20)
        sh("mkfs.ext4", "-q", "-F", "-m", "0", img)
        self.st["loops"].append(path)
        self.save()
        r = sh("mount", "-o", "loop", img, path, check=False)
        if r.returncode != 0:
            self.st["loops"].remove(path)
            self.save()
            raise Error("cannot loop-mount a target image (no loop devices?): %s" %
                        r.stderr.strip())

    # ------------------------------------------------------------ faults
    def partition(self, host, peer=None):
        """Cuts HOST off the bridge (its veth down), or only from PEER.

        A pair cut gives each of the two a permanent neighbour entry for the
        other with a MAC no host has: their frames to each other are flooded
        by the bridge and dropped by every receiver, silently, as a real
        partition drops them (no tc action or netfilter module needed, and
        the kernels of some CI machines have neither)."""
        if peer is None:
            sh("ip", "link", "set", self.veth(host), "down")
            return
        for a, b in ((host, peer), (peer, host)):
            sh("ip", "-n", self.ns(a), "neigh", "replace", self.ip(b), "lladdr",
               "02:00:c6:12:ff:%02x" % dict(HOSTS)[b], "dev", "eth0", "nud", "permanent")

    def heal(self, host, peer=None):
        """Undoes partition(HOST) or partition(HOST, PEER)."""
        if peer is None:
            sh("ip", "link", "set", self.veth(host), "up")
            return
        for a, b in ((host, peer), (peer, host)):
            sh("ip", "-n", self.ns(a), "neigh", "del", self.ip(b), "dev", "eth0", check=False)

    def netem(self, host, delay=None, loss=None, clear=False):
        """Delay / loss on what reaches HOST (the bridge side of its veth)."""
        v = self.veth(host)
        if clear:
            sh("tc", "qdisc", "del", "dev", v, "root", check=False)
            return
        args = []
        if delay:
            args += ["delay", delay]
        if loss:
            args += ["loss", loss]
        r = sh("tc", "qdisc", "replace", "dev", v, "root", "netem", *args, check=False)
        if r.returncode != 0:
            raise Error("tc netem on %s: %s%s" % (v, r.stderr.strip(),
                        " (this kernel has no sch_netem: delay/loss cannot be emulated here)"
                        if "unknown" in r.stderr else ""))

    def fill(self, target):
        """Fills the file system of TARGET ("storage1/t1") up to ENOSPC."""
        td = os.path.join(self.dir, target)
        if td not in self.st["loops"]:
            raise Error("%s is not on its own file system (up --loop-mb N)" % target)
        path = os.path.join(td, "fill.bin")
        buf = b"\0" * (1 << 20)
        with open(path, "ab") as f:
            try:
                while True:
                    f.write(buf)
                    f.flush()
            except OSError:
                pass
        return path

    def corrupt(self, storage=None, nbytes=8, rnd=None):
        """Flips NBYTES in the middle of one chunk data file; returns its path."""
        rnd = rnd or random.Random()
        hosts = [storage] if storage else ["storage%d" % i for i in (1, 2, 3, 4)]
        files = []
        for h in hosts:
            for dp, _, fns in os.walk(os.path.join(self.dir, h)):
                files += [os.path.join(dp, f) for f in fns
                          if not f.endswith((".mdb", ".img", ".lock", "fill.bin"))
                          and os.path.getsize(os.path.join(dp, f)) >= 4096]
        if not files:
            raise Error("no chunk data file found")
        path = rnd.choice(sorted(files))
        size = os.path.getsize(path)
        at = rnd.randrange(0, size - nbytes)
        with open(path, "r+b") as f:
            f.seek(at)
            b = bytearray(f.read(nbytes))
            f.seek(at)
            f.write(bytes(x ^ 0x5A for x in b))
            f.flush()
            os.fsync(f.fileno())
        return "%s@%d" % (path, at)

    # ------------------------------------------------------------ down
    def down(self):
        """Stops every recorded process and removes every recorded object."""
        procs = self.st.get("procs", {})
        self.killed = []   # roles that needed SIGKILL
        # In stages, each waited for: the mounts (their flushes need the
        # cluster), then meta and storage, then mgmtd (it releases its lease
        # in etcd), then etcd one member at a time: a leader told to stop
        # hands its leadership to a peer first, and when every member got
        # SIGTERM at once it handed it to one that was going, then stood
        # for election again and again without exiting (etcd 3.4, seen in
        # CI: 10 s, then SIGKILL).
        stages = [[r for r in procs if r.startswith(k)]
                  for k in ("client", "meta", "storage", "mgmtd")]
        stages += [[r] for r in sorted(procs) if r.startswith("etcd")]
        stages.append([r for r in procs if not any(r in st for st in stages)])
        for stage in stages:
            self.stop_roles(stage)
        for m in self.st.get("mounts", []):
            if self.mounted(m):
                sh("umount", "-l", m, check=False)
        for path in self.st.get("loops", []):
            if self.mounted(path):
                sh("umount", "-l", path, check=False)
        for ns in self.st.get("netns", []):
            sh("ip", "netns", "del", ns, check=False)
        for v in self.st.get("links", []):
            if os.path.exists("/sys/class/net/" + v):
                sh("ip", "link", "del", v, check=False)
        if self.st.get("bridge") and os.path.exists("/sys/class/net/" + self.st["bridge"]):
            sh("ip", "link", "del", self.st["bridge"], check=False)
        # The route stays while another run's hosts exist (it found the
        # route there and relies on it).
        if self.st.get("route") and not self.leftovers()[0]:
            sh("ip", "route", "del", "blackhole", RANGE, check=False)
        self.st.update(netns=[], links=[], bridge=None, route=False, loops=[], procs={},
                       mounts=[])
        if os.path.isdir(self.dir):
            self.save()

    def stop_roles(self, roles):
        """SIGTERM (after SIGCONT), 10 s, then SIGKILL, for every role of ROLES."""
        for role in roles:
            if role.startswith("client"):
                self.umount(role)
            pid = self.pid(role)
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGCONT)
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + 10
        while time.time() < deadline and any(self.pid(r) for r in roles):
            self.reap()
            time.sleep(0.05)
        for role in roles:
            pid = self.pid(role)
            if pid is not None:
                self.log("netns_cluster: %s (pid %d) ignored SIGTERM, SIGKILL" % (role, pid))
                self.killed.append(role)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        deadline = time.time() + 10
        while time.time() < deadline and any(self.pid(r) for r in roles):
            self.reap()
            time.sleep(0.05)

    @staticmethod
    def reap():
        """Collects exited children of ours (roles started by this process)."""
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass

    def leftovers(self):
        """Names of this tool's objects that exist (any run)."""
        ns = [line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines()
              if line.startswith(PREFIX)]
        links = [n for n in os.listdir("/sys/class/net") if n.startswith(PREFIX)]
        return ns, links


def down_all(log, d=None):
    """Removes every namespace and link named cfn* (leftovers of killed runs),
    and lazily unmounts whatever is mounted under D (stale mounts of them)."""
    ns = [line.split()[0] for line in sh("ip", "netns", "list").stdout.splitlines()
          if line.startswith(PREFIX)]
    for n in ns:
        # processes still inside: kill them by the netns they hold
        r = sh("ip", "netns", "pids", n, check=False)
        for p in r.stdout.split():
            try:
                os.kill(int(p), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        sh("ip", "netns", "del", n, check=False)
        log("removed netns " + n)
    for n in os.listdir("/sys/class/net"):
        if n.startswith(PREFIX):
            sh("ip", "link", "del", n, check=False)
            log("removed link " + n)
    if d:
        top = os.path.abspath(d) + "/"
        with open("/proc/self/mountinfo") as f:
            mps = [line.split()[4] for line in f if line.split()[4].startswith(top)]
        for mp in sorted(mps, reverse=True):
            sh("umount", "-l", mp, check=False)
            log("unmounted " + mp)
    r = sh("ip", "route", "show", "type", "blackhole", check=False)
    if RANGE in r.stdout:
        log("left the blackhole route for %s (harmless; `ip route del blackhole %s`)" %
            (RANGE, RANGE))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cmd")
    ap.add_argument("args", nargs="*")
    ap.add_argument("--dir", default="./chainfs-netns")
    ap.add_argument("--bin", default=None)
    ap.add_argument("--loop-mb", type=int, default=0)
    ap.add_argument("--all", action="store_true")
    ap.add_argument("--delay")
    ap.add_argument("--loss")
    ap.add_argument("--clear", action="store_true")
    ap.add_argument("--storage")
    a, rest = ap.parse_known_args()
    if a.cmd == "check":
        check_environment()
        print("ok: network namespaces, veth pairs and bridges work here")
        return 0
    if a.cmd == "down" and a.all:
        down_all(print, a.dir)
        if not os.path.exists(os.path.join(a.dir, "state.json")):
            return 0
    if a.bin is None and a.cmd == "up":
        here = os.path.dirname(os.path.abspath(__file__))
        a.bin = os.path.join(here, "..", "build", "chainfs")
    c = Cluster(a.dir, a.bin)
    cmd, args = a.cmd, a.args + [x for x in rest if x != "--"]
    if cmd == "up":
        c.up(a.loop_mb)
        print("cluster %s up: mounts %s, %s" % (c.st["id"], c.mnt("client1"),
                                                c.mnt("client2")))
    elif cmd == "down":
        c.down()
    elif cmd == "status":
        for host, _ in HOSTS:
            print("%-9s %-13s %s" % (host, c.ip(host), "pid %d" % c.pid(host)
                                     if c.alive(host) else "down"))
    elif cmd in ("kill", "restart", "stop", "cont"):
        getattr(c, cmd)(args[0])
    elif cmd == "partition":
        c.partition(args[0], args[1] if len(args) > 1 else None)
    elif cmd == "heal":
        c.heal(args[0], args[1] if len(args) > 1 else None)
    elif cmd == "netem":
        c.netem(args[0], a.delay, a.loss, a.clear)
    elif cmd == "fill":
        print(c.fill(args[0]))
    elif cmd == "corrupt":
        print(c.corrupt(a.storage))
    elif cmd == "exec":
        return subprocess.call(c.exec_argv(args[0], args[1:]))
    elif cmd == "admin":
        rc, out = c.admin(*args)
        print(out, end="")
        return rc
    else:
        ap.error("unknown command " + cmd)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Error as e:
        print("netns_cluster: " + str(e), file=sys.stderr)
        sys.exit(1)
