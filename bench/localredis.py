"""bench/localredis.py: what the standalone bench scripts (key_touch.py, memory_schema.py,
redis_ops.py, redis_floor.py, redis_shapes.py) share: a free loopback port, RESP encoding for
`redis-cli --pipe`, and a private redis-server (redis/redis.conf, nothing saved) that a script
starts and stops by its own PID, with its INFO and CPU."""
import os
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def resp(*args):
    """One command in RESP, as redis-cli --pipe reads it."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def commandstats(info):
    """INFO commandstats (a dict of its lines, as LocalRedis.info gives it) as
    {"zadd": {"calls": 3.0, "usec": 4.0, "usec_per_call": 1.33, ...}, ...}."""
    out = {}
    for k, v in info.items():
        if k.startswith("cmdstat_"):
            out[k[len("cmdstat_"):]] = {f: float(x) for f, x in (p.split("=") for p in v.split(","))}
    return out


class LocalRedis:
    """A redis-server of this process on a free loopback port, answering PING when made."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp()
        self.proc = subprocess.Popen(["redis-server", os.path.join(ROOT, "redis/redis.conf"), "--port",
                                      str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", self.dir,
                                      "--logfile", self.dir + "/r.log", "--daemonize", "no"])
        for _ in range(100):
            if self.cli("ping").strip() == "PONG":
                return
            time.sleep(0.05)
        self.stop()
        raise SystemExit("redis-server on port %d did not answer PING" % self.port)

    def cli(self, *a):
        return subprocess.run(["redis-cli", "-p", str(self.port)] + list(a), capture_output=True,
                              text=True).stdout

    def pipe(self, data):
        """Runs RESP-encoded commands (resp()) through redis-cli --pipe; exits on any error."""
        r = subprocess.run(["redis-cli", "-p", str(self.port), "--pipe"], input=data, capture_output=True)
        if b"errors: 0" not in r.stdout:
            raise SystemExit("redis-cli --pipe: %r" % r.stdout[-200:])

    def info(self, section):
        """INFO section as a dict of its fields (values as text)."""
        out = {}
        for line in self.cli("info", section).splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                out[k] = v.strip()
        return out

    def commandstats(self):
        return commandstats(self.info("commandstats"))

    def cpu_s(self):
        """Redis's CPU seconds so far, user and system, its I/O included."""
        i = self.info("cpu")
        return float(i["used_cpu_user"]) + float(i["used_cpu_sys"])

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
