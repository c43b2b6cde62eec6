#!/usr/bin/env python3
"""The Redis function library redis/tyto.lua (private tracker mode) against a real redis-server of
this test's own: loads the file with FUNCTION LOAD REPLACE and calls every function with the exact
signatures of notes/PRIVATE.md. Accounting: exact credit over announce sequences, client restarts
(counters going backwards), reordered announces never credited twice, stopped, freeleech, neutral
and multipliers, credit mirroring, the peer key's TTL. Snatch: counter, stream fields, MAXLEN.
Management: users and torrents, their JSON and errors. Also checks that the committed
storage/redis_functions.c is what scripts/lua2c.sh makes of redis/tyto.lua."""

import json
import os
import secrets
import subprocess
import unittest

import tytotest
from tytotest import Redis, RedisError, RedisServer

LUA = os.path.join(tytotest.ROOT, 'redis', 'tyto.lua')
NOW = '1700000000'


class FunctionTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        d = tytotest.make_tmpdir('fn')
        cls.server = RedisServer(os.path.join(d, 'redis.sock'), d).start()
        cls.r = Redis(cls.server.path)
        with open(LUA, 'rb') as f:
            assert cls.r.cmd('FUNCTION', 'LOAD', 'REPLACE', f.read()) == b'tyto'

    @classmethod
    def tearDownClass(cls):
        cls.r.close()
        cls.server.stop()

    def setUp(self):
        # A prefix of its own per case: cases cannot see each other's keys.
        self.P = 't%s:' % secrets.token_hex(4)
        self.name = 'u_' + secrets.token_hex(3)
        self.passkey = self.new_passkey()
        self.hex = secrets.token_hex(20)
        self.peer_id = secrets.token_hex(20)

    # --- helpers ------------------------------------------------------------------------------
    @staticmethod
    def new_passkey():
        alphabet = '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz'
        return ''.join(secrets.choice(alphabet) for _ in range(32))

    def k(self, rest):
        return self.P + '{private}:' + rest

    def user_key(self, name=None):
        return self.k('user:' + (self.name if name is None else name))

    def add_user(self, name=None, passkey=None, expires='0'):
        name = self.name if name is None else name
        passkey = self.passkey if passkey is None else passkey
        out = self.r.cmd('FCALL', 'tyto_user_add', 3, self.user_key(name), self.k('passkey:' + passkey),
                         self.k('users'), name, passkey, expires, NOW)
        return json.loads(out)

    def account(self, up, down, event='none', umult='1', dmult='1', ttl=3600, mirror=0, maxlen=1000,
                peer_id=None):
        peer = self.k('peer:%s:%s:%s' % (self.name, self.hex, peer_id or self.peer_id))
        r = self.r.cmd('FCALL', 'tyto_account', 3, self.user_key(), peer, self.k('events'),
                       str(up), str(down), event, umult, dmult, str(ttl), str(mirror), str(maxlen),
                       self.name, self.hex, NOW)
        return r

    def peer_key(self, peer_id=None):
        return self.k('peer:%s:%s:%s' % (self.name, self.hex, peer_id or self.peer_id))

    def credited(self):
        up, down = self.r.cmd('HMGET', self.user_key(), 'uploaded', 'downloaded')
        return int(up), int(down)

    def show(self, name=None):
        return json.loads(self.r.cmd('FCALL', 'tyto_user_show', 1, self.user_key(name)))

    # --- lookup -------------------------------------------------------------------------------
    def test_lookup(self):
        pk = self.k('passkey:' + self.passkey)
        self.assertEqual(self.r.cmd('FCALL', 'tyto_lookup', 1, pk), [b'unknown', b'', b'', b''])
        self.add_user(expires='1800000000')
        self.assertEqual(self.r.cmd('FCALL', 'tyto_lookup', 1, pk),
                         [b'ok', self.name.encode(), b'1', b'1800000000'])
        self.r.cmd('FCALL', 'tyto_user_set', 1, self.user_key(), 'can_leech', '0')
        self.assertEqual(self.r.cmd('FCALL_RO', 'tyto_lookup', 1, pk)[2], b'0')
        self.r.cmd('FCALL', 'tyto_user_set', 1, self.user_key(), 'enabled', '0')
        self.assertEqual(self.r.cmd('FCALL', 'tyto_lookup', 1, pk)[:2], [b'disabled', self.name.encode()])
        # A passkey key whose user hash is gone is unknown.
        self.r.cmd('DEL', self.user_key())
        self.assertEqual(self.r.cmd('FCALL', 'tyto_lookup', 1, pk), [b'unknown', b'', b'', b''])

    # --- accounting ---------------------------------------------------------------------------
    def test_first_announce_is_baseline(self):
        self.add_user()
        # No peer key yet and no `started`: the counters are the baseline, nothing credited.
        self.assertEqual(self.account(5000, 7000), [0, 0])
        self.assertEqual(self.credited(), (0, 0))
        self.assertEqual(self.account(6000, 7500), [1000, 500])
        self.assertEqual(self.credited(), (1000, 500))
        h = self.r.cmd('HGETALL', self.peer_key())
        self.assertEqual(dict(zip(h[::2], h[1::2])),
                         {b'up': b'6000', b'down': b'7500', b'hwu': b'6000', b'hwd': b'7500'})

    def test_exact_sequence_and_stopped(self):
        self.add_user()
        seq = [(0, 0, 'started', [0, 0]), (100, 10, 'none', [100, 10]), (100, 10, 'none', [0, 0]),
               (250, 10, 'completed', [150, 0]), (1000, 500, 'none', [750, 490]),
               (1200, 600, 'stopped', [200, 100])]
        for up, down, ev, want in seq:
            self.assertEqual(self.account(up, down, ev), want, (up, down, ev))
        self.assertEqual(self.credited(), (1200, 600))
        self.assertEqual(self.r.cmd('EXISTS', self.peer_key()), 0)   # stopped deletes the peer key
        # After stopped, the next announce is a new baseline again.
        self.assertEqual(self.account(1300, 700), [0, 0])
        self.assertEqual(self.account(1301, 702), [1, 2])
        self.assertEqual(self.credited(), (1201, 602))

    def test_reordered_announces_never_counted_twice(self):
        self.add_user()
        self.account(0, 0, 'started')
        # The announce for 200 arrives before the one for 100.
        self.assertEqual(self.account(200, 20), [200, 20])
        self.assertEqual(self.account(100, 10), [0, 0])
        self.assertEqual(self.account(200, 20), [0, 0])
        self.assertEqual(self.account(300, 30), [100, 10])
        self.assertEqual(self.credited(), (300, 30))

    def test_restart_without_started_rebaselines(self):
        self.add_user()
        self.account(0, 0, 'started')
        self.account(1000, 1000)
        # The client restarted without `started`: its counters went back to 0.
        self.assertEqual(self.account(10, 10), [0, 0])
        self.assertEqual(self.account(900, 900), [0, 0])
        # Credit resumes only above the highest value seen since the last `started`.
        self.assertEqual(self.account(1100, 1050), [100, 50])
        self.assertEqual(self.credited(), (1100, 1050))
        # A `started` re-baselines at once, with no credit.
        self.assertEqual(self.account(5, 5, 'started'), [0, 0])
        self.assertEqual(self.account(15, 25), [10, 20])
        self.assertEqual(self.credited(), (1110, 1070))

    def test_two_peers_are_separate(self):
        self.add_user()
        other = secrets.token_hex(20)
        self.account(0, 0, 'started')
        self.account(0, 0, 'started', peer_id=other)
        self.assertEqual(self.account(100, 0), [100, 0])
        self.assertEqual(self.account(40, 0, peer_id=other), [40, 0])
        self.assertEqual(self.credited(), (140, 0))

    def test_multipliers_freeleech_neutral(self):
        self.add_user()
        self.account(0, 0, 'started')
        self.assertEqual(self.account(1000, 1000, dmult='0'), [1000, 0])        # freeleech
        self.assertEqual(self.account(2000, 2000, umult='0', dmult='0'), [0, 0])  # neutral
        self.assertEqual(self.account(3001, 3001, umult='1.5', dmult='0.5'), [1501, 500])  # rounded down
        self.assertEqual(self.account(4000, 4000, umult='2', dmult='1'), [1998, 999])
        self.assertEqual(self.credited(), (1000 + 1501 + 1998, 500 + 999))

    def test_large_counters_exact(self):
        self.add_user()
        base = 2 ** 52
        self.account(base, base, 'started')
        self.assertEqual(self.account(base + 123456789, base + 7), [123456789, 7])
        self.assertEqual(self.account(base + 2 * 10 ** 15, base + 10), [2 * 10 ** 15 - 123456789, 3])
        self.assertEqual(self.credited(), (2 * 10 ** 15, 10))
        # The stored high-water marks are plain integers, not exponent notation.
        self.assertEqual(self.r.cmd('HGET', self.peer_key(), 'hwu'), str(base + 2 * 10 ** 15).encode())

    def test_ttl_and_mirror(self):
        self.add_user()
        self.account(0, 0, 'started', ttl=1234, mirror=1)
        ttl = self.r.cmd('TTL', self.peer_key())
        self.assertTrue(1200 <= ttl <= 1234, ttl)
        self.assertEqual(self.r.cmd('XLEN', self.k('events')), 0)   # no credit, no entry
        self.account(10, 20, ttl=1234, mirror=1)
        self.account(20, 20, ttl=1234, mirror=0)                     # not mirrored
        entries = self.r.cmd('XRANGE', self.k('events'), '-', '+')
        self.assertEqual(len(entries), 1)
        f = entries[0][1]
        self.assertEqual(dict(zip(f[::2], f[1::2])), {
            b'type': b'credit', b'user': self.name.encode(), b'info_hash': self.hex.encode(),
            b'uploaded': b'10', b'downloaded': b'20', b'time': NOW.encode()})

    def test_account_bad_arguments_and_gone_user(self):
        # No such user: nothing written at all.
        self.assertEqual(self.account(0, 0, 'started'), [0, 0])
        self.assertEqual(self.r.cmd('EXISTS', self.peer_key(), self.user_key()), 0)
        self.add_user()
        for kw in ({'event': 'paused'}, {'umult': '-1'}, {'dmult': 'x'}):
            with self.assertRaises(RedisError) as cm:
                self.account(1, 1, **kw)
            self.assertIn('tyto:', str(cm.exception))
        with self.assertRaises(RedisError):
            self.account(-5, 1)

    # --- snatch -------------------------------------------------------------------------------
    def snatch(self, maxlen=100, name=None):
        return self.r.cmd('FCALL', 'tyto_snatch', 2, self.user_key(name), self.k('events'),
                          name or self.name, self.hex, NOW, '192.0.2.7', '6881', self.peer_id, str(maxlen))

    def test_snatch(self):
        self.add_user()
        self.assertEqual(self.snatch(), 1)
        self.assertEqual(self.show()['snatches'], 1)
        e = self.r.cmd('XRANGE', self.k('events'), '-', '+')
        self.assertEqual(len(e), 1)
        f = e[0][1]
        self.assertEqual(dict(zip(f[::2], f[1::2])), {
            b'type': b'snatch', b'user': self.name.encode(), b'info_hash': self.hex.encode(),
            b'time': NOW.encode(), b'ip': b'192.0.2.7', b'port': b'6881',
            b'peer_id': self.peer_id.encode()})
        self.assertEqual(self.snatch(name='nobody'), 0)
        self.assertEqual(self.r.cmd('EXISTS', self.user_key('nobody')), 0)

    def test_snatch_maxlen(self):
        self.add_user()
        for _ in range(600):
            self.snatch(maxlen=50)
        n = self.r.cmd('XLEN', self.k('events'))
        # MAXLEN ~ trims whole stream nodes (100 entries by default): well under 600, at least 50.
        self.assertTrue(50 <= n <= 200, n)
        self.assertEqual(self.show()['snatches'], 600)

    # --- users --------------------------------------------------------------------------------
    def test_user_add_show_exists(self):
        u = self.add_user(expires='1800000000')
        self.assertEqual(u, {'name': self.name, 'enabled': True, 'can_leech': True,
                             'expires': 1800000000, 'uploaded': 0, 'downloaded': 0, 'ratio': None,
                             'snatches': 0, 'created': int(NOW), 'passkey': self.passkey})
        s = self.show()
        self.assertNotIn('passkey', s)
        self.assertEqual(self.r.cmd('GET', self.k('passkey:' + self.passkey)), self.name.encode())
        self.assertEqual(self.r.cmd('SMEMBERS', self.k('users')), [self.name.encode()])
        with self.assertRaises(RedisError) as cm:
            self.add_user(passkey=self.new_passkey())
        self.assertEqual(str(cm.exception), 'ERR tyto: user exists')
        with self.assertRaises(RedisError) as cm:
            self.add_user(name='other', passkey=self.passkey)
        self.assertEqual(str(cm.exception), 'ERR tyto: passkey in use')
        for bad in ('', 'a b', 'x' * 65, 'é'):
            with self.assertRaises(RedisError) as cm:
                self.add_user(name=bad, passkey=self.new_passkey())
            self.assertEqual(str(cm.exception), 'ERR tyto: bad user name')
        with self.assertRaises(RedisError) as cm:
            self.show('nobody')
        self.assertEqual(str(cm.exception), 'ERR tyto: no such user')

    def test_user_ratio(self):
        self.add_user()
        self.account(0, 0, 'started')
        self.account(300, 200)
        self.assertEqual(self.show()['ratio'], 1.5)

    def test_user_set(self):
        self.add_user()
        u = json.loads(self.r.cmd('FCALL', 'tyto_user_set', 1, self.user_key(), 'expires', '1900000000'))
        self.assertEqual(u['expires'], 1900000000)
        u = json.loads(self.r.cmd('FCALL', 'tyto_user_set', 1, self.user_key(), 'can_leech', '0'))
        self.assertIs(u['can_leech'], False)
        for field, value, why in (('enabled', 'yes', 'bad value'), ('uploaded', '5', 'bad field'),
                                  ('expires', '-1', 'bad value')):
            with self.assertRaises(RedisError) as cm:
                self.r.cmd('FCALL', 'tyto_user_set', 1, self.user_key(), field, value)
            self.assertEqual(str(cm.exception), 'ERR tyto: ' + why)
        with self.assertRaises(RedisError):
            self.r.cmd('FCALL', 'tyto_user_set', 1, self.user_key('nobody'), 'enabled', '1')
        self.assertEqual(self.r.cmd('EXISTS', self.user_key('nobody')), 0)

    def test_user_rekey(self):
        self.add_user()
        new = self.new_passkey()
        u = json.loads(self.r.cmd('FCALL', 'tyto_user_rekey', 2, self.user_key(), self.k('passkey:' + new), new))
        self.assertEqual(u['passkey'], new)
        self.assertEqual(self.r.cmd('EXISTS', self.k('passkey:' + self.passkey)), 0)
        self.assertEqual(self.r.cmd('FCALL', 'tyto_lookup', 1, self.k('passkey:' + self.passkey))[0], b'unknown')
        self.assertEqual(self.r.cmd('FCALL', 'tyto_lookup', 1, self.k('passkey:' + new))[0], b'ok')
        self.assertEqual(self.r.cmd('HGET', self.user_key(), 'passkey'), new.encode())

    def test_user_list(self):
        self.assertEqual(json.loads(self.r.cmd('FCALL', 'tyto_user_list', 1, self.k('users'))), [])
        for n in ('carol', 'alice', 'bob'):
            self.add_user(name=n, passkey=self.new_passkey())
        users = json.loads(self.r.cmd('FCALL', 'tyto_user_list', 1, self.k('users')))
        self.assertEqual([u['name'] for u in users], ['alice', 'bob', 'carol'])
        self.assertTrue(all('passkey' not in u for u in users))

    # --- torrents -----------------------------------------------------------------------------
    def tkey(self):
        return '%s{%s}:torrent' % (self.P, self.hex)

    def test_torrents(self):
        t = json.loads(self.r.cmd('FCALL', 'tyto_torrent_add', 1, self.tkey(), NOW, '1', '0', '1', '1'))
        self.assertEqual(t, {'info_hash': self.hex, 'added': int(NOW), 'freeleech': True, 'neutral': False,
                             'up': '1', 'down': '1'})
        # Adding again updates the rules and keeps `added`.
        t = json.loads(self.r.cmd('FCALL', 'tyto_torrent_add', 1, self.tkey(), '1700009999', '0', '1', '2', '0.5'))
        self.assertEqual((t['added'], t['freeleech'], t['neutral'], t['up'], t['down']),
                         (int(NOW), False, True, '2', '0.5'))
        # The data path's HMGET sees the fields it expects.
        self.assertEqual(self.r.cmd('HMGET', self.tkey(), 'added', 'freeleech', 'neutral', 'up', 'down'),
                         [NOW.encode(), b'0', b'1', b'2', b'0.5'])
        self.assertEqual(json.loads(self.r.cmd('FCALL', 'tyto_torrent_show', 1, self.tkey()))['up'], '2')
        self.assertEqual(json.loads(self.r.cmd('FCALL', 'tyto_torrent_remove', 1, self.tkey()))['info_hash'],
                         self.hex)
        self.assertEqual(self.r.cmd('EXISTS', self.tkey()), 0)
        for fn in ('tyto_torrent_remove', 'tyto_torrent_show'):
            with self.assertRaises(RedisError) as cm:
                self.r.cmd('FCALL', fn, 1, self.tkey())
            self.assertEqual(str(cm.exception), 'ERR tyto: no such torrent')
        with self.assertRaises(RedisError):
            self.r.cmd('FCALL', 'tyto_torrent_add', 1, self.tkey(), NOW, '2', '0', '1', '1')


class EmbeddedTest(unittest.TestCase):
    def test_generated_c_matches_lua(self):
        out = subprocess.run([os.path.join(tytotest.ROOT, 'scripts', 'lua2c.sh'), LUA],
                             check=True, stdout=subprocess.PIPE).stdout
        with open(os.path.join(tytotest.ROOT, 'storage', 'redis_functions.c'), 'rb') as f:
            self.assertEqual(f.read(), out, 'storage/redis_functions.c is stale: run make')


if __name__ == '__main__':
    tytotest.main()
