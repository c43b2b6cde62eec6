"""End-to-end test of `tyto swarm <info_hash>` and `tyto swarms [N]`: keys are written into the
test Redis with redis-cli, exactly in the schema the workers use (README "Redis schema"), and
the commands' output and exit statuses are checked. Run by tests/run.sh, or alone:
/usr/bin/python3 tests/e2e/test_inspect.py"""

import os
import re
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tytotest as tt                       # noqa: E402
from tytotest import rand_hash              # noqa: E402


class Inspect(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.sock = tt.redis_socket()
        # A configuration file only: tyto is not started, the commands read Redis themselves.
        cls.tyto = tt.Tyto(backend='redis')
        cls.tyto.cfg['listen']['port'] = 6969
        cls.tyto.write_config()
        cls.prefix = cls.tyto.prefix

    def cli(self, *args):
        r = subprocess.run(['redis-cli', '-s', self.sock] + [str(a) for a in args],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertNotIn(b'ERR', r.stdout)
        return r.stdout.decode()

    def key(self, h, kind, prefix=None):
        return '%s{%s}:%s' % (prefix or self.prefix, h.hex(), kind)

    def run_tyto(self, *args, config=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith('TYTO_') or k.startswith('TYTO_TEST')}
        r = subprocess.run(tt.tyto_command(self.tyto.dir, ['-c', config or self.tyto.config_path] + list(args)),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60 * tt.SLOW, env=env)
        out, err = r.stdout.decode(errors='replace'), r.stderr.decode(errors='replace')
        for mark in tt.SANITIZER_MARKS:
            self.assertNotIn(mark, err)
        return r.returncode, out, err

    def swarm(self, seeders=(), leechers=(), downloaded=None, prefix=None):
        """Writes one swarm; seeders/leechers are (member, expiry) pairs. Returns its hash."""
        h = rand_hash()
        for kind, members in (('seeders', seeders), ('leechers', leechers)):
            for member, expiry in members:
                self.cli('ZADD', self.key(h, kind, prefix), expiry, member)
        if downloaded is not None:
            self.cli('HSET', self.key(h, 'info', prefix), 'downloaded', downloaded)
        return h

    # -- tyto swarm ------------------------------------------------------------------------------

    def test_inspect_swarm_shows_counts_and_peers(self):
        now = int(time.time())
        h = self.swarm(seeders=[('10.0.0.1:6881', now + 600), ('[2001:db8::1]:51413', now + 1200)],
                       leechers=[('10.0.0.2:6882', now + 300), ('10.0.0.3:6883', now - 50)],
                       downloaded=7)
        rc, out, err = self.run_tyto('swarm', h.hex())
        self.assertEqual(rc, 0, err + out)
        self.assertIn(h.hex(), out)
        self.assertRegex(out, r'seeders\s+2\b')
        self.assertRegex(out, r'leechers\s+1 \(\+1 expired\)')
        self.assertRegex(out, r'downloaded\s+7\b')
        lines = {m: l for l in out.splitlines() for m in re.findall(r'(\S+:\d+)', l)}
        self.assertRegex(lines['10.0.0.1:6881'], r'seeder\s')
        self.assertRegex(lines['[2001:db8::1]:51413'], r'seeder\s')
        self.assertRegex(lines['10.0.0.2:6882'], r'leecher\s.*expires in (29\d|300)s')
        self.assertRegex(lines['10.0.0.3:6883'], r'leecher\s.*EXPIRED (5\d)s ago')
        self.assertNotIn('EXPIRED', lines['10.0.0.1:6881'])

    def test_inspect_swarm_accepts_uppercase_hex(self):
        now = int(time.time())
        h = self.swarm(leechers=[('10.0.0.9:1000', now + 100)])
        rc, out, err = self.run_tyto('swarm', h.hex().upper())
        self.assertEqual(rc, 0, err)
        self.assertIn('10.0.0.9:1000', out)
        self.assertRegex(out, r'downloaded\s+0\b')

    def test_inspect_swarm_unknown_is_an_error(self):
        rc, out, err = self.run_tyto('swarm', rand_hash().hex())
        self.assertEqual(rc, 1)
        self.assertIn('no swarm', err)

    def test_inspect_swarm_usage_errors(self):
        for args in (['swarm'], ['swarm', 'abc'], ['swarm', 'g' * 40], ['swarm', '0' * 41],
                     ['swarm', '0' * 40, 'extra'], ['swarms', '0'], ['swarms', 'x'], ['swarms', '1', '2']):
            rc, out, err = self.run_tyto(*args)
            self.assertEqual(rc, 2, '%r: %s' % (args, err))
            self.assertTrue(err.strip(), args)

    def test_inspect_redis_unreachable(self):
        cfg = os.path.join(self.tyto.dir, 'unreachable.yaml')
        tree = dict(self.tyto.cfg)
        tree['redis'] = dict(tree['redis'], url='unix:///nonexistent/redis.sock')
        with open(cfg, 'w') as f:
            f.write(tt.yaml_text(tree))
        rc, out, err = self.run_tyto('swarm', rand_hash().hex(), config=cfg)
        self.assertEqual(rc, 1)
        self.assertIn('Redis', err)
        rc, out, err = self.run_tyto('swarms', config=cfg)
        self.assertEqual(rc, 1)

    # -- tyto swarms -----------------------------------------------------------------------------

    def test_inspect_swarms_busiest_first(self):
        now = int(time.time())
        big = self.swarm(seeders=[('10.1.0.%d:1' % i, now + 500) for i in range(5)],
                         leechers=[('10.1.1.%d:1' % i, now + 500) for i in range(3)], downloaded=42)
        mid = self.swarm(leechers=[('10.2.0.%d:1' % i, now + 500) for i in range(4)]
                         + [('10.2.9.%d:1' % i, now - 10) for i in range(9)])   # expired: not counted
        small = self.swarm(seeders=[('10.3.0.1:1', now + 500)], downloaded=1)
        only_info = self.swarm(downloaded=3)
        other = self.swarm(seeders=[('10.4.0.%d:1' % i, now + 500) for i in range(50)],
                           prefix='x' + self.prefix)
        rc, out, err = self.run_tyto('swarms')
        self.assertEqual(rc, 0, err)
        rows = [l.split() for l in out.splitlines() if re.match(r'^[0-9a-f]{40}\s', l)]
        hexes = [r[0] for r in rows]
        self.assertEqual(len(hexes), len(set(hexes)), 'a swarm listed twice:\n' + out)
        self.assertNotIn(other.hex(), hexes, 'a key of another prefix was listed')
        self.assertEqual(rows[0], [big.hex(), '5', '3', '42'])
        self.assertEqual(rows[1], [mid.hex(), '0', '4', '0'])
        self.assertIn([small.hex(), '1', '0', '1'], rows)
        self.assertIn([only_info.hex(), '0', '0', '3'], rows)
        self.assertRegex(out, r'\b%d swarms\b' % len(rows))
        rc, out, err = self.run_tyto('swarms', '2')
        self.assertEqual(rc, 0, err)
        rows = [l.split()[0] for l in out.splitlines() if re.match(r'^[0-9a-f]{40}\s', l)]
        self.assertEqual(rows, [big.hex(), mid.hex()])

    def test_inspect_swarms_many(self):
        """More keys than one SCAN batch: every swarm is found exactly once."""
        prefix = 'm%s:' % os.urandom(3).hex()
        now = int(time.time())
        cmds = []
        hashes = [rand_hash().hex() for _ in range(1500)]
        for i, h in enumerate(hashes):
            cmds.append('ZADD %s{%s}:leechers %d 10.0.%d.%d:1' % (prefix, h, now + 100, i // 250, i % 250))
            cmds.append('HSET %s{%s}:info downloaded %d' % (prefix, h, i))
        r = subprocess.run(['redis-cli', '-s', self.sock], input='\n'.join(cmds).encode(),
                           stdout=subprocess.DEVNULL, timeout=60)
        self.assertEqual(r.returncode, 0)
        cfg = os.path.join(self.tyto.dir, 'many.yaml')
        tree = dict(self.tyto.cfg)
        tree['redis'] = dict(tree['redis'], prefix=prefix)
        with open(cfg, 'w') as f:
            f.write(tt.yaml_text(tree))
        rc, out, err = self.run_tyto('swarms', '1000000', config=cfg)
        self.assertEqual(rc, 0, err)
        rows = [l.split()[0] for l in out.splitlines() if re.match(r'^[0-9a-f]{40}\s', l)]
        self.assertEqual(sorted(rows), sorted(hashes))
        self.assertIn('1500 swarms', out)


if __name__ == '__main__':
    tt.main()
