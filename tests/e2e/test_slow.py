"""Slow consumers of tyto's output (issue 9): clients that pipeline requests and read their
replies a trickle at a time, and an access log on a standard output nobody reads. Also that the
access log names the client a trusted proxy forwarded, not the proxy.

Each case prints one "SLOW <case>: ..." summary line with its figures.
Run alone: TYTO_BIN=build/tyto /usr/bin/python3 tests/e2e/test_slow.py"""

import os
import signal
import socket
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tytotest                                          # noqa: E402
from tytotest import (Peer, SLOW, VALGRIND, Tyto, children, metrics_values,  # noqa: E402
                      rand_hash, stats, summary, vm_rss_kb, wait_for)


def rss_meaningful():
    """Whether the worker's RSS shows its live memory: not under valgrind, nor with ASan (its
    quarantine keeps freed memory, up to 256 MiB)."""
    if VALGRIND:
        return False
    try:
        with open(tytotest.TYTO_BIN, 'rb') as f:
            return b'__asan_init' not in f.read()
    except OSError:
        return True


def slow_socket(port):
    """A client whose tiny receive buffer and segment size keep the server's socket buffer
    small: on loopback (64 KiB MSS) the kernel would otherwise take megabytes of replies per
    connection before the server's own buffers see any of it."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    s.settimeout(10 * SLOW)
    s.connect(('127.0.0.1', port))
    return s


class SlowReaderTest(tytotest.OneWorkerTestCase):

    def test_slow_readers_bounded_and_cut(self):
        """N clients pipeline 30 big announces each and read 4 KiB per half second: together
        they may hold http.max_output_bytes of the worker's memory, and each is cut once what
        it has queued is not taken within http.write_timeout_ms, however steadily it trickles.
        Before: each held 256 KiB and more for as long as it kept reading a little (every byte of
        progress re-armed the write timer), so N of them held N times that."""
        max_out = 2 * 1024 * 1024
        write_ms = 2000
        n_slow = 50 if VALGRIND else 150
        t = self.start_tyto({
            'announce': {'numwant_default': 1000, 'numwant_max': 1000},
            'swarm': {'max_peers_per_address': 0},
            'http': {'max_output_bytes': max_out, 'write_timeout_ms': write_ms},
        })
        worker = children(t.proc.pid)[0]
        swarm = rand_hash()
        # 1000 peers: each non-compact reply then lists all of them (about 30 KiB), so that the
        # replies, not the requests in flight, are what the slow readers make the worker hold.
        conn = t.connection()
        for i in range(1000):
            p = Peer(port=20000 + i)
            conn.request('GET', tytotest.announce_path(swarm, p.peer_id, p.port, left=1))
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
        conn.close()
        reply = t.get(tytotest.announce_path(swarm, Peer().peer_id, 6881, left=1, compact=0))
        reply_len = len(reply.body)
        self.assertGreater(reply_len, 20000)
        rss_before = vm_rss_kb(worker)

        slow = []
        cut = {}
        t0 = time.monotonic()
        stop = threading.Event()
        peak = [rss_before]
        held = [0]               # the most tyto_http_output_bytes said

        def sample():
            try:
                peak[0] = max(peak[0], vm_rss_kb(worker))
            except (OSError, AssertionError):
                pass

        def trickle():
            """Reads 4 KiB from each slow client every half second; notes when each is cut."""
            while not stop.is_set():
                for i, s in enumerate(list(slow)):
                    if i in cut:
                        continue
                    try:
                        if not s.recv(4096):
                            cut[i] = time.monotonic() - t0
                    except BlockingIOError:
                        pass
                    except OSError:
                        cut[i] = time.monotonic() - t0      # the reset of a slow-reader cut
                sample()
                try:
                    # Sampled all along, not only between the other announces below: under
                    # valgrind those are few and may all fall where nothing is held.
                    held[0] = max(held[0], metrics_values(t)['tyto_http_output_bytes'])
                except (OSError, KeyError, ValueError):
                    pass
                stop.wait(0.5)

        reader = threading.Thread(target=trickle, daemon=True)
        reader.start()
        # In batches: what is measured is what the worker holds for slow readers, not the
        # requests in flight of one burst (bounded by http.max_pending, not by this fix).
        for i in range(n_slow):
            p = Peer(port=30000 + i)
            req = ('GET %s HTTP/1.1\r\nHost: x\r\n\r\n'
                   % tytotest.announce_path(swarm, p.peer_id, p.port, left=1, compact=0)).encode()
            s = slow_socket(t.port)
            s.sendall(req * 30)
            s.setblocking(False)
            slow.append(s)
            if i % 5 == 4:
                time.sleep(0.05)
                sample()
        served = []
        try:
            # Others are served meanwhile, promptly.
            deadline = time.monotonic() + (write_ms / 1000.0 + 20) * SLOW
            while time.monotonic() < deadline and len(cut) < n_slow:
                a0 = time.monotonic()
                d = t.announce(rand_hash(), Peer(), left=1)
                self.assertIn(b'interval', d)
                served.append(time.monotonic() - a0)
                sample()
                held[0] = max(held[0], metrics_values(t)['tyto_http_output_bytes'])
                time.sleep(0.2)
        finally:
            stop.set()
            reader.join(10)
            for s in slow:
                s.close()
        rss_peak = max(peak[0], vm_rss_kb(worker))
        growth = (rss_peak - rss_before) * 1024
        # /metrics: the cuts are counted, the bytes held went up to at most the bound and back to
        # nothing once the slow readers were gone (the worker refreshes both every 100 ms).
        wait_for(lambda: metrics_values(t)['tyto_http_slow_closes_total'] >= max(1, len(cut)), 10,
                 'tyto_http_slow_closes_total to count the %d cuts' % len(cut))
        closes = metrics_values(t)['tyto_http_slow_closes_total']
        wait_for(lambda: metrics_values(t)['tyto_http_output_bytes'] == 0, 10, 'tyto_http_output_bytes 0')
        summary('SLOW slow_readers: %d readers x 30 pipelined announces (%d-byte replies), '
                'max_output_bytes %d, write_timeout_ms %d: worker RSS %d KiB before, %d KiB peak '
                '(+%.1f MiB); %d of %d cut, the last after %.1f s; %d other announces served '
                'meanwhile, slowest %.0f ms; /metrics: %d slow closes, at most %d bytes held'
                % (n_slow, reply_len, max_out, write_ms, rss_before, rss_peak, growth / 1048576.0,
                   len(cut), n_slow, max(cut.values()) if cut else -1, len(served),
                   max(served) * 1000 if served else -1, closes, held[0]))
        # Before: n_slow x (256 KiB + a batch of replies), 80 MiB for 150. Allowed: the bound,
        # plus the input buffers and requests in flight of n_slow connections (16 each, a few
        # KiB apiece), plus allocator slack.
        if rss_meaningful():
            self.assertLess(growth, max_out + n_slow * 64 * 1024 + 4 * 1024 * 1024,
                            'slow readers grew the worker by %.1f MiB' % (growth / 1048576.0))
        self.assertEqual(len(cut), n_slow, 'slow readers still connected after %.0f s'
                         % (time.monotonic() - t0))
        self.assertGreater(len(served), 0)
        self.assertEqual(closes, n_slow, 'tyto_http_slow_closes_total')
        self.assertGreater(held[0], 0, 'tyto_http_output_bytes never showed the slow readers')
        self.assertLessEqual(held[0], max_out)
        self.assertEqual(stats(t)['http']['slow_closes'], closes)
        self.assertEqual(children(t.proc.pid), [worker])
        t.announce(rand_hash(), Peer(), left=1)
        # A counter continues across a respawn: the new worker's slot keeps the cuts of the old
        # (it serves this /metrics itself, refreshing its counters first).
        t.killed_pids.add(worker)
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: children(t.proc.pid) not in ([], [worker]), 10, 'the new worker')
        wait_for(lambda: metrics_values(t)['tyto_workers_ready'] == 1, 10, 'the new worker ready')
        self.assertEqual(metrics_values(t)['tyto_http_slow_closes_total'], closes)
        t.stop()


class AccessLogTest(unittest.TestCase):

    def setUp(self):
        self.tytos = []

    def tearDown(self):
        for t in self.tytos:
            t.kill()

    def test_access_log_stdout_not_read(self):
        """log.access "-" on a pipe nobody reads: announces are answered promptly (lines are
        dropped past a bounded buffer, with a warning); once the pipe is read, lines flow again.
        Before: the worker blocked in write(2) once the pipe (64 KiB) and its buffer filled."""
        rfd, wfd = os.pipe()
        t = Tyto(backend='memory', config={'log': {'access': '-'}})
        t.stdout = wfd
        self.tytos.append(t)
        try:
            t.start()
        finally:
            os.close(wfd)
        got = bytearray()
        reader = None
        try:
            # 2500 lines of ~600 bytes: more than the pipe (64 KiB) and the buffer (1 MiB) hold.
            n = 2500
            pad = [('pad', 'x' * 400)]      # an unknown parameter: ignored, but logged
            conn = t.connection(timeout=5.0)
            slowest = 0.0
            t0 = time.monotonic()
            for i in range(n):
                a0 = time.monotonic()
                conn.request('GET', tytotest.announce_path(rand_hash(), Peer().peer_id, 6881, left=1,
                                                           extra=pad))
                r = conn.getresponse()
                body = r.read()
                self.assertEqual(r.status, 200, body)
                slowest = max(slowest, time.monotonic() - a0)
            elapsed = time.monotonic() - t0
            conn.close()
            wait_for(lambda: 'access log: the output does not keep up' in t.log(), 10,
                     'the dropped-lines warning')
            dropped = wait_for(lambda: metrics_values(t)['tyto_access_log_dropped_total'], 10,
                               'tyto_access_log_dropped_total > 0')

            def drain():
                while True:
                    try:
                        chunk = os.read(rfd, 65536)
                    except OSError:
                        return
                    if not chunk:
                        return
                    got.extend(chunk)

            reader = threading.Thread(target=drain, daemon=True)
            reader.start()
            # The buffer is still full until the worker has written some of it into the pipe the
            # reader now empties, and a line logged before then is dropped as designed: one marker
            # every half second until one comes through.
            marker = None
            for _ in range(20):
                marker = '/after-%s' % os.urandom(6).hex()
                self.assertEqual(t.get(marker).status, 404)
                try:
                    wait_for(lambda: marker.encode() in got, 0.5, 'the access log line of %s' % marker)
                    break
                except AssertionError:
                    pass
            self.assertIn(marker.encode(), got, 'no access log line came through after the reader started')
            line = next(x for x in bytes(got).split(b'\n') if marker.encode() in x)
            summary('SLOW access_log_stdout: %d announces with the access log on an unread pipe in '
                    '%.2f s, slowest %.0f ms, %d lines dropped (/metrics); after the reader '
                    'started, %d bytes of lines came, the marker line: %r'
                    % (n, elapsed, slowest * 1000, dropped, len(got), line[:120]))
            self.assertIn(b' 404 ', line)
            t.stop()
        finally:
            t.kill()
            if reader is not None:
                reader.join(5)
            os.close(rfd)

    def test_access_log_names_forwarded_client(self):
        """Through a trusted proxy, the access log names the client the proxy forwarded
        (X-Forwarded-For, or the PROXY header's source), not the proxy. Before: the proxy's
        address (the TCP peer) was logged."""
        path = os.path.join(tytotest.make_tmpdir('access'), 'access.log')
        t = Tyto(backend='memory', config={'log': {'access': path},
                                           'proxy': {'trusted': ['127.0.0.1']}})
        self.tytos.append(t)
        t.start()

        def client_of(marker):
            def find():
                try:
                    with open(path, 'rb') as f:
                        for line in f:
                            if marker.encode() in line:
                                return line.decode().split()
                except OSError:
                    pass
                return None
            fields = wait_for(find, 10, 'the access log line of ' + marker)
            return fields[2]

        h = rand_hash()
        d = t.decode_ok(t.get(tytotest.announce_path(h, Peer().peer_id, 6881, left=1,
                                                     extra=[('key', 'xff4')]),
                              headers={'X-Forwarded-For': '203.0.113.7'}), 'announce')
        self.assertNotIn(b'failure reason', d)
        self.assertEqual(client_of('key=xff4'), '203.0.113.7')
        t.get('/nothere-xff6', headers={'X-Forwarded-For': '2001:db8::5'})
        self.assertEqual(client_of('/nothere-xff6'), '2001:db8::5')
        # a proxy chain: the rightmost untrusted entry is the client
        t.get('/nothere-chain', headers={'X-Forwarded-For': '198.51.100.1, 127.0.0.1'})
        self.assertEqual(client_of('/nothere-chain'), '198.51.100.1')
        # no header: the peer itself, with its port
        t.get('/nothere-direct')
        self.assertTrue(client_of('/nothere-direct').startswith('127.0.0.1:'))
        t.stop()

        # The PROXY protocol from a trusted proxy (127.0.0.2): its source, with its port.
        path2 = os.path.join(tytotest.make_tmpdir('access'), 'access.log')
        path = path2
        p = Tyto(backend='memory', config={'log': {'access': path2},
                                           'proxy': {'trusted': ['127.0.0.2'], 'protocol': True}})
        self.tytos.append(p)
        p.start()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5 * SLOW)
        s.bind(('127.0.0.2', 0))
        s.connect(('127.0.0.1', p.port))
        s.sendall(b'PROXY TCP4 192.0.2.44 127.0.0.1 5555 80\r\n'
                  b'GET /nothere-proxy HTTP/1.1\r\nConnection: close\r\n\r\n')
        data = b''
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        self.assertTrue(data.startswith(b'HTTP/1.1 404'), data[:200])
        self.assertEqual(client_of('/nothere-proxy'), '192.0.2.44:5555')
        summary('SLOW access_log_client: X-Forwarded-For 203.0.113.7 / 2001:db8::5 / a chain, '
                'and a PROXY v1 source, logged as the client')
        p.stop()


if __name__ == '__main__':
    tytotest.main()
