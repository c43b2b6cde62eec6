#!/usr/bin/env python3
"""`tyto user ...` and `tyto torrent ...` (private tracker management, lib/private_admin.c) end to
end against the test Redis: each case runs the real binary with a tyto.yaml of its own (a key
prefix of its own), checks its output, exit status (0 ok, 1 Redis/not found/exists, 2 usage) and
what it wrote, and that the data-path function tyto_lookup sees the result (a rekeyed passkey stops
at once). Runs under valgrind too (TYTO_TEST_VALGRIND=1)."""

import http.client
import json
import os
import re
import secrets
import socket
import subprocess
import time
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


TOKEN = 's3cret-' + secrets.token_hex(8)


def api(t, method, path, body=None, token=TOKEN, raw=None):
    """One request to the admin listener's /api/ -> (status, decoded JSON)."""
    conn = http.client.HTTPConnection('127.0.0.1', t.admin_port, timeout=10 * tytotest.SLOW)
    try:
        headers = {}
        if token is not None:
            headers['Authorization'] = 'Bearer ' + token
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            headers['Content-Type'] = 'application/json'
        conn.request(method, path, body=data, headers=headers)
        r = conn.getresponse()
        text = r.read()
        return r.status, json.loads(text)
    finally:
        conn.close()


class ApiOffTest(tytotest.ServerTestCase):
    """No admin.token: no API."""

    def test_no_token_no_api(self):
        for token in (None, '', 'anything'):
            st, body = api(self.tyto, 'GET', '/api/users', token=token)
            self.assertEqual(st, 404)
            self.assertIn('admin.token', body['error'])
        # The operator routes still work.
        self.assertEqual(self.tyto.admin_get('/healthz').status, 200)


class ApiTest(tytotest.ServerTestCase):
    CONFIG = {'admin': {'token': TOKEN}}

    def test_token(self):
        for token in (None, 'wrong', TOKEN + 'x', TOKEN[:-1], ''):
            st, body = api(self.tyto, 'GET', '/api/users', token=token)
            self.assertEqual(st, 401, token)
            self.assertEqual(body, {'error': 'missing or wrong bearer token'})
        st, body = api(self.tyto, 'GET', '/api/users')
        self.assertEqual(st, 200)
        self.assertIsInstance(body, list)

    def test_users(self):
        st, u = api(self.tyto, 'POST', '/api/users', {'name': 'alice', 'expires_days': 10})
        self.assertEqual(st, 201, u)
        self.assertRegex(u['passkey'], r'^[0-9A-Za-z]{32}$')
        self.assertAlmostEqual(u['expires'] - u['created'], 10 * 86400, delta=5)
        key = '%s{private}:passkey:%s' % (self.tyto.prefix, u['passkey'])
        self.assertEqual(self.redis.cmd('FCALL', 'tyto_lookup', 1, key)[:2], [b'ok', b'alice'])
        st, body = api(self.tyto, 'POST', '/api/users', {'name': 'alice'})
        self.assertEqual((st, body), (409, {'error': 'user exists'}))
        st, body = api(self.tyto, 'GET', '/api/users/alice')
        self.assertEqual(st, 200)
        self.assertNotIn('passkey', body)
        self.assertEqual(body['name'], 'alice')
        st, body = api(self.tyto, 'PUT', '/api/users/alice', {'can_leech': False, 'expires_days': 0})
        self.assertEqual(st, 200, body)
        self.assertEqual((body['can_leech'], body['expires']), (False, 0))
        st, body = api(self.tyto, 'POST', '/api/users/alice/disable')
        self.assertEqual((st, body['enabled']), (200, False))
        self.assertEqual(self.redis.cmd('FCALL', 'tyto_lookup', 1, key)[0], b'disabled')
        st, body = api(self.tyto, 'POST', '/api/users/alice/enable')
        self.assertEqual((st, body['enabled']), (200, True))
        st, r = api(self.tyto, 'POST', '/api/users/alice/rekey')
        self.assertEqual(st, 200)
        self.assertNotEqual(r['passkey'], u['passkey'])
        self.assertEqual(self.redis.cmd('FCALL', 'tyto_lookup', 1, key)[0], b'unknown')
        st, users = api(self.tyto, 'GET', '/api/users')
        self.assertIn('alice', [x['name'] for x in users])
        st, body = api(self.tyto, 'GET', '/api/users/nobody')
        self.assertEqual((st, body), (404, {'error': 'no such user'}))
        st, body = api(self.tyto, 'POST', '/api/users/nobody/disable')
        self.assertEqual(st, 404)
        st, body = api(self.tyto, 'GET', '/api/nothing')
        self.assertEqual(st, 404)

    def test_bad_bodies(self):
        cases = [
            (b'{"name": "bob",', 'malformed JSON body: expected a member name at byte 15'),
            (b'{"name" "bob"}', "malformed JSON body: expected ':' at byte 8"),
            (b'{"name": "bob"} x', 'malformed JSON body: trailing data at byte 16'),
            (b'[1]', 'malformed JSON body: expected a JSON object at byte 0'),
            (b'{"name": "b b"}', 'name must be a user name (1-64 of A-Z a-z 0-9 _ . -)'),
            (b'{"name": "bob", "expires_days": "x"}', 'expires_days must be an integer from 0 (never) to 36500'),
            (b'{"name": "bob", "admin": true}', "unknown member 'admin'"),
        ]
        for raw, why in cases:
            st, body = api(self.tyto, 'POST', '/api/users', raw=raw)
            self.assertEqual((st, body), (400, {'error': why}), raw)
        st, body = api(self.tyto, 'PUT', '/api/users/bob', raw=b'{"enabled": "yes"}')
        self.assertEqual((st, body), (400, {'error': 'enabled must be true or false'}))
        self.assertEqual(self.redis.cmd('EXISTS', '%s{private}:user:bob' % self.tyto.prefix), 0)
        # A body over the bound is refused by the HTTP layer.
        conn = http.client.HTTPConnection('127.0.0.1', self.tyto.admin_port, timeout=10 * tytotest.SLOW)
        try:
            conn.request('POST', '/api/users', body=b'{' + b' ' * 5000 + b'}',
                         headers={'Authorization': 'Bearer ' + TOKEN})
            self.assertEqual(conn.getresponse().status, 413)
        finally:
            conn.close()

    def test_body_in_pieces_then_pipelined(self):
        """A body arriving after its head (and in two pieces) is waited for; the request after it on
        the same connection is read from the right place."""
        body = json.dumps({'name': 'piecewise'}).encode()
        head = ('POST /api/users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n'
                'Content-Length: %d\r\n\r\n' % (TOKEN, len(body))).encode()
        nxt = ('GET /api/users/piecewise HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n'
               'Connection: close\r\n\r\n' % TOKEN).encode()
        with socket.create_connection(('127.0.0.1', self.tyto.admin_port), timeout=10 * tytotest.SLOW) as sk:
            sk.sendall(head)
            time.sleep(0.2 * tytotest.SLOW)
            sk.sendall(body[:5])
            time.sleep(0.2 * tytotest.SLOW)
            sk.sendall(body[5:] + nxt)
            rf = sk.makefile('rb')
            r1 = tytotest.read_response(rf)
            r2 = tytotest.read_response(rf)
        self.assertEqual(r1.status, 201, r1)
        self.assertEqual(json.loads(r1.body)['name'], 'piecewise')
        self.assertEqual(r2.status, 200, r2)
        self.assertNotIn('passkey', json.loads(r2.body))

    def test_library_reloaded_after_function_flush(self):
        """FUNCTION FLUSH drops the library the API's connection loaded: its next call's
        "Function not found" loads it again, and the calls after that work."""
        st, body = api(self.tyto, 'GET', '/api/users')
        self.assertEqual(st, 200)
        self.redis.cmd('FUNCTION', 'FLUSH')
        try:
            tytotest.wait_for(lambda: api(self.tyto, 'GET', '/api/users')[0] == 200, 5,
                              'the API after FUNCTION FLUSH')
        finally:
            if not self.redis.cmd('FUNCTION', 'LIST', 'LIBRARYNAME', 'tyto'):
                with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'redis',
                                       'tyto.lua'), 'rb') as f:
                    self.redis.cmd('FUNCTION', 'LOAD', 'REPLACE', f.read())

    def test_differing_content_lengths_refused(self):
        body = b'{"name": "twice"}'
        req = ('POST /api/users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n'
               'Content-Length: %d\r\nContent-Length: %d\r\nConnection: close\r\n\r\n'
               % (TOKEN, len(body), len(body) + 5)).encode() + body
        with socket.create_connection(('127.0.0.1', self.tyto.admin_port), timeout=10 * tytotest.SLOW) as sk:
            sk.sendall(req)
            r = tytotest.read_response(sk.makefile('rb'))
        self.assertEqual(r.status, 400, r)
        self.assertEqual(api(self.tyto, 'GET', '/api/users/twice')[0], 404)

    def test_torrents(self):
        h = secrets.token_hex(20)
        st, t = api(self.tyto, 'PUT', '/api/torrents/' + h, {'freeleech': True, 'up': '2'})
        self.assertEqual(st, 200, t)
        self.assertEqual((t['info_hash'], t['freeleech'], t['neutral'], t['up'], t['down']), (h, True, False, '2', '1'))
        self.assertEqual(self.redis.cmd('HMGET', '%s{%s}:torrent' % (self.tyto.prefix, h), 'freeleech', 'up'),
                         [b'1', b'2'])
        st, t = api(self.tyto, 'GET', '/api/torrents/' + h.upper())
        self.assertEqual((st, t['info_hash']), (200, h))
        st, body = api(self.tyto, 'PUT', '/api/torrents/' + h, {'up': '-1'})
        self.assertEqual(st, 400)
        st, t = api(self.tyto, 'DELETE', '/api/torrents/' + h)
        self.assertEqual(st, 200)
        st, body = api(self.tyto, 'GET', '/api/torrents/' + h)
        self.assertEqual((st, body), (404, {'error': 'no such torrent'}))
        st, body = api(self.tyto, 'GET', '/api/torrents/xyz')
        self.assertEqual(st, 404)


class ApiRedisDownTest(unittest.TestCase):
    """A tyto on a Redis of its own: the API answers, then Redis goes away: 503 with a reason."""

    def test_redis_down(self):
        d = tytotest.make_tmpdir('down')
        server = tytotest.RedisServer(os.path.join(d, 'r.sock'), d).start()
        t = tytotest.Tyto(config={'admin': {'token': TOKEN}}, redis_url='unix://' + server.path)
        try:
            t.start()
            st, body = api(t, 'GET', '/api/users')
            self.assertEqual(st, 200)
            server.stop()
            st, body = api(t, 'GET', '/api/users')
            self.assertEqual(st, 503, body)
            self.assertIn('storage', body['error'])
            t.stop()
        finally:
            t.kill()
            server.stop()


if __name__ == '__main__':
    tytotest.main()
