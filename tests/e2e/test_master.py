"""The pre-forking master with real processes and a real Redis: workers appear, a killed worker
is replaced while load runs, SIGHUP reloads (or keeps the old configuration when the new file is
broken), SIGTERM drains requests in flight and exits 0, /metrics counts exactly, and /healthz
follows Redis going away and coming back."""

import os
import re
import signal
import socket
import subprocess
import threading
import time
import unittest

import tytotest
from tytotest import Peer, Redis, RedisServer, SLOW, Tyto, make_tmpdir, rand_hash, redis_socket


def children(pid):
    """Pids of the direct children of pid (the workers of a master)."""
    try:
        with open('/proc/%d/task/%d/children' % (pid, pid)) as f:
            return sorted(int(x) for x in f.read().split())
    except OSError:
        return []


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout * SLOW
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError('timed out waiting for ' + what)


PROM_LINE = re.compile(r'^(# (HELP|TYPE) [a-zA-Z_:][a-zA-Z0-9_:]* .+|'
                       r'[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*",?)*\})? '
                       r'(-?[0-9.e+-]+|\+Inf|NaN))$')


def parse_prometheus(text):
    """Checks every line against the text exposition format; returns {sample with labels: value}."""
    samples = {}
    for line in text.splitlines():
        if not line:
            continue
        if not PROM_LINE.match(line):
            raise AssertionError('not Prometheus text: %r' % line)
        if line.startswith('#'):
            continue
        name, _, value = line.rpartition(' ')
        samples[name] = float(value)
    return samples


class Load:
    """A bounded announce load on fresh connections from a few threads; records each request's
    start time and outcome ('ok', 'failure', or the exception)."""

    def __init__(self, tyto, threads=4, seconds=4.0):
        self.tyto, self.nthreads, self.seconds = tyto, threads, seconds
        self.results = []          # (start monotonic, outcome)
        self.lock = threading.Lock()
        self.threads = []
        self.info_hash = rand_hash()

    def _run(self):
        end = time.monotonic() + self.seconds
        while time.monotonic() < end:
            t0 = time.monotonic()
            try:
                d = self.tyto.announce(self.info_hash, Peer(), left=1, expect_ok=False)
                outcome = 'failure' if b'failure reason' in d else 'ok'
            except Exception as e:  # noqa: BLE001 (every error is an outcome here)
                outcome = repr(e)
            with self.lock:
                self.results.append((t0, outcome))

    def start(self):
        for _ in range(self.nthreads):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def join(self):
        for t in self.threads:
            t.join(self.seconds * 3 + 10)


class MasterTest(unittest.TestCase):

    def setUp(self):
        self.tytos = []

    def tearDown(self):
        for t in self.tytos:
            t.kill()

    def start(self, workers=2, **kw):
        t = Tyto(config={'workers': workers, **kw.pop('config', {})}, **kw)
        self.tytos.append(t)
        return t.start()

    def test_master_starts_the_configured_number_of_workers(self):
        t = self.start(workers=3)
        pids = wait_for(lambda: len(children(t.proc.pid)) == 3 and children(t.proc.pid), 10, '3 workers')
        self.assertEqual(len(pids), 3)
        m = parse_prometheus(t.get('/metrics').body.decode())
        self.assertEqual(sum(v for k, v in m.items() if k.startswith('tyto_worker_up{')), 3)
        t.stop()

    def test_killed_worker_is_replaced_and_later_requests_are_answered(self):
        t = self.start(workers=2)
        before = wait_for(lambda: len(children(t.proc.pid)) == 2 and children(t.proc.pid), 10, 'workers')
        load = Load(t, threads=4, seconds=4.0).start()
        time.sleep(1.0)
        victim = before[0]
        os.kill(victim, signal.SIGKILL)
        killed_at = time.monotonic()
        load.join()
        after = children(t.proc.pid)
        self.assertEqual(len(after), 2, 'a new worker took the dead one\'s place')
        self.assertNotIn(victim, after)
        # Requests in flight on the killed worker may die with it; every request started after
        # the kill (plus a moment for the socket reset to land) must be answered.
        later = [o for (t0, o) in load.results if t0 > killed_at + 0.05]
        self.assertGreater(len(later), 50, 'the load kept running after the kill')
        bad = [o for o in later if o != 'ok']
        self.assertEqual(bad, [], 'requests after the kill that were not answered')
        self.assertIn('killed by signal 9', t.log())
        t.stop()

    def test_sighup_applies_a_valid_file_and_keeps_the_old_one_on_error(self):
        t = self.start(workers=2)
        ih = rand_hash()
        self.assertEqual(t.announce(ih, Peer())[b'interval'], 1234)

        # A broken file: the master logs FILE:LINE and keeps serving with the old configuration.
        good = open(t.config_path).read()
        with open(t.config_path, 'w') as f:
            f.write(good + 'wokers: 3\n')
        os.kill(t.proc.pid, signal.SIGHUP)
        wait_for(lambda: 'reload refused' in t.log(), 5, 'the reload to be refused')
        self.assertRegex(t.log(), r'tyto\.yaml:\d+: unknown key \'wokers\'')
        self.assertEqual(t.announce(ih, Peer())[b'interval'], 1234)

        # A valid file with a new interval: a new generation answers with it.
        old_workers = set(children(t.proc.pid))
        t.cfg['announce']['interval_s'] = 2000
        t.write_config()
        os.kill(t.proc.pid, signal.SIGHUP)
        wait_for(lambda: t.announce(ih, Peer())[b'interval'] == 2000, 10, 'interval 2000 in replies')
        wait_for(lambda: not (set(children(t.proc.pid)) & old_workers), 10, 'the old generation to exit')
        self.assertEqual(len(children(t.proc.pid)), 2)
        for _ in range(20):
            self.assertEqual(t.announce(ih, Peer())[b'interval'], 2000)
        t.stop()

    def test_sighup_under_load_drops_no_request(self):
        t = self.start(workers=2)
        load = Load(t, threads=4, seconds=3.0).start()
        time.sleep(0.5)
        t.cfg['announce']['interval_s'] = 1500
        t.write_config()
        os.kill(t.proc.pid, signal.SIGHUP)
        load.join()
        bad = [o for (_, o) in load.results if o != 'ok']
        self.assertGreater(len(load.results), 100)
        self.assertEqual(bad, [], 'requests that failed across the reload')
        t.stop()

    def test_sigterm_answers_requests_in_flight_and_exits_0(self):
        # Our own Redis, paused, so that requests are provably in flight when SIGTERM arrives.
        d = make_tmpdir('redis')
        server = RedisServer(os.path.join(d, 'redis.sock'), d).start()
        try:
            t = self.start(workers=2, redis_url='unix://' + server.path,
                           config={'redis': {'timeout_ms': 5000 * SLOW}})
            side = Redis(server.path)
            side.cmd('CLIENT', 'PAUSE', 1500)
            results = []

            def one():
                try:
                    d = t.announce(rand_hash(), Peer(), expect_ok=False)
                    results.append('failure' if b'failure reason' in d else 'ok')
                except Exception as e:  # noqa: BLE001
                    results.append(repr(e))

            threads = [threading.Thread(target=one) for _ in range(8)]
            for th in threads:
                th.start()
            time.sleep(0.5)     # the eight requests are now waiting for Redis
            t0 = time.monotonic()
            t.proc.send_signal(signal.SIGTERM)
            for th in threads:
                th.join(15 * SLOW)
            self.assertEqual(results, ['ok'] * 8, 'every request in flight was answered')
            rc = t.proc.wait(15 * SLOW)
            self.assertEqual(rc, 0)
            self.assertGreater(time.monotonic() - t0, 0.5, 'it waited for the paused Redis')
            # The listeners are closed: a new connection is refused.
            with self.assertRaises(OSError):
                socket.create_connection(('127.0.0.1', t.port), timeout=2).close()
            t.proc = None
            t.check_clean()
            side.close()
        finally:
            server.stop()

    def test_metrics_request_counter_matches_requests_sent(self):
        t = self.start(workers=2)
        ih = rand_hash()
        for i in range(37):
            t.announce(ih, Peer(), left=i % 2)
        for _ in range(5):
            t.scrape([ih])
        for _ in range(3):
            self.assertEqual(t.get('/nope').status, 404)
        t.announce_raw('/announce?info_hash=short')
        m = parse_prometheus(t.get('/metrics').body.decode())
        self.assertEqual(m['tyto_requests_total{route="announce"}'], 38)
        self.assertEqual(m['tyto_requests_total{route="scrape"}'], 5)
        self.assertEqual(m['tyto_requests_total{route="not_found"}'], 3)
        self.assertEqual(sum(v for k, v in m.items() if k.startswith('tyto_failures_total{')), 1)
        self.assertEqual(m['tyto_request_duration_seconds_count'], sum(
            v for k, v in m.items() if k.startswith('tyto_requests_total{')))
        self.assertGreaterEqual(m['tyto_storage_round_trips_total'], 1)
        # Both workers served some of it: the counters are summed over the slots.
        per_worker = [v for k, v in m.items() if k.startswith('tyto_worker_requests_total{')]
        self.assertEqual(sum(per_worker), sum(v for k, v in m.items() if k.startswith('tyto_requests_total{')))
        t.stop()

    def test_keep_alive_connections_spread_over_the_workers(self):
        # One SO_REUSEPORT socket per worker: the kernel spreads connections by their addresses.
        # With one shared socket, the first worker to wake often took every connection.
        t = self.start(workers=2, ipv6=False)
        wait_for(lambda: len(children(t.proc.pid)) == 2, 10, 'workers')
        conns = []
        for _ in range(32):
            s = socket.create_connection(('127.0.0.1', t.port), timeout=5 * SLOW)
            conns.append(s)
        for s in conns:
            s.sendall(b'GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n')
        for s in conns:
            self.assertIn(b' 200 ', s.recv(4096).split(b'\r\n')[0] + b' ')
            s.close()
        m = parse_prometheus(t.get('/metrics').body.decode())
        per_worker = [v for k, v in m.items() if k.startswith('tyto_worker_requests_total{')]
        self.assertEqual(len(per_worker), 2)
        # Each of 32 connections lands on either socket: both get some (all on one: p = 2^-31).
        self.assertGreater(min(per_worker), 0, 'one worker served every connection: %r' % per_worker)
        t.stop()

    def test_second_tracker_on_the_same_port_is_refused(self):
        # SO_REUSEPORT must not let a second tyto join the first one's sockets.
        t = self.start(workers=1, ipv6=False)
        other = Tyto(config={'workers': 1}, ipv6=False)
        self.tytos.append(other)
        other.cfg['listen']['port'] = t.port
        other.write_config()
        proc = subprocess.run(tytotest.tyto_command(other.dir, ['-c', other.config_path]),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              env=other.env, timeout=20 * SLOW)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn(b'in use', proc.stdout)
        self.assertEqual(t.get('/healthz').status, 200)
        t.stop()

    def test_sighup_to_fewer_workers_keeps_every_socket_served(self):
        # Lanes opened for 3 workers stay open after a reload to 1: the one worker serves them all.
        t = self.start(workers=3, ipv6=False)
        wait_for(lambda: len(children(t.proc.pid)) == 3, 10, '3 workers')
        t.cfg['workers'] = 1
        t.write_config()
        os.kill(t.proc.pid, signal.SIGHUP)
        wait_for(lambda: len(children(t.proc.pid)) == 1, 20, 'the old generation to drain')
        ih = rand_hash()
        for i in range(60):      # fresh connections: the kernel spreads them over all 3 sockets
            t.announce(ih, Peer(), left=i % 2)
        t.stop()

    def test_healthz_follows_redis_down_and_back(self):
        d = make_tmpdir('redis')
        sock = os.path.join(d, 'redis.sock')
        server = RedisServer(sock, d).start()
        try:
            t = self.start(workers=2, redis_url='unix://' + sock,
                           config={'redis': {'timeout_ms': 300}})
            self.assertEqual(t.get('/healthz').status, 200)
            server.stop()
            wait_for(lambda: t.get('/healthz').status == 503, 5, '/healthz 503 with Redis stopped')
            t0 = time.monotonic()
            d1 = t.announce(rand_hash(), Peer(), expect_ok=False)
            self.assertIn(b'storage', d1[b'failure reason'])
            self.assertLess(time.monotonic() - t0, 1.5 * SLOW, 'the failure came fast')
            server = RedisServer(sock, d).start()
            # Both workers reconnect: every probe (whichever worker answers) comes back 200.
            wait_for(lambda: all(t.get('/healthz').status == 200 for _ in range(6)), 15,
                     '/healthz 200 again')
            t.announce(rand_hash(), Peer())
            t.stop()
        finally:
            server.stop()


if __name__ == '__main__':
    tytotest.main()
