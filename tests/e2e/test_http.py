"""End-to-end tests of tyto's HTTP tracker: real HTTP to a running tyto, replies decoded strictly,
and (Redis backend) the keys it leaves in Redis checked against the README's schema. The swarm
semantics run against both backends; Redis outages, deadlines, process behaviour and the command
line have classes of their own. Run by tests/run.sh, or alone: /usr/bin/python3 tests/e2e/test_http.py"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tytotest as tt                       # noqa: E402
from tytotest import Peer, rand_hash        # noqa: E402

LOCAL4 = '127.0.0.1'
LOCAL6 = '::1'


def child_pids(pid):
    """Direct children of pid (Linux /proc)."""
    out = []
    for task in os.listdir('/proc/%d/task' % pid):
        try:
            with open('/proc/%d/task/%s/children' % (pid, task)) as f:
                out.extend(int(x) for x in f.read().split())
        except OSError:
            pass
    return out


def peers_of(reply):
    """Every (ip, port) in a compact announce reply, IPv4 and IPv6."""
    out = tt.parse_peers4(reply.get(b'peers', b''))
    if b'peers6' in reply:
        out += tt.parse_peers6(reply[b'peers6'])
    return out


def failure_of(testcase, d, what):
    """Asserts d is a bencoded failure: exactly one key, a non-empty reason. Returns it (str)."""
    testcase.assertIsInstance(d, dict, what)
    testcase.assertEqual(set(d), {b'failure reason'},
                         '%s: expected only "failure reason", got %r' % (what, d))
    reason = d[b'failure reason']
    testcase.assertIsInstance(reason, bytes, what)
    testcase.assertTrue(reason.strip(), '%s: empty failure reason' % what)
    return reason.decode('utf-8', 'replace')


# ---------------------------------------------------------------------------------------------
# Swarm semantics, for every backend

class SwarmSemantics:
    """Mixed into a ServerTestCase; uses only HTTP."""

    # Overridden by the Redis class to also look at the keys.
    def assert_untouched(self, info_hash):
        pass

    def test_announce_reply_shape(self):
        h, p = rand_hash(), Peer()
        d = self.tyto.announce(h, p, left=1000, event='started')
        keys = set(d)
        for k in (b'complete', b'incomplete', b'interval', b'min interval', b'peers'):
            self.assertIn(k, keys, 'announce reply lacks %r: %r' % (k, d))
        extra = keys - {b'complete', b'downloaded', b'incomplete', b'interval', b'min interval',
                        b'peers', b'peers6'}
        self.assertFalse(extra, 'unexpected keys in the announce reply: %r' % d)
        self.assertIn(b'downloaded', keys, 'announce reply lacks "downloaded": %r' % d)
        self.assertEqual(d[b'interval'], 1234, 'interval is not the configured announce.interval_s')
        self.assertEqual(d[b'min interval'], 617, 'min interval is not announce.min_interval_s')
        self.assertIsInstance(d[b'peers'], bytes, 'compact peers must be a byte string')
        self.assertEqual(peers_of(d), [], 'the first peer of a swarm got peers: %r' % d)
        self.assertEqual((d[b'complete'], d[b'incomplete'], d[b'downloaded']), (0, 1, 0), repr(d))

    def test_announce_peers_exchange(self):
        h, a, b = rand_hash(), Peer(), Peer()
        self.tyto.announce(h, a, left=5, event='started')
        d = self.tyto.announce(h, b, left=5, event='started')
        self.assertEqual(peers_of(d), [(LOCAL4, a.port)],
                         'second leecher must get exactly the first (socket address, announced port)')
        self.assertEqual((d[b'complete'], d[b'incomplete']), (0, 2))
        d = self.tyto.announce(h, a, left=5)
        self.assertEqual(peers_of(d), [(LOCAL4, b.port)], 'a re-announce must return the other peer')
        self.assertEqual((d[b'complete'], d[b'incomplete']), (0, 2), 'a re-announce must not double count')

    def test_announce_never_returns_self(self):
        h, me = rand_hash(), Peer()
        others = [Peer() for _ in range(3)]
        for o in others:
            self.tyto.announce(h, o, left=1)
        for _ in range(5):
            d = self.tyto.announce(h, me, left=1, numwant=8)
            got = peers_of(d)
            self.assertNotIn((LOCAL4, me.port), got, 'a peer received itself')
            self.assertEqual(sorted(got), sorted((LOCAL4, o.port) for o in others))

    def test_seeder_gets_only_leechers(self):
        h = rand_hash()
        s1, s2, l1, l2 = Peer(), Peer(), Peer(), Peer()
        self.tyto.announce(h, s1, left=0, event='started')
        self.tyto.announce(h, s2, left=0, event='started')
        self.tyto.announce(h, l1, left=10, event='started')
        self.tyto.announce(h, l2, left=10, event='started')
        d = self.tyto.announce(h, s1, left=0)
        self.assertEqual(sorted(peers_of(d)), sorted([(LOCAL4, l1.port), (LOCAL4, l2.port)]),
                         'a seeder must receive only the leechers')
        self.assertEqual((d[b'complete'], d[b'incomplete']), (2, 2))
        d = self.tyto.announce(h, l1, left=10)
        self.assertEqual(sorted(peers_of(d)),
                         sorted([(LOCAL4, s1.port), (LOCAL4, s2.port), (LOCAL4, l2.port)]),
                         'a leecher must receive seeders and the other leechers')

    def test_completed_moves_to_seeders_and_counts(self):
        h, p, other = rand_hash(), Peer(), Peer()
        self.tyto.announce(h, p, left=100, event='started')
        self.tyto.announce(h, other, left=100, event='started')
        d = self.tyto.announce(h, p, left=0, event='completed')
        self.assertEqual((d[b'complete'], d[b'incomplete'], d[b'downloaded']), (1, 1, 1), repr(d))
        d = self.tyto.announce(h, p, left=0)
        self.assertEqual((d[b'complete'], d[b'incomplete'], d[b'downloaded']), (1, 1, 1),
                         'a later regular announce must not count it twice: %r' % d)
        s = self.tyto.scrape([h])
        self.assertEqual(s[b'files'][h], {b'complete': 1, b'downloaded': 1, b'incomplete': 1})

    def test_left_zero_without_event_is_a_seeder(self):
        h, p = rand_hash(), Peer()
        self.tyto.announce(h, p, left=7, event='started')
        d = self.tyto.announce(h, p, left=0)
        self.assertEqual((d[b'complete'], d[b'incomplete']), (1, 0),
                         'left=0 must move the peer to the seeders (and out of the leechers)')

    def test_stopped_removes_peer(self):
        h, a, b = rand_hash(), Peer(), Peer()
        self.tyto.announce(h, a, left=3, event='started')
        self.tyto.announce(h, b, left=0, event='started')
        d = self.tyto.announce(h, a, left=3, event='stopped')
        self.assertNotIn(b'failure reason', d)
        d = self.tyto.announce(h, b, left=0)
        self.assertEqual(peers_of(d), [], 'a stopped peer was still handed out')
        self.assertEqual((d[b'complete'], d[b'incomplete']), (1, 0))
        self.tyto.announce(h, b, left=0, event='stopped')
        s = self.tyto.scrape([h])
        self.assertEqual(s[b'files'][h][b'complete'], 0)
        self.assertEqual(s[b'files'][h][b'incomplete'], 0)

    def test_numwant_default_request_and_cap(self):
        h = rand_hash()
        for _ in range(12):
            self.tyto.announce(h, Peer(), left=1)
        me = Peer()
        cases = [(None, 4, 'numwant absent: announce.numwant_default (4)'),
                 (3, 3, 'numwant=3'),
                 (100, 8, 'numwant=100: capped at announce.numwant_max (8)'),
                 (0, 0, 'numwant=0')]
        for numwant, want, what in cases:
            d = self.tyto.announce(h, me, left=1, numwant=numwant)
            got = peers_of(d)
            self.assertEqual(len(got), len(set(got)), 'duplicate peers: %r' % got)
            self.assertNotIn((LOCAL4, me.port), got)
            self.assertEqual(len(got), want, '%s with 12 other peers: got %d peers' % (what, len(got)))

    def test_compact0_gives_peer_dicts(self):
        h, a, b = rand_hash(), Peer(), Peer()
        self.tyto.announce(h, a, left=1)
        d = self.tyto.announce(h, b, left=1, compact=0)
        self.assertIsInstance(d[b'peers'], list, 'compact=0 must give a list of dicts: %r' % d)
        self.assertEqual(len(d[b'peers']), 1, repr(d))
        entry = d[b'peers'][0]
        self.assertEqual(entry[b'ip'], LOCAL4.encode(), repr(entry))
        self.assertEqual(entry[b'port'], a.port, repr(entry))
        self.assertLessEqual(set(entry), {b'ip', b'port', b'peer id'}, repr(entry))
        if b'peer id' in entry:
            self.assertEqual(entry[b'peer id'], a.peer_id)

    def test_ip_parameter_ignored_by_default(self):
        h, a, b = rand_hash(), Peer(), Peer()
        self.tyto.announce(h, a, left=1, extra=[('ip', '10.9.8.7')])
        d = self.tyto.announce(h, b, left=1)
        self.assertEqual(peers_of(d), [(LOCAL4, a.port)],
                         'ip= must be ignored unless announce.allow_ip_param is on')

    def test_ipv6_peers(self):
        if not self.tyto.ipv6:
            self.fail('IPv6 loopback (::1) is not available on this host')
        h, a4, b6 = rand_hash(), Peer(), Peer()
        self.tyto.announce(h, a4, left=1)
        d = self.tyto.announce(h, b6, left=1, v6=True)
        self.assertEqual(tt.parse_peers4(d[b'peers']), [(LOCAL4, a4.port)],
                         'an IPv6 client must get IPv4 peers in "peers"')
        self.assertEqual(tt.parse_peers6(d.get(b'peers6', b'')), [], 'the IPv6 client got itself')
        d = self.tyto.announce(h, a4, left=1)
        self.assertIn(b'peers6', d, 'IPv4 client: the IPv6 peer must come in "peers6": %r' % d)
        self.assertEqual(tt.parse_peers6(d[b'peers6']), [(LOCAL6, b6.port)])
        self.assertEqual(tt.parse_peers4(d[b'peers']), [])
        self.assertEqual(d[b'incomplete'], 2)

    def test_same_address_different_ports_are_different_peers(self):
        h = rand_hash()
        ps = [Peer(port=40000 + i) for i in range(3)]
        for p in ps:
            self.tyto.announce(h, p, left=1)
        d = self.tyto.announce(h, ps[0], left=1)
        self.assertEqual(sorted(peers_of(d)), [(LOCAL4, 40001), (LOCAL4, 40002)])
        self.assertEqual(d[b'incomplete'], 3)

    def test_scrape_counts(self):
        h1, h2, unknown = rand_hash(), rand_hash(), rand_hash()
        for _ in range(2):
            self.tyto.announce(h1, Peer(), left=0)
        p, q = Peer(), Peer()
        self.tyto.announce(h1, p, left=5, event='started')
        self.tyto.announce(h1, q, left=5, event='started')
        self.tyto.announce(h1, q, left=0, event='completed')
        self.tyto.announce(h2, Peer(), left=9)
        r = self.tyto.get(tt.scrape_path([h1, h2, unknown]))
        d = self.tyto.decode_ok(r, 'scrape')
        self.assertEqual(set(d), {b'files'}, 'scrape reply must be d5:files...e: %r' % d)
        files = d[b'files']
        self.assertEqual(set(files), {h1, h2, unknown}, 'scrape must answer each requested hash')
        self.assertEqual(files[h1], {b'complete': 3, b'downloaded': 1, b'incomplete': 1})
        self.assertEqual(files[h2], {b'complete': 0, b'downloaded': 0, b'incomplete': 1})
        self.assertEqual(files[unknown], {b'complete': 0, b'downloaded': 0, b'incomplete': 0},
                         'an unknown hash must scrape as zeros')

    def test_scrape_duplicate_hash_once(self):
        h = rand_hash()
        self.tyto.announce(h, Peer(), left=1)
        d = self.tyto.scrape([h, h])
        self.assertEqual(set(d[b'files']), {h})
        self.assertEqual(d[b'files'][h][b'incomplete'], 1)

    def test_scrape_limit(self):
        hashes = [rand_hash() for _ in range(4)]
        d = self.tyto.scrape(hashes)
        self.assertEqual(len(d.get(b'files', {})), 4, 'scrape of scrape.max_hashes (4) hashes: %r' % d)
        d = self.tyto.scrape(hashes + [rand_hash()])
        failure_of(self, d, 'scrape of 5 hashes with scrape.max_hashes 4')

    def test_scrape_without_info_hash_refused(self):
        d = self.tyto.announce_raw('/scrape')
        failure_of(self, d, 'full scrape (off by default)')

    def test_keepalive_many_announces_one_connection(self):
        h = rand_hash()
        conn = self.tyto.connection()
        try:
            peers = [Peer() for _ in range(6)]
            sock = None
            for i, p in enumerate(peers):
                conn.request('GET', tt.announce_path(h, p.peer_id, p.port, left=1))
                r = conn.getresponse()
                body = r.read()
                self.assertEqual(r.status, 200, body)
                self.assertIsNot(r.will_close, True, 'server closed a keep-alive connection after request %d' % i)
                if sock is None:
                    sock = conn.sock
                self.assertIs(conn.sock, sock, 'the connection was not kept alive')
                d = tt.bdecode(body)
                self.assertEqual(d[b'incomplete'], i + 1)
        finally:
            conn.close()

    def test_pipelined_requests(self):
        h, p = rand_hash(), Peer()
        reqs = [tt.announce_path(h, p.peer_id, p.port, left=1), '/no/such/path', '/healthz',
                tt.scrape_path([h])]
        s = socket.create_connection((LOCAL4, self.tyto.port), timeout=5 * tt.SLOW)
        try:
            s.sendall(b''.join(b'GET %s HTTP/1.1\r\nHost: t\r\n\r\n' % r.encode() for r in reqs))
            rf = s.makefile('rb')
            got = [tt.read_response(rf) for _ in reqs]
        finally:
            s.close()
        self.assertTrue(all(got), 'pipelined responses missing: %r' % got)
        self.assertEqual([r.status for r in got], [200, 404, 200, 200], repr(got))
        self.assertIn(b'interval', tt.bdecode(got[0].body))
        self.assertEqual(tt.bdecode(got[3].body)[b'files'][h][b'incomplete'], 1)

    def test_healthz(self):
        r = self.tyto.get('/healthz')
        self.assertEqual(r.status, 200, repr(r))

    def test_unknown_paths_404(self):
        for path in ('/', '/nope', '/announcex', '/scrape2?info_hash=x', '/favicon.ico'):
            r = self.tyto.get(path)
            self.assertEqual(r.status, 404, 'GET %s: %r' % (path, r))

    def test_long_request_line(self):
        """20 KB request line: a failure reason, a 4xx, or a close; and the server stays up."""
        s = socket.create_connection((LOCAL4, self.tyto.port), timeout=5 * tt.SLOW)
        resp = None
        try:
            line = b'GET /announce?info_hash=' + b'%41' * 6800 + b' HTTP/1.1\r\nHost: t\r\n\r\n'
            try:
                s.sendall(line)
                resp = tt.read_response(s.makefile('rb'))
            except (ConnectionResetError, BrokenPipeError):
                resp = None
            except socket.timeout:
                self.fail('no reply and no close within %d s to a 20 KB request line' % (5 * tt.SLOW))
        finally:
            s.close()
        if resp is not None:
            if resp.status == 200:
                failure_of(self, tt.bdecode(resp.body), '20 KB request line')
            else:
                self.assertTrue(400 <= resp.status < 500, '20 KB request line: %r' % resp)
        self.assertEqual(self.tyto.get('/healthz').status, 200, 'server not healthy after a 20 KB line')
        self.tyto.announce(rand_hash(), Peer(), left=1)

    def test_bad_input_then_still_serving(self):
        for name in sorted(BAD_ANNOUNCES):
            r = self.tyto.get(BAD_ANNOUNCES[name][0]())
            self.assertEqual(r.status, 200, '%s: %r' % (name, r))
        for junk in (b'GARBAGE\r\n\r\n', b'GET / HTTP/9.9\r\n\r\n', b'\x00\xff' * 100 + b'\r\n\r\n'):
            s = socket.create_connection((LOCAL4, self.tyto.port), timeout=5 * tt.SLOW)
            try:
                s.sendall(junk)
                try:
                    s.recv(4096)
                except (ConnectionResetError, socket.timeout):
                    pass
            finally:
                s.close()
        h, a, b = rand_hash(), Peer(), Peer()
        self.tyto.announce(h, a, left=1)
        d = self.tyto.announce(h, b, left=1)
        self.assertEqual(peers_of(d), [(LOCAL4, a.port)], 'server not working after bad input')

    def test_concurrent_clients(self):
        """32 threads x 10 keep-alive announces in one swarm: every reply OK, every peer counted."""
        h = rand_hash()
        nthreads, nreq = 32, 10
        errors = []
        peers = [Peer(port=20000 + i) for i in range(nthreads)]

        def client(p):
            try:
                conn = self.tyto.connection(timeout=20)
                try:
                    for i in range(nreq):
                        conn.request('GET', tt.announce_path(h, p.peer_id, p.port, left=1 + i))
                        r = conn.getresponse()
                        body = r.read()
                        d = tt.bdecode(body) if r.status == 200 else None
                        if d is None or b'failure reason' in d:
                            errors.append('HTTP %d %r' % (r.status, body[:200]))
                finally:
                    conn.close()
            except Exception as e:          # reported below, with the others
                errors.append(repr(e))
        threads = [threading.Thread(target=client, args=(p,), daemon=True) for p in peers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60 * tt.SLOW)
        self.assertFalse(errors, '%d of %d requests failed, e.g. %r' % (len(errors), nthreads * nreq, errors[:5]))
        d = self.tyto.scrape([h])
        self.assertEqual(d[b'files'][h][b'incomplete'], nthreads)

    def test_oversized_headers(self):
        s = socket.create_connection((LOCAL4, self.tyto.port), timeout=5 * tt.SLOW)
        try:
            try:
                s.sendall(b'GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ' + b'a' * 65536 + b'\r\n\r\n')
                resp = tt.read_response(s.makefile('rb'))
            except (ConnectionResetError, BrokenPipeError):
                resp = None
        finally:
            s.close()
        if resp is not None:
            self.assertTrue(400 <= resp.status < 500, '64 KB header: %r' % resp)
        self.assertEqual(self.tyto.get('/healthz').status, 200)


# Bad announces: name -> (path builder taking the info_hash to use, words of which the failure
# reason must contain one). The swarm of that info_hash must stay untouched.

def _bad(info_hash=None, peer_id=None, port=6881, left=1, extra=(), raw=None, keep=()):
    def build(h=None):
        p = Peer()
        if raw is not None:
            return raw(h or rand_hash(), p)
        params = [('info_hash', info_hash if info_hash is not None else (h or rand_hash())),
                  ('peer_id', peer_id if peer_id is not None else p.peer_id), ('port', port),
                  ('uploaded', 0), ('downloaded', 0), ('left', left)]
        params = [(k, v) for k, v in params if k not in keep]
        params.extend(extra)
        return '/announce?' + tt.build_query(params)
    return build


BAD_ANNOUNCES = {
    'missing_info_hash': (_bad(keep=('info_hash',)), ['info_hash', 'info hash']),
    'info_hash_19_bytes': (_bad(info_hash=b'\x02' * 19), ['info_hash', 'info hash']),
    'info_hash_21_bytes': (_bad(info_hash=b'\x02' * 21), ['info_hash', 'info hash']),
    'info_hash_bad_escape': (_bad(raw=lambda h, p: '/announce?info_hash=%s%%zz&peer_id=%s&port=1&uploaded=0'
                                  '&downloaded=0&left=1' % (tt.q(h[:19]), tt.q(p.peer_id))),
                             ['info_hash', 'info hash', 'encod', 'escape', 'percent']),
    'info_hash_truncated_escape': (_bad(raw=lambda h, p: '/announce?peer_id=%s&port=1&uploaded=0'
                                        '&downloaded=0&left=1&info_hash=%s%%4' % (tt.q(p.peer_id), tt.q(h[:19]))),
                                   ['info_hash', 'info hash', 'encod', 'escape', 'percent']),
    'info_hash_repeated': (_bad(extra=[('info_hash', b'\x03' * 20)]),
                           ['info_hash', 'info hash', 'repeat', 'twice', 'once', 'more than']),
    'missing_peer_id': (_bad(keep=('peer_id',)), ['peer_id', 'peer id']),
    'peer_id_5_bytes': (_bad(peer_id=b'short'), ['peer_id', 'peer id']),
    'missing_port': (_bad(keep=('port',)), ['port']),
    'port_zero': (_bad(port=0), ['port']),
    'port_abc': (_bad(port='abc'), ['port']),
    'port_65536': (_bad(port=65536), ['port']),
    'port_negative': (_bad(port=-1), ['port']),
    'port_trailing_garbage': (_bad(port='6881x'), ['port']),
    'port_empty': (_bad(port=''), ['port']),
    'port_repeated': (_bad(extra=[('port', 6882)]), ['port', 'repeat', 'twice', 'once', 'more than']),
    'uploaded_negative': (_bad(raw=lambda h, p: '/announce?info_hash=%s&peer_id=%s&port=1'
                               '&uploaded=-1&downloaded=0&left=1' % (tt.q(h), tt.q(p.peer_id))),
                          ['uploaded']),
    'uploaded_overflow': (_bad(raw=lambda h, p: '/announce?info_hash=%s&peer_id=%s&port=1'
                               '&uploaded=99999999999999999999999&downloaded=0&left=1' % (tt.q(h), tt.q(p.peer_id))),
                          ['uploaded']),
    'downloaded_abc': (_bad(raw=lambda h, p: '/announce?info_hash=%s&peer_id=%s&port=1'
                            '&uploaded=0&downloaded=abc&left=1' % (tt.q(h), tt.q(p.peer_id))),
                       ['downloaded']),
    'left_abc': (_bad(left='abc'), ['left']),
    'event_bogus': (_bad(extra=[('event', 'bogus')]), ['event']),
    'numwant_abc': (_bad(extra=[('numwant', 'abc')]), ['numwant']),
    'compact_abc': (_bad(extra=[('compact', 'abc')]), ['compact']),
    'empty_query': (_bad(raw=lambda h, p: '/announce'), ['info_hash', 'info hash']),
}


def _make_bad_test(name, build, words):
    def test(self):
        h = rand_hash()
        path = build(h)
        d = self.tyto.announce_raw(path)
        reason = failure_of(self, d, 'GET %s' % path[:200])
        self.assertTrue(any(w in reason.lower() for w in words),
                        'GET %s: failure reason %r names none of %r' % (path[:200], reason, words))
        self.assert_untouched(h)
    test.__name__ = 'test_bad_announce_' + name
    test.__doc__ = None
    return test


for _name, (_build, _words) in BAD_ANNOUNCES.items():
    setattr(SwarmSemantics, 'test_bad_announce_' + _name, _make_bad_test(_name, _build, _words))


# ---------------------------------------------------------------------------------------------
# Backends

class RedisSwarmTests(SwarmSemantics, tt.ServerTestCase):
    """Swarm semantics on storage.backend redis, plus the keys left in Redis."""

    BACKEND = 'redis'

    def assert_untouched(self, info_hash):
        for kind in ('seeders', 'leechers', 'info'):
            self.assertEqual(self.redis.cmd('EXISTS', self.key(info_hash, kind)), 0,
                             'a refused announce wrote %s' % self.key(info_hash, kind))

    def assert_member(self, info_hash, kind, member, ttl=3000):
        key = self.key(info_hash, kind)
        scores = self.redis.zscores(key)
        self.assertIn(member, scores, 'ZRANGE %s: %r lacks %r (keys of this swarm: %r)'
                      % (key, scores, member, self.redis.keys(self.key(info_hash, '*'))))
        now = time.time()
        self.assertLess(abs(scores[member] - (now + ttl)), 5 * tt.SLOW,
                        'score of %r in %s is %r, expected now + peer_ttl = %r'
                        % (member, key, scores[member], now + ttl))
        key_ttl = self.redis.cmd('TTL', key)
        self.assertGreater(key_ttl, 0, 'key %s has TTL %r: abandoned swarms would never expire' % (key, key_ttl))
        self.assertLessEqual(key_ttl, ttl, 'key %s TTL %r exceeds peer_ttl' % (key, key_ttl))

    def assert_absent(self, info_hash, kind, member):
        key = self.key(info_hash, kind)
        self.assertNotIn(member, self.redis.zscores(key), '%r still in %s' % (member, key))

    def test_redis_leecher_member(self):
        h, p = rand_hash(), Peer()
        self.tyto.announce(h, p, left=10, event='started')
        member = b'127.0.0.1:%d' % p.port
        self.assert_member(h, 'leechers', member)
        self.assert_absent(h, 'seeders', member)

    def test_redis_key_names(self):
        h, p = rand_hash(), Peer()
        self.tyto.announce(h, p, left=10, event='started')
        q = Peer()
        self.tyto.announce(h, q, left=10, event='started')
        self.tyto.announce(h, q, left=0, event='completed')
        keys = self.redis.keys(self.tyto.prefix + '*' + h.hex() + '*')
        want = sorted(self.key(h, k).encode() for k in ('info', 'leechers', 'seeders', 'stats'))
        self.assertEqual(keys, want, 'keys of one swarm (hash tag, lowercase hex, prefix %r)'
                         % self.tyto.prefix)

    def test_redis_completed_moves_member_and_counts(self):
        h, p = rand_hash(), Peer()
        member = b'127.0.0.1:%d' % p.port
        self.tyto.announce(h, p, left=10, event='started')
        self.tyto.announce(h, p, left=0, event='completed')
        self.assert_member(h, 'seeders', member)
        self.assert_absent(h, 'leechers', member)
        info = self.key(h, 'info')
        self.assertEqual(self.redis.cmd('HGET', info, 'downloaded'), b'1',
                         'HGETALL %s: %r' % (info, self.redis.cmd('HGETALL', info)))
        # swarm.downloaded_ttl_s 0 (the default): the count is kept for ever, with no TTL...
        self.assertEqual(self.redis.cmd('TTL', info), -1,
                         'TTL of %s: the completed count must not expire' % info)
        # ...while the peer sets still expire with their last member.
        self.assertEqual(self.redis.cmd('EXPIRETIME', self.key(h, 'seeders')),
                         int(self.redis.zscores(self.key(h, 'seeders'))[member]))

    def test_redis_seeder_back_to_leecher(self):
        h, p = rand_hash(), Peer()
        member = b'127.0.0.1:%d' % p.port
        self.tyto.announce(h, p, left=0)
        self.assert_member(h, 'seeders', member)
        self.tyto.announce(h, p, left=5)
        self.assert_member(h, 'leechers', member)
        self.assert_absent(h, 'seeders', member)

    def test_redis_stopped_removes_member(self):
        h, p, q = rand_hash(), Peer(), Peer()
        member = b'127.0.0.1:%d' % p.port
        self.tyto.announce(h, q, left=1)
        self.tyto.announce(h, p, left=1)
        self.tyto.announce(h, p, left=1, event='stopped')
        self.assert_absent(h, 'leechers', member)
        self.assert_absent(h, 'seeders', member)
        self.assertIn(b'127.0.0.1:%d' % q.port, self.redis.zscores(self.key(h, 'leechers')))

    def test_redis_ipv6_member(self):
        if not self.tyto.ipv6:
            self.fail('IPv6 loopback (::1) is not available on this host')
        h, p = rand_hash(), Peer()
        self.tyto.announce(h, p, left=0, v6=True)
        self.assert_member(h, 'seeders', b'[::1]:%d' % p.port)

    def test_redis_score_refreshed(self):
        h, p = rand_hash(), Peer()
        member = b'127.0.0.1:%d' % p.port
        self.tyto.announce(h, p, left=1)
        key = self.key(h, 'leechers')
        self.redis.cmd('ZADD', key, 'XX', int(time.time()) + 10, member)
        self.tyto.announce(h, p, left=1)
        self.assert_member(h, 'leechers', member)

    def test_redis_expired_members_not_returned_or_counted(self):
        h, live = rand_hash(), Peer()
        now = int(time.time())
        self.redis.cmd('ZADD', self.key(h, 'leechers'), now - 100, '127.0.0.1:9', now - 1, '127.0.0.1:10')
        self.redis.cmd('ZADD', self.key(h, 'seeders'), now - 100, '127.0.0.1:11')
        self.redis.cmd('EXPIRE', self.key(h, 'leechers'), 3000)
        self.redis.cmd('EXPIRE', self.key(h, 'seeders'), 3000)
        d = self.tyto.announce(h, live, left=1, numwant=8)
        self.assertEqual(peers_of(d), [], 'expired members were handed out: %r' % peers_of(d))
        self.assertEqual((d[b'complete'], d[b'incomplete']), (0, 1), 'expired members were counted')
        s = self.tyto.scrape([h])
        self.assertEqual(s[b'files'][h], {b'complete': 0, b'downloaded': 0, b'incomplete': 1},
                         'scrape counted expired members')

    def test_redis_scrape_reads_keys(self):
        h = rand_hash()
        now = int(time.time())
        self.redis.cmd('ZADD', self.key(h, 'seeders'), now + 600, '127.0.0.1:1', now + 600, '[::1]:2')
        self.redis.cmd('ZADD', self.key(h, 'leechers'), now + 600, '127.0.0.1:3')
        self.redis.cmd('HSET', self.key(h, 'info'), 'downloaded', 17)
        for kind in ('seeders', 'leechers', 'info'):
            self.redis.cmd('EXPIRE', self.key(h, kind), 600)
        s = self.tyto.scrape([h])
        self.assertEqual(s[b'files'][h], {b'complete': 2, b'downloaded': 17, b'incomplete': 1})
        d = self.tyto.announce(h, Peer(), left=1, numwant=8)
        self.assertEqual(sorted(peers_of(d)), sorted([(LOCAL4, 1), (LOCAL6, 2), (LOCAL4, 3)]))


class RedisDownloadedTtlTests(tt.ServerTestCase):
    """swarm.downloaded_ttl_s > 0: the info hash expires that long after the swarm's last announce."""

    BACKEND = 'redis'
    CONFIG = {'swarm': {'downloaded_ttl_s': 7200}}

    def test_info_ttl_follows_the_last_announce(self):
        h, p = rand_hash(), Peer()
        self.tyto.announce(h, p, left=10, event='started')
        self.tyto.announce(h, p, left=0, event='completed')
        info = self.key(h, 'info')
        self.assertEqual(self.redis.cmd('HGET', info, 'downloaded'), b'1')
        ttl = self.redis.cmd('TTL', info)
        self.assertTrue(7200 - 5 * tt.SLOW <= ttl <= 7200, 'TTL of %s: %r, expected 7200' % (info, ttl))
        # The peer leaves; the count stays until 7200 s after this last announce.
        self.tyto.announce(h, p, left=0, event='stopped')
        ttl = self.redis.cmd('TTL', info)
        self.assertTrue(7200 - 5 * tt.SLOW <= ttl <= 7200, 'TTL of %s after stopped: %r' % (info, ttl))


class MemorySwarmTests(SwarmSemantics, tt.ServerTestCase):
    """The same semantics on storage.backend memory (workers 1)."""

    BACKEND = 'memory'


# ---------------------------------------------------------------------------------------------
# Redis outages and deadlines

class RedisOutageTests(unittest.TestCase):

    def setUp(self):
        self.dir = tt.make_tmpdir('outage')
        self.sock = os.path.join(self.dir, 'r.sock')
        self.servers = []

    def tearDown(self):
        for s in self.servers:
            if isinstance(s, tt.Tyto):
                s.kill()
            else:
                s.stop()

    def start_tyto(self, expect_status):
        t = tt.Tyto(redis_url='unix://' + self.sock, config={'redis': {'timeout_ms': 500 * tt.SLOW}})
        self.servers.append(t)
        t.start(expect_status=expect_status)
        return t

    def start_redis(self):
        r = tt.RedisServer(self.sock, self.dir)
        self.servers.append(r)
        return r.start()

    def assert_fast_storage_failure(self, t, words=('storage',)):
        h, p = rand_hash(), Peer()
        t0 = time.monotonic()
        d = t.announce(h, p, left=1, expect_ok=False)
        took = time.monotonic() - t0
        reason = failure_of(self, d, 'announce with Redis unavailable')
        self.assertTrue(any(w in reason.lower() for w in words),
                        'failure reason %r names none of %r' % (reason, words))
        self.assertLess(took, 2.0 * tt.SLOW, 'the failure took %.2f s' % took)
        d = t.scrape([h])
        failure_of(self, d, 'scrape with Redis unavailable')

    def wait_recovered(self, t, timeout=10.0):
        deadline = time.monotonic() + timeout * tt.SLOW
        last = None
        t0 = time.monotonic()
        while time.monotonic() < deadline:
            last = t.announce(rand_hash(), Peer(), left=1, expect_ok=False)
            if b'failure reason' not in last:
                return time.monotonic() - t0
            time.sleep(0.2)
        self.fail('announces still fail %.0f s after Redis came back: %r' % (timeout * tt.SLOW, last))

    def test_redis_down_at_start_then_up(self):
        t = self.start_tyto(expect_status=None)
        self.assertEqual(t.get('/healthz').status, 503, '/healthz with no Redis')
        self.assert_fast_storage_failure(t)
        self.start_redis()
        self.wait_recovered(t)
        self.assertEqual(t.get('/healthz').status, 200, '/healthz after Redis came up')
        t.stop()

    def test_redis_goes_away_and_comes_back(self):
        r = self.start_redis()
        t = self.start_tyto(expect_status=200)
        h, a, b = rand_hash(), Peer(), Peer()
        t.announce(h, a, left=1)
        self.assertEqual(t.announce(h, b, left=1)[b'incomplete'], 2)
        r.stop()
        self.assert_fast_storage_failure(t)
        deadline = time.monotonic() + 5 * tt.SLOW
        status = None
        while time.monotonic() < deadline:
            status = t.get('/healthz').status
            if status == 503:
                break
            time.sleep(0.1)
        self.assertEqual(status, 503, '/healthz with Redis gone')
        self.start_redis()
        self.wait_recovered(t)
        self.assertEqual(t.get('/healthz').status, 200)
        t.stop()

    def test_redis_tcp_url(self):
        port = tt.free_port()
        r = tt.RedisServer(self.sock, self.dir, tcp_port=port)
        self.servers.append(r)
        r.start()
        t = tt.Tyto(redis_url='redis://127.0.0.1:%d' % port)
        self.servers.append(t)
        t.start()
        h, p = rand_hash(), Peer()
        t.announce(h, p, left=1)
        c = tt.Redis(self.sock)
        try:
            self.assertIn(b'127.0.0.1:%d' % p.port, c.zscores('%s{%s}:leechers' % (t.prefix, h.hex())))
        finally:
            c.close()
        t.stop()

    def test_sigterm_answers_request_in_flight(self):
        """SIGTERM while an announce waits on Redis: the reply still goes out, then exit 0."""
        self.start_redis()
        t = tt.Tyto(redis_url='unix://' + self.sock,
                    config={'redis': {'timeout_ms': 5000 * tt.SLOW}, 'shutdown': {'timeout_s': 10}})
        self.servers.append(t)
        t.start()
        h, a, b = rand_hash(), Peer(), Peer()
        t.announce(h, a, left=1)
        c = tt.Redis(self.sock)
        try:
            c.cmd('CLIENT', 'PAUSE', 1000 * tt.SLOW, 'ALL')
            result = {}

            def call():
                try:
                    result['r'] = t.get(tt.announce_path(h, b.peer_id, b.port, left=1), timeout=20)
                except Exception as e:
                    result['e'] = e
            th = threading.Thread(target=call, daemon=True)
            th.start()
            time.sleep(0.3 * tt.SLOW)
            t.proc.send_signal(signal.SIGTERM)
            th.join(30)
        finally:
            try:
                c.cmd('CLIENT', 'UNPAUSE')
            finally:
                c.close()
        self.assertNotIn('e', result, 'the request in flight at SIGTERM got no reply: %r' % result.get('e'))
        d = t.decode_ok(result['r'], 'announce in flight at SIGTERM')
        self.assertNotIn(b'failure reason', d, 'the request in flight at SIGTERM failed: %r' % d)
        self.assertEqual(peers_of(d), [(LOCAL4, a.port)])
        t.stop()

    def test_redis_unresponsive_deadline(self):
        """A Redis that accepts and never answers: replies must come within redis.timeout_ms."""
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(self.sock)
        lsock.listen(16)
        stop = threading.Event()
        held = []

        def sink():
            lsock.settimeout(0.2)
            while not stop.is_set():
                try:
                    c, _ = lsock.accept()
                    c.setblocking(False)
                    held.append(c)
                except OSError:
                    pass
                for c in held:
                    try:
                        c.recv(65536)
                    except OSError:
                        pass
        th = threading.Thread(target=sink, daemon=True)
        th.start()
        try:
            t = self.start_tyto(expect_status=None)
            self.assert_fast_storage_failure(t, words=('storage', 'timeout', 'time out', 'timed out'))
            t0 = time.monotonic()
            st = t.get('/healthz').status
            self.assertEqual(st, 503, '/healthz with a Redis that never answers')
            self.assertLess(time.monotonic() - t0, 3 * tt.SLOW)
            t.stop()
        finally:
            stop.set()
            th.join(5)
            for c in held:
                c.close()
            lsock.close()


# ---------------------------------------------------------------------------------------------
# Process and command line

class ProcessTests(unittest.TestCase):

    def run_tyto(self, args, timeout=20):
        d = tt.make_tmpdir('cli')
        p = subprocess.run(tt.tyto_command(d, args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout * tt.SLOW, stdin=subprocess.DEVNULL, env=tt.clean_env())
        return p.returncode, p.stdout.decode(errors='replace'), d

    def write(self, text):
        d = tt.make_tmpdir('cfg')
        path = os.path.join(d, 'tyto.yaml')
        with open(path, 'w') as f:
            f.write(text)
        return path

    def test_config_check_ok(self):
        t = tt.Tyto()
        t.cfg['listen']['port'] = tt.free_port()
        t.write_config()
        rc, out, d = self.run_tyto(['-t', '-c', t.config_path])
        self.assertEqual(rc, 0, 'tyto -t on a valid file: %s' % out)
        tt.check_valgrind_logs(d)

    def test_config_check_unknown_key(self):
        path = self.write('listen:\n  port: 7000\nwokers: 1\n')
        rc, out, d = self.run_tyto(['-t', '-c', path])
        self.assertNotEqual(rc, 0, 'tyto -t accepted an unknown key: %s' % out)
        self.assertIn('wokers', out, 'the message must name the unknown key')
        self.assertIn(':3', out, 'the message must give the line (3): %s' % out)
        if tt.VALGRIND:
            tt.check_valgrind_logs(d)

    def test_config_check_memory_with_two_workers(self):
        path = self.write('workers: 2\nstorage:\n  backend: memory\n')
        rc, out, _ = self.run_tyto(['-t', '-c', path])
        self.assertNotEqual(rc, 0, 'storage memory with 2 workers must be refused: %s' % out)

    def test_missing_config_file(self):
        rc, out, _ = self.run_tyto(['-c', '/nonexistent/tyto.yaml'])
        self.assertNotEqual(rc, 0)
        self.assertIn('/nonexistent/tyto.yaml', out)

    def test_env_overrides_file(self):
        prefix = 'env%s:' % os.urandom(4).hex()
        t = tt.Tyto(env={'TYTO_REDIS_PREFIX': prefix})
        try:
            t.start()
            h = rand_hash()
            t.announce(h, Peer(), left=1)
            r = tt.redis_client()
            try:
                self.assertEqual(r.cmd('EXISTS', '%s{%s}:leechers' % (prefix, h.hex())), 1,
                                 'TYTO_REDIS_PREFIX did not override redis.prefix')
                self.assertEqual(r.cmd('EXISTS', '%s{%s}:leechers' % (t.prefix, h.hex())), 0)
            finally:
                r.close()
            t.stop()
        finally:
            t.kill()

    def test_sigterm_with_idle_keepalive_connection(self):
        t = tt.Tyto(backend='memory', config={'shutdown': {'timeout_s': 2}})
        try:
            t.start()
            conn = t.connection()
            conn.request('GET', '/healthz')
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            t0 = time.monotonic()
            t.stop(timeout=8)
            self.assertLess(time.monotonic() - t0, 6 * tt.SLOW, 'SIGTERM took too long')
            conn.close()
        finally:
            t.kill()

    def test_listen_ipv4_only(self):
        t = tt.Tyto(backend='memory', ipv6=False)
        try:
            t.start()
            self.assertEqual(t.get('/healthz').status, 200)
            if tt.ipv6_available():
                with self.assertRaises(OSError, msg='listen.ipv6 "" must not listen on ::1'):
                    socket.create_connection((LOCAL6, t.port), timeout=2).close()
            t.stop()
        finally:
            t.kill()

    def test_worker_killed_is_respawned(self):
        t = tt.Tyto(backend='memory')
        try:
            t.start()
            workers = child_pids(t.proc.pid)
            self.assertTrue(workers, 'tyto (pid %d) has no worker processes' % t.proc.pid)
            for pid in workers:
                t.killed_pids.add(pid)
                os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10 * tt.SLOW
            ok = False
            while time.monotonic() < deadline and not ok:
                try:
                    ok = t.get('/healthz', timeout=1).status == 200 and \
                        set(child_pids(t.proc.pid)).isdisjoint(workers)
                except OSError:
                    pass
                time.sleep(0.1)
            self.assertTrue(ok, 'no new worker serving within %d s of killing %r' % (10 * tt.SLOW, workers))
            t.announce(rand_hash(), Peer(), left=1)
            t.stop()
        finally:
            t.kill()

    def test_sighup_reload(self):
        """SIGHUP with a changed file takes effect; with an invalid file tyto keeps serving the old
        one; announces running all along never fail."""
        t = tt.Tyto(backend='memory')
        try:
            t.start()
            h = rand_hash()
            failures = []
            stop = threading.Event()

            def hammer():
                while not stop.is_set():
                    try:
                        d = t.announce(h, Peer(), left=1, expect_ok=False)
                        if b'failure reason' in d:
                            failures.append(d)
                    except Exception as e:
                        failures.append(repr(e))
            th = threading.Thread(target=hammer, daemon=True)
            th.start()
            try:
                t.cfg['announce']['interval_s'] = 1500
                t.write_config()
                t.proc.send_signal(signal.SIGHUP)
                deadline = time.monotonic() + 10 * tt.SLOW
                interval = None
                while time.monotonic() < deadline:
                    interval = t.announce(rand_hash(), Peer(), left=1)[b'interval']
                    if interval == 1500:
                        break
                    time.sleep(0.1)
                self.assertEqual(interval, 1500, 'SIGHUP did not apply the new announce.interval_s')
                with open(t.config_path, 'a') as f:
                    f.write('wokers: 3\n')
                t.proc.send_signal(signal.SIGHUP)
                time.sleep(1.0 * tt.SLOW)
                self.assertTrue(t.running(), 'tyto exited on SIGHUP with an invalid file')
                self.assertEqual(t.announce(rand_hash(), Peer(), left=1)[b'interval'], 1500,
                                 'an invalid file on SIGHUP must leave the running config alone')
            finally:
                stop.set()
                th.join(30)
            self.assertFalse(failures, '%d announces failed during reloads, e.g. %r' % (len(failures), failures[:3]))
            t.stop()
        finally:
            t.kill()


if __name__ == '__main__':
    tt.main()
