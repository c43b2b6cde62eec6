"""Private mode (BEP 27) on Redis Cluster (issue 12): tyto (2 workers, private.enabled,
redis.cluster) on a real cluster of three primaries and three replicas (tests/cluster.sh). Users
come from `tyto user add` and the admin API, torrents from `tyto torrent add` and the admin API,
for info-hashes spread over every primary. Then, through tyto only:
  - every {private} key is on the primary that owns the {private} slot, every torrent's rules and
    swarm keys on the primary that owns the swarm's slot, and nothing anywhere else;
  - a user's started / update / completed announces in swarms of every primary succeed, credit the
    user exactly (uploaded, downloaded), count each completion once in its swarm and once in the
    user's snatches, and append the events stream;
  - an unknown passkey and an unregistered torrent are refused; a scrape answers approved
    hashes and zeros for the others.
The cluster is stopped by its directory whatever happens; every wait is bounded.
Run alone: TYTO_BIN=build/tyto /usr/bin/python3 tests/e2e/test_cluster_private.py"""

import http.client
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tytotest as tt                                                  # noqa: E402
from test_cluster_cli import StaleSeed, TcpRedis, start_cluster, stop_cluster    # noqa: E402

TOKEN = 'cluster-admin-' + os.urandom(8).hex()
PER_PRIMARY = 2                # torrents in swarms of each primary


class ClusterPrivateTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cluster_dir, cls.nodes, cls.primaries = start_cluster()
        cls.tyto = None
        try:
            cls.tyto = tt.Tyto(backend='redis', config={
                'workers': 2,
                'redis': {'url': 'redis://' + cls.primaries[0], 'cluster': True, 'nodes': cls.primaries[:1]},
                'private': {'enabled': True, 'unknown_passkey_limit': 0},
                'admin': {'token': TOKEN}, 'scrape': {'max_hashes': 64}})
            cls.tyto.start()
            cls.conns = {a: TcpRedis(*cls.addr(a)) for a in cls.primaries}
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for r in getattr(cls, 'conns', {}).values():
            r.close()
        try:
            if cls.tyto:
                cls.tyto.stop()
        finally:
            if cls.tyto:
                cls.tyto.kill()
            stop_cluster(cls.cluster_dir)

    @staticmethod
    def addr(a):
        host, port = a.rsplit(':', 1)
        return host, int(port)

    def owner(self, key):
        """The primary that owns key's slot (asks each with a plain connection)."""
        slot = self.conns[self.primaries[0]].cmd('CLUSTER', 'KEYSLOT', key)
        for a, r in self.conns.items():
            if r.cmd('CLUSTER', 'COUNTKEYSINSLOT', slot) is not None and self.serves(r, slot):
                return a
        raise AssertionError('no primary serves slot %d' % slot)

    @staticmethod
    def serves(r, slot):
        for e in r.cmd('CLUSTER', 'SLOTS'):
            if e[0] <= slot <= e[1]:
                return r.cmd('CLUSTER', 'MYID') == e[2][2]
        return False

    def cli(self, *args, config=None):
        p = subprocess.run(tt.tyto_command(self.tyto.dir, ['-c', config or self.tyto.config_path] + list(args)),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=tt.clean_env(),
                           timeout=30 * tt.SLOW)
        self.assertEqual(p.returncode, 0, (args, p.stdout, p.stderr))
        return p.stdout.decode()

    def api(self, method, path, body=None):
        conn = http.client.HTTPConnection('127.0.0.1', self.tyto.admin_port, timeout=10 * tt.SLOW)
        try:
            conn.request(method, path, body=json.dumps(body) if body is not None else None,
                         headers={'Authorization': 'Bearer ' + TOKEN})
            r = conn.getresponse()
            return r.status, json.loads(r.read() or b'null')
        finally:
            conn.close()

    def ann(self, pk, info_hash, port, **kw):
        path = tt.announce_path(info_hash, b'-CP0001-%012d' % port, port, path='/%s/announce' % pk, **kw)
        return self.tyto.announce_raw(path)

    def hashes_per_primary(self):
        """PER_PRIMARY info-hashes whose swarm slot each primary owns."""
        want = {a: [] for a in self.primaries}
        while any(len(v) < PER_PRIMARY for v in want.values()):
            h = tt.rand_hash()
            a = self.owner('{%s}' % h.hex())
            if len(want[a]) < PER_PRIMARY:
                want[a].append(h)
        return want

    def test_cli_follows_a_moved(self):
        """The map read from a seed that is out of date (a fake node that gives itself every slot
        and answers MOVED): `tyto user add` and `tyto torrent add` send their call again to the
        node the MOVED names, and what they wrote is where it belongs."""
        reply = self.conns[self.primaries[0]].cmd('CLUSTER', 'SLOTS')
        seed = StaleSeed([(e[0], e[1], '%s:%d' % (e[2][0].decode() or '127.0.0.1', e[2][1])) for e in reply])
        try:
            stale = tt.Tyto(backend='redis', config={
                'redis': {'url': 'redis://' + self.primaries[0], 'cluster': True,
                          'nodes': ['127.0.0.1:%d' % seed.port], 'prefix': self.tyto.prefix},
                'private': {'enabled': True}})
            stale.cfg['listen']['port'] = 6969         # not started: the CLI only reads it
            stale.write_config()
            pk = self.cli('user', 'add', 'erin', config=stale.config_path).strip().splitlines()[-1]
            h = tt.rand_hash().hex()
            self.cli('torrent', 'add', h, config=stale.config_path)
            self.assertGreaterEqual(seed.moved, 2)
            self.assertEqual(len(pk), 32, pk)
            self.assertIn('name        erin\n', self.cli('user', 'show', 'erin'))
            self.assertIn(h, self.cli('torrent', 'show', h))
        finally:
            seed.stop()

    def test_private_mode_on_a_cluster(self):
        prefix = self.tyto.prefix
        pk_cli = self.cli('user', 'add', 'carol').strip().splitlines()[-1]
        st, dave = self.api('POST', '/api/users', {'name': 'dave'})
        self.assertEqual(st, 201, dave)
        users = {'carol': pk_cli, 'dave': dave['passkey']}
        by_primary = self.hashes_per_primary()
        hashes = [h for v in by_primary.values() for h in v]
        for i, h in enumerate(hashes):         # half by the CLI, half by the API
            if i % 2:
                self.cli('torrent', 'add', h.hex())
            else:
                st, body = self.api('PUT', '/api/torrents/' + h.hex(), {})
                self.assertIn(st, (200, 201), body)

        # Where the keys are: {private} on its slot's owner only, torrents on their swarm's.
        private_owner = self.owner('{private}')
        for a, r in self.conns.items():
            keys = [k.decode() for k in r.cmd('KEYS', prefix + '{private}:*')]
            if a == private_owner:
                for name, pk in users.items():
                    self.assertIn(prefix + '{private}:user:' + name, keys)
                    self.assertIn(prefix + '{private}:passkey:' + pk, keys)
            else:
                self.assertEqual(keys, [], a)
        for a, hs in by_primary.items():
            for h in hs:
                self.assertEqual(self.conns[a].cmd('EXISTS', '%s{%s}:torrent' % (prefix, h.hex())), 1)

        # Announces in swarms of every primary, by both users: started, an update, completed.
        port = 7000
        for name, pk in users.items():
            for h in hashes:
                port += 1
                for kw in ({'left': 100, 'event': 'started'},
                           {'left': 40, 'uploaded': 1000, 'downloaded': 60},
                           {'left': 0, 'uploaded': 3000, 'downloaded': 100, 'event': 'completed'}):
                    d = self.ann(pk, h, port, **kw)
                    self.assertNotIn(b'failure reason', d, (name, h.hex(), kw))
        n = len(hashes)
        for name in users:
            u = json.loads(self.cli('user', 'show', name, '--json'))
            self.assertEqual((u['uploaded'], u['downloaded'], u['snatches']), (3000 * n, 100 * n, n), (name, u))
        for a, hs in by_primary.items():
            for h in hs:
                self.assertEqual(self.conns[a].cmd('HGET', '%s{%s}:info' % (prefix, h.hex()), 'downloaded'), b'2')
                self.assertEqual(self.conns[a].cmd('ZCARD', '%s{%s}:seeders' % (prefix, h.hex())), 2)
        events = self.conns[private_owner].cmd('XLEN', prefix + '{private}:events')
        self.assertGreaterEqual(events, 2 * n)     # a snatch each, and the started/stopped ones

        # Refusals, and a scrape of approved and unapproved hashes.
        self.assertEqual(self.ann('A' * 32, hashes[0], 9001, left=5).get(b'failure reason'), b'unknown passkey')
        other = tt.rand_hash()
        self.assertEqual(self.ann(pk_cli, other, 9002, left=5).get(b'failure reason'),
                         b'torrent not registered with this tracker')
        d = self.tyto.announce_raw(tt.scrape_path(hashes + [other], path='/%s/scrape' % pk_cli))
        self.assertIn(b'files', d, d)
        files = d[b'files']
        for h in hashes:
            self.assertEqual((files[h][b'complete'], files[h][b'downloaded']), (2, 2), h.hex())
        self.assertEqual(files.get(other, {}).get(b'complete', 0), 0)
        print('CLUSTER private: %d torrents on %d primaries, {private} on %s, %d announces, totals exact'
              % (n, len(by_primary), private_owner, 3 * n * len(users)))


if __name__ == '__main__':
    tt.main()
