"""bench/localredis.py: what the standalone bench scripts (key_touch.py, memory_schema.py,
redis_ops.py) share: a free loopback port, RESP encoding for `redis-cli --pipe`, and a private
redis-server (redis/redis.conf, nothing saved) that a script starts and stops by its own PID."""
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

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
