"""Fault injection against a running tyto (issue "Reliability and hostile input"): its Redis is
stopped and restarted, paused, kept busy, or out of memory while a bounded load runs, and the
worker sheds load when Redis falls behind. Every case has a Redis of its own (so that it can be
stopped or paused) and two workers (one for load shedding). What every case asserts: each request
gets an HTTP reply (200 with canonical bencode), failures say why in their "failure reason",
no reply reaches the wrong request, no worker dies, tyto recovers without a restart and exits 0.

Each case prints one "FAULTS <case>: ..." summary line with its figures.
Run alone: TYTO_BIN=build/tyto /usr/bin/python3 tests/e2e/test_faults.py"""

import os
import random
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tytotest                                                      # noqa: E402
from tytotest import (Peer, Redis, RedisServer, SLOW, VALGRIND, Tyto,  # noqa: E402
                      children, make_tmpdir, rand_hash, summary, wait_for)

STORAGE_TIMEOUT = b'tracker storage timed out, retry later'
STORAGE_FULL = b'tracker storage is full'
OVERLOADED = b'tracker is overloaded, retry later'


class Outcome:
    """One request: when it started and ended, and what came back. kind is 'ok', 'failure'
    (reason set), 'invalid' (an HTTP reply that is not a 200 with canonical bencode) or
    'unanswered' (no HTTP reply at all)."""

    def __init__(self, t0, t1, kind, reply=None, reason=None, error=None, tag=None):
        self.t0, self.t1, self.kind = t0, t1, kind
        self.reply, self.reason, self.error, self.tag = reply, reason, error, tag

    @property
    def ms(self):
        return (self.t1 - self.t0) * 1000.0

    def __repr__(self):
        return '<%s %.0f ms %r %r>' % (self.kind, self.ms, self.reason or self.error, self.tag)


def call(fn, tag=None):
    """Runs fn() (which returns a decoded announce reply) and classifies what happened."""
    t0 = time.monotonic()
    try:
        d = fn()
    except AssertionError as e:
        return Outcome(t0, time.monotonic(), 'invalid', error=str(e)[:300], tag=tag)
    except Exception as e:  # noqa: BLE001 (no reply at all: socket errors, timeouts)
        return Outcome(t0, time.monotonic(), 'unanswered', error=repr(e), tag=tag)
    t1 = time.monotonic()
    if b'failure reason' in d:
        return Outcome(t0, t1, 'failure', reply=d, reason=d[b'failure reason'], tag=tag)
    return Outcome(t0, t1, 'ok', reply=d, tag=tag)


class Load:
    """threads threads, each calling step() (which returns an Outcome) in a loop for seconds."""

    def __init__(self, step, threads=4, seconds=5.0):
        self.step, self.nthreads, self.seconds = step, threads, seconds
        self.results = []
        self.lock = threading.Lock()
        self.threads = []

    def _run(self):
        end = time.monotonic() + self.seconds
        while time.monotonic() < end:
            o = self.step()
            with self.lock:
                self.results.append(o)

    def start(self):
        for _ in range(self.nthreads):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def join(self):
        for t in self.threads:
            t.join(self.seconds + 30 * SLOW)
        if any(t.is_alive() for t in self.threads):
            raise AssertionError('the load threads did not finish')
        return self.results


def reasons(results):
    """"reason: count, ..." of the failures, for the summary lines."""
    out = {}
    for o in results:
        if o.kind == 'failure':
            out[o.reason] = out.get(o.reason, 0) + 1
    return '{%s}' % ', '.join('%s: %d' % (k.decode(errors='replace'), v) for k, v in sorted(out.items()))


def counts(results):
    out = {'ok': 0, 'failure': 0, 'invalid': 0, 'unanswered': 0}
    for o in results:
        out[o.kind] += 1
    return out


class FaultTest(unittest.TestCase):

    def setUp(self):
        self.tytos = []
        self.servers = []
        self.sides = []

    def tearDown(self):
        for t in self.tytos:
            t.kill()
        for s in self.sides:
            try:
                s.close()
            except OSError:
                pass
        for s in self.servers:
            s.stop()

    def start_redis(self, sock=None, d=None):
        if sock is None:
            d = make_tmpdir('redis')
            sock = os.path.join(d, 'redis.sock')
        server = RedisServer(sock, d).start()
        self.servers.append(server)
        return server

    def side(self, server):
        r = Redis(server.path, timeout=10)
        self.sides.append(r)
        return r

    def start_tyto(self, server, workers=2, config=None):
        t = Tyto(config={'workers': workers, **(config or {})}, redis_url='unix://' + server.path)
        self.tytos.append(t)
        t.start()
        wait_for(lambda: len(children(t.proc.pid)) == workers, 10, '%d workers' % workers)
        return t

    def workers(self, t):
        return children(t.proc.pid)

    def assert_answered(self, results, what):
        bad = [o for o in results if o.kind in ('invalid', 'unanswered')]
        self.assertEqual(bad[:10], [], '%s: %d requests without a valid bencoded 200 reply'
                         % (what, len(bad)))

    def wait_all_ok(self, t, timeout, n=8):
        """Until n announces in a row (fresh connections, so both workers) succeed."""
        def probe():
            for _ in range(n):
                if b'failure reason' in t.announce(rand_hash(), Peer(), left=1, expect_ok=False):
                    return False
            return True
        wait_for(probe, timeout, 'announces to succeed again')

    # -----------------------------------------------------------------------------------------

    def test_redis_stopped_and_restarted_under_load(self):
        timeout_ms = 500
        margin_ms = 500 * SLOW
        server = self.start_redis()
        t = self.start_tyto(server, config={'redis': {'timeout_ms': timeout_ms}})
        pids = self.workers(t)
        ih = rand_hash()

        load = Load(lambda: call(lambda: t.announce(ih, Peer(), left=1, expect_ok=False)),
                    threads=4, seconds=6.0).start()
        time.sleep(1.0)
        stopped_at = time.monotonic()
        server.stop()
        time.sleep(1.5)
        server = self.start_redis(server.path, server.dir)
        restarted_at = time.monotonic()
        results = load.join()
        self.wait_all_ok(t, 10)
        recovered_ms = (time.monotonic() - restarted_at) * 1000.0
        ok_after = [o for o in results if o.kind == 'ok' and o.t0 > restarted_at]
        if ok_after:
            recovered_ms = (min(o.t1 for o in ok_after) - restarted_at) * 1000.0

        c = counts(results)
        failures = [o for o in results if o.kind == 'failure']
        max_fail = max((o.ms for o in failures), default=0.0)
        summary('FAULTS redis-stop: sent=%d answered=%d ok=%d failed=%d unanswered=%d invalid=%d '
                'max_failure_latency_ms=%.0f recovered_after_restart_ms=%.0f (redis.timeout_ms=%d, '
                'down %.1f s) reasons=%s' % (len(results), c['ok'] + c['failure'], c['ok'], c['failure'],
                                  c['unanswered'], c['invalid'], max_fail, recovered_ms, timeout_ms,
                                  restarted_at - stopped_at, reasons(results)))
        self.assert_answered(results, 'redis stopped')
        self.assertGreater(len(failures), 0, 'no request failed while Redis was down')
        self.assertGreater(c['ok'], 0)
        for o in failures:
            self.assertIn(b'storage', o.reason, 'failure without a storage reason: %r' % o)
            self.assertLess(o.ms, timeout_ms + margin_ms,
                            'a failure came later than redis.timeout_ms + %d ms: %r' % (margin_ms, o))
        # Requests that started before the stop (and ended before it) all succeeded.
        early = [o for o in results if o.t1 < stopped_at]
        self.assertTrue(early and all(o.kind == 'ok' for o in early), 'announces before the stop')
        self.assertEqual(self.workers(t), pids, 'a worker died (or was replaced)')
        self.assertNotIn('killed by signal', t.log())
        t.stop()

    def test_redis_paused_no_reply_goes_to_the_wrong_request(self):
        timeout_ms = 300
        server = self.start_redis()
        t = self.start_tyto(server, config={'redis': {'timeout_ms': timeout_ms},
                                            'announce': {'numwant_default': 50, 'numwant_max': 50}})
        pids = self.workers(t)

        # K swarms; swarm i has i+1 seeders on ports 10000 + 100 i + j, and its leechers use
        # ports 20000 + 1000 i + x: every peer in a reply names the swarm it came from.
        K = 6
        swarms = [rand_hash() for _ in range(K)]
        for i, ih in enumerate(swarms):
            for j in range(i + 1):
                t.announce(ih, Peer(port=10000 + 100 * i + j), left=0)
        for i, ih in enumerate(swarms):
            self.assertEqual(t.scrape([ih])[b'files'][ih][b'complete'], i + 1)

        def swarm_of_port(port):
            if 10000 <= port < 10000 + 100 * K:
                return (port - 10000) // 100
            if 20000 <= port < 20000 + 1000 * K:
                return (port - 20000) // 1000
            return None

        def step():
            i = random.randrange(K)
            p = Peer(port=20000 + 1000 * i + random.randrange(1000))
            return call(lambda: t.announce(swarms[i], p, left=1, expect_ok=False), tag=i)

        load = Load(step, threads=4, seconds=6.0).start()
        side = self.side(server)
        time.sleep(1.0)
        paused_at = time.monotonic()
        side.cmd('CLIENT', 'PAUSE', 1500, 'ALL')
        time.sleep(1.5 + 1.0)
        # Second variant: Redis busy in a script for 1 s (like DEBUG SLEEP 1, which Redis 7
        # refuses unless enable-debug-command is set).
        busy_at = time.monotonic()
        side.cmd('EVAL', "local t0 = redis.call('TIME') "
                         "local s = tonumber(t0[1]) * 1000000 + tonumber(t0[2]) "
                         "while true do local t = redis.call('TIME') "
                         "if tonumber(t[1]) * 1000000 + tonumber(t[2]) - s > 1000000 then break end "
                         "end return 1", 0)
        busy_end = time.monotonic()
        results = load.join()
        self.wait_all_ok(t, 10)

        mismatched = []
        for o in results:
            if o.kind != 'ok':
                continue
            i = o.tag
            d = o.reply
            peers = tytotest.parse_peers4(d.get(b'peers', b''))
            wrong = [p for p in peers if swarm_of_port(p[1]) != i]
            if d[b'complete'] != i + 1 or wrong:
                mismatched.append((o, d[b'complete'], wrong[:3]))
        c = counts(results)
        timeouts = [o for o in results if o.kind == 'failure' and o.reason == STORAGE_TIMEOUT]
        in_pause = [o for o in results if o.kind == 'failure' and paused_at <= o.t0 < paused_at + 1.5]
        in_busy = [o for o in results if o.kind == 'failure' and busy_at <= o.t0 < busy_end]
        failures = [o for o in results if o.kind == 'failure']
        summary('FAULTS redis-pause: sent=%d ok=%d failed=%d timed_out=%d (pause %d, busy script %d) '
                'unanswered=%d invalid=%d mismatched=%d max_failure_latency_ms=%.0f '
                '(redis.timeout_ms=%d, CLIENT PAUSE 1500 ALL, 1 s busy script) reasons=%s'
                % (len(results), c['ok'], c['failure'], len(timeouts), len(in_pause), len(in_busy),
                   c['unanswered'], c['invalid'], len(mismatched),
                   max((o.ms for o in failures), default=0.0), timeout_ms, reasons(results)))
        self.assert_answered(results, 'redis paused')
        self.assertEqual(mismatched[:5], [], 'replies that belong to another swarm (wrong request)')
        self.assertGreater(len(timeouts), 0, 'no request timed out while Redis was paused')
        self.assertGreater(len(in_pause), 0, 'no failure during CLIENT PAUSE')
        self.assertGreater(len(in_busy), 0, 'no failure while Redis ran a busy script')
        for o in failures:
            self.assertIn(b'storage', o.reason, repr(o))
            self.assertLess(o.ms, timeout_ms + 500 * SLOW, 'a failure came late: %r' % o)
        late_ok = [o for o in results if o.kind == 'ok' and o.t0 > busy_end + 0.5]
        self.assertGreater(len(late_ok), 0, 'announces succeed again after the pause')
        self.assertEqual(self.workers(t), pids, 'a worker died (or was replaced)')
        t.stop()

    def test_redis_out_of_memory(self):
        server = self.start_redis()
        t = self.start_tyto(server)
        pids = self.workers(t)
        side = self.side(server)
        t.announce(rand_hash(), Peer())
        info = side.cmd('INFO', 'memory').decode()
        used = int(next(line.split(':')[1] for line in info.splitlines() if line.startswith('used_memory:')))
        side.cmd('CONFIG', 'SET', 'maxmemory-policy', 'noeviction')
        side.cmd('CONFIG', 'SET', 'maxmemory', used + 100 * 1024)
        try:
            conn = t.connection()
            sent, first_failure = 0, None
            deadline = time.monotonic() + 15 * SLOW
            while first_failure is None and sent < 20000 and time.monotonic() < deadline:
                p = Peer()
                conn.request('GET', tytotest.announce_path(rand_hash(), p.peer_id, p.port, left=1))
                r = conn.getresponse()
                d = t.decode_ok(tytotest.Response(r.status, r.getheaders(), r.read()), 'announce')
                sent += 1
                if b'failure reason' in d:
                    first_failure = d[b'failure reason']
            conn.close()
            self.assertIsNotNone(first_failure, 'no failure after %d new swarms with maxmemory '
                                 'set to used_memory + 100 KB' % sent)
            self.assertEqual(first_failure, STORAGE_FULL)
            # More announces while full: every one is answered, and says the storage is full.
            # Full for good: hovering at the limit, freed client buffers (an announce's MULTI
            # state among them) let the odd write through, which is Redis being right.
            side.cmd('CONFIG', 'SET', 'maxmemory', 1)
            later = [call(lambda: t.announce(rand_hash(), Peer(), left=1, expect_ok=False))
                     for _ in range(20)]
            self.assert_answered(later, 'storage full')
            reasons = {o.reason for o in later}
            self.assertEqual(reasons, {STORAGE_FULL}, 'reasons while full: %r' % reasons)
            self.assertTrue(t.running())
            self.assertEqual(self.workers(t), pids)
        finally:
            side.cmd('CONFIG', 'SET', 'maxmemory', 0)
        t0 = time.monotonic()
        self.wait_all_ok(t, 5)
        summary('FAULTS redis-oom: announces_until_full=%d reason=%r recovered_ms=%.0f workers_same=%s'
                % (sent, first_failure.decode(), (time.monotonic() - t0) * 1000.0,
                   self.workers(t) == pids))
        self.assertEqual(self.workers(t), pids, 'a worker died (or was replaced)')
        t.stop()

    def test_load_shedding_with_max_pending(self):
        pause_ms = 1000 * (3 if VALGRIND else 1)
        server = self.start_redis()
        t = self.start_tyto(server, workers=1, config={'http': {'max_pending': 4},
                                                       'redis': {'timeout_ms': 4 * pause_ms}})
        pids = self.workers(t)
        t.announce(rand_hash(), Peer())
        side = self.side(server)
        n = 40
        barrier = threading.Barrier(n + 1)
        results = [None] * n

        def one(k):
            barrier.wait()
            results[k] = call(lambda: t.announce(rand_hash(), Peer(), left=1, expect_ok=False))

        threads = [threading.Thread(target=one, args=(k,), daemon=True) for k in range(n)]
        for th in threads:
            th.start()
        side.cmd('CLIENT', 'PAUSE', pause_ms, 'ALL')
        paused_at = time.monotonic()
        barrier.wait()
        for th in threads:
            th.join(30 * SLOW)
        self.assertFalse(any(th.is_alive() for th in threads), 'requests still waiting')
        self.assert_answered(results, 'load shedding')
        overloaded = [o for o in results if o.kind == 'failure' and o.reason == OVERLOADED]
        ok = [o for o in results if o.kind == 'ok']
        other = [o for o in results if o not in overloaded and o not in ok]
        summary('FAULTS load-shedding: concurrent=%d ok=%d overloaded=%d other=%d '
                'max_overloaded_ms=%.0f min_ok_ms=%.0f (http.max_pending=4, workers=1, Redis paused %d ms)'
                % (n, len(ok), len(overloaded), len(other), max((o.ms for o in overloaded), default=0),
                   min((o.ms for o in ok), default=0), pause_ms))
        self.assertEqual(other, [], 'replies neither ok nor "overloaded"')
        self.assertGreater(len(overloaded), 0, 'nothing was shed')
        self.assertGreater(len(ok), 0, 'nothing succeeded after the pause')
        self.assertLessEqual(len(ok), n - len(overloaded))
        for o in overloaded:
            self.assertLess(o.ms, 200 * SLOW, '"overloaded" should come at once: %r' % o)
        # The ones that were let in waited for Redis to come back.
        for o in ok:
            self.assertGreater(o.t1, paused_at + pause_ms / 1000.0 * 0.5, 'ok before the pause ended: %r' % o)
        self.wait_all_ok(t, 5)
        self.assertEqual(self.workers(t), pids, 'the worker died (or was replaced)')
        t.stop()


if __name__ == '__main__':
    tytotest.main()
