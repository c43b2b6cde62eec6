"""Shared helpers for tyto's end-to-end tests: start a real tyto on a free loopback port with a
temporary tyto.yaml, speak HTTP to it, decode its bencoded replies strictly, and look at what it
wrote in Redis. tests/run.sh provides the Redis (TYTO_TEST_REDIS); run alone, the first test that
needs one starts a private redis-server. Each test file ends with tytotest.main(), which runs its
cases and prints one "E2E-RESULT passed=N failed=N skipped=N" line for run.sh to count.

Environment: TYTO_BIN (the binary), TYTO_TEST_REDIS (Redis unix socket), TYTO_TEST_TMP (scratch
directory), TYTO_TEST_VALGRIND=1 (run tyto under valgrind), TYTO_TEST_FILTER (substring of the
test ids to run)."""

import atexit
import glob
import http.client
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TYTO_BIN = os.path.abspath(os.environ.get('TYTO_BIN') or os.path.join(ROOT, 'build', 'tyto'))
VALGRIND = os.environ.get('TYTO_TEST_VALGRIND') == '1'
# Every wall-clock bound is multiplied by SLOW: valgrind makes tyto 10-50 times slower.
SLOW = 10 if VALGRIND else 1
SANITIZER_MARKS = ('AddressSanitizer', 'LeakSanitizer', 'runtime error:', 'UndefinedBehaviorSanitizer')


# ---------------------------------------------------------------------------------------------
# Scratch space and Redis

_private_tmp = None


def tmp_root():
    """The directory every test's scratch directory lives in."""
    global _private_tmp
    base = os.environ.get('TYTO_TEST_TMP')
    if base and os.path.isdir(base):
        return base
    if _private_tmp is None:
        _private_tmp = tempfile.mkdtemp(prefix='tyto-e2e.')
    return _private_tmp


def make_tmpdir(prefix='t'):
    return tempfile.mkdtemp(prefix=prefix + '.', dir=tmp_root())


def ipv6_available():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        try:
            s.bind(('::1', 0))
        finally:
            s.close()
        return True
    except OSError:
        return False


def free_udp_port():
    """A UDP port free on 127.0.0.1 and, when IPv6 works, on ::1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(('127.0.0.1', 0))
            port = s.getsockname()[1]
        if not ipv6_available():
            return port
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s6:
                s6.bind(('::1', port))
            return port
        except OSError:
            continue
    raise RuntimeError('no free UDP port')


def free_port():
    """A TCP port free on 127.0.0.1 and, when IPv6 works, on ::1 (bind port 0, close)."""
    for _ in range(50):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
        s.close()
        if not ipv6_available():
            return port
        try:
            s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s6.bind(('::1', port))
            s6.close()
            return port
        except OSError:
            continue
    raise RuntimeError('no free port')


class RedisError(Exception):
    pass


class Redis:
    """A minimal binary-safe RESP2 client over a unix socket. cmd() returns bytes, int, None or a
    list; an error reply raises RedisError."""

    def __init__(self, path, timeout=5.0):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.rf = self.sock.makefile('rb')

    def close(self):
        try:
            self.rf.close()
        finally:
            self.sock.close()

    def cmd(self, *args):
        out = [b'*%d\r\n' % len(args)]
        for a in args:
            if isinstance(a, str):
                a = a.encode()
            elif isinstance(a, (int, float)):
                a = str(a).encode()
            out.append(b'$%d\r\n%s\r\n' % (len(a), a))
        self.sock.sendall(b''.join(out))
        return self._reply()

    def _line(self):
        line = self.rf.readline()
        if not line.endswith(b'\r\n'):
            raise RedisError('connection closed')
        return line[:-2]

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b'+':
            return rest
        if kind == b'-':
            raise RedisError(rest.decode(errors='replace'))
        if kind == b':':
            return int(rest)
        if kind == b'$':
            n = int(rest)
            if n < 0:
                return None
            data = self.rf.read(n + 2)
            if len(data) != n + 2:
                raise RedisError('short bulk reply')
            return data[:-2]
        if kind == b'*':
            n = int(rest)
            if n < 0:
                return None
            return [self._reply() for _ in range(n)]
        raise RedisError('bad reply %r' % line)

    # Conveniences used by the tests.
    def zscores(self, key):
        """{member bytes: score float} of a sorted set."""
        r = self.cmd('ZRANGE', key, 0, -1, 'WITHSCORES')
        return {r[i]: float(r[i + 1]) for i in range(0, len(r), 2)}

    def keys(self, pattern):
        cursor, found = b'0', []
        while True:
            cursor, batch = self.cmd('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000)
            found.extend(batch)
            if cursor == b'0':
                return sorted(set(found))


class TcpRedis(Redis):
    """Redis over TCP (sentinels and cluster nodes listen on loopback ports, not on a socket)."""

    def __init__(self, port, timeout=5.0, host='127.0.0.1'):   # noqa: Redis.__init__ takes a socket path
        self.path = '%s:%d' % (host, port)
        self.port = port
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.rf = self.sock.makefile('rb')


def redis_ask(port, *args):
    """One command on a fresh TCP connection to 127.0.0.1:port; None if nothing answers."""
    try:
        r = TcpRedis(port, timeout=2)
    except OSError:
        return None
    try:
        return r.cmd(*args)
    except (OSError, RedisError):
        return None
    finally:
        r.close()


# ---------------------------------------------------------------------------------------------
# Redis Cluster mode: TYTO_TEST_CLUSTER=1 runs a suite's tyto on a cluster of 3 primaries and 3
# replicas (tests/cluster.sh, started once per process, stopped at exit) with 2 workers, and
# redis_client() then talks to the cluster: each command to its key's primary. Every Tyto that
# names no Redis of its own runs there (RedisOutageTests and the like keep their own server).

CLUSTER_MODE = os.environ.get('TYTO_TEST_CLUSTER') == '1'
_cluster = None               # {'dir', 'nodes', 'primaries'} once started


_CRC16_TABLE = []
for _i in range(256):
    _c = _i << 8
    for _ in range(8):
        _c = ((_c << 1) ^ 0x1021) if _c & 0x8000 else (_c << 1)
    _CRC16_TABLE.append(_c & 0xffff)


def _crc16(data):
    """CRC16/XMODEM, Redis Cluster's key hash."""
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xffff) ^ _CRC16_TABLE[((crc >> 8) ^ b) & 0xff]
    return crc


def key_slot(key):
    """Redis Cluster's slot of key (bytes or str): CRC16 of its {hash tag} if it has a non-empty
    one, else of the whole key, mod 16384."""
    k = key.encode() if isinstance(key, str) else key
    start = k.find(b'{')
    if start >= 0:
        end = k.find(b'}', start + 1)
        if end > start + 1:
            k = k[start + 1:end]
    return _crc16(k) % 16384


def cluster_for_tests():
    """The process's cluster ({'dir', 'nodes', 'primaries'}), started on first use: three tries,
    as a port tests/cluster.sh found free can be taken before its node binds it."""
    global _cluster
    if _cluster is None:
        for attempt in range(3):
            d = os.path.join(make_tmpdir('cluster'), 'nodes')
            r = subprocess.run(['bash', os.path.join(ROOT, 'tests', 'cluster.sh'), 'start', d],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
            if r.returncode == 0:
                break
            if attempt == 2 or b'Failed listening' not in r.stderr:
                raise AssertionError('tests/cluster.sh start failed:\n' + r.stderr.decode(errors='replace')[-3000:])
        env = dict(line.split('=', 1) for line in r.stdout.decode().split() if '=' in line)
        _cluster = {'dir': d, 'nodes': env['TYTO_CLUSTER_NODES'].split(','),
                    'primaries': env['TYTO_CLUSTER_PRIMARIES'].split(',')}
    return _cluster


def _stop_test_cluster():
    if _cluster is not None:
        subprocess.run(['bash', os.path.join(ROOT, 'tests', 'cluster.sh'), 'stop', _cluster['dir']],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)


class ClusterRedis:
    """Redis's interface (cmd, zscores, keys, close) over the test cluster: a command with a key
    goes to the primary that owns its slot (a MOVED reads the map again and resends); KEYS and
    DBSIZE gather every primary's answer; FLUSHALL, FLUSHDB, FUNCTION, SCRIPT, CONFIG and CLIENT
    go to every primary (the first one's reply is returned); the rest to the first primary."""

    EVERY = {'FLUSHALL', 'FLUSHDB', 'FUNCTION', 'SCRIPT', 'CONFIG', 'CLIENT'}
    KEYLESS = {'PING', 'INFO', 'TIME', 'ROLE', 'CLUSTER', 'DBSIZE', 'KEYS', 'SCAN', 'MULTI', 'EXEC'}

    def __init__(self, timeout=5.0):
        self.timeout = timeout
        self.conns = {}
        self.read_map()

    def read_map(self):
        last = None
        for addr in cluster_for_tests()['nodes']:
            try:
                reply = self._conn(addr).cmd('CLUSTER', 'SLOTS')
            except (OSError, RedisError) as e:
                last = e
                continue
            self.owner = [None] * 16384
            for entry in reply:
                a = '%s:%d' % (entry[2][0].decode() or '127.0.0.1', entry[2][1])
                for slot in range(entry[0], entry[1] + 1):
                    self.owner[slot] = a
            self.primaries = sorted({a for a in self.owner if a})
            return
        raise AssertionError('no cluster node answered CLUSTER SLOTS: %r' % last)

    def _conn(self, addr):
        if addr not in self.conns:
            host, port = addr.rsplit(':', 1)
            self.conns[addr] = TcpRedis(int(port), timeout=self.timeout, host=host)
        return self.conns[addr]

    def close(self):
        for c in self.conns.values():
            c.close()
        self.conns = {}

    @staticmethod
    def _key(args):
        name = args[0].upper() if isinstance(args[0], str) else args[0].decode().upper()
        if name in ('EVAL', 'EVALSHA', 'EVAL_RO', 'FCALL', 'FCALL_RO'):
            return args[3] if int(args[2]) > 0 else None
        if name in ClusterRedis.KEYLESS or name in ClusterRedis.EVERY or len(args) < 2:
            return None
        return args[1]

    def cmd(self, *args):
        name = args[0].upper() if isinstance(args[0], str) else args[0].decode().upper()
        if name == 'KEYS':
            return [k for a in self.primaries for k in self._conn(a).cmd(*args)]
        if name == 'DBSIZE':
            return sum(self._conn(a).cmd(*args) for a in self.primaries)
        if name in self.EVERY:
            return [self._conn(a).cmd(*args) for a in self.primaries][0]
        key = self._key(args)
        for attempt in range(5):
            addr = self.owner[key_slot(key)] if key is not None else self.primaries[0]
            try:
                return self._conn(addr).cmd(*args)
            except RedisError as e:
                if not str(e).startswith(('MOVED', 'TRYAGAIN', 'CLUSTERDOWN')) or attempt == 4:
                    raise
                time.sleep(0.1 * attempt)
                self.read_map()

    def zscores(self, key):
        return Redis.zscores(self, key)

    def keys(self, pattern):
        found = []
        for a in self.primaries:
            found.extend(Redis.keys(self._conn(a), pattern))
        return sorted(set(found))


def redis_client():
    """A client of the Redis the suite's tyto uses: the test Redis, or in cluster mode the
    cluster (ClusterRedis)."""
    return ClusterRedis() if CLUSTER_MODE else Redis(redis_socket())


class RedisServer:
    """A redis-server of our own on a unix socket, run as our child (not daemonized), so that it
    is stopped by its pid."""

    def __init__(self, sock_path, workdir, tcp_port=0):
        self.path = sock_path
        self.dir = workdir
        self.tcp_port = tcp_port       # also listen on 127.0.0.1:tcp_port when non-zero
        self.proc = None

    def start(self, timeout=10.0):
        log = open(os.path.join(self.dir, 'redis-%d.log' % random.randrange(1 << 30)), 'wb')
        self.proc = subprocess.Popen(
            ['redis-server', '--port', str(self.tcp_port), '--bind', '127.0.0.1',
             '--unixsocket', self.path, '--unixsocketperm', '700',
             '--save', '', '--appendonly', 'no', '--dir', self.dir],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        _redis_servers.append(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError('redis-server exited with %s' % self.proc.returncode)
            try:
                r = Redis(self.path, timeout=1)
                try:
                    if r.cmd('PING') == b'PONG':
                        return self
                finally:
                    r.close()
            except (OSError, RedisError):
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError('redis-server at %s did not answer PING' % self.path)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


_private_redis = None
_redis_servers = []      # every RedisServer started, stopped at exit whatever happened


def redis_socket():
    """The unix socket of the test Redis: TYTO_TEST_REDIS, or a private one started on demand."""
    global _private_redis
    path = os.environ.get('TYTO_TEST_REDIS')
    if path:
        return path
    if _private_redis is None:
        d = make_tmpdir('redis')
        _private_redis = RedisServer(os.path.join(d, 'redis.sock'), d).start()
    return _private_redis.path


# ---------------------------------------------------------------------------------------------
# Bencoding

class BencodeError(ValueError):
    pass


_INT_RE = re.compile(rb'-?(0|[1-9][0-9]*)\Z')
_LEN_RE = re.compile(rb'(0|[1-9][0-9]*)\Z')


def bdecode(data):
    """Strict bencode decoder: bytes in; int, bytes, list, dict with bytes keys out. Rejects
    leading zeros, -0, unsorted or repeated dict keys, non-string keys and trailing data."""
    if not isinstance(data, (bytes, bytearray)):
        raise BencodeError('not bytes')
    data = bytes(data)
    value, pos = _bdecode(data, 0, 0)
    if pos != len(data):
        raise BencodeError('trailing data at offset %d' % pos)
    return value


def _bdecode(d, i, depth):
    if depth > 64:
        raise BencodeError('nested too deep')
    if i >= len(d):
        raise BencodeError('truncated at offset %d' % i)
    c = d[i:i + 1]
    if c == b'i':
        j = d.find(b'e', i + 1)
        if j < 0:
            raise BencodeError('unterminated integer at offset %d' % i)
        s = d[i + 1:j]
        if not _INT_RE.match(s) or s == b'-0':
            raise BencodeError('bad integer %r at offset %d' % (s, i))
        return int(s), j + 1
    if c == b'l':
        out, i = [], i + 1
        while True:
            if i >= len(d):
                raise BencodeError('unterminated list')
            if d[i:i + 1] == b'e':
                return out, i + 1
            v, i = _bdecode(d, i, depth + 1)
            out.append(v)
    if c == b'd':
        out, i, last = {}, i + 1, None
        while True:
            if i >= len(d):
                raise BencodeError('unterminated dict')
            if d[i:i + 1] == b'e':
                return out, i + 1
            if not d[i:i + 1].isdigit():
                raise BencodeError('dict key is not a string at offset %d' % i)
            k, i = _bdecode(d, i, depth + 1)
            if last is not None and k <= last:
                raise BencodeError('dict keys not sorted/unique: %r after %r' % (k, last))
            last = k
            v, i = _bdecode(d, i, depth + 1)
            out[k] = v
    if c.isdigit():
        j = d.find(b':', i)
        if j < 0:
            raise BencodeError('string without colon at offset %d' % i)
        s = d[i:j]
        if not _LEN_RE.match(s):
            raise BencodeError('bad string length %r at offset %d' % (s, i))
        n = int(s)
        if j + 1 + n > len(d):
            raise BencodeError('string overruns the data at offset %d' % i)
        return d[j + 1:j + 1 + n], j + 1 + n
    raise BencodeError('unexpected byte %r at offset %d' % (c, i))


def parse_peers4(blob):
    """BEP 23 compact peers -> [(ip str, port)]."""
    assert len(blob) % 6 == 0, 'peers length %d is not a multiple of 6' % len(blob)
    return [(socket.inet_ntop(socket.AF_INET, blob[i:i + 4]), struct.unpack('!H', blob[i + 4:i + 6])[0])
            for i in range(0, len(blob), 6)]


def parse_peers6(blob):
    """BEP 7 compact peers6 -> [(ip str, port)]."""
    assert len(blob) % 18 == 0, 'peers6 length %d is not a multiple of 18' % len(blob)
    return [(socket.inet_ntop(socket.AF_INET6, blob[i:i + 16]), struct.unpack('!H', blob[i + 16:i + 18])[0])
            for i in range(0, len(blob), 18)]


# ---------------------------------------------------------------------------------------------
# Requests

def rand_hash():
    return secrets.token_bytes(20)


def q(value):
    """Percent-encodes one query value (raw bytes, str or int)."""
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, str):
        value = value.encode()
    return urllib.parse.quote(value, safe='')


def build_query(params):
    """params: list of (name, value) pairs; value None leaves the pair out; a value of type
    Raw goes in as written (for broken encodings)."""
    parts = []
    for k, v in params:
        if v is None:
            continue
        parts.append('%s=%s' % (k, v.text if isinstance(v, Raw) else q(v)))
    return '&'.join(parts)


class Raw:
    def __init__(self, text):
        self.text = text


def announce_path(info_hash, peer_id, port, left=0, uploaded=0, downloaded=0, event=None,
                  numwant=None, compact=None, extra=(), path='/announce'):
    params = [('info_hash', info_hash), ('peer_id', peer_id), ('port', port),
              ('uploaded', uploaded), ('downloaded', downloaded), ('left', left),
              ('event', event), ('numwant', numwant), ('compact', compact)]
    params.extend(extra)
    return path + '?' + build_query(params)


def scrape_path(hashes, path='/scrape'):
    return path + '?' + build_query([('info_hash', h) for h in hashes])


_peer_ports = []                    # Peer's ports not handed out yet (this round), shuffled
_peer_ports_lock = threading.Lock()


def _peer_port():
    """A random port no other Peer() of this process got (until all 64510 were handed out). The
    tracker names a peer by address and port (every test peer is 127.0.0.1 or ::1): two Peer()s
    drawn independently shared one once in 64510 pairs, and in one swarm were one peer then
    (a second event=completed of the same member counts nothing: test_cluster's check_counts saw
    3 counted for 4 successes once in CI)."""
    with _peer_ports_lock:
        if not _peer_ports:
            _peer_ports.extend(random.sample(range(1025, 65535), 65535 - 1025))
        return _peer_ports.pop()


class Peer:
    """A fake client: a random peer_id and a port of its own (nothing listens there): a random
    one unless given, never one another Peer() of this process drew."""

    def __init__(self, port=None):
        self.peer_id = b'-TT0001-' + secrets.token_bytes(12)
        self.port = port or _peer_port()


class Response:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def __repr__(self):
        return 'HTTP %d %r' % (self.status, self.body[:300])


def read_response(rf):
    """Reads one HTTP/1.x response from a buffered binary file (Content-Length or chunked).
    Returns a Response, or None if the connection closed before a status line."""
    line = rf.readline(65536)
    if not line:
        return None
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b'HTTP/'):
        raise AssertionError('bad status line %r' % line)
    status = int(parts[1])
    headers = []
    while True:
        h = rf.readline(65536)
        if h in (b'\r\n', b'\n', b''):
            break
        k, _, v = h.decode('latin-1').partition(':')
        headers.append((k.strip(), v.strip()))
    r = Response(status, headers, b'')
    te = (r.header('Transfer-Encoding') or '').lower()
    if 'chunked' in te:
        body = []
        while True:
            n = int(rf.readline().split(b';')[0].strip(), 16)
            if n == 0:
                while rf.readline() not in (b'\r\n', b'\n', b''):
                    pass
                break
            body.append(rf.read(n))
            rf.readline()
        r.body = b''.join(body)
    elif r.header('Content-Length') is not None:
        r.body = rf.read(int(r.header('Content-Length')))
    return r


# ---------------------------------------------------------------------------------------------
# The server under test

_started = []     # every Tyto started, for logs on failure


def yaml_text(tree, indent=0):
    """Writes a nested dict of str/int/bool/list as YAML (strings JSON-quoted, valid YAML)."""
    out = []
    pad = '  ' * indent
    for k, v in tree.items():
        if isinstance(v, dict):
            out.append('%s%s:\n%s' % (pad, k, yaml_text(v, indent + 1)))
        elif isinstance(v, bool):
            out.append('%s%s: %s\n' % (pad, k, 'true' if v else 'false'))
        elif isinstance(v, int):
            out.append('%s%s: %d\n' % (pad, k, v))
        elif isinstance(v, list):
            out.append('%s%s: [%s]\n' % (pad, k, ', '.join(json.dumps(x) for x in v)))
        else:
            out.append('%s%s: %s\n' % (pad, k, json.dumps(v)))
    return ''.join(out)


def merge(base, over):
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = v
    return base


def valgrind_prefix(logdir):
    return ['valgrind', '--leak-check=full', '--error-exitcode=99', '--errors-for-leak-kinds=definite',
            '--show-leak-kinds=definite', '--log-file=%s/valgrind.%%p.log' % logdir]


def tyto_command(logdir, args):
    cmd = [TYTO_BIN] + list(args)
    return valgrind_prefix(logdir) + cmd if VALGRIND else cmd


def clean_env():
    """os.environ without TYTO_* variables (they would override the test's config file)."""
    return {k: v for k, v in os.environ.items() if not k.startswith('TYTO_')}


VALGRIND_ERROR_MARKS = ('Invalid read', 'Invalid write', 'Invalid free', 'Conditional jump',
                        'uninitialised', 'Syscall param', 'Mismatched free', 'definitely lost in',
                        'Source and destination overlap', 'Process terminating')


def check_valgrind_logs(logdir, ignore_pids=()):
    """Raises AssertionError if any valgrind log in logdir reports an error. A log without its
    final summary belongs to a process killed by SIGKILL (a test killing a worker): it passes if
    it reports nothing so far. Logs of ignore_pids are skipped."""
    for path in sorted(glob.glob(os.path.join(logdir, 'valgrind.*.log'))):
        if any(path.endswith('.%d.log' % pid) for pid in ignore_pids):
            continue
        with open(path, errors='replace') as f:
            text = f.read()
        m = re.search(r'ERROR SUMMARY: (\d+) errors', text)
        if m is not None and int(m.group(1)) == 0:
            continue
        if m is None and not any(mark in text for mark in VALGRIND_ERROR_MARKS):
            continue
        raise AssertionError('valgrind reports errors (%s):\n%s' % (path, text[-6000:]))


class Tyto:
    """One tyto process with its own config file, log and scratch directory.

    config: a nested dict merged over the defaults below (listen.port is always chosen here)."""

    START_TIMEOUT = 10.0

    def __init__(self, backend='redis', config=None, env=None, ipv6=True, redis_url=None, udp=False):
        self.dir = make_tmpdir('tyto')
        self.prefix = 't%s:' % secrets.token_hex(4)
        self.ipv6 = ipv6 and ipv6_available()
        self.cfg = {
            # UDP (listen.udp_port, default 6969 in tyto) is off unless a test asks (udp=True:
            # a free port per start attempt, in self.udp_port).
            'listen': {'port': 0, 'ipv4': '127.0.0.1', 'ipv6': '::1' if self.ipv6 else '', 'udp_port': 0},
            'workers': 1,
            'storage': {'backend': backend},
            'redis': {'url': redis_url or ('unix://' + redis_socket() if backend == 'redis'
                                           else 'unix:///nonexistent/redis.sock'),
                      'prefix': self.prefix, 'timeout_ms': 1000 * SLOW},
            'announce': {'interval_s': 1234, 'min_interval_s': 617, 'peer_ttl_s': 3000,
                         'numwant_default': 4, 'numwant_max': 8},
            'scrape': {'max_hashes': 4},
            # Every test client is 127.0.0.1 (or ::1): the cap of ports per address and swarm
            # (default 16) is off unless a test sets it (tests/e2e/test_abuse.py does).
            'swarm': {'max_peers_per_address': 0},
            'log': {'level': 'info'},
        }
        if CLUSTER_MODE and backend == 'redis' and redis_url is None and 'url' not in (config or {}).get('redis', {}):
            c = cluster_for_tests()
            # redis.url gives the password only (none here); the map comes from the seeds.
            self.cfg['redis'].update({'url': 'redis://' + c['primaries'][0], 'cluster': True,
                                      'nodes': list(c['nodes'])})
            self.cfg['workers'] = 2
        if config:
            merge(self.cfg, config)
        # TYTO_* variables override the file: keep the caller's out, so that only the
        # test's own reach tyto.
        self.env = clean_env()
        self.env.update(env or {})
        self.proc = None
        self.port = None
        # The operator routes (/metrics, /stats) listen on admin.listen, a port of their own:
        # a free one per start attempt, unless the test's config sets admin.listen itself.
        self.admin_auto = 'listen' not in (config or {}).get('admin', {})
        self.admin_port = None
        self.udp_auto = udp
        self.udp_port = None
        self.config_path = os.path.join(self.dir, 'tyto.yaml')
        self.log_path = os.path.join(self.dir, 'tyto.log')
        self.exit_status = None
        self.killed_pids = set()       # processes a test killed on purpose (no valgrind summary)
        self.stdout = None             # a file or fd for tyto's standard output; None: the log

    # -- life cycle ----------------------------------------------------------------------------

    def write_config(self):
        with open(self.config_path, 'w') as f:
            f.write(yaml_text(self.cfg))

    def start(self, expect_status=200, timeout=None):
        """Starts tyto and waits until GET /healthz answers expect_status (None: any status)."""
        timeout = (timeout or self.START_TIMEOUT) * SLOW
        _started.append(self)
        for attempt in range(3):
            self.port = free_port()
            self.cfg['listen']['port'] = self.port
            if self.udp_auto:
                self.udp_port = free_udp_port()
                self.cfg['listen']['udp_port'] = self.udp_port
            if self.admin_auto:
                self.admin_port = free_port()
                while self.admin_port == self.port:
                    self.admin_port = free_port()
                self.cfg.setdefault('admin', {})['listen'] = '127.0.0.1:%d' % self.admin_port
            self.write_config()
            log = open(self.log_path, 'ab')
            log.write(b'=== start attempt %d, port %d\n' % (attempt, self.port))
            log.flush()
            self.proc = subprocess.Popen(tyto_command(self.dir, ['-c', self.config_path]),
                                         stdout=log if self.stdout is None else self.stdout,
                                         stderr=subprocess.STDOUT if self.stdout is None else log,
                                         stdin=subprocess.DEVNULL, env=self.env)
            log.close()
            deadline = time.monotonic() + timeout
            last = None
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    r = self.get('/healthz', timeout=1.0 * SLOW)
                    last = r.status
                    if expect_status is None or r.status == expect_status:
                        if expect_status == 200:
                            self._wait_ready(deadline)
                        return self
                except OSError as e:
                    last = e
                time.sleep(0.05)
            if self.proc.poll() is not None:
                text = self.log()
                if 'in use' in text and attempt < 2:
                    continue          # lost the race for the port: try another
                raise AssertionError('tyto exited with status %s at start-up; log:\n%s'
                                     % (self.proc.returncode, text[-4000:]))
            self.kill()
            raise AssertionError('tyto did not answer GET /healthz with %s within %.0f s (last: %r); '
                                 'log:\n%s' % (expect_status, timeout, last, self.log()[-4000:]))
        raise AssertionError('tyto could not bind a port')

    def _wait_ready(self, deadline):
        """Until every worker accepts: one answered /healthz, but a worker accepts on its lane only
        once its storage answered, and a request sent meanwhile waits in that lane's queue (a test
        that pauses Redis next would find it never taken). Needs the admin listener and a fixed
        worker count; gives up quietly at the deadline (the test then sees what it sees)."""
        want = self.cfg.get('workers')
        if not isinstance(want, int) or not self.cfg.get('admin', {}).get('listen'):
            return
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                r = self.admin_get('/stats', timeout=1.0 * SLOW)
                if r.status == 200 and json.loads(r.body).get('ready', 0) >= want:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.02)

    def stop(self, timeout=10.0):
        """SIGTERM, then asserts exit status 0 within timeout and no sanitizer/valgrind report."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout * SLOW)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            raise AssertionError('tyto did not exit within %.0f s of SIGTERM; log:\n%s'
                                 % (timeout * SLOW, self.log()[-4000:]))
        self.exit_status = rc
        if rc != 0:
            raise AssertionError('tyto exited with status %s after SIGTERM (expected 0); log:\n%s'
                                 % (rc, self.log()[-4000:]))
        self.check_clean()

    def check_clean(self):
        text = self.log()
        for mark in SANITIZER_MARKS:
            if mark in text:
                raise AssertionError('sanitizer report in the tyto log:\n%s' % text[-6000:])
        check_valgrind_logs(self.dir, self.killed_pids)

    def kill(self):
        """For cleanup after a failure: SIGKILL our own process if it still runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
        self.proc = None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        try:
            with open(self.log_path, errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    # -- HTTP ----------------------------------------------------------------------------------

    def host(self, v6=False):
        return '::1' if v6 else '127.0.0.1'

    def connection(self, v6=False, timeout=5.0):
        return http.client.HTTPConnection(self.host(v6), self.port, timeout=timeout * SLOW)

    def get(self, path, v6=False, timeout=5.0, headers=None):
        """One GET on a fresh connection -> Response."""
        conn = self.connection(v6, timeout)
        try:
            conn.request('GET', path, headers=headers or {})
            r = conn.getresponse()
            return Response(r.status, r.getheaders(), r.read())
        finally:
            conn.close()

    def admin_get(self, path, timeout=5.0, port=None):
        """One GET on the admin listener (admin.listen: /metrics, /stats, /healthz) -> Response."""
        port = port or self.admin_port
        conn = http.client.HTTPConnection('127.0.0.1', port, timeout=timeout * SLOW)
        try:
            conn.request('GET', path)
            r = conn.getresponse()
            return Response(r.status, r.getheaders(), r.read())
        finally:
            conn.close()

    def decode_ok(self, r, what):
        if r.status != 200:
            raise AssertionError('%s: HTTP %d, body %r' % (what, r.status, r.body[:500]))
        try:
            return bdecode(r.body)
        except BencodeError as e:
            raise AssertionError('%s: reply is not canonical bencode (%s): %r' % (what, e, r.body[:500]))

    def announce_raw(self, path, v6=False):
        """GET an announce path, assert HTTP 200 and canonical bencode; returns the dict (which
        may be a failure)."""
        return self.decode_ok(self.get(path, v6=v6), 'GET %s' % path[:200])

    def announce(self, info_hash, peer, left=0, v6=False, expect_ok=True, **kw):
        path = announce_path(info_hash, peer.peer_id, peer.port, left=left, **kw)
        d = self.announce_raw(path, v6=v6)
        if expect_ok and b'failure reason' in d:
            raise AssertionError('announce %s failed: %r' % (path[:200], d))
        return d

    def scrape(self, hashes, v6=False):
        return self.announce_raw(scrape_path(hashes), v6=v6)


# ---------------------------------------------------------------------------------------------
# Helpers the test scripts share

def wait_for(pred, timeout, what):
    """Polls pred until it returns a true value, which is returned; AssertionError 'timed out
    waiting for <what>' after timeout seconds (times SLOW: valgrind is ten times slower)."""
    deadline = time.monotonic() + timeout * SLOW
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError('timed out waiting for ' + what)


def children(pid):
    """Pids of the direct children of pid (the workers of a master), sorted; [] once it is gone."""
    try:
        with open('/proc/%d/task/%d/children' % (pid, pid)) as f:
            return sorted(int(x) for x in f.read().split())
    except OSError:
        return []


def vm_rss_kb(pid):
    """The process's resident memory (VmRSS), in KiB."""
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise AssertionError('no VmRSS for %d' % pid)


def summary(line):
    """Prints a case's figures on a line of its own (the README quotes these lines)."""
    sys.stdout.write('\n' + line + '\n')
    sys.stdout.flush()


def stats(t):
    """/stats of Tyto t (admin listener) as a dict."""
    r = t.admin_get('/stats')
    if r.status != 200:
        raise AssertionError('admin /stats: HTTP %d %r' % (r.status, r.body[:200]))
    return json.loads(r.body)


def metrics_text(t):
    """/metrics of Tyto t (admin listener) as text."""
    r = t.admin_get('/metrics')
    if r.status != 200:
        raise AssertionError('admin /metrics: HTTP %d %r' % (r.status, r.body[:200]))
    return r.body.decode()


def metrics_values(t):
    """{'name{labels}': value} of every sample in t's /metrics."""
    out = {}
    for line in metrics_text(t).splitlines():
        if line and not line.startswith('#'):
            k, _, v = line.rpartition(' ')
            out[k] = float(v)
    return out


_unsupported = set()          # ids of the cases that skip_unsupported() skipped


def skip_unsupported(case, reason):
    """Skips case because this machine cannot run it at all (not a missing test dependency: a
    skipTest() for one of those counts as a failure). Prints a "SKIP <case>: <reason>" line;
    main() counts the case as skipped, neither passed nor failed."""
    _unsupported.add(case.id())
    name = case.id().replace('__main__', os.path.splitext(os.path.basename(sys.argv[0]))[0], 1)
    sys.stdout.write('\nSKIP %s: %s\n' % (name, reason))
    sys.stdout.flush()
    case.skipTest(reason)


# ---------------------------------------------------------------------------------------------
# Test cases

class ServerTestCase(unittest.TestCase):
    """A test class sharing one tyto (cls.tyto) across its cases, started in setUpClass with
    cls.BACKEND / cls.CONFIG and stopped (exit status 0 asserted) in tearDownClass."""

    BACKEND = 'redis'
    CONFIG = None

    @classmethod
    def setUpClass(cls):
        cls.tyto = Tyto(backend=cls.BACKEND, config=cls.CONFIG)
        try:
            cls.tyto.start()
        except BaseException:
            cls.tyto.kill()
            raise
        cls.redis = redis_client() if cls.BACKEND == 'redis' else None

    @classmethod
    def tearDownClass(cls):
        if cls.redis is not None:
            cls.redis.close()
        try:
            cls.tyto.stop()
        finally:
            cls.tyto.kill()

    def key(self, info_hash, kind):
        return '%s{%s}:%s' % (self.tyto.prefix, info_hash.hex(), kind)


# ---------------------------------------------------------------------------------------------
# Runner

class OneWorkerTestCase(unittest.TestCase):
    """Each test starts its own one-worker tyto on the memory backend with start_tyto(config)
    (a test of one worker's own limits); all are killed after the test."""

    def setUp(self):
        self.tytos = []

    def tearDown(self):
        for t in self.tytos:
            t.kill()

    def start_tyto(self, config):
        t = Tyto(backend='memory', config={'workers': 1, **config})
        self.tytos.append(t)
        t.start()
        wait_for(lambda: len(children(t.proc.pid)) == 1, 10, 'the worker')
        return t


class _Result(unittest.TextTestResult):
    """Prints the log tail of the servers involved when a case fails."""

    ran_ids = set()

    def startTest(self, test):
        self._mark = len(_started)
        self.ran_ids.add(test.id())
        super().startTest(test)

    def _dump(self):
        mark = getattr(self, '_mark', 0)
        shown = set()
        for t in _started[mark:] + [t for t in _started[:mark] if t.running()]:
            if id(t) in shown:
                continue
            shown.add(id(t))
            self.stream.write('\n----- tyto log %s (tail) -----\n%s\n-----\n'
                              % (t.log_path, t.log()[-3000:]))

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._dump()

    def addError(self, test, err):
        super().addError(test, err)
        self._dump()


def _flatten(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from _flatten(t)
        else:
            yield t


def _at_exit():
    """At exit (also after SIGTERM/SIGINT): stop our own tyto and redis-server children, by
    pid, then remove the private scratch directory if there is one."""
    for t in _started:
        t.kill()
    for r in _redis_servers:
        r.stop()
    _stop_test_cluster()
    if _private_tmp is not None:
        shutil.rmtree(_private_tmp, True)


atexit.register(_at_exit)


def _on_signal(signum, frame):
    raise KeyboardInterrupt('signal %d' % signum)


def main():
    """Runs the calling script's test cases (filtered by TYTO_TEST_FILTER unless the script's own
    name matches it), prints "E2E-RESULT passed=N failed=N skipped=N", exits non-zero on any
    failure."""
    signal.signal(signal.SIGTERM, _on_signal)
    module = sys.modules['__main__']
    suite = unittest.TestLoader().loadTestsFromModule(module)
    filt = os.environ.get('TYTO_TEST_FILTER', '')
    script = os.path.basename(sys.argv[0])
    tests = list(_flatten(suite))
    if filt and filt not in script:
        tests = [t for t in tests if filt in t.id()]
    suite = unittest.TestSuite(tests)
    sys.stdout.write('%s: tyto %s%s\n' % (script, TYTO_BIN, ' (valgrind)' if VALGRIND else ''))
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2, resultclass=_Result)
    result = runner.run(suite)
    ids = {t.id() for t in tests}
    bad = {t.id() for t, _ in result.failures + result.errors}
    bad |= {t.id() for t in result.unexpectedSuccesses}
    # Skips count as failures: a missing dependency must not pass silently. Only a case that
    # this machine cannot run at all (skip_unsupported) counts as skipped, and not as passed.
    skipped = {t.id() for t, _ in result.skipped}
    unsupported = (skipped & _unsupported & ids) - bad
    bad |= skipped - unsupported
    # A case that never ran (its setUpClass failed) is a failed case; a failed setUpClass is
    # therefore not counted again, a failed tearDownClass (e.g. exit status) is.
    failed_ids = (bad & ids) | (ids - result.ran_ids)
    fixtures = {b for b in bad - ids if not b.startswith('setUpClass')}
    passed = len(ids) - len(failed_ids) - len(unsupported)
    failed = len(failed_ids) + len(fixtures)
    sys.stdout.write('E2E-RESULT passed=%d failed=%d skipped=%d\n' % (passed, failed, len(unsupported)))
    sys.stdout.flush()
    sys.exit(1 if failed else 0)
