"""Redis Cluster (issue 12): tyto (2 workers, redis.cluster: true) on a real cluster of three
primaries and three replicas (tests/cluster.sh, a cluster of its own per case), its workers routing
each swarm's pipeline to the primary that owns the swarm's hash slot.

  a) routing: announces to ~200 random swarms (every primary gets some) succeed, each swarm's keys
     are on the primary owning its slot and on no other node, peers come back, and scrapes of many
     hashes (fanned out over the three primaries) give each hash its own counts;
  b) failover: under a paced announce load to swarms of all three primaries, one primary is killed
     (SIGKILL); its replica is promoted and tyto follows without a restart (same master and worker
     pids); announces to the other primaries' swarms never fail, those to the dead primary's slots
     fail quickly (a storage failure reason) and then succeed again;
  c) reshard: under a paced load, slots holding active swarms are moved by hand from one primary to
     another (CLUSTER SETSLOT IMPORTING/MIGRATING, each key MIGRATEd on its own with pauses, so that
     announces meet ASK for moved keys and TRYAGAIN for swarms split between the nodes, then
     SETSLOT NODE: MOVED); no request fails, and event=completed sent once for each of K leechers of
     the moving swarms during the move counts exactly once (:info downloaded on the new owner);
     each slot's move stays well inside redis.timeout_ms;
  d) slow migration: the same with each slot held MIGRATING longer than redis.timeout_ms. Redis
     serves an announce's transaction to a swarm whose keys are only partly on the old owner
     nowhere until the move ends (ASK, then TRYAGAIN), so those may fail; nothing else may: no
     failure outside the moving slots, failures quick and with a storage reason, no completion
     counted twice or counted although it failed, and scrapes (single-key reads, which Redis
     serves through ASK) never fail.

  b') hung primary: the same with the primary stopped (SIGSTOP) instead of killed.

Prints "CLUSTER failover: failed=N of M (all on the killed primary's slots), recovered after X.X s"
(and "CLUSTER hung primary: ..."),
"CLUSTER reshard: N slots moved under load, failed=F of M, downloaded exact for K completions" and
"CLUSTER reshard (redis-cli): ..." (the same with redis-cli --cluster reshard moving 300 slots)
and "CLUSTER slow migration: ...".
Run alone: TYTO_BIN=build/tyto /usr/bin/python3 tests/e2e/test_cluster.py"""

import atexit
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tytotest                                                      # noqa: E402
from tytotest import (Peer, SLOW, Tyto, children, make_tmpdir,  # noqa: E402
                      parse_peers4, rand_hash, summary, wait_for)

CLUSTER_SH = os.path.join(tytotest.ROOT, 'tests', 'cluster.sh')
STORAGE_REASONS = (b'tracker storage is unavailable, retry later', b'tracker storage timed out, retry later',
                   b'tracker storage failed, retry later')
LOAD_RATE = 40                 # announces a second per load thread, at most
FAILOVER_LOAD_S = 25.0         # the failover load's length, if tyto recovered by then
SWARM_KEYS = re.compile(rb'\{([0-9a-f]{40})\}:(seeders|leechers|info|stats)\Z')

# ---------------------------------------------------------------------------------------------
# Slots: tytotest.key_slot, CRC16/XMODEM of the hash tag, mod 16384 (checked against CLUSTER
# KEYSLOT below).

keyslot = tytotest.key_slot


def hash_slot(info_hash):
    """The slot of every key of the swarm info_hash (its tag is the 40 lowercase hex digits)."""
    return keyslot(info_hash.hex())


def hash_in_slot(slot):
    """A random info-hash whose swarm lives in slot (about 16384 tries)."""
    while True:
        h = rand_hash()
        if hash_slot(h) == slot:
            return h


# ---------------------------------------------------------------------------------------------
# Plain RESP over TCP to one node (no redirections followed: a MOVED is an error here)

TcpRedis, ask = tytotest.TcpRedis, tytotest.redis_ask


def port_of(addr):
    return int(addr.rsplit(':', 1)[1])


class Cluster:
    """tests/cluster.sh start in a directory of our own; stop() stops exactly its nodes (by their
    pid files). Registered for exit too, in case a signal skips tearDown."""

    def __init__(self):
        self.dir = os.path.join(make_tmpdir('cluster'), 'nodes')
        out = subprocess.run([CLUSTER_SH, 'start', self.dir], capture_output=True, timeout=90)
        if out.returncode != 0:
            raise AssertionError('tests/cluster.sh start failed:\n%s' % out.stderr.decode(errors='replace')[-4000:])
        env = dict(line.split('=', 1) for line in out.stdout.decode().split() if '=' in line)
        self.nodes = env['TYTO_CLUSTER_NODES'].split(',')
        self.primaries = env['TYTO_CLUSTER_PRIMARIES'].split(',')
        self.stopped = False
        _clusters.append(self)

        # cluster_state:ok comes before gossip has told every node who replicates whom.
        def settled():
            for addr in self.nodes:
                n = self.node_info(port_of(addr))
                if n is None or len(n) != 6:
                    return False
                if sum(1 for x in n if 'master' in x['flags'] and x['slots']) != 3:
                    return False
                if sum(1 for x in n if 'slave' in x['flags'] and x['master'] != '-') != 3:
                    return False
            # Replicas in sync: one that never finished its first sync refuses to fail over.
            for addr in self.nodes:
                info = ask(port_of(addr), 'INFO', 'replication') or b''
                if b'role:slave' in info and b'master_link_status:up' not in info:
                    return False
            return True
        try:
            wait_for(settled, 30, 'every node to see three primaries with slots and three replicas')
        except BaseException:
            self.stop()
            raise

    def stop(self):
        if self.stopped:
            return
        self.stopped = True
        subprocess.run([CLUSTER_SH, 'stop', self.dir], capture_output=True, timeout=60)
        shutil.rmtree(os.path.dirname(self.dir), True)

    def pid(self, port):
        """The pid of the node on port, checked to be that redis-server (not a recycled pid)."""
        with open(os.path.join(self.dir, 'redis-%d.pid' % port)) as f:
            pid = int(f.read())
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            cmd = f.read().replace(b'\0', b' ')
        assert b'redis-server' in cmd and b':%d' % port in cmd, 'pid %d is not our node on %d' % (pid, port)
        return pid

    def log_tail(self, port, n=30):
        try:
            with open(os.path.join(self.dir, 'redis-%d.log' % port), errors='replace') as f:
                return ''.join(f.readlines()[-n:])
        except OSError:
            return ''

    def node_info(self, port):
        """CLUSTER NODES of the node on port -> [{id, port, flags, master, slots}]."""
        text = ask(port, 'CLUSTER', 'NODES')
        if text is None:
            return None
        out = []
        for line in text.decode().splitlines():
            f = line.split()
            if len(f) < 8:
                continue
            out.append({'id': f[0], 'port': int(f[1].split('@')[0].rsplit(':', 1)[1]),
                        'flags': f[2].split(','), 'master': f[3], 'slots': f[8:]})
        return out

    def slot_owners(self, port):
        """{slot: primary port} from CLUSTER SLOTS of the node on port."""
        reply = ask(port, 'CLUSTER', 'SLOTS')
        if not isinstance(reply, list):
            return None
        owner = {}
        for r in reply:
            for s in range(r[0], r[1] + 1):
                owner[s] = r[2][1]
        return owner


_clusters = []


@atexit.register
def _stop_clusters():
    for c in _clusters:
        c.stop()


def announce_once(t, info_hash, peer, left, **kw):
    """One announce on a fresh connection -> (t0, t1, kind, reason, reply): kind is 'ok',
    'failure', 'invalid' (not a 200 with canonical bencode) or 'unanswered' (no HTTP reply)."""
    t0 = time.monotonic()
    try:
        d = t.announce(info_hash, peer, left=left, expect_ok=False, **kw)
    except AssertionError as e:
        return (t0, time.monotonic(), 'invalid', str(e)[:200].encode(), None)
    except Exception as e:  # noqa: BLE001 (socket errors, timeouts)
        return (t0, time.monotonic(), 'unanswered', repr(e).encode(), None)
    if b'failure reason' in d:
        return (t0, time.monotonic(), 'failure', d[b'failure reason'], d)
    return (t0, time.monotonic(), 'ok', None, d)


class Load:
    """Paced announce threads: each re-announces its own swarms (one peer a swarm, leecher) in
    turn, LOAD_RATE a second at most; every outcome is kept with the thread's group name."""

    def __init__(self, t, groups):
        self.t = t
        self.results = []              # (group, info_hash, outcome)
        self.lock = threading.Lock()
        self.stop_ev = threading.Event()
        self.threads = []
        for group, hashes in groups:
            for part in (hashes[0::2], hashes[1::2]):      # two threads a group
                if part:
                    self.threads.append(threading.Thread(target=self.run, args=(group, part), daemon=True))

    def run(self, group, hashes):
        peers = {h: Peer() for h in hashes}
        next_at = time.monotonic()
        i = 0
        while not self.stop_ev.is_set():
            h = hashes[i % len(hashes)]
            i += 1
            o = announce_once(self.t, h, peers[h], 1)
            with self.lock:
                self.results.append((group, h, o))
            next_at += 1.0 / LOAD_RATE
            time.sleep(max(0.0, next_at - time.monotonic()))

    def start(self):
        for th in self.threads:
            th.start()
        return self

    def stop(self):
        self.stop_ev.set()
        for th in self.threads:
            th.join(30 * SLOW)
        if any(th.is_alive() for th in self.threads):
            raise AssertionError('the load threads did not finish')

    def snapshot(self):
        with self.lock:
            return list(self.results)

    def oks(self):
        return sum(1 for r in self.snapshot() if r[2][2] == 'ok')


@unittest.skipIf(shutil.which('redis-server') is None or shutil.which('redis-cli') is None,
                 'redis-server and redis-cli are needed for a Redis Cluster')
class ClusterTest(unittest.TestCase):

    def setUp(self):
        self.cluster = None
        self.tytos = []

    def tearDown(self):
        for t in self.tytos:
            t.kill()
        if self.cluster is not None:
            self.cluster.stop()

    def start(self, nodes='all'):
        """A cluster and tyto (2 workers) on it -> (tyto, master pid, worker pids)."""
        self.cluster = c = Cluster()
        seeds = c.nodes if nodes == 'all' else c.primaries
        t = Tyto(config={
            'workers': 2,
            'redis': {'cluster': True, 'nodes': seeds},
            'scrape': {'max_hashes': 64},
        }, redis_url='redis://%s' % c.primaries[0])   # with redis.cluster: the password only
        self.tytos.append(t)
        t.start()
        master_pid = t.proc.pid
        workers = wait_for(lambda: len(children(master_pid)) == 2 and children(master_pid), 10, 'two workers')
        return t, master_pid, workers

    def key(self, t, info_hash, kind):
        return '%s{%s}:%s' % (t.prefix, info_hash.hex(), kind)

    def swarms_by_primary(self, owners, n_each):
        """{primary port: [n_each random info-hashes whose slot it owns]}."""
        out = {p: [] for p in set(owners.values())}
        while any(len(v) < n_each for v in out.values()):
            h = rand_hash()
            lst = out[owners[hash_slot(h)]]
            if len(lst) < n_each:
                lst.append(h)
        return out

    def check_no_restart(self, t, master_pid, workers):
        self.assertTrue(t.running(), 'tyto exited')
        self.assertEqual(t.proc.pid, master_pid)
        self.assertEqual(children(master_pid), workers, 'a worker was replaced')

    # -- a) routing ------------------------------------------------------------------------------

    def test_routing_keys_on_slot_owner_and_scrape_fanout(self):
        """~200 swarms over all primaries: announces succeed, keys on the slot's owner only,
        peers returned, scrapes of 64 hashes over all primaries exact."""
        t, master_pid, workers = self.start(nodes='all')
        c = self.cluster
        owners = c.slot_owners(port_of(c.primaries[0]))
        self.assertEqual(len(owners), 16384, 'the cluster does not cover every slot')
        # Our CRC16 agrees with the cluster's own.
        for _ in range(20):
            k = self.key(t, rand_hash(), 'seeders')
            self.assertEqual(ask(port_of(c.primaries[0]), 'CLUSTER', 'KEYSLOT', k), keyslot(k))

        hashes = [rand_hash() for _ in range(200)]
        by_primary = {}
        for h in hashes:
            by_primary.setdefault(owners[hash_slot(h)], []).append(h)
        self.assertEqual(set(by_primary), {port_of(p) for p in c.primaries},
                         'every primary should own some of 200 random swarms')

        leech, seed = {}, {}
        expect = {}                    # info_hash -> (complete, incomplete, downloaded)
        for i, h in enumerate(hashes):
            leech[h] = Peer()
            d = t.announce(h, leech[h], left=100)
            self.assertEqual(d.get(b'incomplete'), 1, 'swarm %s: %r' % (h.hex(), d))
            if i % 2 == 0:             # half the swarms get a seeder, who sees the leecher
                seed[h] = Peer()
                d = t.announce(h, seed[h], left=0, compact=1)
                self.assertIn(('127.0.0.1', leech[h].port), parse_peers4(d[b'peers']),
                              'swarm %s: the seeder did not get the leecher: %r' % (h.hex(), d))
                self.assertEqual((d[b'complete'], d[b'incomplete']), (1, 1))
            if i % 4 == 1:             # a quarter: the leecher completes (downloaded 1)
                d = t.announce(h, leech[h], left=0, event='completed')
                self.assertEqual((d[b'complete'], d[b'incomplete']), (1, 0))
                self.assertEqual(d.get(b'downloaded', 1), 1)
            if i % 4 == 0:
                expect[h] = (1, 1, 0)
            elif i % 4 == 1:
                expect[h] = (1, 0, 1)
            elif i % 4 == 2:
                expect[h] = (1, 1, 0)
            else:
                expect[h] = (0, 1, 0)

        # Every swarm's keys on its slot's owner (EXISTS on a plain connection: a MOVED would be
        # an error), and a SCAN of each node finds only keys of slots it owns.
        conns = {port_of(p): TcpRedis(port_of(p)) for p in c.primaries}
        try:
            for h in hashes:
                owner = conns[owners[hash_slot(h)]]
                cmp_, inc, down = expect[h]
                for kind, want in (('seeders', cmp_), ('leechers', inc), ('info', down)):
                    self.assertEqual(owner.cmd('EXISTS', self.key(t, h, kind)), 1 if want else 0,
                                     '%s of swarm %s (slot %d) on its owner %d'
                                     % (kind, h.hex(), hash_slot(h), owner.port))
                if down:
                    self.assertEqual(owner.cmd('HGET', self.key(t, h, 'info'), 'downloaded'), b'1')
            found = set()
            for port, r in conns.items():
                for k in r.keys(t.prefix + '*'):
                    m = SWARM_KEYS.search(k)
                    if not m:
                        continue
                    self.assertEqual(owners[keyslot(k)], port, 'key %r on %d, not on its slot owner' % (k, port))
                    found.add(bytes.fromhex(m.group(1).decode()))
            self.assertEqual(found, set(hashes), 'the swarms found on the primaries')
        finally:
            for r in conns.values():
                r.close()

        # Scrapes of 64 hashes (about a third on each primary), plus unknown hashes.
        unknown = [rand_hash() for _ in range(8)]
        todo = hashes + unknown
        random.shuffle(todo)
        for i in range(0, len(todo), 64):
            part = todo[i:i + 64]
            self.assertGreater(len({owners[hash_slot(h)] for h in part}), 1 if len(part) < 10 else 2)
            d = t.scrape(part)
            self.assertNotIn(b'failure reason', d, d)
            files = d[b'files']
            self.assertEqual(set(files), set(part), 'the scrape must answer each requested hash')
            for h in part:
                cmp_, inc, down = expect.get(h, (0, 0, 0))
                self.assertEqual(files[h], {b'complete': cmp_, b'downloaded': down, b'incomplete': inc},
                                 'scrape of %s (slot %d on %d)' % (h.hex(), hash_slot(h), owners[hash_slot(h)]))
        self.check_no_restart(t, master_pid, workers)
        t.stop()

    # -- b) failover -----------------------------------------------------------------------------

    def test_failover_under_load(self):
        """A primary dies (SIGKILL) under load; its replica is promoted; only its slots fail."""
        self.failover('kill')

    def test_hung_primary_under_load(self):
        """A primary hangs (SIGSTOP: connections open, nothing answered, as a host that is down or
        cut off, where a dead process would refuse at once) under load; the cluster promotes its
        replica after cluster-node-timeout. Only the hung primary's slots may fail: the router's
        requests to it and its reads of the map must not stall the other primaries' announces."""
        self.failover('stop')

    def failover(self, fault):
        t, master_pid, workers = self.start(nodes='primaries')
        c = self.cluster
        # A tracker wants the rest of the key space served while one primary's slots are down:
        # with the default (yes) every node answers CLUSTERDOWN from the moment the dead primary
        # is flagged FAIL until its replica is promoted, whatever the router does. tests/cluster.sh
        # starts its nodes so; said again here, as this case depends on it.
        for addr in c.nodes:
            self.assertEqual(ask(port_of(addr), 'CONFIG', 'SET', 'cluster-require-full-coverage', 'no'), b'OK')
        first = port_of(c.primaries[0])
        owners = c.slot_owners(first)
        groups = self.swarms_by_primary(owners, 6)
        victim = random.choice(sorted(groups))
        nodes = c.node_info(victim)
        victim_id = [n['id'] for n in nodes if n['port'] == victim][0]
        replica = [n for n in nodes if n['master'] == victim_id]
        self.assertEqual(len(replica), 1, 'the victim has one replica: %r' % nodes)
        replica_port = replica[0]['port']
        victim_pid = c.pid(victim)
        survivors = [port_of(a) for a in c.nodes if port_of(a) != victim]

        load = Load(t, [(p, groups[p]) for p in sorted(groups)])
        load_t0 = time.monotonic()
        load.start()
        try:
            wait_for(lambda: load.oks() >= 60, 10, 'announces before the fault')
            fault_at = time.monotonic()
            if fault == 'kill':
                os.kill(victim_pid, signal.SIGKILL)
            else:
                os.kill(victim_pid, signal.SIGSTOP)
                self.addCleanup(os.kill, victim_pid, signal.SIGCONT)

            def promoted():
                for port in survivors:
                    info = ask(port, 'CLUSTER', 'INFO')
                    if info is None or b'cluster_state:ok' not in info:
                        return False
                n = c.node_info(replica_port)
                return n is not None and any(x['port'] == replica_port and 'master' in x['flags'] for x in n)
            try:
                wait_for(promoted, 40, 'the replica promoted, cluster_state:ok on every surviving node')
            except AssertionError as e:
                raise AssertionError('%s; CLUSTER NODES of the replica %d:\n%s\nits log:\n%s' % (
                    e, replica_port, (ask(replica_port, 'CLUSTER', 'NODES') or b'').decode(),
                    c.log_tail(replica_port))) from None
            promoted_at = time.monotonic()

            def recovered():
                res = [r[2] for r in load.snapshot() if r[0] == victim and r[2][0] > fault_at]
                fails = [o for o in res if o[2] != 'ok']
                last_fail = fails[-1][1] if fails else fault_at
                return sum(1 for o in res if o[2] == 'ok' and o[0] > last_fail) >= 10
            wait_for(recovered, 30, "announces to the dead primary's slots to succeed again")
            while time.monotonic() < load_t0 + FAILOVER_LOAD_S:
                time.sleep(0.1)
        finally:
            load.stop()

        results = load.snapshot()
        fails = [r for r in results if r[2][2] != 'ok']
        others = [r for r in fails if r[0] != victim]
        victim_fails = [r[2] for r in fails if r[0] == victim]
        after = [r[2] for r in results if r[0] == victim and r[2][0] > fault_at]
        last_fail = max((o[1] for o in victim_fails), default=fault_at)
        first_ok = min(o[1] for o in after if o[2] == 'ok' and o[0] > last_fail)
        max_fail_ms = max(((o[1] - o[0]) * 1000 for o in victim_fails), default=0)
        elsewhere = [r[2] for r in results if r[0] != victim and r[2][0] > fault_at]
        slow_ms = max((o[1] - o[0]) * 1000 for o in elsewhere)
        slow_n = sum(1 for o in elsewhere if o[1] - o[0] > 0.25)
        summary("CLUSTER %s: failed=%d of %d (%s), recovered after "
                "%.1f s (%d announce threads of <= %d/s over 3 primaries, 2 workers, cluster-node-timeout "
                "5000, replica promoted after %.1f s; failures elsewhere %d; slowest failure %.0f ms; "
                "reasons %s; after the fault the other primaries' slowest announce %.0f ms, %d over 250 ms)"
                % ('failover' if fault == 'kill' else 'hung primary', len(fails), len(results),
                   "all on the killed primary's slots" if fault == 'kill' and not others else
                   "%d on the %s primary's slots" % (len(victim_fails), 'killed' if fault == 'kill' else 'hung'),
                   first_ok - fault_at, len(load.threads), LOAD_RATE,
                   promoted_at - fault_at, len(others), max_fail_ms,
                   sorted(set(o[3].decode(errors='replace') for o in victim_fails)), slow_ms, slow_n))
        self.assertEqual(others, [], "announces to the other primaries' swarms failed: %r"
                         % [(r[0], r[1].hex(), r[2][2], r[2][3]) for r in others[:10]])
        # A dead or hung primary must not stall the worker for the others' swarms (the map is read
        # again asynchronously: a hung node delays the refresh, not the announces).
        self.assertLess(slow_ms, 1000.0 * SLOW, "the other primaries' slowest announce after the fault took "
                        "%.0f ms (a worker stalled?)" % slow_ms)
        for o in victim_fails:
            self.assertEqual(o[2], 'failure', 'every request must get a 200 with bencode: %r' % (o[:4],))
            self.assertIn(o[3], STORAGE_REASONS, 'failures must say the storage failed: %r' % (o[:4],))
            self.assertLess(o[1] - o[0], 3.0 * SLOW, 'a failure took long (a hang?): %r' % (o[:4],))
        self.check_no_restart(t, master_pid, workers)

        # A new swarm in the dead primary's slots is stored on the promoted replica; every worker
        # knows the new map (several announces, whichever worker takes each).
        owners = c.slot_owners(replica_port)
        self.assertTrue(owners and all(owners[s] == replica_port for s in range(16384)
                                        if owners.get(s) in (victim, replica_port)))
        h, peer = rand_hash(), Peer()
        while owners[hash_slot(h)] != replica_port:
            h = rand_hash()
        for _ in range(6):
            t.announce(h, peer, left=0)
        r = TcpRedis(replica_port)
        try:
            self.assertEqual(list(r.zscores(self.key(t, h, 'seeders'))), [b'127.0.0.1:%d' % peer.port])
        finally:
            r.close()
        t.stop()

    # -- c) reshard ------------------------------------------------------------------------------

    def move_slots(self, n_slots, hold_s, key_pause_s, slot_gap_s):
        """Moves n_slots slots, each holding 3 active swarms, from one primary to another by hand
        under a paced load, while 4 leechers of each moving swarm send event=completed once, spread
        over their slot's move. Per slot: IMPORTING on the new owner, MIGRATING on the old; hold_s
        with every key still on the old owner; each key MIGRATEd on its own, key_pause_s apart;
        hold_s again with every key moved; SETSLOT NODE on every primary (MOVED). What the router
        meets (Redis 7.0, checked by hand): the old owner serves a command whose keys all exist
        there and answers ASK if one is missing (in MULTI: EXECABORT); the importing node, after
        ASKING, serves single-key commands (a scrape's ZCARD, HGET) but answers TRYAGAIN to a
        transaction over several keys of which one is missing. An announce's MULTI names seeders,
        leechers and info, and one of them rarely exists (no seeders yet, no completion yet), so
        an announce to a moving swarm is served nowhere until its slot's move ends: the router
        can only resend after a back-off, within redis.timeout_ms. Fresh swarms of the slot,
        announced mid-move, and scrapes of the moving swarms (single-key commands: ASK) run too.
        Returns a dict of what happened, the summary's figures and the failures placed in the move."""
        t, master_pid, workers = self.start(nodes='all')
        c = self.cluster
        first = port_of(c.primaries[0])
        owners = c.slot_owners(first)
        ids = {n['port']: n['id'] for n in c.node_info(first)}
        prim = sorted({port_of(p) for p in c.primaries})
        src, dst = random.sample(prim, 2)
        per_slot, leechers_each = 3, 4
        slots = random.sample([s for s, p in owners.items() if p == src], n_slots)
        moving = {s: [hash_in_slot(s) for _ in range(per_slot)] for s in slots}
        fresh = {s: [hash_in_slot(s) for _ in range(2)] for s in slots}    # first announced mid-move
        moving_hashes = [h for s in slots for h in moving[s]]
        staying = self.swarms_by_primary(owners, 4)
        completers = {s: [] for s in slots}        # K leechers, announced before the move
        for s in slots:
            for h in moving[s]:
                for _ in range(leechers_each):
                    p = Peer()
                    t.announce(h, p, left=100)
                    completers[s].append((h, p))
            random.shuffle(completers[s])
        # One member a completer ("127.0.0.1:port"): two sharing a port would be one peer, whose
        # second completion counts nothing (tytotest.Peer never hands out a port twice).
        for h in moving_hashes:
            ports = [p.port for s in slots for x, p in completers[s] if x == h]
            self.assertEqual(len(set(ports)), leechers_each, 'completers of %s share a port: %r' % (h.hex(), ports))

        load = Load(t, [('moving', moving_hashes)] + [('staying-%d' % p, staying[p]) for p in sorted(staying)])
        lock = threading.Lock()
        completions = []               # (info_hash, outcome)
        fresh_results = []             # (info_hash, outcome)
        events = []                    # (time, what): the move's steps, for failure reports
        side = []                      # the per-slot threads

        scrapes = []                   # outcomes of the scrapes of moving and staying swarms
        scrape_stop = threading.Event()

        def event(what):
            events.append((time.monotonic(), what))

        def scrape_loop():
            hashes = moving_hashes + [h for p in sorted(staying) for h in staying[p]][:64 - len(moving_hashes)]
            while not scrape_stop.is_set():
                t0 = time.monotonic()
                try:
                    d = t.scrape(hashes)
                    if b'failure reason' in d:
                        o = (t0, time.monotonic(), 'failure', d[b'failure reason'], d)
                    elif set(d.get(b'files', {})) != set(hashes):
                        o = (t0, time.monotonic(), 'invalid', b'scrape without every hash', d)
                    else:
                        o = (t0, time.monotonic(), 'ok', None, d)
                except Exception as e:  # noqa: BLE001
                    o = (t0, time.monotonic(), 'unanswered', repr(e)[:200].encode(), None)
                scrapes.append(o)
                time.sleep(0.1)
        scraper = threading.Thread(target=scrape_loop, daemon=True)

        def complete(s, pace):
            for h, p in completers[s]:
                o = announce_once(t, h, p, 0, event='completed')
                with lock:
                    completions.append((h, o))
                time.sleep(pace)
            for h in fresh[s]:         # a fresh swarm, then a second peer that must see the first
                a, b = Peer(), Peer()
                for peer in (a, b):
                    o = announce_once(t, h, peer, 1, compact=1)
                    with lock:
                        fresh_results.append((h, o))

        # The slot's completions spread over its expected window.
        window_s = 2 * hold_s + 4 * per_slot * key_pause_s
        pace = window_s / (per_slot * leechers_each)
        s_conn, d_conn = TcpRedis(src, timeout=10), TcpRedis(dst, timeout=10)
        phases = []
        load.start()
        scraper.start()
        try:
            wait_for(lambda: load.oks() >= 40, 10, 'announces before the move')
            move_t0 = time.monotonic()
            for s in slots:
                self.assertEqual(d_conn.cmd('CLUSTER', 'SETSLOT', s, 'IMPORTING', ids[src]), b'OK')
                self.assertEqual(s_conn.cmd('CLUSTER', 'SETSLOT', s, 'MIGRATING', ids[dst]), b'OK')
                event('slot %d MIGRATING' % s)
                th = threading.Thread(target=complete, args=(s, pace), daemon=True)
                th.start()
                side.append(th)
                time.sleep(hold_s)
                moved = 0
                while True:
                    keys = s_conn.cmd('CLUSTER', 'GETKEYSINSLOT', s, 100)
                    if not keys:
                        break
                    for k in keys:
                        reply = s_conn.cmd('MIGRATE', '127.0.0.1', dst, k, 0, 5000)
                        event('MIGRATE %s' % k.decode(errors='replace'))
                        self.assertIn(reply, (b'OK', b'NOKEY'))
                        moved += 1
                        time.sleep(key_pause_s)
                time.sleep(hold_s)
                for port in [dst, src] + [p for p in prim if p not in (src, dst)]:
                    self.assertEqual(ask(port, 'CLUSTER', 'SETSLOT', s, 'NODE', ids[dst]), b'OK')
                event('slot %d NODE dst' % s)
                phases.append((s, moved))
                time.sleep(slot_gap_s)
            move_s = time.monotonic() - move_t0
            for th in side:
                th.join(60 * SLOW)
            self.assertFalse(any(th.is_alive() for th in side), 'the completions did not finish')
            time.sleep(1.0)            # announces after the move: MOVED, then the new map
        finally:
            scrape_stop.set()
            load.stop()
            scraper.join(30 * SLOW)
            for th in side:
                th.join(30 * SLOW)
            s_conn.close()
            d_conn.close()

        r = TcpRedis(dst)
        try:
            downloaded = {h: int(r.cmd('HGET', self.key(t, h, 'info'), 'downloaded') or 0) for h in moving_hashes}
            leechers_left = {h: r.cmd('ZCARD', self.key(t, h, 'leechers')) for h in moving_hashes}
        finally:
            r.close()
        # Counted once each: in :info on the new owner, and through tyto (the scrape's part for
        # the new owner).
        scraped = t.scrape(moving_hashes)[b'files']
        for port in prim:
            o = c.slot_owners(port)
            self.assertEqual([o[s] for s in slots], [dst] * n_slots, 'CLUSTER SLOTS of %d' % port)
        self.assertEqual([ask(src, 'CLUSTER', 'COUNTKEYSINSLOT', s) for s in slots], [0] * n_slots)
        self.check_no_restart(t, master_pid, workers)
        results = load.snapshot()

        def where(o, h):
            before = [w for at, w in events if at <= o[0]]
            return ('%s slot %d t=+%.3f..+%.3f s after %r: %s' % (
                h.hex(), hash_slot(h) if h else -1, o[0] - move_t0, o[1] - move_t0, before[-1] if before else None,
                (o[3] or b'').decode(errors='replace')))
        ok_completions = {}
        for h, o in completions:
            if o[2] == 'ok':
                ok_completions[h] = ok_completions.get(h, 0) + 1
        fails = [r for r in results if r[2][2] != 'ok']
        report = ([r[0] + ' ' + where(r[2], r[1]) for r in fails] +
                  ['completed ' + where(o, h) for h, o in completions if o[2] != 'ok'] +
                  ['fresh ' + where(o, h) for h, o in fresh_results if o[2] != 'ok'] +
                  ['scrape ' + where(o, b'') for o in scrapes if o[2] != 'ok'])
        if report:
            sys.stdout.write('\nfailures in the move (slots %s, %d -> %d):\n  %s\n'
                             % (slots, src, dst, '\n  '.join(report)))
        t.stop()
        return {'t': t, 'move_t0': move_t0, 'slots': slots, 'moved_keys': sum(m for _, m in phases), 'move_s': move_s,
                'results': results, 'fails': fails, 'completions': completions, 'fresh': fresh_results,
                'ok_completions': ok_completions, 'downloaded': downloaded, 'scraped': scraped,
                'leechers_left': leechers_left, 'moving_hashes': moving_hashes, 'fresh_hashes': fresh,
                'threads': len(load.threads), 'phases': phases, 'scrapes': scrapes, 'leechers_each': leechers_each,
                'ports': {h: [p.port for s in slots for x, p in completers[s] if x == h] for h in moving_hashes}}

    def check_counts(self, m):
        """No double count: each swarm's downloaded (on the new owner, and scraped) equals the
        completions answered with success; a completion answered with a failure counted nothing
        and left its peer a leecher."""
        for h in m['moving_hashes']:
            ok = m['ok_completions'].get(h, 0)
            if m['downloaded'][h] != ok:
                mine = [o for x, o in m['completions'] if x == h]
                log = [line for line in m['t'].log().splitlines() if h.hex() in line or 'cluster' in line]
                sys.stdout.write('\ncompletions of %s (completers\' ports %r; t0, t1, kind, reason, complete, '
                                 'incomplete, downloaded):\n  %s\nits log lines:\n  %s\n' % (
                                     h.hex(), m['ports'][h], '\n  '.join('%.3f %.3f %s %r %s' % (
                                         o[0] - m['move_t0'], o[1] - m['move_t0'], o[2], o[3],
                                         [o[4].get(k) for k in (b'complete', b'incomplete', b'downloaded')]
                                         if o[4] else None) for o in mine),
                                     '\n  '.join(log[-60:])))
            self.assertEqual(m['downloaded'][h], ok, 'swarm %s: :info downloaded %d on the new owner after %d '
                             'successful completions' % (h.hex(), m['downloaded'][h], ok))
            self.assertEqual(m['scraped'][h][b'downloaded'], ok, 'scrape of %s' % h.hex())
            # The load's own peer of the swarm is a leecher too.
            self.assertEqual(m['leechers_left'][h], 1 + m['leechers_each'] - ok,
                             'swarm %s: leechers left after %d successful completions' % (h.hex(), ok))

    def test_reshard_under_load_ask_tryagain_no_double_count(self):
        """Slots move as redis-cli --cluster reshard moves them, slowed down to stay in each state
        for a while (but a slot's whole move well inside redis.timeout_ms, 1 s): held MIGRATING
        0.1 s, keys moved 10 ms apart. No request fails; each completion counts once."""
        m = self.move_slots(n_slots=6, hold_s=0.1, key_pause_s=0.01, slot_gap_s=0.3)
        cfails = [o for _, o in m['completions'] if o[2] != 'ok']
        ffails = [o for _, o in m['fresh'] if o[2] != 'ok']
        sfails = [o for o in m['scrapes'] if o[2] != 'ok']
        k = sum(m['ok_completions'].get(h, 0) for h in m['moving_hashes']
                if m['downloaded'][h] == m['ok_completions'].get(h, 0))
        summary('CLUSTER reshard: %d slots moved under load, failed=%d of %d, downloaded exact for %d completions '
                '(%d keys MIGRATEd one at a time in %.1f s, each slot held MIGRATING 0.1 s before and after its '
                'keys; %d announce threads of <= %d/s, %d fresh swarms announced mid-move, %d scrapes of 64 hashes)'
                % (len(m['phases']), len(m['fails']) + len(cfails) + len(ffails) + len(sfails),
                   len(m['results']) + len(m['completions']) + len(m['fresh']) + len(m['scrapes']), k,
                   m['moved_keys'], m['move_s'], m['threads'], LOAD_RATE, len(m['fresh']) // 2, len(m['scrapes'])))
        self.assertEqual(len(m['completions']), len(m['moving_hashes']) * m['leechers_each'])
        self.assertEqual([r[0] for r in m['fails']], [], 'announces failed during the move (see above)')
        self.assertEqual(cfails, [], 'completions failed during the move (see above)')
        self.assertEqual(ffails, [], 'announces of fresh swarms in the moving slots failed (see above)')
        self.assertEqual(sfails, [], 'scrapes failed during the move (see above)')
        self.check_counts(m)
        self.assertEqual(k, len(m['completions']))
        # The second peer of each fresh swarm got the first (the ASK-created keys are one swarm).
        by_hash = {}
        for h, o in m['fresh']:
            by_hash.setdefault(h, []).append(o)
        for h, (a, b) in by_hash.items():
            self.assertEqual(b[4].get(b'incomplete'), 2, 'fresh swarm %s: %r' % (h.hex(), b[4]))

    def test_reshard_redis_cli_under_load(self):
        """The operator's way: redis-cli --cluster reshard moves 300 slots (a batch of keys a
        MIGRATE, each slot's move a few milliseconds) from one primary to another while announces
        and completions run on swarms in those slots: no request fails, each completion counts once
        (on the new owner). The moving swarms' slots carry ballast keys to slow their moves."""
        t, master_pid, workers = self.start(nodes='primaries')
        c = self.cluster
        first = port_of(c.primaries[0])
        owners = c.slot_owners(first)
        ids = {n['port']: n['id'] for n in c.node_info(first)}
        prim = sorted({port_of(p) for p in c.primaries})
        src, dst = random.sample(prim, 2)
        n_slots = 300
        # redis-cli takes a single source's slots in ascending order: the moving ones.
        moving_slots = sorted(s for s, p in owners.items() if p == src)[:n_slots]
        moving_hashes = [hash_in_slot(s) for s in random.sample(moving_slots, 16)]
        staying = self.swarms_by_primary(owners, 4)
        completers = []
        for h in moving_hashes:
            for _ in range(4):
                p = Peer()
                t.announce(h, p, left=100)
                completers.append((h, p))
        random.shuffle(completers)
        # 300 keys of ballast in each moving swarm's slot (same hash tag), so that redis-cli
        # spends a while on these slots (30 MIGRATEs of 10 keys each) while the requests run.
        r = TcpRedis(src)
        try:
            for h in moving_hashes:
                for i in range(0, 300, 50):
                    args = []
                    for j in range(i, i + 50):
                        args += ['%s{%s}:ballast:%d' % (t.prefix, h.hex(), j), 'x']
                    self.assertEqual(r.cmd('MSET', *args), b'OK')
        finally:
            r.close()
        load = Load(t, [('moving', moving_hashes)] + [('staying-%d' % p, staying[p]) for p in sorted(staying)])
        completions = []
        go = threading.Event()

        def complete(part):
            go.wait(60)
            for h, p in part:
                completions.append((h, announce_once(t, h, p, 0, event='completed')))
        cths = [threading.Thread(target=complete, args=(completers[i::4],), daemon=True) for i in range(4)]
        load.start()
        for cth in cths:
            cth.start()
        try:
            wait_for(lambda: load.oks() >= 40, 10, 'announces before the move')
            t0 = time.monotonic()
            go.set()
            out = subprocess.run(['redis-cli', '--cluster', 'reshard', '127.0.0.1:%d' % src,
                                  '--cluster-from', ids[src], '--cluster-to', ids[dst],
                                  '--cluster-slots', str(n_slots), '--cluster-yes'],
                                 capture_output=True, timeout=120)
            move_s = time.monotonic() - t0
            self.assertEqual(out.returncode, 0, out.stdout.decode(errors='replace')[-2000:] +
                             out.stderr.decode(errors='replace')[-2000:])
            for cth in cths:
                cth.join(60 * SLOW)
            self.assertFalse(any(cth.is_alive() for cth in cths), 'the completions did not finish')
            time.sleep(1.0)
        finally:
            go.set()
            load.stop()
            for cth in cths:
                cth.join(30 * SLOW)
        owners_after = c.slot_owners(dst)
        self.assertEqual([owners_after[s] for s in moving_slots], [dst] * n_slots, 'the slots did not all move')
        self.assertEqual([ask(src, 'CLUSTER', 'COUNTKEYSINSLOT', hash_slot(h)) for h in moving_hashes],
                         [0] * len(moving_hashes), 'keys left on the old owner')
        results = load.snapshot()
        fails = [r for r in results if r[2][2] != 'ok']
        cfails = [(h, o) for h, o in completions if o[2] != 'ok']
        ok = {}
        for h, o in completions:
            if o[2] == 'ok':
                ok[h] = ok.get(h, 0) + 1
        r = TcpRedis(dst)
        try:
            downloaded = {h: int(r.cmd('HGET', self.key(t, h, 'info'), 'downloaded') or 0) for h in moving_hashes}
        finally:
            r.close()
        exact = sum(ok.get(h, 0) for h in moving_hashes if downloaded[h] == ok.get(h, 0))
        during = sum(1 for _, o in completions if o[0] < t0 + move_s)
        summary('CLUSTER reshard (redis-cli): %d slots moved under load in %.1f s, failed=%d of %d, downloaded exact '
                'for %d completions (%d of them sent while redis-cli ran; %d announce threads of <= %d/s)'
                % (n_slots, move_s, len(fails) + len(cfails), len(results) + len(completions), exact, during,
                   len(load.threads), LOAD_RATE))
        self.assertEqual([(r[0], r[1].hex(), r[2][3]) for r in fails], [], 'announces failed during the reshard')
        self.assertEqual([(h.hex(), o[3]) for h, o in cfails], [], 'completions failed during the reshard')
        self.assertEqual({h.hex(): downloaded[h] for h in moving_hashes}, {h.hex(): 4 for h in moving_hashes},
                         ':info downloaded on the new owner, 4 completions each')
        self.check_no_restart(t, master_pid, workers)
        t.stop()

    def test_slow_migration_fails_only_moving_swarms(self):
        """A slot held MIGRATING longer than redis.timeout_ms (1.5 s before its keys, keys 0.15 s
        apart): Redis itself serves a swarm whose keys are only partly on the old owner nowhere
        (the old owner answers ASK for the missing key, the importing one TRYAGAIN for the
        transaction) until the slot's move ends, so announces to the moving swarms may fail. The
        rest must not: no failure outside the moving slots, every failure a storage failure
        reason within redis.timeout_ms and a margin, no completion counted twice or counted
        although it failed, and the moving swarms served again after the move."""
        m = self.move_slots(n_slots=3, hold_s=1.5, key_pause_s=0.15, slot_gap_s=0.2)
        cfails = [o for _, o in m['completions'] if o[2] != 'ok']
        moving_fails = [r for r in m['fails'] if r[0] == 'moving']
        summary('CLUSTER slow migration: %d slots moved in %.1f s (held MIGRATING 1.5 s, keys 0.15 s apart), '
                'failed=%d of %d announces to the moving swarms, %d of %d completions, %d of %d elsewhere; '
                'downloaded exact for %d swarms'
                % (len(m['phases']), m['move_s'], len(moving_fails),
                   sum(1 for r in m['results'] if r[0] == 'moving'), len(cfails), len(m['completions']),
                   len(m['fails']) - len(moving_fails), sum(1 for r in m['results'] if r[0] != 'moving'),
                   len(m['moving_hashes'])))
        self.assertEqual([r for r in m['fails'] if r[0] != 'moving'], [], 'announces to swarms outside the moving '
                         'slots failed')
        self.assertEqual([o for o in m['scrapes'] if o[2] != 'ok'], [], 'scrapes (single-key commands: ASK) failed')
        for o in [r[2] for r in moving_fails] + cfails + [o for _, o in m['fresh'] if o[2] != 'ok']:
            self.assertEqual(o[2], 'failure', 'every request must get a 200 with bencode: %r' % (o[:4],))
            self.assertIn(o[3], STORAGE_REASONS, 'failures must say the storage failed: %r' % (o[:4],))
            self.assertLess(o[1] - o[0], 2.0 * SLOW, 'a failure took long (a hang?): %r' % (o[:4],))
        self.check_counts(m)
        end = max(o[0] for r in m['results'] for o in [r[2]])
        last = [r[2] for r in m['results'] if r[0] == 'moving' and r[2][0] > end - 0.8]
        self.assertTrue(last and all(o[2] == 'ok' for o in last), 'the moving swarms are served after the move')


if __name__ == '__main__':
    tytotest.main()
