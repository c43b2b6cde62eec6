#!/usr/bin/env python3
"""`tyto user ...` and `tyto torrent ...` (private tracker management, lib/private_admin.c) end to
end against the test Redis: each case runs the real binary with a tyto.yaml of its own (a key
prefix of its own), checks its output, exit status (0 ok, 1 Redis/not found/exists, 2 usage) and
what it wrote, and that the data-path function tyto_lookup sees the result (a rekeyed passkey stops
at once). Runs under valgrind too (TYTO_TEST_VALGRIND=1)."""

import json
import os
import re
import secrets
import subprocess
import unittest

import tytotest
from tytotest import Redis


class CliTest(unittest.TestCase):
    def setUp(self):
        self.dir = tytotest.make_tmpdir('cli')
        self.sock = tytotest.redis_socket()
        self.prefix = 'c%s:' % secrets.token_hex(4)
        self.config = os.path.join(self.dir, 'tyto.yaml')
        with open(self.config, 'w') as f:
            f.write(tytotest.yaml_text({'redis': {'url': 'unix://' + self.sock, 'prefix': self.prefix}}))
        self.r = Redis(self.sock)

    def tearDown(self):
        self.r.close()
        if tytotest.VALGRIND:
            tytotest.check_valgrind_logs(self.dir)

    def tyto(self, *args, config=None):
        p = subprocess.run(tytotest.tyto_command(self.dir, ['-c', config or self.config] + list(args)),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=tytotest.clean_env(),
                           timeout=30 * tytotest.SLOW)
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    def ok(self, *args):
        rc, out, err = self.tyto(*args)
        self.assertEqual(rc, 0, (args, out, err))
        return out

    def lookup(self, passkey):
        return self.r.cmd('FCALL', 'tyto_lookup', 1, '%s{private}:passkey:%s' % (self.prefix, passkey))

    def test_user_add_show_rekey(self):
        out = self.ok('user', 'add', 'alice', '--expires', '30')
        passkey = out.strip().splitlines()[-1]
        self.assertRegex(passkey, r'^[0-9A-Za-z]{32}$')
        self.assertIn('name        alice', out)
        st = self.lookup(passkey)
        self.assertEqual(st[:3], [b'ok', b'alice', b'1'])
        self.assertGreater(int(st[3]), 0)
        u = json.loads(self.ok('user', 'show', 'alice', '--json'))
        self.assertEqual(sorted(u), sorted(['name', 'enabled', 'can_leech', 'expires', 'uploaded', 'downloaded',
                                            'ratio', 'snatches', 'created']))
        self.assertEqual((u['enabled'], u['can_leech'], u['uploaded'], u['ratio']), (True, True, 0, None))
        self.assertAlmostEqual(u['expires'] - u['created'], 30 * 86400, delta=5)
        # Two passkeys drawn are different.
        other = self.ok('user', 'add', 'bob').strip().splitlines()[-1]
        self.assertNotEqual(other, passkey)
        # rekey: the new passkey works, the old one stops at once.
        new = self.ok('user', 'rekey', 'alice').strip().splitlines()[-1]
        self.assertRegex(new, r'^[0-9A-Za-z]{32}$')
        self.assertNotEqual(new, passkey)
        self.assertEqual(self.lookup(passkey)[0], b'unknown')
        self.assertEqual(self.lookup(new)[:2], [b'ok', b'alice'])
        rekeyed = json.loads(self.ok('user', 'rekey', 'alice', '--json'))
        self.assertEqual(self.lookup(rekeyed['passkey'])[0], b'ok')
        self.assertEqual(self.lookup(new)[0], b'unknown')

    def test_user_errors(self):
        rc, out, err = self.tyto('user', 'add', 'x y')
        self.assertEqual(rc, 2)
        self.assertEqual(err.strip(), "tyto: user add: 'x y' is not a user name (1-64 of A-Z a-z 0-9 _ . -)")
        self.ok('user', 'add', 'carol')
        rc, out, err = self.tyto('user', 'add', 'carol')
        self.assertEqual((rc, err.strip()), (1, "tyto: user add: user exists 'carol'"))
        rc, out, err = self.tyto('user', 'show', 'nobody')
        self.assertEqual((rc, err.strip()), (1, "tyto: user show: no such user 'nobody'"))
        self.assertEqual(self.r.cmd('EXISTS', '%s{private}:user:nobody' % self.prefix), 0)
        for args in (('user', 'set', 'carol', 'can_leech', 'maybe'), ('user', 'set', 'carol', 'uploaded', '5'),
                     ('user', 'add', 'dave', '--expires', 'soon'), ('user', 'frob', 'carol'),
                     ('user', 'show'), ('user', 'show', 'carol', '--bogus')):
            rc, out, err = self.tyto(*args)
            self.assertEqual(rc, 2, (args, err))
            self.assertTrue(err.startswith('tyto: '), err)

    def test_user_set_enable_disable_list(self):
        pk = self.ok('user', 'add', 'erin').strip().splitlines()[-1]
        u = json.loads(self.ok('user', 'set', 'erin', 'can_leech', 'no', '--json'))
        self.assertIs(u['can_leech'], False)
        self.assertEqual(self.lookup(pk)[2], b'0')
        out = self.ok('user', 'disable', 'erin')
        self.assertIn('enabled     no', out)
        self.assertEqual(self.lookup(pk)[0], b'disabled')
        self.ok('user', 'enable', 'erin')
        self.assertEqual(self.lookup(pk)[0], b'ok')
        u = json.loads(self.ok('user', 'set', 'erin', '--expires', '2', '--json'))
        self.assertAlmostEqual(u['expires'] - u['created'], 2 * 86400, delta=5)
        u = json.loads(self.ok('user', 'set', 'erin', 'expires', 'never', '--json'))
        self.assertEqual(u['expires'], 0)
        self.ok('user', 'add', 'dan')
        users = json.loads(self.ok('user', 'list', '--json'))
        self.assertEqual([x['name'] for x in users], ['dan', 'erin'])
        out = self.ok('user', 'list')
        self.assertRegex(out, r'(?m)^dan\s+yes\s+yes\s+0\s+0\s+-\s+0\s+never$')
        self.assertIn('2 users', out)

    def test_torrents(self):
        h = secrets.token_hex(20)
        t = json.loads(self.ok('torrent', 'add', h.upper(), '--freeleech', '--json'))
        self.assertEqual((t['info_hash'], t['freeleech'], t['neutral'], t['up'], t['down']), (h, True, False, '1', '1'))
        key = '%s{%s}:torrent' % (self.prefix, h)
        self.assertEqual(self.r.cmd('HMGET', key, 'freeleech', 'neutral', 'up', 'down'), [b'1', b'0', b'1', b'1'])
        self.ok('torrent', 'add', h, '--neutral', '--up', '2', '--down', '0.5')
        self.assertEqual(self.r.cmd('HMGET', key, 'freeleech', 'neutral', 'up', 'down'), [b'0', b'1', b'2', b'0.5'])
        out = self.ok('torrent', 'show', h)
        self.assertIn('neutral     yes', out)
        self.ok('torrent', 'remove', h)
        self.assertEqual(self.r.cmd('EXISTS', key), 0)
        rc, out, err = self.tyto('torrent', 'show', h)
        self.assertEqual((rc, err.strip()), (1, "tyto: torrent show: no such torrent '%s'" % h))
        for args in (('torrent', 'add', 'abc'), ('torrent', 'add', h, '--freeleech', '--neutral'),
                     ('torrent', 'add', h, '--up', '-1'), ('torrent', 'grow', h)):
            rc, out, err = self.tyto(*args)
            self.assertEqual(rc, 2, (args, err))

    def test_redis_down(self):
        cfg = os.path.join(self.dir, 'down.yaml')
        with open(cfg, 'w') as f:
            f.write(tytotest.yaml_text({'redis': {'url': 'unix://' + os.path.join(self.dir, 'none.sock')}}))
        rc, out, err = self.tyto('user', 'show', 'alice', config=cfg)
        self.assertEqual(rc, 1)
        self.assertIn('cannot connect to Redis', err)


if __name__ == '__main__':
    tytotest.main()
