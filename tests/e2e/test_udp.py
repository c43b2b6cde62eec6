"""The UDP tracker (BEP 15, BEP 41) against real Redis and tyto with several workers, through a raw
UDP client: connection ids accepted by every worker and by a second tyto holding the same secret
(a second "host"), refused when expired, forged or presented from another address; IPv4 (6-byte
peers) and IPv6 (18-byte peers); scrape; every error case; the storage outage answer; the access
log and /metrics. Run by tests/run.sh."""

import os
import signal
import socket
import struct
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tytotest as tt           # noqa: E402

PROTOCOL_ID = 0x41727101980
SECRET = 'e2e-shared-secret-for-udp'


class UdpClient:
    """One UDP socket (one source port) speaking BEP 15 to host:port."""

    def __init__(self, host, port, family=socket.AF_INET, bind=None):
        self.addr = (host, port)
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        if bind:
            self.sock.bind((bind, 0))
        self.sock.settimeout(2.0 * tt.SLOW)
        self.tid = 100

    def close(self):
        self.sock.close()

    def roundtrip(self, pkt, expect_reply=True):
        self.sock.sendto(pkt, self.addr)
        if not expect_reply:
            self.sock.settimeout(0.5)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return None
            finally:
                self.sock.settimeout(2.0 * tt.SLOW)
            raise AssertionError('expected no reply, got %r' % data)
        return self.sock.recv(65536)

    def next_tid(self):
        self.tid += 1
        return self.tid

    def connect(self):
        tid = self.next_tid()
        data = self.roundtrip(struct.pack('>QII', PROTOCOL_ID, 0, tid))
        action, rtid, cid = struct.unpack('>IIQ', data)
        assert (action, rtid, len(data)) == (0, tid, 16), data
        return cid

    @staticmethod
    def announce_pkt(cid, tid, info_hash, peer_id, port, event=2, left=100, numwant=-1, ip=0, options=b''):
        return struct.pack('>QII20s20sQQQIIIiH', cid, 1, tid, info_hash, peer_id, 0, left, 0, event, ip, 0,
                           numwant, port) + options

    def announce(self, cid, info_hash, peer_id=None, port=6881, **kw):
        """-> ('ok', interval, leechers, seeders, peer blob) or ('error', message)."""
        tid = self.next_tid()
        data = self.roundtrip(self.announce_pkt(cid, tid, info_hash, peer_id or os.urandom(20), port, **kw))
        return self.parse(data, tid, 1)

    def scrape(self, cid, hashes):
        tid = self.next_tid()
        data = self.roundtrip(struct.pack('>QII', cid, 2, tid) + b''.join(hashes))
        return self.parse(data, tid, 2)

    @staticmethod
    def parse(data, tid, want):
        action, rtid = struct.unpack('>II', data[:8])
        assert rtid == tid, (rtid, tid)
        if action == 3:
            return ('error', data[8:].decode())
        assert action == want, (action, want, data)
        if want == 1:
            interval, leechers, seeders = struct.unpack('>III', data[8:20])
            return ('ok', interval, leechers, seeders, data[20:])
        body = data[8:]
        return ('ok', [struct.unpack('>III', body[i:i + 12]) for i in range(0, len(body), 12)])


def peers4(blob):
    return sorted((socket.inet_ntop(socket.AF_INET, blob[i:i + 4]), struct.unpack('>H', blob[i + 4:i + 6])[0])
                  for i in range(0, len(blob), 6))


def peers6(blob):
    return sorted((socket.inet_ntop(socket.AF_INET6, blob[i:i + 16]), struct.unpack('>H', blob[i + 16:i + 18])[0])
                  for i in range(0, len(blob), 18))


def access_pids(path, target):
    """pids of the access-log lines for target (e.g. 'udp:announce')."""
    try:
        with open(path) as f:
            return [line.split()[1] for line in f if line.split()[-1:] == [target]]
    except OSError:
        return []


class UdpTests(unittest.TestCase):
    """One tyto with 4 workers and a shared secret, UDP on, and a second one (the other "host")."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tt.make_tmpdir('udp')
        cls.access = os.path.join(cls.dir, 'access.log')
        cfg = {'workers': 4, 'udp': {'secret': SECRET}, 'scrape': {'max_hashes': 80},
               'log': {'access': cls.access}}
        cls.tyto = tt.Tyto(config=cfg, udp=True)
        cls.other = tt.Tyto(config={'workers': 1, 'udp': {'secret': SECRET}}, udp=True)
        try:
            cls.tyto.start()
            cls.other.start()
        except BaseException:
            cls.tyto.kill()
            cls.other.kill()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.tyto.stop()
            cls.other.stop()
        finally:
            cls.tyto.kill()
            cls.other.kill()

    def client(self, v6=False, tyto=None, bind=None):
        t = tyto or self.tyto
        c = UdpClient('::1' if v6 else '127.0.0.1', t.udp_port, socket.AF_INET6 if v6 else socket.AF_INET, bind)
        self.addCleanup(c.close)
        return c

    def test_connect_announce_ipv4_peers(self):
        c = self.client()
        cid = c.connect()
        ih = tt.rand_hash()
        r = c.announce(cid, ih, port=7001)
        self.assertEqual(r[0], 'ok', r)
        self.assertEqual(r[1], 1234)                  # announce.interval_s
        self.assertEqual((r[2], r[3]), (1, 0))        # one leecher
        self.assertEqual(r[4], b'')                   # never given itself
        r = c.announce(cid, ih, port=7002, left=0)
        self.assertEqual((r[2], r[3]), (1, 1))
        self.assertEqual(peers4(r[4]), [('127.0.0.1', 7001)])

    def test_numwant_default_and_cap(self):
        c = self.client()
        cid = c.connect()
        ih = tt.rand_hash()
        for p in range(7100, 7110):
            self.assertEqual(c.announce(cid, ih, port=p)[0], 'ok')
        self.assertEqual(len(c.announce(cid, ih, port=7200, numwant=-1)[4]), 4 * 6)   # numwant_default 4
        self.assertEqual(len(c.announce(cid, ih, port=7201, numwant=1000)[4]), 8 * 6)  # numwant_max 8
        self.assertEqual(len(c.announce(cid, ih, port=7202, numwant=2)[4]), 2 * 6)

    def test_ipv6_announce_gets_18_byte_peers(self):
        if not tt.ipv6_available():
            tt.skip_unsupported(self, 'no IPv6 on this machine')
        c = self.client(v6=True)
        cid = c.connect()
        ih = tt.rand_hash()
        self.assertEqual(c.announce(cid, ih, port=7301)[0], 'ok')
        r = c.announce(cid, ih, port=7302)
        self.assertEqual(peers6(r[4]), [('::1', 7301)])
        # an IPv4 client of the same swarm is not handed the IPv6 peer
        c4 = self.client()
        r4 = c4.announce(c4.connect(), ih, port=7303)
        self.assertEqual((r4[2], r4[4]), (3, b''))
        # an id issued over IPv4 does not serve the IPv6 address
        self.assertEqual(c.announce(c4.connect(), ih, port=7304), ('error', 'invalid connection id'))

    def test_id_from_one_worker_accepted_by_others(self):
        first = self.client()
        cid = first.connect()
        ih = tt.rand_hash()
        # Other source ports hash to other SO_REUSEPORT sockets, so to other workers.
        before = len(access_pids(self.access, 'udp:announce'))
        for i in range(24):
            c = self.client()
            r = c.announce(cid, ih, port=7400 + i)
            self.assertEqual(r[0], 'ok', r)
        pids = tt.wait_for(lambda: (lambda p: p if len(p) >= before + 24 else None)(
            access_pids(self.access, 'udp:announce')), 5, 'access-log lines')
        self.assertGreater(len(set(pids[before:])), 1, 'all 24 announces were answered by one worker')

    def test_id_from_another_host_with_the_same_secret(self):
        cid = self.client(tyto=self.other).connect()
        r = self.client().announce(cid, tt.rand_hash())
        self.assertEqual(r[0], 'ok', r)
        cid = self.client().connect()
        r = self.client(tyto=self.other).announce(cid, tt.rand_hash())
        self.assertEqual(r[0], 'ok', r)

    def test_id_from_a_host_with_another_secret_refused(self):
        third = tt.Tyto(config={'udp': {'secret': 'another'}}, udp=True)
        try:
            third.start()
            cid = self.client(tyto=third).connect()
        finally:
            third.stop()
        self.assertEqual(self.client().announce(cid, tt.rand_hash()), ('error', 'invalid connection id'))

    def test_forged_and_other_address_ids_refused(self):
        c = self.client()
        cid = c.connect()
        for bad in (cid ^ 1, cid ^ (1 << 40), 0, 0xffffffffffffffff):
            self.assertEqual(c.announce(bad, tt.rand_hash()), ('error', 'invalid connection id'))
        self.assertEqual(c.scrape(cid ^ 1, [tt.rand_hash()]), ('error', 'invalid connection id'))
        # the same id from another address (127.0.0.2 is loopback too)
        other = self.client(bind='127.0.0.2')
        self.assertEqual(other.announce(cid, tt.rand_hash()), ('error', 'invalid connection id'))
        self.assertEqual(other.announce(other.connect(), tt.rand_hash())[0], 'ok')

    def test_scrape(self):
        c = self.client()
        cid = c.connect()
        a, b = tt.rand_hash(), tt.rand_hash()
        c.announce(cid, a, port=7501, left=0)
        c.announce(cid, a, port=7502, left=5)
        c.announce(cid, a, port=7502, left=0, event=1)      # completed
        r = c.scrape(cid, [a, b, a])
        self.assertEqual(r, ('ok', [(2, 1, 0), (0, 0, 0), (2, 1, 0)]))   # request order, repeats kept
        self.assertEqual(c.scrape(cid, [tt.rand_hash() for _ in range(74)])[0], 'ok')
        self.assertEqual(c.scrape(cid, [tt.rand_hash() for _ in range(75)]),
                         ('error', 'too many info_hash values in one scrape (at most 74)'))
        self.assertEqual(c.scrape(cid, []), ('error', 'scrape without info_hash'))
        tid = c.next_tid()
        data = c.roundtrip(struct.pack('>QII', cid, 2, tid) + b'x' * 30)
        self.assertEqual(c.parse(data, tid, 2), ('error', 'scrape info_hash values must be 20 bytes each'))

    def test_stopped_leaves_the_swarm(self):
        c = self.client()
        cid = c.connect()
        ih = tt.rand_hash()
        c.announce(cid, ih, port=7601)
        self.assertEqual(c.scrape(cid, [ih])[1], [(0, 0, 1)])
        c.announce(cid, ih, port=7601, event=3)
        self.assertEqual(c.scrape(cid, [ih])[1], [(0, 0, 0)])

    def test_malformed_requests(self):
        c = self.client()
        cid = c.connect()
        # no transaction id, or a connect without the magic: silence
        c.roundtrip(b'\x00' * 15, expect_reply=False)
        c.roundtrip(struct.pack('>QII', PROTOCOL_ID + 1, 0, 5), expect_reply=False)
        # an unknown action: an error no larger than the request (no amplification)
        data = c.roundtrip(struct.pack('>QII', cid, 9, 6))
        self.assertLessEqual(len(data), 16)
        self.assertEqual(struct.unpack('>II', data[:8]), (3, 6))
        # an announce with a bad connection id is answered within the request's size too
        tid = c.next_tid()
        data = c.roundtrip(struct.pack('>QII', 1, 1, tid) + b'\x00' * 4)
        self.assertEqual(len(data), 20)
        self.assertEqual(c.parse(data, tid, 1), ('error', 'invalid conn'))
        ih = tt.rand_hash()
        tid = c.next_tid()
        data = c.roundtrip(c.announce_pkt(cid, tid, ih, os.urandom(20), 1)[:97])
        self.assertEqual(c.parse(data, tid, 1), ('error', 'packet too short for its action'))
        self.assertEqual(c.announce(cid, ih, event=4), ('error', 'event must be 0 to 3'))
        self.assertEqual(c.announce(cid, ih, port=0), ('error', 'port must be a number from 1 to 65535'))
        self.assertEqual(c.announce(cid, ih, options=b'\x02\x09/announce')[0], 'ok')
        self.assertEqual(c.announce(cid, ih, options=b'\x01\x02\x04/ann\x02\x05ounce\x00')[0], 'ok')
        self.assertEqual(c.announce(cid, ih, options=b'\x02\x10/secret/announce'),
                         ('error', 'this tracker serves udp://host:port/announce only (no passkey paths)'))
        self.assertEqual(c.announce(cid, ih, options=b'\x02\x20/announce'), ('error', 'malformed BEP 41 option'))
        self.assertEqual(c.announce(cid, ih, options=b'\x02'), ('error', 'malformed BEP 41 option'))
        self.assertTrue(self.tyto.running())

    def test_metrics_count_udp(self):
        c = self.client()
        cid = c.connect()
        c.announce(cid ^ 1, tt.rand_hash())
        c.roundtrip(b'\x00' * 3, expect_reply=False)
        m = tt.metrics_values(self.tyto)
        self.assertGreaterEqual(m['tyto_udp_requests_total{action="connect"}'], 1)
        self.assertGreaterEqual(m['tyto_udp_refused_total{why="connection_id_forged"}'], 1)
        self.assertGreaterEqual(m['tyto_udp_malformed_total{kind="short"}'], 1)
        # the HTTP series keep their meaning: HTTP only
        self.assertIn('tyto_requests_total{route="announce"}', m)

    def test_http_and_udp_share_swarms(self):
        ih = tt.rand_hash()
        c = self.client()
        c.announce(c.connect(), ih, port=7701)
        r = self.tyto.get(tt.announce_path(ih, tt.rand_hash(), 7702, left=10))
        d = tt.bdecode(r.body)
        self.assertEqual(tt.parse_peers4(d[b'peers']), [('127.0.0.1', 7701)])
        r = c.announce(c.connect(), ih, port=7703)
        self.assertEqual(peers4(r[4]), [('127.0.0.1', 7701), ('127.0.0.1', 7702)])


class UdpExpiryTests(unittest.TestCase):
    """udp.connection_id_ttl_s: an id past it is refused (the shortest TTL, 10 s)."""

    def test_expired_id_refused(self):
        t = tt.Tyto(config={'udp': {'connection_id_ttl_s': 10}}, udp=True)
        try:
            t.start()
            c = UdpClient('127.0.0.1', t.udp_port)
            cid = c.connect()
            self.assertEqual(c.announce(cid, tt.rand_hash())[0], 'ok')
            time.sleep(12)
            self.assertEqual(c.announce(cid, tt.rand_hash()), ('error', 'connection id expired'))
            self.assertEqual(c.announce(c.connect(), tt.rand_hash())[0], 'ok')
            c.close()
            self.assertIn('udp.secret is not set', t.log())
        finally:
            t.stop()


class UdpSecretTests(unittest.TestCase):
    """Where the secret comes from, its rotation, and a reload."""

    def start(self, **kw):
        t = tt.Tyto(udp=True, **kw)
        self.addCleanup(t.kill)
        t.start()
        return t

    def test_rotation_secret_file_and_env(self):
        old = self.start(config={'udp': {'secret': 'old-secret'}})
        path = os.path.join(old.dir, 'udp.secret')
        with open(path, 'w') as f:
            f.write('new-secret\n')
        rotated = self.start(config={'udp': {'secret_file': path, 'secret_previous': 'old-secret'}})
        from_env = self.start(env={'TYTO_UDP_SECRET': 'new-secret'})
        a = UdpClient('127.0.0.1', old.udp_port)
        b = UdpClient('127.0.0.1', rotated.udp_port)
        c = UdpClient('127.0.0.1', from_env.udp_port)
        old_id, new_id = a.connect(), b.connect()
        # A host on the new secret still accepts ids of the previous one; the file's trailing
        # newline is not part of the secret (TYTO_UDP_SECRET has the same one).
        self.assertEqual(b.announce(old_id, tt.rand_hash())[0], 'ok')
        self.assertEqual(c.announce(new_id, tt.rand_hash())[0], 'ok')
        self.assertEqual(b.announce(c.connect(), tt.rand_hash())[0], 'ok')
        # ... and a host still on the old one refuses the new ids until it is rotated.
        self.assertEqual(a.announce(new_id, tt.rand_hash()), ('error', 'invalid connection id'))
        self.assertEqual(c.announce(old_id, tt.rand_hash()), ('error', 'invalid connection id'))
        self.assertNotIn('udp.secret is not set', rotated.log())
        for x in (a, b, c):
            x.close()
        for t in (old, rotated, from_env):
            t.stop()

    def test_reload_keeps_sockets_and_the_random_secret(self):
        t = self.start(config={'workers': 2})
        c = UdpClient('127.0.0.1', t.udp_port)
        cid = c.connect()
        old_workers = set(tt.children(t.proc.pid))
        t.cfg['announce']['interval_s'] = 2000
        t.write_config()
        os.kill(t.proc.pid, signal.SIGHUP)
        tt.wait_for(lambda: c.announce(cid, tt.rand_hash())[1] == 2000, 10, 'interval 2000 over UDP')
        tt.wait_for(lambda: not (set(tt.children(t.proc.pid)) & old_workers), 10, 'the old generation to exit')
        # the id drawn before the reload is still valid: the host's random secret is kept
        self.assertEqual(c.announce(cid, tt.rand_hash())[:2], ('ok', 2000))
        self.assertEqual(t.log().count('udp.secret is not set'), 1)
        c.close()
        t.stop()

    def test_secret_file_missing_refuses_start(self):
        t = tt.Tyto(udp=True, config={'udp': {'secret_file': '/nonexistent/udp.secret'}})
        self.addCleanup(t.kill)
        with self.assertRaises(AssertionError):
            t.start(timeout=3)
        self.assertIn('udp.secret_file /nonexistent/udp.secret', t.log())


class UdpLimitsTests(unittest.TestCase):
    """The shared path: rate limits and the storage outage answer apply to UDP as to HTTP."""

    def test_rate_limit(self):
        t = tt.Tyto(config={'rate_limit': {'announces': 3, 'window_s': 60}}, udp=True)
        try:
            t.start()
            c = UdpClient('127.0.0.1', t.udp_port)
            cid = c.connect()
            got = [c.announce(cid, tt.rand_hash())[0] for _ in range(3)]
            self.assertEqual(got, ['ok'] * 3)
            self.assertEqual(c.announce(cid, tt.rand_hash()),
                             ('error', 'too many requests from this address, retry later'))
            c.close()
        finally:
            t.stop()

    def test_storage_outage(self):
        t = tt.Tyto(config={'redis': {'url': 'unix:///nonexistent/redis.sock'}}, udp=True)
        try:
            t.start(expect_status=None)
            c = UdpClient('127.0.0.1', t.udp_port)
            cid = tt.wait_for(lambda: c.connect(), 10, 'UDP served')
            r = c.announce(cid, tt.rand_hash())
            self.assertEqual(r[0], 'error')
            self.assertTrue(r[1].startswith('tracker storage is unavailable'), r)
            r = c.scrape(cid, [tt.rand_hash()])
            self.assertTrue(r[1].startswith('tracker storage is unavailable'), r)
            c.close()
        finally:
            t.stop()


if __name__ == '__main__':
    tt.main()
