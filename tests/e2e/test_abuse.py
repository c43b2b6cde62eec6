"""Hostile clients against a running tyto (issue "Reliability and hostile input"): slowloris
heads, oversized and malformed requests, request bodies, other methods, PROXY headers from
untrusted peers, connection floods past http.max_connections, the keep-alive request cap, the
idle timeout, and a burst of malformed announces. After each, a normal announce on a fresh
connection must still succeed promptly, and the worker must still be the same process.

Each case prints one "ABUSE <case>: ..." summary line with its figures.
Run alone: TYTO_BIN=build/tyto /usr/bin/python3 tests/e2e/test_abuse.py"""

import http.client
import os
import random
import re
import secrets
import select
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tytotest                                               # noqa: E402
from tytotest import (Peer, Raw, SLOW, VALGRIND, Tyto, children, metrics_text,  # noqa: E402
                      metrics_values, rand_hash, summary, vm_rss_kb, wait_for)


def socket_fds(pid):
    """Open sockets of a process (listeners, Redis, client connections)."""
    n = 0
    d = '/proc/%d/fd' % pid
    for fd in os.listdir(d):
        try:
            if os.readlink(os.path.join(d, fd)).startswith('socket:'):
                n += 1
        except OSError:
            pass
    return n


def accepted_client_ports(pid, port):
    """Client-side ports of the TCP connections to port that process pid holds open (accepted),
    from its socket inodes and /proc/net/tcp{,6}: connections still in the listen backlog have no
    owner yet (inode 0), so they are not among them."""
    inodes = set()
    d = '/proc/%d/fd' % pid
    for fd in os.listdir(d):
        try:
            m = re.match(r'socket:\[(\d+)\]', os.readlink(os.path.join(d, fd)))
        except OSError:
            continue
        if m:
            inodes.add(m.group(1))
    ports = set()
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            with open(table) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            col = line.split()
            local_port = int(col[1].rsplit(':', 1)[1], 16)
            if local_port == port and col[3] != '0A' and col[9] in inodes:   # 0A: the listener
                ports.add(int(col[2].rsplit(':', 1)[1], 16))
    return ports


def listen_backlog(port):
    """The listener's line from `ss -ltn` (its Send-Q column is the backlog), for messages."""
    try:
        out = subprocess.run(['ss', '-ltn', 'sport = :%d' % port], capture_output=True, text=True,
                             timeout=5).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return repr(e)
    return ' | '.join(' '.join(line.split()) for line in out.splitlines()[1:])


def per_worker_requests(tyto):
    """{worker slot: requests answered} from tyto_worker_requests_total."""
    return {k: int(v) for k, v in metrics_values(tyto).items() if k.startswith('tyto_worker_requests_total{')}


def routes_other_than(m, route):
    """Requests on every route but one, from a metrics_values() dict."""
    return sum(int(v) for k, v in m.items()
               if k.startswith('tyto_requests_total{') and k != 'tyto_requests_total{route="%s"}' % route)


def get_from(t, path, source='127.0.0.1', headers=None):
    """One GET on a fresh connection from the loopback address source -> Response."""
    conn = http.client.HTTPConnection('127.0.0.1', t.port, timeout=5 * SLOW, source_address=(source, 0))
    try:
        conn.request('GET', path, headers=headers or {})
        r = conn.getresponse()
        return tytotest.Response(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


def swarm_members(t, info_hash):
    """Every member (b'address:port') of the swarm's two sorted sets in Redis."""
    c = tytotest.Redis(tytotest.redis_socket())
    try:
        out = set()
        for kind in ('leechers', 'seeders'):
            out |= set(c.zscores('%s{%s}:%s' % (t.prefix, info_hash.hex(), kind)))
        return out
    finally:
        c.close()


RATE_LIMITED = b'too many requests from this address, retry later'
PEER_CAP = b'too many ports from this address in this swarm'
FORWARDED_INVALID = b"the proxy's X-Forwarded-For or X-Real-IP header is malformed"


def failures_by_reason(tyto):
    """{reason: count} from /metrics' tyto_failures_total."""
    text = metrics_text(tyto)
    out = {}
    for m in re.finditer(r'^tyto_failures_total\{reason="((?:[^"\\]|\\.)*)"\} (\d+)$', text, re.M):
        out[m.group(1).replace('\\"', '"').replace('\\\\', '\\')] = int(m.group(2))
    if not out:
        raise AssertionError('no tyto_failures_total in /metrics:\n' + text[:2000])
    return out


def exchange(port, payload, wait=3.0):
    """Sends payload on a fresh connection and reads until the server closes it or wait seconds
    pass. Returns (bytes received, seconds until the close or None if still open)."""
    s = socket.create_connection(('127.0.0.1', port), timeout=wait)
    data = []
    t0 = time.monotonic()
    closed = None
    try:
        try:
            s.sendall(payload)
        except OSError:
            pass                   # the server may close before it read everything
        deadline = t0 + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = time.monotonic() - t0
                break
            if not chunk:
                closed = time.monotonic() - t0
                break
            data.append(chunk)
    finally:
        s.close()
    return b''.join(data), closed


def status_of(data):
    m = re.match(rb'HTTP/1\.[01] (\d{3}) ', data)
    return int(m.group(1)) if m else None


def announce_query(info_hash=None, peer_id=None, port=6881):
    p = Peer(port)
    return tytotest.announce_path(info_hash or rand_hash(), peer_id or p.peer_id, p.port, left=1)


class AbuseTest(unittest.TestCase):

    def setUp(self):
        self.tytos = []

    def tearDown(self):
        for t in self.tytos:
            t.kill()

    def start_tyto(self, config=None, workers=1):
        t = Tyto(config={'workers': workers, **(config or {})})
        self.tytos.append(t)
        t.start()
        wait_for(lambda: len(children(t.proc.pid)) == workers, 10, 'workers')
        return t

    def worker(self, t):
        pids = children(t.proc.pid)
        self.assertEqual(len(pids), 1)
        return pids[0]

    def normal_announce_ms(self, t, bound_ms=500):
        """A normal announce on a fresh connection: asserts success within bound_ms."""
        t0 = time.monotonic()
        d = t.announce(rand_hash(), Peer(), left=1)
        ms = (time.monotonic() - t0) * 1000.0
        self.assertIn(b'interval', d)
        self.assertLess(ms, bound_ms * SLOW, 'a normal announce took %.0f ms' % ms)
        return ms

    # -----------------------------------------------------------------------------------------

    def test_slowloris(self):
        head_ms = 1000
        n = 200
        t = self.start_tyto({'http': {'head_timeout_ms': head_ms}})
        wpid = self.worker(t)
        head = (('GET %s HTTP/1.1\r\nHost: tracker\r\nUser-Agent: slow\r\n'
                 % announce_query()).encode())          # never the final empty line
        conns = []
        for _ in range(n):
            s = socket.create_connection(('127.0.0.1', t.port), timeout=5)
            s.setblocking(False)
            conns.append({'sock': s, 'start': time.monotonic(), 'sent': 0, 'data': b'', 'closed': None})

        normal = []
        stop = threading.Event()

        def normal_load():
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    d = t.announce(rand_hash(), Peer(), left=1, expect_ok=False)
                    normal.append(((time.monotonic() - t0) * 1000.0, b'failure reason' not in d))
                except Exception as e:  # noqa: BLE001
                    normal.append(((time.monotonic() - t0) * 1000.0, repr(e)))
                stop.wait(0.1)

        th = threading.Thread(target=normal_load, daemon=True)
        th.start()
        try:
            deadline = time.monotonic() + (head_ms / 1000.0 + 5) * SLOW
            next_tick = time.monotonic()
            while time.monotonic() < deadline:
                open_ = [c for c in conns if c['closed'] is None]
                if not open_:
                    break
                now = time.monotonic()
                if now >= next_tick:
                    for c in open_:
                        try:
                            c['sock'].send(head[c['sent'] % len(head):][:1])
                            c['sent'] += 1
                        except BlockingIOError:
                            pass
                        except OSError:
                            c['closed'] = time.monotonic()
                    next_tick = now + 0.2
                open_ = [c for c in open_ if c['closed'] is None]
                by_fd = {c['sock'].fileno(): c for c in open_}
                r, _, _ = select.select(list(by_fd), [], [], max(0.0, min(0.02, next_tick - time.monotonic())))
                for fd in r:
                    c = by_fd[fd]
                    try:
                        chunk = c['sock'].recv(4096)
                    except BlockingIOError:
                        continue
                    except OSError:
                        chunk = b''
                    if chunk:
                        c['data'] += chunk
                    else:
                        c['closed'] = time.monotonic()
        finally:
            stop.set()
            th.join(10 * SLOW)
            for c in conns:
                c['sock'].close()
        still_open = [c for c in conns if c['closed'] is None]
        lifetimes = [c['closed'] - c['start'] for c in conns if c['closed'] is not None]
        got_408 = sum(1 for c in conns if c['data'].startswith(b'HTTP/1.1 408'))
        other = [c['data'][:60] for c in conns if c['data'] and not c['data'].startswith(b'HTTP/1.1 408')]
        normal_ms = max((ms for ms, _ in normal), default=0.0)
        summary('ABUSE slowloris: conns=%d closed=%d answered_408=%d closed_within_s=%.2f (min %.2f) '
                'max_bytes_sent=%d normal_announces=%d normal_announce_max_ms=%.0f '
                '(http.head_timeout_ms=%d, 1 byte / 200 ms)'
                % (n, n - len(still_open), got_408, max(lifetimes, default=0), min(lifetimes, default=0),
                   max(c['sent'] for c in conns), len(normal), normal_ms, head_ms))
        self.assertEqual(len(still_open), 0, '%d slow connections still open' % len(still_open))
        self.assertEqual(other, [], 'replies other than 408 to slow heads')
        self.assertLessEqual(max(lifetimes), (head_ms / 1000.0 + 1.0) * SLOW, 'cut off late')
        self.assertGreaterEqual(min(lifetimes), head_ms / 1000.0 * 0.9, 'cut off before the head timeout')
        self.assertGreater(len(normal), 5)
        self.assertEqual([x for x in normal if x[1] is not True], [], 'normal announces during slowloris')
        self.assertLess(normal_ms, 500 * SLOW, 'normal announces were slow during slowloris')
        self.normal_announce_ms(t)
        self.assertEqual(self.worker(t), wpid)
        t.stop()

    def test_oversized_and_malformed_requests(self):
        t = self.start_tyto({'proxy': {'trusted': ['10.0.0.0/8'], 'protocol': True}})
        wpid = self.worker(t)
        good = announce_query()
        rnd = random.Random(20240601)
        cases = [
            ('request-line-20KB', ('GET /announce?x=%s HTTP/1.1\r\nHost: t\r\n\r\n'
                                   % ('a' * 20000)).encode(), (431, 414, 400)),
            ('100-short-headers', ('GET %s HTTP/1.1\r\n%s\r\n'
                                   % (good, ''.join('X-H%d: v\r\n' % i for i in range(100)))).encode(),
             (431,)),
            ('100-headers-60KB', ('GET %s HTTP/1.1\r\n%s\r\n'
                                  % (good, ''.join('X-H%d: %s\r\n' % (i, 'v' * 600) for i in range(100)))).encode(),
             (431,)),
            ('body-content-length-10', ('GET %s HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\n0123456789'
                                        % good).encode(), (413,)),
            ('post', ('POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n' % good).encode(), (405,)),
            ('delete', ('DELETE /announce HTTP/1.1\r\nHost: t\r\n\r\n').encode(), (405,)),
            ('proxy-v1-untrusted', ('PROXY TCP4 1.2.3.4 127.0.0.1 1111 6969\r\nGET %s HTTP/1.1\r\n'
                                    'Host: t\r\n\r\n' % good).encode(), (400,)),
            ('proxy-v2-untrusted', b'\r\n\r\n\x00\r\nQUIT\n' + bytes([0x21, 0x11]) + struct.pack('!H', 12) +
             socket.inet_aton('1.2.3.4') + socket.inet_aton('127.0.0.1') + struct.pack('!HH', 1111, 6969) +
             ('GET %s HTTP/1.1\r\nHost: t\r\n\r\n' % good).encode(), (400,)),
        ]
        for k in range(10):
            blob = bytes(rnd.randrange(256) for _ in range(rnd.randrange(16, 1500)))
            cases.append(('garbage-%d' % k, blob + b'\r\n\r\n', (400,)))
        for k in range(3):
            # Binary with no line end at all: refused without waiting for more (or for a timeout).
            cases.append(('garbage-noeol-%d' % k, b'\x00\xff' + bytes(rnd.randrange(256) for _ in range(200)), (400,)))
        results = []
        for name, payload, allowed in cases:
            data, closed = exchange(t.port, payload, wait=4.0 * SLOW)
            st = status_of(data)
            results.append((name, st, closed))
            self.assertIn(st, allowed, '%s: got %r' % (name, data[:200]))
            self.assertIn(b'Connection: close', data.split(b'\r\n\r\n')[0], '%s: %r' % (name, data[:300]))
            self.assertIsNotNone(closed, '%s: the server did not close the connection' % name)
            if st == 405:
                self.assertIn(b'\r\nAllow: GET, HEAD', data)
            self.normal_announce_ms(t)
        summary('ABUSE malformed: %s; max_close_s=%.2f normal_announce_ms=%.0f'
                % (' '.join('%s=%s' % (n, s) for n, s, _ in results[:8]) +
                   ' garbage(13)=%s' % sorted({s for n, s, _ in results[8:]}),
                   max(c for _, _, c in results), self.normal_announce_ms(t)))
        self.assertEqual(self.worker(t), wpid)
        t.stop()

    def test_connection_flood(self):
        maxc, n = 50, 300
        t = self.start_tyto({'http': {'max_connections': maxc, 'head_timeout_ms': 60000,
                                      'idle_timeout_s': 60}})
        wpid = self.worker(t)
        time.sleep(0.2)
        base = socket_fds(wpid)
        rss0 = vm_rss_kb(wpid)
        conns = []
        try:
            for i in range(n):
                try:
                    conns.append(socket.create_connection(('127.0.0.1', t.port), timeout=2 * SLOW))
                except socket.timeout:
                    raise AssertionError(
                        'connection %d of %d timed out (%d accepted by the worker): the listen '
                        'backlog holds fewer than %d connections; listener: %s'
                        % (i + 1, n, socket_fds(wpid) - base, n - maxc, listen_backlog(t.port))) from None
            # The worker takes up to max_connections; the rest wait in the listen backlog.
            wait_for(lambda: socket_fds(wpid) - base >= maxc, 5, '%d accepted connections' % maxc)
            peak = 0
            for _ in range(10):
                peak = max(peak, socket_fds(wpid) - base)
                time.sleep(0.05)
            self.assertEqual(peak, maxc, 'open connections in the worker')
            rss_peak = vm_rss_kb(wpid)
            # Which connections the worker took is the kernel's choice, not the order of connect()
            # (TCP_DEFER_ACCEPT hands over idle connections as their deferral runs out), so the
            # test asks the worker's socket table rather than assuming the first maxc.
            accepted = accepted_client_ports(wpid, t.port)
            self.assertEqual(len(accepted), maxc, 'connections the worker holds')
            taken = [s for s in conns if s.getsockname()[1] in accepted]
            backlog = [s for s in conns if s.getsockname()[1] not in accepted]
            self.assertEqual(len(taken), maxc, 'accepted connections are ours')
            # Requests on connections still in the backlog wait ...
            waiting = backlog[:10]
            for s in waiting:
                s.sendall(('GET %s HTTP/1.1\r\nHost: t\r\n\r\n' % announce_query()).encode())
            r, _, _ = select.select(waiting, [], [], 0.3)
            self.assertEqual(r, [], 'a connection past max_connections was served')
            # ... and are served once earlier connections close. The worker refills its
            # max_connections from the backlog ...
            t0 = time.monotonic()
            for s in taken:
                s.close()
            wait_for(lambda: socket_fds(wpid) - base == maxc, 5, 'the next connections to be accepted')
            # ... in the kernel's order, which is not the order of connect() (TCP_DEFER_ACCEPT
            # queues the idle connections whose deferral ran out last-first): once every other
            # connection has closed, the waiting requests must be served.
            for s in backlog[10:]:
                s.close()
            served_ms = []
            for s in waiting:
                s.settimeout(5 * SLOW)
                resp = tytotest.read_response(s.makefile('rb'))
                self.assertIsNotNone(resp)
                d = t.decode_ok(resp, 'announce on a connection from the backlog')
                self.assertNotIn(b'failure reason', d)
                served_ms.append((time.monotonic() - t0) * 1000.0)
            rss_peak = max(rss_peak, vm_rss_kb(wpid))
        finally:
            for s in conns:
                s.close()
        wait_for(lambda: socket_fds(wpid) - base <= 0, 5, 'the flood connections to close')
        normal_ms = self.normal_announce_ms(t)
        rss1 = vm_rss_kb(wpid)
        summary('ABUSE conn-flood: conns=%d max_open=%d backlog_served_ms=%.0f normal_announce_ms=%.0f '
                'worker_rss_kb=%d->%d (peak %d) (http.max_connections=%d, workers=1)'
                % (n, peak, max(served_ms), normal_ms, rss0, rss1, rss_peak, maxc))
        self.assertLess(rss_peak, (64 if not VALGRIND else 1024) * 1024, 'worker RSS')
        self.assertEqual(self.worker(t), wpid)
        t.stop()

    def test_keepalive_request_cap(self):
        cap = 5
        t = self.start_tyto({'http': {'max_requests_per_connection': cap}})
        s = socket.create_connection(('127.0.0.1', t.port), timeout=5 * SLOW)
        rf = s.makefile('rb')
        conn_headers = []
        try:
            for i in range(cap):
                s.sendall(('GET %s HTTP/1.1\r\nHost: t\r\n\r\n' % announce_query()).encode())
                resp = tytotest.read_response(rf)
                self.assertIsNotNone(resp, 'reply %d missing' % (i + 1))
                d = t.decode_ok(resp, 'announce %d' % (i + 1))
                self.assertNotIn(b'failure reason', d)
                conn_headers.append(resp.header('Connection'))
            t0 = time.monotonic()
            rest = rf.read()
            closed_s = time.monotonic() - t0
        finally:
            rf.close()
            s.close()
        summary('ABUSE keepalive-cap: requests=%d connection_headers=%r closed_after_s=%.3f'
                % (cap, conn_headers, closed_s))
        self.assertEqual([h for h in conn_headers[:-1] if h and 'close' in h.lower()], [],
                         'Connection: close before the cap')
        self.assertEqual((conn_headers[-1] or '').lower(), 'close', 'the 5th reply lacks Connection: close')
        self.assertEqual(rest, b'', 'bytes after the last reply')
        self.assertLess(closed_s, 1.0 * SLOW, 'the connection was not closed after the last reply')
        self.normal_announce_ms(t)
        t.stop()

    def test_idle_timeout(self):
        t = self.start_tyto({'http': {'idle_timeout_s': 1}})
        s = socket.create_connection(('127.0.0.1', t.port), timeout=10 * SLOW)
        rf = s.makefile('rb')
        try:
            s.sendall(('GET %s HTTP/1.1\r\nHost: t\r\n\r\n' % announce_query()).encode())
            resp = tytotest.read_response(rf)
            t0 = time.monotonic()
            self.assertIsNotNone(resp)
            self.assertNotIn(b'failure reason', t.decode_ok(resp, 'announce'))
            self.assertNotEqual((resp.header('Connection') or '').lower(), 'close')
            rest = rf.read()
            idle_s = time.monotonic() - t0
        finally:
            rf.close()
            s.close()
        summary('ABUSE idle-timeout: closed_after_s=%.2f (http.idle_timeout_s=1)' % idle_s)
        self.assertEqual(rest, b'')
        self.assertGreaterEqual(idle_s, 0.9)
        self.assertLess(idle_s, 1.0 + 1.0 * SLOW)
        self.normal_announce_ms(t)
        t.stop()

    def rate_limit_attempts(self, window_s, run):
        """Calls run(source address) from a fresh loopback address per attempt until one attempt
        stays inside one rate-limit window (tyto's clock is the same as time.time()); returns
        run's result. A window of an hour makes a second attempt rare and a third unheard of."""
        for attempt in range(3):
            t0 = time.time()
            result = run('127.0.0.%d' % (20 + attempt))
            if int(t0) // window_s == int(time.time()) // window_s:
                return result
        raise AssertionError('three attempts each crossed a %d s window boundary' % window_s)

    def test_announce_rate_limit_per_address(self):
        # 5 announces an hour per address, counted across both workers: connections from one
        # address land on either worker (SO_REUSEPORT spreads them by port), and past the 5th
        # every announce is refused whichever takes it.
        limit, window, n = 5, 3600, 24
        t = self.start_tyto(config={'rate_limit': {'announces': limit, 'window_s': window}}, workers=2)
        ih = rand_hash()
        before = failures_by_reason(t)
        m0 = metrics_values(t)

        sent = []

        def burst(source):
            peers = [Peer() for _ in range(n)]
            sent.append(n)
            replies = [t.decode_ok(get_from(t, tytotest.announce_path(ih, p.peer_id, p.port, left=1), source),
                                   'announce %d' % i) for i, p in enumerate(peers)]
            return source, peers, replies

        source, peers, replies = self.rate_limit_attempts(window, burst)
        m1 = metrics_values(t)
        passed = [i for i, d in enumerate(replies) if b'failure reason' not in d]
        # The burst stayed in one window: exactly the first `limit` passed.
        self.assertEqual(passed, list(range(limit)))
        for d in replies[limit:]:
            self.assertEqual(d[b'failure reason'], RATE_LIMITED)
        # A refused announce never reached storage: its peer is not in the swarm.
        members = swarm_members(t, ih)
        for i, p in enumerate(peers):
            self.assertEqual(b'%s:%d' % (source.encode(), p.port) in members, i in passed)
        # Both workers took some of the burst: each worker's requests, less every request that
        # was not an announce (/metrics itself, if a worker serves it), are its announces.
        per_worker = {k: int(v - m0.get(k, 0)) for k, v in m1.items() if k.startswith('tyto_worker_requests_total{')}
        others = routes_other_than(m1, 'announce') - routes_other_than(m0, 'announce')
        self.assertEqual(len(per_worker), 2, per_worker)
        self.assertEqual(sum(per_worker.values()) - others, sum(sent),
                         'per-worker counts %r, %d other requests' % (per_worker, others))
        self.assertGreater(min(per_worker.values()) - others, 0,
                           'one worker took the whole burst: %r (%d other requests)' % (per_worker, others))
        # Another address is counted apart.
        body = get_from(t, tytotest.announce_path(ih, Peer().peer_id, 7000, left=1), '127.0.0.2').body
        self.assertNotIn(b'failure reason', body)
        after = failures_by_reason(t)
        refused = n - limit
        self.assertEqual(after[RATE_LIMITED.decode()] - before.get(RATE_LIMITED.decode(), 0), refused)
        summary('ABUSE rate-limit: announces=%d passed=%d refused=%d per_worker=%r '
                '(rate_limit.announces=%d per %d s, 2 workers)'
                % (n, len(passed), refused, sorted(per_worker.values()), limit, window))
        t.stop()

    def test_scrape_weighs_its_hashes_in_the_rate_limit(self):
        # 10 units an hour: a scrape of 4 hashes costs 4, an announce 1. Two scrapes (8) pass,
        # a third (12) is refused without being charged, so two announces still fit; then
        # everything is refused, scrapes of one hash too.
        limit, window = 10, 3600
        t = self.start_tyto(config={'rate_limit': {'announces': limit, 'window_s': window}}, workers=2)
        hashes = [rand_hash() for _ in range(4)]
        t.announce(hashes[0], Peer(), left=1)          # from 127.0.0.1: counted apart

        def run(source):
            out = []
            for _ in range(3):
                out.append(t.decode_ok(get_from(t, tytotest.scrape_path(hashes), source), 'scrape'))
            for _ in range(3):
                p = Peer()
                out.append(t.decode_ok(get_from(t, tytotest.announce_path(hashes[1], p.peer_id, p.port, left=1),
                                                source), 'announce'))
            out.append(t.decode_ok(get_from(t, tytotest.scrape_path(hashes[:1]), source), 'scrape'))
            return out

        r = self.rate_limit_attempts(window, run)
        self.assertIn(b'files', r[0])
        self.assertEqual(r[0][b'files'][hashes[0]][b'incomplete'], 1)
        self.assertIn(b'files', r[1])
        self.assertEqual(r[2].get(b'failure reason'), RATE_LIMITED, r[2])
        self.assertNotIn(b'failure reason', r[3])
        self.assertNotIn(b'failure reason', r[4])
        self.assertEqual(r[5].get(b'failure reason'), RATE_LIMITED, r[5])
        self.assertEqual(r[6].get(b'failure reason'), RATE_LIMITED, r[6])
        summary('ABUSE scrape-weight: 2 scrapes of 4 hashes passed, the 3rd refused, 2 announces '
                'then passed, the rest refused (rate_limit.announces=%d)' % limit)
        t.stop()

    def test_peer_cap_per_address_and_swarm(self):
        # One address, many ports, one swarm: the 17th port is refused, whichever of the two
        # workers takes it; re-announces, other swarms and other addresses are unaffected, and
        # event=stopped frees a port.
        cap = 16
        t = self.start_tyto(config={'swarm': {'max_peers_per_address': cap}}, workers=2)
        before = failures_by_reason(t)
        ih, other = rand_hash(), rand_hash()
        peers = [Peer(port=30000 + i) for i in range(cap + 4)]

        def announce(h, p, source='127.0.0.1', **kw):
            return t.decode_ok(get_from(t, tytotest.announce_path(h, p.peer_id, p.port, left=1, **kw), source),
                               'announce port %d' % p.port)

        first = [announce(ih, p) for p in peers]
        ok = [i for i, d in enumerate(first) if b'failure reason' not in d]
        self.assertEqual(ok, list(range(cap)))
        for d in first[cap:]:
            self.assertEqual(d[b'failure reason'], PEER_CAP)
        members = swarm_members(t, ih)
        self.assertEqual(members, {b'127.0.0.1:%d' % p.port for p in peers[:cap]})
        # Known ports re-announce, twice.
        for _ in range(2):
            for p in peers[:cap]:
                self.assertNotIn(b'failure reason', announce(ih, p))
        # Another swarm, another address: their own caps.
        for p in peers[:cap]:
            self.assertNotIn(b'failure reason', announce(other, p))
            self.assertNotIn(b'failure reason', announce(ih, p, source='127.0.0.2'))
        self.assertEqual(announce(other, peers[cap]).get(b'failure reason'), PEER_CAP)
        # event=stopped frees its port for a new one.
        self.assertNotIn(b'failure reason', announce(ih, peers[0], event='stopped'))
        self.assertNotIn(b'failure reason', announce(ih, peers[cap]))
        self.assertEqual(announce(ih, peers[cap + 1]).get(b'failure reason'), PEER_CAP)
        self.assertEqual(len([m for m in swarm_members(t, ih) if m.startswith(b'127.0.0.1:')]), cap)
        after = failures_by_reason(t)
        refused = after[PEER_CAP.decode()] - before.get(PEER_CAP.decode(), 0)
        self.assertEqual(refused, 4 + 1 + 1)
        summary('ABUSE peer-cap: ports=%d admitted=%d refused=%d redis_members=%d '
                '(swarm.max_peers_per_address=%d, 2 workers)'
                % (len(peers), len(ok), len(peers) - len(ok), len(members), cap))
        t.stop()

    def test_malformed_forwarded_header_from_trusted_proxy(self):
        # A trusted proxy (127.0.0.1) sending a malformed X-Forwarded-For or X-Real-IP: refused
        # with its own reason, not stored under the proxy's address.
        t = self.start_tyto(config={'proxy': {'trusted': ['127.0.0.1']}})
        ih = rand_hash()
        cases = [({'X-Forwarded-For': 'bogus'}, False), ({'X-Forwarded-For': '203.0.113.5, 10.0.0.1:99999'}, False),
                 ({'X-Real-IP': 'not-an-ip'}, False), ({'X-Forwarded-For': '203.0.113.5'}, True),
                 ({'X-Forwarded-For': 'garbage, 198.51.100.7'}, True)]
        stored = set()
        for headers, good in cases:
            p = Peer()
            d = t.decode_ok(get_from(t, tytotest.announce_path(ih, p.peer_id, p.port, left=1), headers=headers),
                            repr(headers))
            if good:
                self.assertNotIn(b'failure reason', d, headers)
                stored.add(p.port)
            else:
                self.assertEqual(d.get(b'failure reason'), FORWARDED_INVALID, headers)
        d = t.decode_ok(get_from(t, tytotest.scrape_path([ih]), headers={'X-Forwarded-For': 'bogus'}), 'scrape')
        self.assertEqual(d.get(b'failure reason'), FORWARDED_INVALID)
        members = swarm_members(t, ih)
        self.assertEqual({int(m.rsplit(b':', 1)[1]) for m in members}, stored)
        self.assertEqual({m.rsplit(b':', 1)[0] for m in members}, {b'203.0.113.5', b'198.51.100.7'})
        # An untrusted client's headers are still ignored, malformed or not.
        p = Peer()
        d = t.decode_ok(get_from(t, tytotest.announce_path(ih, p.peer_id, p.port, left=1), '127.0.0.2',
                                 {'X-Forwarded-For': 'bogus'}), 'untrusted')
        self.assertNotIn(b'failure reason', d)
        self.assertIn(b'127.0.0.2:%d' % p.port, swarm_members(t, ih))
        t.stop()

    def test_numwant_negative_or_empty_means_default(self):
        # tytotest: numwant_default 4, numwant_max 8. BEP 15's -1 and an empty value ask for the
        # default; garbage is still refused.
        t = self.start_tyto()
        ih = rand_hash()
        for _ in range(10):
            t.announce(ih, Peer(), left=1)
        for value, want in (('-1', 4), ('', 4), ('-5', 4), ('2', 2), ('100', 8)):
            p = Peer()
            path = tytotest.announce_path(ih, p.peer_id, p.port, left=1, extra=[('numwant', tytotest.Raw(value))])
            d = t.announce_raw(path)
            self.assertNotIn(b'failure reason', d, value)
            self.assertEqual(len(tytotest.parse_peers4(d[b'peers'])), want, 'numwant=%s' % value)
        for value in ('abc', '-', '1.5'):
            p = Peer()
            d = t.announce_raw(tytotest.announce_path(ih, p.peer_id, p.port, left=1,
                                                      extra=[('numwant', tytotest.Raw(value))]))
            self.assertIn(b'numwant', d.get(b'failure reason', b''), value)
        t.stop()

    def test_burst_of_malformed_announces(self):
        total, nconn = 2000, 4
        t = self.start_tyto()
        wpid = self.worker(t)
        before = failures_by_reason(t)
        rnd = random.Random(7)

        def bad_path():
            ih, pid, port = rand_hash(), b'-TT0001-' + secrets.token_bytes(12), rnd.randrange(1, 65536)
            params = {'info_hash': ih, 'peer_id': pid, 'port': port, 'uploaded': 0, 'downloaded': 0,
                      'left': 1, 'event': None, 'numwant': None, 'compact': None}
            extra = []
            kind = rnd.randrange(18)
            if kind == 0:
                params['info_hash'] = secrets.token_bytes(rnd.choice([0, 1, 19, 21, 40]))
            elif kind == 1:
                params['info_hash'] = None
            elif kind == 2:
                params['peer_id'] = secrets.token_bytes(rnd.choice([0, 5, 19, 21]))
            elif kind == 3:
                params['peer_id'] = None
            elif kind == 4:
                params['port'] = None
            elif kind == 5:
                params['port'] = rnd.choice(['0', '65536', '-1', 'abc', '99999999999999999999', '1e3'])
            elif kind == 6:
                params['left'] = rnd.choice(['-1', 'x', '1.5', '184467440737095516160'])
            elif kind == 7:
                params['uploaded'] = rnd.choice(['-5', '0x10', ''])
            elif kind == 8:
                params['downloaded'] = rnd.choice(['-5', 'ten', '+3'])
            elif kind == 9:
                params['numwant'] = rnd.choice(['-x', 'lots', '5x'])      # -1 means the default
            elif kind == 10:
                params['compact'] = rnd.choice(['2', 'yes', '-1'])
            elif kind == 11:
                params['event'] = rnd.choice(['bogus', 'start', 'STOPPED', 'completedx'])
            elif kind == 12:
                params['info_hash'] = Raw('%zz' + '%00' * 19)
            elif kind == 13:
                params['peer_id'] = Raw('%' + 'A' * 19)
            elif kind == 14:
                extra.append(('port', 6881))
            elif kind == 15:
                extra.append(('info_hash', rand_hash()))
            elif kind == 16:
                params['port'] = Raw('%3')
            else:
                extra.append(('left', 5))
            return '/announce?' + tytotest.build_query(list(params.items()) + extra)

        paths = [bad_path() for _ in range(total)]
        seen = {}
        errors = []
        lock = threading.Lock()

        def client(chunk):
            conn = t.connection(timeout=10)
            try:
                for p in chunk:
                    conn.request('GET', p)
                    r = conn.getresponse()
                    resp = tytotest.Response(r.status, r.getheaders(), r.read())
                    try:
                        d = t.decode_ok(resp, p)
                        if set(d) != {b'failure reason'} or not d[b'failure reason']:
                            raise AssertionError('not a failure: %s -> %r' % (p, d))
                        with lock:
                            reason = d[b'failure reason'].decode()
                            seen[reason] = seen.get(reason, 0) + 1
                    except AssertionError as e:
                        with lock:
                            errors.append(str(e)[:300])
                    if resp.header('Connection') and 'close' in resp.header('Connection').lower():
                        with lock:
                            errors.append('Connection: close after %s' % p)
                        return
            except Exception as e:  # noqa: BLE001
                with lock:
                    errors.append(repr(e))
            finally:
                conn.close()

        t0 = time.monotonic()
        chunks = [paths[i::nconn] for i in range(nconn)]
        threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in chunks]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60 * SLOW)
        elapsed = time.monotonic() - t0
        after = failures_by_reason(t)
        delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        delta = {k: v for k, v in delta.items() if v}
        summary('ABUSE malformed-burst: requests=%d connections=%d failures_replied=%d metrics_failures=%d '
                'reasons=%d errors=%d seconds=%.2f'
                % (total, nconn, sum(seen.values()), sum(delta.values()), len(seen), len(errors), elapsed))
        self.assertFalse(any(th.is_alive() for th in threads))
        self.assertEqual(errors[:5], [])
        self.assertEqual(sum(seen.values()), total)
        self.assertEqual(sum(delta.values()), total, '/metrics failure counters')
        self.assertEqual(delta, seen, 'per-reason failure counters against the replies')
        self.assertGreaterEqual(len(seen), 8, 'the burst should hit many different reasons')
        self.normal_announce_ms(t)
        self.assertEqual(self.worker(t), wpid)
        t.stop()


if __name__ == '__main__':
    tytotest.main()
