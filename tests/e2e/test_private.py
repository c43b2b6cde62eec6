"""Private tracker mode (BEP 27, issue 14; the contract: /work/notes/PRIVATE.md) end to end with a
real Redis and tyto: passkey URLs over HTTP and UDP (BEP 41), refusals (public URL, unknown,
malformed, expired, disabled, rekeyed passkeys; unapproved torrents; seed-only accounts; the client
filter; too many unknown passkeys), the per-worker cache (a change is seen within private.cache_ms),
exact accounting (restarts, started, stopped, two hosts at once, freeleech, neutral, multipliers),
snatches, and that no passkey reaches the access log. Users and torrents are written straight into
Redis with the schema's keys, so this file tests the data path without the management CLI. Run by
tests/run.sh under /usr/bin/python3."""

import hashlib
import os
import secrets
import socket
import string
import struct
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tytotest as tt           # noqa: E402
import test_libtorrent as tl    # noqa: E402

PROTOCOL_ID = 0x41727101980
SECRET = 'e2e-private-udp-secret'
ALNUM = string.ascii_letters + string.digits
PUBLIC = b'this tracker is private: use your personal announce URL with its passkey'


def new_passkey():
    return ''.join(secrets.choice(ALNUM) for _ in range(32))


class Admin:
    """Writes users and torrents with the schema's keys (what `tyto user add` does)."""

    def __init__(self, redis, prefix):
        self.r = redis
        self.p = prefix

    def add_user(self, name=None, enabled=1, can_leech=1, expires=0):
        name = name or 'u' + secrets.token_hex(6)
        pk = new_passkey()
        self.r.cmd('HSET', self.user_key(name), 'name', name, 'passkey', pk, 'enabled', enabled,
                   'can_leech', can_leech, 'expires', expires, 'uploaded', 0, 'downloaded', 0,
                   'snatches', 0, 'created', int(time.time()))
        self.r.cmd('SET', '%s{private}:passkey:%s' % (self.p, pk), name)
        self.r.cmd('SADD', '%s{private}:users' % self.p, name)
        return name, pk

    def user_key(self, name):
        return '%s{private}:user:%s' % (self.p, name)

    def user(self, name):
        r = self.r.cmd('HGETALL', self.user_key(name))
        return {r[i].decode(): r[i + 1].decode() for i in range(0, len(r), 2)}

    def totals(self, name):
        u = self.user(name)
        return int(u['uploaded']), int(u['downloaded'])

    def set_user(self, name, field, value):
        self.r.cmd('HSET', self.user_key(name), field, value)

    def rekey(self, name, old):
        pk = new_passkey()
        self.r.cmd('SET', '%s{private}:passkey:%s' % (self.p, pk), name)
        self.r.cmd('DEL', '%s{private}:passkey:%s' % (self.p, old))
        self.set_user(name, 'passkey', pk)
        return pk

    def add_torrent(self, info_hash=None, freeleech=0, neutral=0, up='1', down='1'):
        info_hash = info_hash or tt.rand_hash()
        self.r.cmd('HSET', self.torrent_key(info_hash), 'added', int(time.time()), 'freeleech', freeleech,
                   'neutral', neutral, 'up', up, 'down', down)
        return info_hash

    def torrent_key(self, info_hash):
        return '%s{%s}:torrent' % (self.p, info_hash.hex())

    def remove_torrent(self, info_hash):
        self.r.cmd('DEL', self.torrent_key(info_hash))


class UdpClient:
    """BEP 15 with BEP 41 URL data."""

    def __init__(self, port):
        self.addr = ('127.0.0.1', port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.settimeout(3.0 * tt.SLOW)
        self.tid = 7
        self.cid = None

    def close(self):
        self.sock.close()

    def roundtrip(self, pkt):
        self.sock.sendto(pkt, self.addr)
        return self.sock.recv(65536)

    def connect(self):
        self.tid += 1
        data = self.roundtrip(struct.pack('>QII', PROTOCOL_ID, 0, self.tid))
        self.cid = struct.unpack('>IIQ', data)[2]

    def announce(self, info_hash, peer_id, port=6881, left=0, uploaded=0, downloaded=0, event=0, url=None):
        """-> ('ok', leechers, seeders) or ('error', message)."""
        if self.cid is None:
            self.connect()
        self.tid += 1
        opts = b''
        if url is not None:
            u = url.encode()
            opts = bytes([2, len(u)]) + u + b'\x00'
        pkt = struct.pack('>QII20s20sQQQIIIiH', self.cid, 1, self.tid, info_hash, peer_id, downloaded, left,
                          uploaded, event, 0, 0, -1, port) + opts
        return self.parse(self.roundtrip(pkt), 1)

    def scrape(self, hashes):
        if self.cid is None:
            self.connect()
        self.tid += 1
        return self.parse(self.roundtrip(struct.pack('>QII', self.cid, 2, self.tid) + b''.join(hashes)), 2)

    def parse(self, data, want):
        action, tid = struct.unpack('>II', data[:8])
        assert tid == self.tid, (tid, self.tid)
        if action == 3:
            return ('error', data[8:].decode())
        assert action == want, (action, data)
        if want == 1:
            _, leechers, seeders = struct.unpack('>III', data[8:20])
            return ('ok', leechers, seeders)
        return ('ok',)


class PrivateCase(unittest.TestCase):
    """A private tyto (2 workers, UDP on, access log), its Admin and helpers."""

    CONFIG = {}

    @classmethod
    def setUpClass(cls):
        cls.dir = tt.make_tmpdir('private')
        cls.access = os.path.join(cls.dir, 'access.log')
        cfg = {'workers': 2, 'udp': {'secret': SECRET}, 'log': {'access': cls.access},
               'private': {'enabled': True, 'unknown_passkey_limit': 0,
                           'clients_mode': 'deny', 'clients': ['-BAD']}}
        tt.merge(cfg, cls.CONFIG)
        cls.tyto = tt.Tyto(config=cfg, udp=True)
        try:
            cls.tyto.start()
        except BaseException:
            cls.tyto.kill()
            raise
        cls.redis = tt.redis_client()
        cls.admin = Admin(cls.redis, cls.tyto.prefix)

    @classmethod
    def tearDownClass(cls):
        cls.redis.close()
        try:
            cls.tyto.stop()
        finally:
            cls.tyto.kill()

    def ann(self, pk, info_hash, peer, left=0, uploaded=0, downloaded=0, event=None, tyto=None):
        path = tt.announce_path(info_hash, peer.peer_id, peer.port, left=left, uploaded=uploaded,
                                downloaded=downloaded, event=event, path='/%s/announce' % pk)
        return (tyto or self.tyto).announce_raw(path)

    def ok(self, *a, **kw):
        d = self.ann(*a, **kw)
        self.assertNotIn(b'failure reason', d, d)
        return d

    def refused(self, reason, *a, **kw):
        d = self.ann(*a, **kw)
        self.assertEqual(d.get(b'failure reason'), reason, d)
        return d


class PrivateTests(PrivateCase):

    def test_public_urls_refused(self):
        ih = self.admin.add_torrent()
        d = self.tyto.announce(ih, tt.Peer(), expect_ok=False)
        self.assertEqual(d[b'failure reason'], PUBLIC)
        d = self.tyto.scrape([ih])
        self.assertEqual(d[b'failure reason'], PUBLIC)

    def test_good_passkey_announce_and_scrape(self):
        name, pk = self.admin.add_user()
        ih = self.admin.add_torrent()
        seeder, leecher = tt.Peer(), tt.Peer()
        d = self.ok(pk, ih, seeder, event='started')
        self.assertEqual((d[b'complete'], d[b'incomplete']), (1, 0))
        d = self.ok(pk, ih, leecher, left=100, event='started')
        self.assertEqual((d[b'complete'], d[b'incomplete']), (1, 1))
        self.assertEqual(len(d[b'peers']), 6)      # the seeder
        d = self.tyto.announce_raw(tt.scrape_path([ih], path='/%s/scrape' % pk))
        self.assertEqual(d[b'files'][ih][b'complete'], 1)
        self.assertEqual(d[b'files'][ih][b'incomplete'], 1)

    def test_scrape_reports_approved_torrents_only(self):
        _, pk = self.admin.add_user()
        ih, other = self.admin.add_torrent(), tt.rand_hash()
        self.ok(pk, ih, tt.Peer())
        path = tt.scrape_path([ih, other], path='/%s/scrape' % pk)
        files = self.tyto.announce_raw(path)[b'files']
        self.assertEqual(files[ih][b'complete'], 1)
        self.assertEqual(files[other], {b'complete': 0, b'downloaded': 0, b'incomplete': 0})
        self.admin.remove_torrent(ih)       # its swarm is still in Redis: not reported
        files = self.tyto.announce_raw(path)[b'files']
        self.assertEqual(files[ih], {b'complete': 0, b'downloaded': 0, b'incomplete': 0})

    def test_unknown_and_malformed_passkeys(self):
        ih = self.admin.add_torrent()
        for pk in (new_passkey(), 'short', 'x' * 31 + '!', 'y' * 33):
            d = self.refused(b'unknown passkey', pk, ih, tt.Peer())
            self.assertNotIn(pk.encode(), repr(d).encode())
            d = self.tyto.announce_raw(tt.scrape_path([ih], path='/%s/scrape' % pk))
            self.assertEqual(d[b'failure reason'], b'unknown passkey')
        # other paths stay 404
        self.assertEqual(self.tyto.get('/%s/other' % new_passkey()).status, 404)

    def test_expired_passkey(self):
        _, pk = self.admin.add_user(expires=int(time.time()) - 5)
        ih = self.admin.add_torrent()
        self.refused(b'passkey expired', pk, ih, tt.Peer())
        _, pk2 = self.admin.add_user(expires=int(time.time()) + 3600)
        self.ok(pk2, ih, tt.Peer())

    def test_disabled_user_refused_within_a_second(self):
        name, pk = self.admin.add_user()
        ih = self.admin.add_torrent()
        self.ok(pk, ih, tt.Peer())
        self.admin.set_user(name, 'enabled', 0)
        t0 = time.monotonic()
        # Both workers: every announce after the change (on either) must be refused within 1 s.
        tt.wait_for(lambda: all(self.ann(pk, ih, tt.Peer()).get(b'failure reason') == b'account disabled'
                                for _ in range(6)), 3, 'the disabled user refused')
        self.assertLess(time.monotonic() - t0, 1.0 + 0.5)
        time.sleep(1.1)
        for _ in range(6):
            self.refused(b'account disabled', pk, ih, tt.Peer())

    def test_rekeyed_passkey(self):
        name, old = self.admin.add_user()
        ih = self.admin.add_torrent()
        self.ok(old, ih, tt.Peer())
        new = self.admin.rekey(name, old)
        self.ok(new, ih, tt.Peer())
        time.sleep(1.1)
        for _ in range(4):
            self.refused(b'unknown passkey', old, ih, tt.Peer())

    def test_unapproved_and_removed_torrents(self):
        _, pk = self.admin.add_user()
        self.refused(b'torrent not registered with this tracker', pk, tt.rand_hash(), tt.Peer())
        ih = self.admin.add_torrent()
        self.ok(pk, ih, tt.Peer())
        self.admin.remove_torrent(ih)
        time.sleep(1.1)
        for _ in range(4):
            self.refused(b'torrent not registered with this tracker', pk, ih, tt.Peer())

    def test_seed_only_account(self):
        _, pk = self.admin.add_user(can_leech=0)
        ih = self.admin.add_torrent()
        self.refused(b'your account may only seed (left must be 0)', pk, ih, tt.Peer(), left=1)
        self.ok(pk, ih, tt.Peer(), left=0)

    def test_denied_client(self):
        _, pk = self.admin.add_user()
        ih = self.admin.add_torrent()
        p = tt.Peer()
        p.peer_id = b'-BAD001-' + secrets.token_bytes(12)
        self.refused(b"client not allowed: peer_id prefix '-BAD' is denied", pk, ih, p)

    def test_accounting_sequence_with_restart(self):
        name, pk = self.admin.add_user()
        ih = self.admin.add_torrent()
        p = tt.Peer()
        steps = [
            ('started', 0, 0, (0, 0)),
            (None, 1000, 500, (1000, 500)),
            (None, 100, 50, (1000, 500)),       # restart without started: counters went back
            (None, 300, 250, (1000, 500)),      # below the high-water mark: nothing
            (None, 1500, 800, (1500, 800)),     # above it: the part above
            ('started', 0, 0, (1500, 800)),     # a new session: new baseline
            (None, 200, 100, (1700, 900)),
            ('stopped', 400, 150, (1900, 950)),
        ]
        for event, up, down, want in steps:
            self.ok(pk, ih, p, left=10, uploaded=up, downloaded=down, event=event)
            self.assertEqual(self.admin.totals(name), want, (event, up, down))
        peer_key = '%s{private}:peer:%s:%s:%s' % (self.tyto.prefix, name, ih.hex(), p.peer_id.hex())
        self.assertEqual(self.redis.cmd('EXISTS', peer_key), 0)    # stopped deletes it
        self.ok(pk, ih, p, left=10, uploaded=10, downloaded=10)
        self.assertGreater(self.redis.cmd('TTL', peer_key), 0)
        self.assertEqual(self.admin.totals(name), (1900, 950))   # a new peer key: baseline

    def test_freeleech_neutral_multipliers(self):
        cases = [({'freeleech': 1}, (1000, 0)), ({'neutral': 1}, (0, 0)),
                 ({'up': '2', 'down': '0.5'}, (2000, 250)), ({}, (1000, 500))]
        for rules, want in cases:
            name, pk = self.admin.add_user()
            ih = self.admin.add_torrent(**rules)
            p = tt.Peer()
            self.ok(pk, ih, p, left=5, event='started')
            self.ok(pk, ih, p, left=5, uploaded=1000, downloaded=500)
            self.assertEqual(self.admin.totals(name), want, rules)

    def test_snatch_counted_once(self):
        name, pk = self.admin.add_user()
        ih = self.admin.add_torrent()
        p = tt.Peer()
        self.ok(pk, ih, p, left=100, event='started')
        self.ok(pk, ih, p, left=0, downloaded=100, event='completed')
        self.ok(pk, ih, p, left=0, downloaded=100, event='completed')   # not a second move
        tt.wait_for(lambda: self.admin.user(name)['snatches'] == '1', 3, 'the snatch')
        time.sleep(0.2)
        self.assertEqual(self.admin.user(name)['snatches'], '1')
        entries = self.redis.cmd('XRANGE', '%s{private}:events' % self.tyto.prefix, '-', '+')
        mine = [dict(zip(e[1][::2], e[1][1::2])) for e in entries]
        mine = [e for e in mine if e.get(b'user') == name.encode()]
        self.assertEqual(len(mine), 1)
        self.assertEqual(mine[0][b'type'], b'snatch')
        self.assertEqual(mine[0][b'info_hash'], ih.hex().encode())
        self.assertEqual(mine[0][b'peer_id'], p.peer_id.hex().encode())
        self.assertEqual(mine[0][b'port'], str(p.port).encode())

    def test_library_reloaded_after_function_flush(self):
        # FUNCTION FLUSH (an operator, a restore) drops the library the workers loaded at connect:
        # the next FCALL's "Function not found" makes the worker load it again on its connection.
        name, pk = self.admin.add_user()
        ih = self.admin.add_torrent()
        self.ok(pk, ih, tt.Peer())
        try:
            self.redis.cmd('FUNCTION', 'FLUSH')

            def recovered():
                # A fresh passkey each time: the cache must not answer for Redis.
                _, fresh = self.admin.add_user()
                d = self.ann(fresh, ih, tt.Peer())
                return b'failure reason' not in d
            tt.wait_for(recovered, 5, 'announces after FUNCTION FLUSH')
            for _ in range(4):      # both workers, whichever gets the connection
                _, fresh = self.admin.add_user()
                tt.wait_for(lambda: b'failure reason' not in self.ann(fresh, ih, tt.Peer()), 5,
                            'every worker after FUNCTION FLUSH')
        finally:
            if not self.redis.cmd('FUNCTION', 'LIST', 'LIBRARYNAME', 'tyto'):
                with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'redis',
                                       'tyto.lua'), 'rb') as f:
                    self.redis.cmd('FUNCTION', 'LOAD', 'REPLACE', f.read())
        self.assertIn('function library is gone', self.tyto.log())

    def test_overlong_user_name_is_an_error(self):
        # A name longer than the schema's 64 (hand-written into Redis) must not be cut to another
        # user's name: the announce fails, and nothing is credited to the cut name.
        long_name = 'n' * 70
        pk = new_passkey()
        self.r_user(long_name, pk)
        ih = self.admin.add_torrent()
        p = tt.Peer()
        d = self.ann(pk, ih, p, left=100, event='started')
        self.assertIn(b'failure reason', d)
        d = self.ann(pk, ih, p, left=100, uploaded=10, downloaded=10)
        self.assertIn(b'failure reason', d)
        self.assertEqual(self.redis.cmd('EXISTS', self.admin.user_key(long_name[:64])), 0)

    def r_user(self, name, pk):
        self.redis.cmd('HSET', self.admin.user_key(name), 'name', name, 'passkey', pk, 'enabled', 1,
                       'can_leech', 1, 'expires', 0, 'uploaded', 0, 'downloaded', 0, 'snatches', 0,
                       'created', int(time.time()))
        self.redis.cmd('SET', '%s{private}:passkey:%s' % (self.tyto.prefix, pk), name)

    def test_snatch_kept_when_the_announce_fails(self):
        # The completed move counts in the EXEC; here the accounting call after it fails (the
        # user's downloaded is not an integer, so its HINCRBY errs), failing the announce. The
        # move will not count again on a retry, so the snatch must have gone out anyway.
        name, pk = self.admin.add_user()
        ih = self.admin.add_torrent()
        p = tt.Peer()
        self.ok(pk, ih, p, left=100, event='started')
        self.admin.set_user(name, 'downloaded', 'not a number')
        d = self.ann(pk, ih, p, left=0, downloaded=100, event='completed')
        self.assertIn(b'failure reason', d)
        tt.wait_for(lambda: self.admin.user(name)['snatches'] == '1', 3, 'the snatch')
        self.admin.set_user(name, 'downloaded', 0)
        self.ok(pk, ih, p, left=0, downloaded=100, event='completed')   # the retry: no second move
        time.sleep(0.2)
        self.assertEqual(self.admin.user(name)['snatches'], '1')

    def test_passkey_absent_from_access_log(self):
        _, pk = self.admin.add_user()
        ih = self.admin.add_torrent()
        self.ok(pk, ih, tt.Peer())
        self.tyto.announce_raw(tt.scrape_path([ih], path='/%s/scrape' % pk))
        bad = new_passkey()
        self.ann(bad, ih, tt.Peer())
        # A passkey anywhere else in the target (path or query) is redacted as well; each form
        # is told apart in the log by its own port.
        others = {40001: '//%s/announce', 40002: '/tracker/%s/announce', 40003: '/announce?passkey=%s',
                  40004: '/x/%s/announce?passkey=%s'}
        hidden = []
        for port, form in others.items():
            keys = [new_passkey() for _ in range(form.count('%s'))]
            hidden += keys
            path = form % tuple(keys)
            self.tyto.get(path + ('&' if '?' in path else '?') + 'port=%d' % port)

        def logged():
            try:
                with open(self.access) as f:
                    return f.read()
            except OSError:
                return ''
        text = tt.wait_for(lambda: (lambda t: t if '/<redacted>/scrape' in t and
                                    all('port=%d' % port in t for port in others) else None)(logged()),
                           5, 'the access log')
        self.assertIn('/<redacted>/announce?', text)
        self.assertIn('//<redacted>/announce?port=40001', text)
        self.assertIn('/announce?passkey=<redacted>&port=40003', text)
        for secret in [pk, bad] + hidden:
            self.assertNotIn(secret, text)
            self.assertNotIn(secret, self.tyto.log())
            self.assertNotIn(secret, self.tyto.admin_get('/metrics').body.decode())

    def test_udp_passkey_announce(self):
        name, pk = self.admin.add_user()
        ih = self.admin.add_torrent()
        c = UdpClient(self.tyto.udp_port)
        try:
            pid = b'-TT0001-' + secrets.token_bytes(12)
            self.assertEqual(c.announce(ih, pid, left=10, event=2, url='/%s/announce' % pk)[0], 'ok')
            r = c.announce(ih, pid, left=10, uploaded=700, downloaded=300, url='/%s/announce?x=1' % pk)
            self.assertEqual(r, ('ok', 1, 0))
            self.assertEqual(self.admin.totals(name), (700, 300))
            self.assertEqual(c.announce(ih, pid, url='/%s/announce' % new_passkey()), ('error', 'unknown passkey'))
            self.assertEqual(c.announce(ih, pid, url='/announce'), ('error', PUBLIC.decode()))
            self.assertEqual(c.announce(ih, pid), ('error', PUBLIC.decode()))
            self.assertEqual(c.announce(tt.rand_hash(), pid, url='/%s/announce' % pk),
                             ('error', 'torrent not registered with this tracker'))
            r = c.scrape([ih])
            self.assertEqual(r[0], 'error')
            self.assertIn('private', r[1])
        finally:
            c.close()

    def test_udp_disabled_and_expired(self):
        name, pk = self.admin.add_user()
        _, epk = self.admin.add_user(expires=int(time.time()) - 1)
        ih = self.admin.add_torrent()
        c = UdpClient(self.tyto.udp_port)
        try:
            pid = os.urandom(20)
            self.assertEqual(c.announce(ih, pid, url='/%s/announce' % epk), ('error', 'passkey expired'))
            self.assertEqual(c.announce(ih, pid, url='/%s/announce' % pk)[0], 'ok')
            self.admin.set_user(name, 'enabled', 0)
            time.sleep(1.1)
            self.assertEqual(c.announce(ih, pid, url='/%s/announce' % pk), ('error', 'account disabled'))
        finally:
            c.close()


class TwoHostsTests(PrivateCase):
    """The same peer announcing through two tyto hosts on one Redis at once: exact totals."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cfg = dict(cls.tyto.cfg)
        cls.other = tt.Tyto(config={'workers': 2, 'private': {'enabled': True, 'unknown_passkey_limit': 0},
                                    'redis': {'prefix': cls.tyto.prefix}})
        try:
            cls.other.start()
        except BaseException:
            cls.other.kill()
            raise
        del cfg

    @classmethod
    def tearDownClass(cls):
        try:
            cls.other.stop()
        finally:
            cls.other.kill()
            super().tearDownClass()

    def test_concurrent_announces_through_two_hosts(self):
        name, pk = self.admin.add_user()
        ih = self.admin.add_torrent()
        p = tt.Peer()
        self.ok(pk, ih, p, left=10, event='started')
        errors = []
        steps = 40

        def run(host, offset):
            try:
                for i in range(steps):
                    v = (2 * i + offset) * 1000
                    d = self.ann(pk, ih, p, left=10, uploaded=v, downloaded=v // 2, tyto=host)
                    if b'failure reason' in d:
                        errors.append(d)
            except Exception as e:   # noqa: BLE001  (reported below)
                errors.append(e)
        threads = [threading.Thread(target=run, args=(self.tyto, 0)),
                   threading.Thread(target=run, args=(self.other, 1))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        top = (2 * (steps - 1) + 1) * 1000
        # Credit only above the highest value seen: the most any host reported, exactly.
        self.assertEqual(self.admin.totals(name), (top, top // 2))
        self.ok(pk, ih, p, left=10, uploaded=top + 5, downloaded=top // 2 + 5, event='stopped', tyto=self.other)
        self.assertEqual(self.admin.totals(name), (top + 5, top // 2 + 5))


class UnknownPasskeyLimitTests(PrivateCase):
    CONFIG = {'private': {'unknown_passkey_limit': 3}, 'rate_limit': {'window_s': 3600}}

    def test_unknown_passkeys_limited_per_address(self):
        _, pk = self.admin.add_user()
        ih = self.admin.add_torrent()
        self.ok(pk, ih, tt.Peer())          # known passkeys are not counted
        for _ in range(3):
            self.refused(b'unknown passkey', new_passkey(), ih, tt.Peer())
        self.refused(b'too many unknown passkeys from this address, retry later', new_passkey(), ih, tt.Peer())
        # Past the limit an address learns nothing about passkeys it has not used (a valid one not
        # in the worker's cache gets the same answer); other addresses are not affected.
        if self.tyto.ipv6:
            path = tt.announce_path(ih, tt.Peer().peer_id, 1234, path='/%s/announce' % new_passkey())
            self.assertEqual(self.tyto.announce_raw(path, v6=True)[b'failure reason'], b'unknown passkey')
            path = tt.announce_path(ih, tt.Peer().peer_id, 1234, path='/%s/announce' % pk)
            self.assertNotIn(b'failure reason', self.tyto.announce_raw(path, v6=True))


class PublicClientFilterTests(unittest.TestCase):
    """The client filter in public mode: allow list."""

    def test_allow_list(self):
        t = tt.Tyto(config={'private': {'clients_mode': 'allow', 'clients': ['-TT', '-qB']}}, udp=True)
        try:
            t.start()
            ih = tt.rand_hash()
            t.announce(ih, tt.Peer())
            p = tt.Peer()
            p.peer_id = b'-XY1234-' + b'a' * 12
            d = t.announce(ih, p, expect_ok=False)
            self.assertEqual(d[b'failure reason'],
                             b"client not allowed: peer_id prefix '-XY1234-' is not on the allow list")
            c = UdpClient(t.udp_port)
            try:
                r = c.announce(ih, b'\x01XY1234-' + b'b' * 12)
                self.assertEqual(r, ('error', "client not allowed: peer_id prefix '?XY1234-' is not on the allow list"))
                self.assertEqual(c.announce(ih, b'-qB4500-' + b'c' * 12)[0], 'ok')
            finally:
                c.close()
        finally:
            t.stop()


class LibtorrentPrivateTests(tl.LibtorrentClients, unittest.TestCase):
    """A real private torrent (BEP 27 private flag) through passkey URLs: a seeder and a leecher,
    each a libtorrent session (tests/e2e/test_libtorrent.py's set-up) with its own user, over HTTP
    and over UDP; afterwards each user's credited totals equal what the client itself counted."""

    @classmethod
    def setUpClass(cls):
        cls.tyto = tt.Tyto(config={'workers': 2, 'udp': {'secret': 'lt-private'},
                                   'private': {'enabled': True, 'unknown_passkey_limit': 0},
                                   'announce': {'interval_s': 60, 'min_interval_s': 30,
                                                'numwant_default': 50, 'numwant_max': 200}}, udp=True)
        try:
            cls.tyto.start()
        except BaseException:
            cls.tyto.kill()
            raise
        cls.redis = tt.redis_client()
        cls.admin = Admin(cls.redis, cls.tyto.prefix)

    @classmethod
    def tearDownClass(cls):
        cls.redis.close()
        try:
            cls.tyto.stop()
        finally:
            cls.tyto.kill()

    TMP_PREFIX = 'ltp'

    def make_torrent(self, urls):
        """-> ({url: private torrent_info with that tracker only}, seed_dir, digest): one info dict
        (the tracker URL is outside it), so one info hash."""
        lt = tl.lt
        seed_dir = os.path.join(self.dir, 'seed')
        os.mkdir(seed_dir)
        path = os.path.join(seed_dir, 'payload.bin')
        data = os.urandom(tl.FILE_SIZE)
        with open(path, 'wb') as f:
            f.write(data)
        infos = {}
        for url in urls:
            fs = lt.file_storage()
            lt.add_files(fs, path)
            ct = lt.create_torrent(fs, tl.PIECE_SIZE, flags=lt.create_torrent.v1_only)
            ct.add_tracker(url)
            ct.set_priv(True)
            lt.set_piece_hashes(ct, seed_dir)
            infos[url] = lt.torrent_info(lt.bencode(ct.generate()))
        self.assertEqual(len({str(ti.info_hashes().v1) for ti in infos.values()}), 1)
        self.assertTrue(all(ti.priv() for ti in infos.values()))
        return infos, seed_dir, hashlib.sha256(data).hexdigest()

    def swarm(self, url):
        """url % passkey is a user's announce URL."""
        seed_user, seed_pk = self.admin.add_user(can_leech=0)
        leech_user, leech_pk = self.admin.add_user()
        seed_url, leech_url = url % seed_pk, url % leech_pk
        infos, seed_dir, digest = self.make_torrent([seed_url, leech_url])
        info_hash = bytes.fromhex(str(infos[seed_url].info_hashes().v1))
        self.admin.add_torrent(info_hash)
        seeder = tl.Client('seeder', infos[seed_url], seed_dir, seed=True)
        self.clients.append(seeder)
        self.wait('seeder announced', lambda: seeder.tracker_replies > 0, 20)
        d = os.path.join(self.dir, 'leech')
        os.mkdir(d)
        leecher = tl.Client('leecher', infos[leech_url], d, seed=False)
        self.clients.append(leecher)
        self.wait('the leecher finished', lambda: leecher.status().is_seeding, tl.DOWNLOAD_TIMEOUT)
        with open(os.path.join(d, 'payload.bin'), 'rb') as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), digest)
        tt.wait_for(lambda: self.admin.user(leech_user)['snatches'] == '1', 20, 'the snatch')
        # Both seed now: nothing moves. Let libtorrent's once-a-second totals settle, then stop.
        time.sleep(2.5)
        seeder.poll()
        leecher.poll()
        sent = seeder.status().all_time_upload
        got = leecher.status().all_time_download
        self.assertGreaterEqual(got, tl.FILE_SIZE)
        self.assertGreaterEqual(sent, tl.FILE_SIZE)
        for c in self.clients:
            c.ses.remove_torrent(c.handle)            # event=stopped with the final counters
        want = {seed_user: (sent, 0), leech_user: (0, got)}
        tt.wait_for(lambda: all(self.admin.totals(u) == t for u, t in want.items()), 15,
                    'users credited %r, now %r' % (want, {u: self.admin.totals(u) for u in want}))
        for c in self.clients:
            self.assertFalse(c.tracker_errors, '%s: tracker errors' % c.name)

    def test_private_swarm_over_http(self):
        self.swarm('http://127.0.0.1:%d/%%s/announce' % self.tyto.port)

    def test_private_swarm_over_udp(self):
        self.swarm('udp://127.0.0.1:%d/%%s/announce' % self.tyto.udp_port)


if __name__ == '__main__':
    tt.main()
