"""Overload (issue 9): a Redis slower than the load. Between tyto and the test Redis runs a proxy
(written here, asyncio in a thread, loopback only) that forwards tyto's commands to Redis at a
fixed byte rate, i.e. a Redis of limited capacity, and forwards replies at once. Many concurrent
clients announce past that capacity for a few seconds with redis.timeout_ms = 200.

What it asserts: the worker's memory (VmRSS from /proc) stays bounded; what tyto has queued at
Redis (the bytes waiting in the proxy) stays bounded by http.max_pending announces; requests past
the bound are refused at once with "tracker is overloaded" instead of being queued; in-flight +
backlog (/stats) never exceeds http.max_pending; after the load stops and the proxy is fast again,
announces succeed and the backlog gauge is back to 0.

Before the fix a timed-out request freed its http.max_pending slot while its commands stayed
queued in hiredis: the queue (and the worker's memory) grew with every timeout and nothing was
ever refused.

Prints one "OVERLOAD ..." line with the figures (for the README's "What it survives").
Run alone: TYTO_BIN=build/tyto /usr/bin/python3 tests/e2e/test_overload.py"""

import asyncio
import http.client
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tytotest                                                      # noqa: E402
from tytotest import (Peer, SLOW, Tyto, children, rand_hash, redis_socket,  # noqa: E402
                      stats, vm_rss_kb, wait_for)

OVERLOADED = b'tracker is overloaded, retry later'
TIMED_OUT = b'tracker storage timed out, retry later'


class SlowProxy:
    """TCP 127.0.0.1:port -> the Redis unix socket. Each connection's client-to-Redis bytes wait
    in a buffer and leave at `rate` bytes/s (None: at once); Redis's replies pass at once. A
    connection tyto closes loses what is still buffered (what a dropped connection never got to
    send). queued / max_queued: bytes buffered over all connections."""

    def __init__(self, redis_path):
        self.redis_path = redis_path
        self.rate = None
        self.queued = 0
        self.max_queued = 0
        self.connections = 0
        self.port = None
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.server = None

    def start(self):
        self.thread.start()
        if not self.ready.wait(10):
            raise AssertionError('proxy did not start')
        return self

    def stop(self):
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)

    def reset_max(self):
        self.loop.call_soon_threadsafe(lambda: setattr(self, 'max_queued', self.queued))

    def _run(self):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._conn, '127.0.0.1', 0))
        self.port = self.server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    def _count(self, n):
        self.queued += n
        self.max_queued = max(self.max_queued, self.queued)

    async def _conn(self, creader, cwriter):
        self.connections += 1
        try:
            rreader, rwriter = await asyncio.open_unix_connection(self.redis_path)
        except OSError:
            cwriter.close()
            return
        buf = bytearray()
        wake = asyncio.Event()
        state = {'closed': False}

        async def up_read():
            try:
                while True:
                    data = await creader.read(65536)
                    if not data:
                        break
                    buf.extend(data)
                    self._count(len(data))
                    wake.set()
            except OSError:
                pass
            state['closed'] = True
            wake.set()

        async def up_write():
            try:
                while not state['closed']:
                    if not buf:
                        wake.clear()
                        await wake.wait()
                        continue
                    rate = self.rate
                    n = len(buf) if rate is None else max(1, min(len(buf), rate // 50))
                    chunk = bytes(buf[:n])
                    del buf[:n]
                    self._count(-n)
                    rwriter.write(chunk)
                    await rwriter.drain()
                    if rate is not None:
                        await asyncio.sleep(n / rate)
            except OSError:
                pass
            self._count(-len(buf))
            buf.clear()
            rwriter.close()

        async def down():
            try:
                while True:
                    data = await rreader.read(65536)
                    if not data:
                        break
                    cwriter.write(data)
                    await cwriter.drain()
            except OSError:
                pass
            state['closed'] = True
            wake.set()
            cwriter.close()

        await asyncio.gather(up_read(), up_write(), down())


def instrumented(pid):
    """True when RSS says nothing about tyto's own memory: valgrind, or a sanitizer runtime
    (ASan's quarantine keeps freed blocks)."""
    if tytotest.VALGRIND:
        return True
    with open('/proc/%d/maps' % pid) as f:
        return any('libasan' in line or 'libtsan' in line for line in f)


class OverloadTest(unittest.TestCase):

    def setUp(self):
        self.proxy = SlowProxy(redis_socket()).start()
        self.tyto = None

    def tearDown(self):
        if self.tyto is not None:
            self.tyto.kill()
        self.proxy.stop()

    def test_slow_redis_past_capacity_sheds_and_recovers(self):
        max_pending = 32
        clients = 24            # fewer than max_pending: only a counted backlog can refuse one
        # bytes/s: some 14 announces/s; a tyto under valgrind sends some 20 a second, so there
        # Redis must be slower still to fall behind, and the run longer to see the backlog drop
        rate = 16 * 1024 // SLOW
        seconds = 5.0 if SLOW == 1 else 15.0
        timeout_ms = 200 * SLOW
        t = self.tyto = Tyto(config={
            'workers': 1,
            'http': {'max_pending': max_pending},
            'redis': {'timeout_ms': timeout_ms},
            # big samples make every request's state big: a backlog shows in the RSS
            'announce': {'numwant_default': 200, 'numwant_max': 200},
        }, redis_url='redis://127.0.0.1:%d' % self.proxy.port)
        t.start()
        wait_for(lambda: len(children(t.proc.pid)) == 1, 10, 'the worker')
        worker = children(t.proc.pid)[0]
        def announce(conn, k):
            p = Peer()
            # a swarm each: no per-address cap applies, every announce writes a new peer
            conn.request('GET', tytotest.announce_path(rand_hash(), p.peer_id, p.port, left=1))
            r = conn.getresponse()
            d = t.decode_ok(tytotest.Response(r.status, r.getheaders(), r.read()), 'announce')
            return d.get(b'failure reason', b'ok')

        def load(secs, out):
            """clients threads on keep-alive connections for secs; out: reply kind -> count."""
            lock = threading.Lock()
            end = time.monotonic() + secs

            def run(k):
                conn = t.connection(timeout=10)
                try:
                    while time.monotonic() < end:
                        try:
                            kind = announce(conn, k)
                        except (OSError, http.client.HTTPException) as e:
                            kind = 'unanswered: %r' % e
                            conn.close()
                            conn = t.connection(timeout=10)
                        with lock:
                            out[kind] = out.get(kind, 0) + 1
                finally:
                    conn.close()

            threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(clients)]
            for th in threads:
                th.start()
            return threads

        # Warm-up at full speed: connections, buffers and the allocator reach their working size.
        warm = {}
        for th in load(1.5, warm):
            th.join(30 * SLOW)
        self.assertGreater(warm.get(b'ok', 0), 0, 'warm-up: %r' % warm)
        self.assertEqual(stats(t).get('backlog', 0), 0)
        rss_before = vm_rss_kb(worker)
        # The bytes of one announce's commands, measured: ZADD ... EXPIRE for one new peer.
        before_q = self.proxy.queued
        conn = t.connection()
        self.proxy.rate = 1         # nearly stopped: the one announce stays buffered
        self.proxy.reset_max()
        conn.request('GET', tytotest.announce_path(rand_hash(), Peer().peer_id, 6881, left=1))
        conn.getresponse().read()
        conn.close()
        per_announce = self.proxy.max_queued - before_q
        self.proxy.rate = None
        wait_for(lambda: stats(t).get('inflight', 0) == 0 and self.proxy.queued == 0, 10, 'drain')
        self.assertGreater(per_announce, 100, 'an announce is %d bytes of commands?' % per_announce)

        # The overload.
        self.proxy.rate = rate
        self.proxy.reset_max()
        out = {}
        gauges = []
        rss = [rss_before]
        stop_sampling = threading.Event()

        def sample():
            while not stop_sampling.is_set():
                s = stats(t)
                gauges.append((s.get('inflight', 0), s.get('backlog', 0)))
                rss.append(vm_rss_kb(worker))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        threads = load(seconds, out)
        sampler.start()
        for th in threads:
            th.join(seconds + 30 * SLOW)
        stop_sampling.set()
        sampler.join(10)
        max_queued = self.proxy.max_queued
        rss_load_max = max(rss)

        # Recovery: Redis fast again; announces succeed and the backlog empties.
        self.proxy.rate = None
        t0 = time.monotonic()
        conn = t.connection()

        last = []

        def recovered():
            last[:] = [announce(conn, 0), stats(t)]
            return last[0] == b'ok' and last[1].get('backlog', 0) == 0
        try:
            wait_for(recovered, 10, 'announces to succeed and the backlog to empty')
        except AssertionError as e:
            raise AssertionError('%s: last announce %r, /stats %r; under load: %r' % (e, last[0], last[1], out))
        recovered_ms = (time.monotonic() - t0) * 1000.0
        conn.close()
        rss_after = vm_rss_kb(worker)
        s = stats(t)

        total = sum(out.values())
        max_sum = max((a + b for a, b in gauges), default=0)
        sys.stdout.write(
            '\nOVERLOAD slow-redis: clients=%d seconds=%.0f proxy_rate=%d B/s redis.timeout_ms=%d '
            'http.max_pending=%d announce_bytes=%d: replies=%d %s; max inflight+backlog=%d '
            '(samples %d); max bytes queued at Redis=%d (%.1f announces); worker RSS before=%d kB '
            'max under load=%d kB after=%d kB; recovered in %.0f ms; reconnects=%d timeouts=%d\n'
            % (clients, seconds, rate, timeout_ms, max_pending, per_announce, total,
               {k.decode() if isinstance(k, bytes) else k: v for k, v in sorted(out.items(), key=str)},
               max_sum, len(gauges), max_queued, max_queued / per_announce, rss_before, rss_load_max,
               rss_after, recovered_ms, s['storage']['reconnects'], s['storage']['timeouts']))
        if instrumented(worker):
            sys.stdout.write('OVERLOAD: RSS not asserted (valgrind or a sanitizer runtime)\n')
        sys.stdout.flush()

        unanswered = {k: v for k, v in out.items() if isinstance(k, str) and k != 'ok'}
        self.assertEqual(unanswered, {}, 'requests without a reply')
        self.assertGreater(out.get(OVERLOADED, 0), 0,
                           'nothing refused with "overloaded" although Redis fell behind: %r' % out)
        self.assertGreater(len(gauges), 5)
        self.assertLessEqual(max_sum, max_pending, 'in flight + backlog above http.max_pending')
        # What waits at Redis: at most max_pending announces (and a margin for one more batch),
        # and at most 256 of the statistics' counter writes (REDIS_COUNT_INFLIGHT in
        # storage/redis.c; one HINCRBY of a stats hash field is under 128 bytes). A flush of
        # the whole counter table at once queued 1,200 of them here (~530 KB) after the warm-up.
        counters = 256 * 128
        self.assertLessEqual(max_queued, (max_pending + 4) * per_announce + counters,
                             'the queue at Redis grew past http.max_pending announces')
        # Memory: a bounded backlog of max_pending requests is well under 2 MB (each holds a
        # 200-peer sample buffer); an unbounded one grows by that every few seconds.
        if not instrumented(worker):
            self.assertLess(rss_load_max - rss_before, 2048, 'worker RSS grew under load')
        self.assertEqual(s.get('backlog'), 0)
        self.assertEqual(children(t.proc.pid), [worker], 'the worker died (or was replaced)')
        t.stop()


if __name__ == '__main__':
    tytotest.main()
