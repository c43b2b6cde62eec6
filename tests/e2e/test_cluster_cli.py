"""Redis Cluster for the operator's side (issue 12): `tyto swarm`, `tyto swarms`, `tyto swarms
--anomalies`, the statistics aggregator and the /stats routes, against a real cluster of three
primaries and three replicas (tests/cluster.sh) and, for comparison, the test's single Redis.

Swarms are written directly into both, in the workers' schema (docs/architecture.md "Redis
schema"): "<prefix>{<hex>}:seeders" / ":leechers" sorted sets scored by expiry (unix s), ":info"
hash with "downloaded", ":stats" hash (README "Statistics"). Enough hashes that every primary
holds at least three swarms. Then:
  - `tyto swarm <hex>` with redis.cluster prints exactly what it prints on the single Redis, for
    a swarm of every primary;
  - `tyto swarms` prints exactly the single Redis's listing: every swarm once;
  - tyto itself (one worker, redis.cluster), whose aggregator must count the swarms of every
    primary in its snapshot, write its census into every swarm's stats hash on the node that owns
    it, and answer /stats?info_hash for a swarm of every primary; `tyto swarms --anomalies` reads
    the {stats} keys from their slot's owner.
The cluster is stopped by its directory whatever happens; every wait is bounded.
Run alone: TYTO_BIN=build/tyto /usr/bin/python3 tests/e2e/test_cluster_cli.py"""

import json
import re
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tytotest as tt                                # noqa: E402
from tytotest import Redis, rand_hash, wait_for      # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLUSTER_SH = os.path.join(ROOT, 'tests', 'cluster.sh')
PER_PRIMARY = 3                # swarms each primary holds at least
INTERVAL_S = 1234              # announce.interval_s of tytotest's configuration


def TcpRedis(host, port, timeout=5.0):
    """tytotest.TcpRedis to host:port."""
    return tt.TcpRedis(port, timeout=timeout, host=host)


def start_cluster():
    """Starts a cluster: three tries, as a port cluster.sh found free can be taken before its node
    binds it (other tests on the machine start servers too)."""
    for attempt in range(3):
        r = subprocess.run(['bash', CLUSTER_SH, 'start'], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=90)
        if r.returncode == 0:
            break
        if attempt == 2 or b'Failed listening' not in r.stderr:
            raise AssertionError('tests/cluster.sh start failed:\n' + r.stderr.decode(errors='replace')[-3000:])
    env = dict(line.split('=', 1) for line in r.stdout.decode().split() if '=' in line)
    return env['TYTO_CLUSTER_DIR'], env['TYTO_CLUSTER_NODES'].split(','), env['TYTO_CLUSTER_PRIMARIES'].split(',')


class StaleSeed(threading.Thread):
    """A seed whose slot map is stale: it gives itself every slot (CLUSTER SLOTS), takes FUNCTION
    LOAD, and answers any other command MOVED to the real owner of its key's slot, as a primary
    does whose slots moved away after a reader took its map. slots: (start, end, 'host:port') of
    the real cluster. One client at a time; stopped by stop()."""

    def __init__(self, slots):
        super().__init__(daemon=True)
        self.slots = slots
        self.moved = 0
        self.done = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.start()

    def stop(self):
        self.done = True
        self.join(5)
        self.sock.close()

    def run(self):
        while not self.done:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    self.serve(conn.makefile('rb'), conn)
                except (OSError, ValueError):
                    pass

    def serve(self, f, conn):
        while True:
            head = f.readline()
            if not head.startswith(b'*'):
                return
            args = []
            for _ in range(int(head[1:])):
                n = int(f.readline()[1:])
                args.append(f.read(n + 2)[:-2])
            name = args[0].upper()
            if name == b'CLUSTER' and len(args) > 1 and args[1].upper() == b'SLOTS':
                conn.sendall(b'*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n:%d\r\n$40\r\n%s\r\n'
                             % (self.port, b'f' * 40))
            elif name in (b'AUTH', b'PING', b'FUNCTION'):
                conn.sendall(b'+OK\r\n')
            else:
                # A function's or script's first key, else the first argument.
                scripted = name in (b'FCALL', b'FCALL_RO', b'EVAL', b'EVALSHA') and len(args) > 3 and args[2] != b'0'
                key = args[3] if scripted else args[1] if len(args) > 1 else b''
                slot = tt.key_slot(key.decode(errors='replace'))
                owner = next(a for lo, hi, a in self.slots if lo <= slot <= hi)
                self.moved += 1
                conn.sendall(b'-MOVED %d %s\r\n' % (slot, owner.encode()))


def stop_cluster(d):
    subprocess.run(['bash', CLUSTER_SH, 'stop', d], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=30)


class ClusterBase(unittest.TestCase):
    """A cluster of its own per class, with the swarms written into it and the single Redis."""

    @classmethod
    def setUpClass(cls):
        cls.cluster_dir, cls.nodes, cls.primaries = start_cluster()
        try:
            cls.setup_data(cls.primaries)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        for r in getattr(cls, 'conns', {}).values():
            r.close()
        if getattr(cls, 'single', None):
            cls.single.close()
        stop_cluster(cls.cluster_dir)

    @classmethod
    def read_map(cls, node):
        """The slot map as node reports it: cls.slots (start, end, primary 'host:port'), cls.replica
        (primary -> its first replica), cls.conns (primary -> connection)."""
        r = TcpRedis(*cls.addr(node))
        try:
            reply = r.cmd('CLUSTER', 'SLOTS')
            cls.stats_slot = r.cmd('CLUSTER', 'KEYSLOT', '{stats}')
        finally:
            r.close()
        name = (lambda n: '%s:%d' % (n[0].decode() or '127.0.0.1', n[1]))
        cls.slots = [(e[0], e[1], name(e[2])) for e in reply]
        cls.replica = {name(e[2]): name(e[3]) for e in reply if len(e) > 3}
        for c in getattr(cls, 'conns', {}).values():
            c.close()
        cls.conns = {a: TcpRedis(*cls.addr(a)) for a in sorted({e[2] for e in cls.slots})}

    @classmethod
    def setup_data(cls, primaries):
        cls.read_map(primaries[0])
        assert len(cls.conns) == 3, cls.slots
        cls.single = Redis(tt.redis_socket())

        # Two configuration files (tyto is not started for the CLI): the test's single Redis, and
        # the cluster with one seed only (the map names the other primaries). One prefix for both.
        cls.plain = tt.Tyto(backend='redis')
        cls.prefix = cls.plain.prefix
        cls.plain.cfg['listen']['port'] = 6969
        cls.plain.write_config()
        cls.clus = tt.Tyto(backend='redis', config={'redis': {
            'url': 'redis://' + cls.primaries[0], 'cluster': True, 'nodes': cls.nodes, 'prefix': cls.prefix}})
        cls.clus.cfg['listen']['port'] = 6969
        cls.clus.write_config()

        # Swarms until every primary holds PER_PRIMARY of them.
        now = int(time.time())
        k = now // INTERVAL_S
        cls.swarms = {}                               # hex -> primary 'host:port'
        cls.expect = {}                               # hex -> (live seeders, live leechers, downloaded)
        n = 0
        while min([list(cls.swarms.values()).count(a) for a in cls.conns]) < PER_PRIMARY:
            h = rand_hash().hex()
            owner = cls.owner(h)
            seeders = [('10.0.%d.%d:6881' % (n, i), now + 600 + i) for i in range(1 + n % 3)]
            leechers = [('[2001:db8::%x]:51413' % (n + 1), now + 900)] if n % 2 else []
            if n % 4 == 0:
                leechers.append(('10.9.%d.1:6881' % n, now - 30))     # expired, not yet reaped
            cmds = [('ZADD', cls.key(h, 'seeders'), e, m) for m, e in seeders]
            cmds += [('ZADD', cls.key(h, 'leechers'), e, m) for m, e in leechers]
            cmds += [('HSET', cls.key(h, 'info'), 'downloaded', 5 * n + 1),
                     ('HSET', cls.key(h, 'stats'), 'first', now - 3600, 's:%d' % (now // 60), 2 + n,
                      'c:%d:qB' % k, len(seeders))]
            for c in cmds:
                for r in (cls.single, cls.conns[owner]):   # a wrong node would answer MOVED
                    r.cmd(*c)
            cls.swarms[h] = owner
            cls.expect[h] = (len(seeders), sum(1 for _, e in leechers if e > now), 5 * n + 1)
            n += 1

    @staticmethod
    def addr(a):
        host, port = a.rsplit(':', 1)
        return host, int(port)

    @classmethod
    def key(cls, h, kind):
        return '%s{%s}:%s' % (cls.prefix, h, kind)

    @classmethod
    def slot(cls, key):
        any_node = next(iter(cls.conns.values()))
        return any_node.cmd('CLUSTER', 'KEYSLOT', key)

    @classmethod
    def owner(cls, h):
        s = cls.slot(cls.key(h, 'info'))
        return next(a for lo, hi, a in cls.slots if lo <= s <= hi)

    def run_tyto(self, t, *args):
        r = subprocess.run(tt.tyto_command(t.dir, ['-c', t.config_path] + list(args)), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=60 * tt.SLOW, env=tt.clean_env())
        out, err = r.stdout.decode(errors='replace'), r.stderr.decode(errors='replace')
        for mark in tt.SANITIZER_MARKS:
            self.assertNotIn(mark, err)
        return r.returncode, out, err

    def same_output(self, *args, clus=None):
        """The single Redis's and the cluster's outputs of one command, equal but for what reads the
        clock ("N s ago", "expires in Ns"): those numbers may differ by the seconds between the two
        runs (several under valgrind), no more. clus: another cluster configuration."""
        clock = re.compile(r'(\d+)( s ago|s\b)')
        a = self.run_tyto(self.plain, *args)
        b = self.run_tyto(clus or self.clus, *args)
        self.assertEqual(a[0], 0, a[2])
        self.assertEqual((b[0], clock.sub(r'N\2', b[1]), b[2]), (a[0], clock.sub(r'N\2', a[1]), a[2]))
        for x, y in zip(clock.findall(a[1]), clock.findall(b[1])):
            self.assertLessEqual(abs(int(x[0]) - int(y[0])), 2 + 3 * tt.SLOW, (a[1], b[1]))
        return b[1]

    def start_tyto(self):
        """tyto (one worker, an aggregator pass a second), the map read from a replica."""
        t = tt.Tyto(config={'workers': 1, 'redis': {
            'url': 'redis://' + self.primaries[0], 'cluster': True, 'nodes': [self.nodes[-1]], 'prefix': self.prefix},
            'stats': {'pass_s': 1, 'lease_ms': 1500}})
        t.start()
        return t

    def wait_pass(self, t, after, timeout=20, every=True):
        """The first snapshot written after `after` (unix s) that counts every live swarm (every:
        False, any snapshot)."""
        want = sum(1 for v in self.expect.values() if v[0] + v[1] > 0)
        last = []

        def done():
            last[:] = [tt.stats(t)['tracker']]
            s = last[0]
            return s if s.get('snapshot') and s['time'] > after and (s['swarms'] == want or not every) else None
        try:
            return wait_for(done, timeout, 'an aggregator pass after %d counting %d swarms' % (after, want))
        except AssertionError as e:
            log = t.log()
            maps = '\n'.join(line for line in log.splitlines() if 'primaries' in line or 'lease' in line)
            nodes = '\n'.join('%s: %r %r' % (a, tt.redis_ask(self.addr(a)[1], 'DBSIZE'),
                                             tt.redis_ask(self.addr(a)[1], 'CLUSTER', 'NODES'))
                              for a in self.nodes)
            raise AssertionError('%s; last snapshot %r; slot maps and lease:\n%s\nlog:\n%s\nthe nodes:\n%s'
                                 % (e, last, maps[-3000:], log[-3000:], nodes))

    def replication(self):
        """(replica, the primary its CLUSTER NODES names, in sync with it) for every replica: in
        sync when INFO names that primary, the link is up and both hold as many keys."""
        out = []
        for a in self.nodes:
            port = self.addr(a)[1]
            nodes = tt.redis_ask(port, 'CLUSTER', 'NODES') or b''
            lines = [line.split() for line in nodes.decode(errors='replace').splitlines()]
            ports = {f[0]: f[1].split('@')[0] for f in lines if len(f) > 3}
            me = next((f for f in lines if len(f) > 3 and 'myself' in f[2]), None)
            if not me or 'slave' not in me[2]:
                continue
            primary = ports.get(me[3], '?')
            info = (tt.redis_ask(port, 'INFO', 'replication') or b'').decode(errors='replace')
            same = ('master_port:%s\r' % primary.rsplit(':', 1)[-1]) in info and 'master_link_status:up' in info
            keys = tt.redis_ask(port, 'DBSIZE')
            same = same and primary != '?' and keys == tt.redis_ask(self.addr(primary)[1], 'DBSIZE')
            out.append((a, primary, same))
        return out

    def stats_owner(self):
        return next(a for lo, hi, a in self.slots if lo <= self.stats_slot <= hi)


class ClusterCli(ClusterBase):

    # -- the CLI --------------------------------------------------------------------------------

    def test_swarm_reads_the_owner_of_its_slot(self):
        for primary in self.conns:
            h = next(x for x, a in self.swarms.items() if a == primary)
            out = self.same_output('swarm', h)
            s, l, d = self.expect[h]
            self.assertIn('swarm %s\n  seeders     %d\n' % (h, s), out)
            self.assertIn('  downloaded  %d\n' % d, out)
            self.assertIn('statistics:\n', out)
        rc, out, err = self.run_tyto(self.clus, 'swarm', rand_hash().hex())
        self.assertEqual(rc, 1)
        self.assertIn('no swarm', err)

    def test_cli_follows_a_moved(self):
        """The map read from a seed that is out of date: every command it sends there answers
        MOVED; the CLI reads the map again from the node the MOVED names, runs the command again,
        and prints exactly what it prints on the single Redis (and nothing of the first run)."""
        seed = StaleSeed(self.slots)
        try:
            stale = tt.Tyto(backend='redis', config={'redis': {
                'url': 'redis://' + self.primaries[0], 'cluster': True, 'nodes': ['127.0.0.1:%d' % seed.port],
                'prefix': self.prefix}})
            stale.cfg['listen']['port'] = 6969
            stale.write_config()
            h = next(iter(self.swarms))
            out = self.same_output('swarm', h, clus=stale)
            self.assertIn('swarm %s\n' % h, out)
            moved = seed.moved
            self.assertGreaterEqual(moved, 1)
            out = self.same_output('swarms', '1000', clus=stale)
            self.assertEqual(len(out.splitlines()), len(self.swarms) + 2, out)
            self.assertGreater(seed.moved, moved)
        finally:
            seed.stop()

    def test_swarms_lists_every_primary_once(self):
        out = self.same_output('swarms', '1000')
        rows = [line.split() for line in out.splitlines()[1:-1]]
        self.assertEqual(sorted(r[0] for r in rows), sorted(self.swarms))    # each exactly once
        for hx, se, le, dl in rows:
            self.assertEqual((int(se), int(le), int(dl)), self.expect[hx])
        self.assertIn('%d swarms under prefix "%s"' % (len(self.swarms), self.prefix), out)
        print('CLUSTER CLI: %d swarms over %d primaries (%s) listed once each'
              % (len(self.swarms), len(self.conns),
                 ', '.join('%d' % list(self.swarms.values()).count(a) for a in self.conns)))

    # -- tyto running: the aggregator and /stats --------------------------------------------------

    def test_aggregator_covers_every_primary(self):
        t = self.start_tyto()
        try:
            snap = self.wait_pass(t, time.time() + 1)
            live = [v for v in self.expect.values() if v[0] + v[1] > 0]
            self.assertEqual(snap['swarms'], len(live))
            self.assertEqual(snap['seeders'], sum(v[0] for v in live))
            self.assertEqual(snap['leechers'], sum(v[1] for v in live))
            self.assertEqual(snap['downloaded'], sum(v[2] for v in self.expect.values()))
            self.assertTrue(snap['aggregator_here'])
            # The census written back into every swarm's stats hash, on the node that owns it.
            for h, owner in self.swarms.items():
                checked = self.conns[owner].cmd('HGET', self.key(h, 'stats'), 'checked')
                self.assertIsNotNone(checked, 'swarm %s on %s: no census' % (h, owner))
            # The {stats} keys on the owner of their one slot.
            stats_owner = self.stats_owner()
            self.assertIsNotNone(self.conns[stats_owner].cmd('HGET', self.prefix + '{stats}:snapshot', 'time'))
            self.assertIsNotNone(self.conns[stats_owner].cmd('GET', self.prefix + '{stats}:lease'))
            # /stats?info_hash for a swarm of every primary.
            for primary in self.conns:
                h = next(x for x, a in self.swarms.items() if a == primary)
                r = t.admin_get('/stats?info_hash=' + h)
                self.assertEqual(r.status, 200, r.body)
                body = json.loads(r.body)
                self.assertEqual((body['seeders'], body['leechers'], body['downloaded']), self.expect[h])
                self.assertIn('checked', body)
            self.assertEqual(t.admin_get('/').status, 200)
            rc, out, err = self.run_tyto(self.clus, 'swarms', '--anomalies')
            self.assertEqual(rc, 0, err)
            self.assertIn('flagged swarms shown, from the aggregator', out)
            print('CLUSTER aggregator: %d swarms, %d seeders, %d leechers, downloaded %d, pass %d ms; '
                  '{stats} slot %d on %s' % (snap['swarms'], snap['seeders'], snap['leechers'],
                                              snap['downloaded'], snap['pass_ms'], self.stats_slot, stats_owner))
        finally:
            t.stop()
        log = t.log()
        self.assertNotIn('MOVED', log)
        self.assertNotIn('CROSSSLOT', log)


class ClusterFailover(ClusterBase):

    def test_aggregator_follows_a_failover(self):
        """CLUSTER FAILOVER promotes the replica of the {stats} slot's primary while tyto runs: the
        old primary, still connected, answers MOVED to the census and the {stats} writes; tyto
        reads the map again and its next passes cover every swarm, writing to the new primary."""
        t = self.start_tyto()
        try:
            self.wait_pass(t, time.time() + 1)
            old = self.stats_owner()
            # CLUSTER SLOTS lists a replica once the primary has seen it attach.
            wait_for(lambda: self.read_map(old) or old in self.replica, 20, 'a replica of %s' % old)
            new = self.replica[old]
            wait_for(lambda: (new, old, True) in self.replication(), 30, '%s in sync with %s' % (new, old))
            r = TcpRedis(*self.addr(new))
            try:
                r.cmd('CLUSTER', 'FAILOVER')
            finally:
                r.close()

            def promoted():
                try:
                    self.read_map(new)
                except (OSError, tt.RedisError):
                    return False
                return self.stats_owner() == new
            wait_for(promoted, 20, 'the replica %s promoted' % new)
            t_failover = time.time()
            # The passes go on, on the new primary, and count every primary's swarms. (CI once
            # saw a promoted replica hold another primary's keys: tests/cluster.sh gave its six
            # nodes one dump.rdb, and replicas syncing in the same instant could load each
            # other's. Each node has its own now.)
            snap = self.wait_pass(t, t_failover + 1)
            for h, owner in self.swarms.items():
                if owner != old:
                    continue
                checked = self.conns[new].cmd('HGET', self.key(h, 'stats'), 'checked')
                self.assertGreaterEqual(int(checked), int(t_failover), 'swarm %s on %s' % (h, new))
            self.assertEqual(self.conns[new].cmd('HGET', self.prefix + '{stats}:snapshot', 'time'),
                             str(snap['time']).encode())
            rc, out, err = self.run_tyto(self.clus, 'swarms', '1000')
            self.assertEqual(rc, 0, err)
            self.assertIn('%d swarms under prefix' % len(self.swarms), out)
            print('CLUSTER failover: {stats} slot moved %s -> %s; a full pass %.1f s after the promotion'
                  % (old, new, snap['time'] - t_failover))
        finally:
            t.stop()
        self.assertIn('reading the slot map again', t.log())


class ClusterHungPrimary(ClusterBase):

    def test_aggregator_outlasts_a_hung_primary(self):
        """A primary other than the {stats} slot's stops answering (SIGSTOP: its connections stay
        open, nothing fails): the pass waiting on it is given up after 3 x redis.timeout_ms, the
        map is read again (a CLUSTER SLOTS that the hung node would never answer is given up
        after redis.timeout_ms), and once the cluster has promoted its replica a pass counts every
        swarm again. Before, the pass waited for the node for as long as it slept, and no
        snapshot came."""
        t = self.start_tyto()
        victim_pid = None
        try:
            self.wait_pass(t, time.time() + 1)
            victim = next(a for a in self.primaries if a != self.stats_owner())
            with open(os.path.join(self.cluster_dir, 'redis-%s.pid' % victim.rsplit(':', 1)[1])) as f:
                victim_pid = int(f.read())
            with open('/proc/%d/cmdline' % victim_pid, 'rb') as f:
                self.assertIn(b'redis-server', f.read())

            # The node the cluster will promote must hold the victim's keys: every replica
            # replicates (INFO) the primary its own CLUSTER NODES names, with the link up and as
            # many keys. A replica that has not finished its first sync does not fail over; one
            # replicating another primary than the one it is listed under would be promoted
            # with that primary's keys.
            seen = []

            def synced():
                state = self.replication()
                seen.append(state)
                return len(state) == 3 and all(ok for _, _, ok in state)
            wait_for(synced, 30, 'three replicas in sync with their primaries')
            if any(not ok for state in seen for _, _, ok in state):
                print('CLUSTER replicas before the stop: waited for %r' % [s for s in seen if s][:1])
            os.kill(victim_pid, signal.SIGSTOP)
            t_stop = time.time()
            # cluster-node-timeout 5 s, then the election; the give-ups above; then a pass.
            snap = self.wait_pass(t, t_stop + 1, timeout=20 + 6 * tt.SLOW)
            print('CLUSTER hung primary %s: a full pass %.1f s after it stopped answering'
                  % (victim, snap['time'] - t_stop))
        finally:
            if victim_pid:
                os.kill(victim_pid, signal.SIGCONT)
            t.stop()
        self.assertIn('no reply from Redis', t.log())


if __name__ == '__main__':
    tt.main()
