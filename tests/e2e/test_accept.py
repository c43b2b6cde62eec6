"""The new-connection path of the HTTP front (issue 10): listeners with TCP_DEFER_ACCEPT (a
connection reaches accept() with its first data), the request read right after accept, the last
reply of a closing connection sent with MSG_MORE so that the FIN leaves with it, the keep-alive
idle timer left pending while a request is served. What must not change: a request arriving in pieces after accept is still served, a client that connects and
sends nothing is still closed by the head timeout, a PROXY header (trusted proxy) may still come
alone before the request, every reply of a closing connection arrives whole before the EOF, and
the idle timeout counts from the last reply.

Each case prints one "ACCEPT <case>: ..." summary line with its figures.
Run alone: TYTO_BIN=build/tyto /usr/bin/python3 tests/e2e/test_accept.py"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tytotest                                          # noqa: E402
from tytotest import Peer, SLOW, parse_peers4, rand_hash, summary  # noqa: E402


def read_all(s):
    """Everything the server sends until it closes (EOF)."""
    data = b''
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def announce_line(info_hash, peer, left=1):
    return 'GET %s HTTP/1.1\r\nHost: t\r\n' % tytotest.announce_path(info_hash, peer.peer_id, peer.port,
                                                                     left=left, compact=1)


class AcceptTest(tytotest.OneWorkerTestCase):

    def test_request_in_pieces_after_accept(self):
        """The first bytes make the connection acceptable; the rest of the head comes later, in
        three pieces (inside the request line, inside a header, the final blank line)."""
        t = self.start_tyto({})
        head = (announce_line(rand_hash(), Peer()) + 'Connection: close\r\n\r\n').encode()
        cuts = [0, 25, len(head) - 12, len(head) - 2, len(head)]
        s = socket.create_connection(('127.0.0.1', t.port), timeout=10 * SLOW)
        try:
            for a, b in zip(cuts, cuts[1:]):
                s.sendall(head[a:b])
                time.sleep(0.2)
            data = read_all(s)
        finally:
            s.close()
        self.assertTrue(data.startswith(b'HTTP/1.1 200 '), data[:200])
        self.assertIn(b'Connection: close', data)
        body = data.split(b'\r\n\r\n', 1)[1]
        d = tytotest.bdecode(body)
        self.assertIn(b'peers', d)
        self.assertNotIn(b'failure reason', d)
        summary('ACCEPT pieces: a head sent in %d pieces 200 ms apart answered 200, then EOF'
                % (len(cuts) - 1))

    def test_silent_client_is_closed(self):
        """A client that connects and sends nothing is closed: TCP_DEFER_ACCEPT hands it to
        tyto after about a second (the SYN-ACK retransmit), then the head timeout runs."""
        head_ms = 500
        t = self.start_tyto({'http': {'head_timeout_ms': head_ms}})
        s = socket.create_connection(('127.0.0.1', t.port), timeout=15 * SLOW)
        t0 = time.monotonic()
        try:
            data = read_all(s)
        except ConnectionResetError:
            data = b''
        finally:
            s.close()
        closed_s = time.monotonic() - t0
        summary('ACCEPT silent: closed after %.2f s, nothing sent (http.head_timeout_ms=%d)'
                % (closed_s, head_ms))
        self.assertEqual(data, b'')
        self.assertGreaterEqual(closed_s, head_ms / 1000.0 * 0.9)
        self.assertLess(closed_s, head_ms / 1000.0 + 4 * SLOW)
        # The worker still serves.
        r = t.get(tytotest.announce_path(rand_hash(), Peer().peer_id, 6881, left=1))
        self.assertNotIn(b'failure reason', t.decode_ok(r, 'announce after the silent client'))

    def test_closing_replies_arrive_whole(self):
        """The last reply is held for the FIN (MSG_MORE): every closing shape still gets all of
        its replies, byte for byte, then EOF: Connection: close, HTTP/1.0, a pipeline whose
        second request closes, and a client that half-closes after its request."""
        t = self.start_tyto({})
        h = rand_hash()
        first = Peer()
        cases = {
            'close': [announce_line(h, first) + 'Connection: close\r\n\r\n'],
            'http10': [announce_line(h, Peer()).replace('HTTP/1.1', 'HTTP/1.0') + '\r\n'],
            'pipeline': [announce_line(h, Peer()) + '\r\n',
                         announce_line(h, Peer()) + 'Connection: close\r\n\r\n'],
            'half-close': [announce_line(h, Peer()) + '\r\n'],
        }
        for name, reqs in cases.items():
            s = socket.create_connection(('127.0.0.1', t.port), timeout=10 * SLOW)
            try:
                s.sendall(''.join(reqs).encode())
                if name == 'half-close':
                    s.shutdown(socket.SHUT_WR)
                rf = s.makefile('rb')
                for i in range(len(reqs)):
                    r = tytotest.read_response(rf)
                    self.assertIsNotNone(r, '%s: reply %d' % (name, i + 1))
                    d = t.decode_ok(r, '%s: reply %d' % (name, i + 1))
                    self.assertNotIn(b'failure reason', d)
                    self.assertIn(b'peers', d)
                self.assertEqual(rf.read(), b'', '%s: EOF after the replies' % name)
                rf.close()
            finally:
                s.close()
        summary('ACCEPT closing: %s: every reply whole, then EOF' % ', '.join(cases))

    def test_idle_timeout_counts_from_the_last_reply(self):
        """The idle timer stays pending while a keep-alive request is served and is re-armed
        for the rest of the period when it fires: the idle timeout still counts from the last
        reply, not from the first, and an idle connection is still closed."""
        t = self.start_tyto({'http': {'idle_timeout_s': 1}})
        h = rand_hash()
        s = socket.create_connection(('127.0.0.1', t.port), timeout=10 * SLOW)
        rf = s.makefile('rb')
        try:
            t0 = time.monotonic()
            for i in range(4):       # a request every 0.6 s: 2.4 s, past the first period
                s.sendall((announce_line(h, Peer()) + '\r\n').encode())
                r = tytotest.read_response(rf)
                self.assertIsNotNone(r, 'reply %d on a connection kept busy' % (i + 1))
                self.assertNotIn(b'failure reason', t.decode_ok(r, 'announce %d' % (i + 1)))
                last = time.monotonic()
                time.sleep(0.6)
            rest = rf.read()
            closed = time.monotonic()
        finally:
            rf.close()
            s.close()
        summary('ACCEPT idle: 4 requests 0.6 s apart served on one connection over %.1f s, '
                'closed %.2f s after the last reply (http.idle_timeout_s=1)' % (last - t0, closed - last))
        self.assertEqual(rest, b'')
        self.assertGreaterEqual(closed - last, 0.9)
        self.assertLess(closed - last, 1.0 + 2 * SLOW)

    def test_proxy_header_alone_then_request(self):
        """A trusted proxy's PROXY v1 header may come alone (the connection is accepted on it),
        the request later: the proxied address is the peer's."""
        t = self.start_tyto({'proxy': {'trusted': ['127.0.0.2'], 'protocol': True}})
        h = rand_hash()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(10 * SLOW)
        s.bind(('127.0.0.2', 0))
        s.connect(('127.0.0.1', t.port))
        try:
            s.sendall(b'PROXY TCP4 192.0.2.44 127.0.0.1 5555 80\r\n')
            time.sleep(0.3)
            s.sendall((announce_line(h, Peer(7777)) + 'Connection: close\r\n\r\n').encode())
            data = read_all(s)
        finally:
            s.close()
        self.assertTrue(data.startswith(b'HTTP/1.1 200 '), data[:200])
        self.assertNotIn(b'failure reason', data)
        # Another peer of the swarm receives the proxied address.
        r = t.get(tytotest.announce_path(h, Peer().peer_id, 6881, left=1, compact=1))
        d = t.decode_ok(r, 'announce of a second peer')
        self.assertIn(('192.0.2.44', 7777), parse_peers4(d[b'peers']))
        summary('ACCEPT proxy: a PROXY v1 header alone, the request 300 ms later: served, '
                'the peer stored as 192.0.2.44:7777')


if __name__ == '__main__':
    tytotest.main()
