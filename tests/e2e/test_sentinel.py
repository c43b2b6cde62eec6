"""Redis Sentinel failover (issue 12): one primary, one replica and three sentinels of our own on
free loopback ports; tyto (2 workers) finds the primary through the sentinels
(redis.sentinels, redis.master_name). Under a bounded announce load the primary is killed
(SIGKILL); the sentinels promote the replica, and tyto must follow it without a restart: the
same master and worker pids, every request answered (failures quickly, with a storage failure
reason), announces succeeding again, a swarm announced afterwards stored on the new primary, and
`tyto swarm` (the CLI's synchronous path) reading it there. A second case demotes the primary by
hand instead (REPLICAOF while tyto is connected): READONLY replies and ROLE checks, not a closed
connection, must make tyto move.

Prints "SENTINEL failover: failed=N of M, recovered after X.X s" (the README quotes it), and the
same for "SENTINEL demoted master".
Run alone: TYTO_BIN=build/tyto /usr/bin/python3 tests/e2e/test_sentinel.py"""

import os
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tytotest                                                      # noqa: E402
from tytotest import (Peer, Redis, RedisServer, SLOW, Tyto,  # noqa: E402
                      children, free_port, make_tmpdir, rand_hash, summary, wait_for)

MASTER_NAME = 'tytomaster'
STORAGE_REASONS = (b'tracker storage is unavailable, retry later', b'tracker storage timed out, retry later',
                   b'tracker storage failed, retry later')
LOAD_S = 15.0                  # the announce load's length, if tyto recovered by then
LOAD_RATE = 100                # announces a second per load thread, at most


TcpRedis = tytotest.TcpRedis


def pairs(flat):
    """A flat [k1, v1, k2, v2 ...] reply (SENTINEL replicas' entries) as a dict of str."""
    return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat) - 1, 2)}


class Sentinel:
    """redis-server --sentinel with a config file of its own (Sentinel rewrites it), our child,
    stopped by its pid."""

    def __init__(self, workdir, port, master_port, password=None):
        self.port = port
        self.password = password
        self.conf = os.path.join(workdir, 'sentinel-%d.conf' % port)
        with open(self.conf, 'w') as f:
            f.write('port %d\nbind 127.0.0.1\ndir %s\n'
                    'sentinel monitor %s 127.0.0.1 %d 2\n'
                    'sentinel down-after-milliseconds %s 1000\n'
                    'sentinel failover-timeout %s 5000\n'
                    'sentinel parallel-syncs %s 1\n'
                    % (port, workdir, MASTER_NAME, master_port, MASTER_NAME, MASTER_NAME, MASTER_NAME))
            if password:
                # Clients (tyto) must AUTH; the sentinels AUTH to each other with the same.
                f.write('requirepass "%s"\nsentinel sentinel-pass "%s"\n' % (password, password))
        log = open(os.path.join(workdir, 'sentinel-%d.log' % port), 'wb')
        self.proc = subprocess.Popen(['redis-server', self.conf, '--sentinel'], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()

    def ask(self, *args):
        """One command to this sentinel (after AUTH when it has a password); None if nothing
        answers."""
        try:
            r = TcpRedis(self.port, timeout=2)
        except OSError:
            return None
        try:
            if self.password:
                r.cmd('AUTH', self.password)
            return r.cmd(*args)
        except (OSError, tytotest.RedisError):
            return None
        finally:
            r.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def announce_once(t, info_hash, peer, left):
    """One announce on a fresh connection -> (t0, t1, kind, reason): kind is 'ok', 'failure',
    'invalid' (not a 200 with canonical bencode) or 'unanswered' (no HTTP reply)."""
    t0 = time.monotonic()
    try:
        d = t.announce(info_hash, peer, left=left, expect_ok=False)
    except AssertionError as e:
        return (t0, time.monotonic(), 'invalid', str(e)[:200].encode())
    except Exception as e:  # noqa: BLE001 (socket errors, timeouts)
        return (t0, time.monotonic(), 'unanswered', repr(e).encode())
    if b'failure reason' in d:
        return (t0, time.monotonic(), 'failure', d[b'failure reason'])
    return (t0, time.monotonic(), 'ok', None)


class SentinelTest(unittest.TestCase):

    def setUp(self):
        self.dir = make_tmpdir('sentinel')
        self.servers, self.sentinels, self.tytos = [], [], []

    def tearDown(self):
        for t in self.tytos:
            t.kill()
        for s in self.sentinels:
            s.stop()
        for s in self.servers:
            s.stop()

    def start_redis(self, name):
        d = os.path.join(self.dir, name)
        os.mkdir(d)
        for _ in range(3):
            port = free_port()
            try:
                server = RedisServer(os.path.join(d, 'redis.sock'), d, tcp_port=port).start()
            except RuntimeError:
                continue               # lost the port to someone else: another
            self.servers.append(server)
            return server
        raise AssertionError('could not start redis-server %s' % name)

    def topology(self, password=None):
        """A primary, its replica and three sentinels ready for a failover (with password: a
        requirepass of their own, given to tyto as redis.sentinel_password), and tyto (2 workers)
        on them: (primary, replica, tyto, its master pid, its worker pids)."""
        primary = self.start_redis('primary')
        replica = self.start_redis('replica')
        rep = Redis(replica.path)
        rep.cmd('REPLICAOF', '127.0.0.1', primary.tcp_port)
        wait_for(lambda: b'master_link_status:up' in rep.cmd('INFO', 'replication'), 20, 'the replica in sync')
        rep.close()
        for _ in range(3):
            self.sentinels.append(Sentinel(self.dir, free_port(), primary.tcp_port, password))
        # Ready for a failover: each sentinel knows the master, the replica, and the other two
        # (their hello messages come every 2 s; quorum 2 and a leader need them).
        def sentinels_ready():
            for s in self.sentinels:
                if s.proc.poll() is not None:
                    raise AssertionError('sentinel on %d exited' % s.port)
                others = s.ask('SENTINEL', 'sentinels', MASTER_NAME)
                replicas = s.ask('SENTINEL', 'replicas', MASTER_NAME)
                if not isinstance(others, list) or len(others) != 2 or not isinstance(replicas, list):
                    return False
                if not any(pairs(r).get('port') == str(replica.tcp_port) and
                           pairs(r).get('master-link-status') == 'ok' for r in replicas):
                    return False
            return True
        wait_for(sentinels_ready, 30, 'three sentinels that see each other and the replica')

        t = Tyto(config={
            'workers': 2,
            'redis': dict({'sentinels': ['127.0.0.1:%d' % s.port for s in self.sentinels],
                           'master_name': MASTER_NAME}, **({'sentinel_password': password} if password else {})),
        }, redis_url='redis://127.0.0.1:1')   # host and port unused: the sentinels say
        self.tytos.append(t)
        t.start()
        self.assertIn("master '%s' is at 127.0.0.1:%d" % (MASTER_NAME, primary.tcp_port), t.log())
        master_pid = t.proc.pid
        workers = wait_for(lambda: len(children(master_pid)) == 2 and children(master_pid), 10, 'two workers')
        t.announce(rand_hash(), Peer(), left=0)
        self.wait_master_metric(t, primary)
        return primary, replica, t, master_pid, workers

    def wait_master_metric(self, t, server):
        """/metrics names server as the master of both workers, and no other."""
        want = 'tyto_redis_sentinel_master{address="127.0.0.1:%d"} 2' % server.tcp_port

        def shown():
            lines = [x for x in t.admin_get('/metrics').body.decode().splitlines()
                     if x.startswith('tyto_redis_sentinel_master{')]
            return lines == [want] and lines
        wait_for(shown, 10, want)

    def run_fault(self, t, fault, name):
        """Runs the announce load (two threads, each in one swarm of its own, paced), applies
        fault() once 20 announces succeeded, waits until announces succeed again, keeps the load
        to LOAD_S, checks every outcome and prints the summary line. Returns the fault's time."""
        results, lock, stop = [], threading.Lock(), threading.Event()

        def load():
            info_hash, peer = rand_hash(), Peer()
            next_at = time.monotonic()
            while not stop.is_set():
                o = announce_once(t, info_hash, peer, 1)
                with lock:
                    results.append(o)
                # Paced (LOAD_RATE a thread at most), so that "failed=N of M" reads as requests
                # a client population would have sent, not as how fast a refusal loops.
                next_at += 1.0 / LOAD_RATE
                time.sleep(max(0.0, next_at - time.monotonic()))
        threads = [threading.Thread(target=load, daemon=True) for _ in range(2)]
        load_t0 = time.monotonic()
        for th in threads:
            th.start()
        try:
            wait_for(lambda: sum(1 for o in list(results) if o[2] == 'ok') >= 20, 10, 'announces before the fault')
            fault_at = time.monotonic()
            fault()

            def recovered():
                with lock:
                    after = [o for o in results if o[0] > fault_at]
                fails = [o for o in after if o[2] != 'ok']
                if not fails:
                    return None
                oks = [o for o in after if o[2] == 'ok' and o[0] > fails[-1][1]]
                return oks[0] if len(oks) >= 10 else None
            wait_for(recovered, 40, 'announces to succeed again after the failover')
            while time.monotonic() < load_t0 + LOAD_S:
                time.sleep(0.1)
        finally:
            stop.set()
            for th in threads:
                th.join(30 * SLOW)
        self.assertFalse(any(th.is_alive() for th in threads), 'the load threads did not finish')

        # Figures: the first ok after the last failure marks the recovery.
        after = [o for o in results if o[0] > fault_at]
        fails = [o for o in results if o[2] != 'ok']
        last_fail = max(o[1] for o in fails)
        first_ok = min(o[1] for o in after if o[2] == 'ok' and o[0] > last_fail)
        max_fail_ms = max((o[1] - o[0]) * 1000 for o in fails)
        summary('SENTINEL %s: failed=%d of %d, recovered after %.1f s '
                '(2 announce threads of <= %d/s, 2 workers, down-after-milliseconds 1000; '
                'slowest failure %.0f ms; reasons %s)'
                % (name, len(fails), len(results), first_ok - fault_at, LOAD_RATE, max_fail_ms,
                   sorted(set(o[3].decode(errors='replace') for o in fails))))
        self.assertEqual([o for o in results if o[2] in ('invalid', 'unanswered')], [],
                         'every request must get a 200 with bencode')
        for o in fails:
            self.assertIn(o[3], STORAGE_REASONS, 'failures must say the storage failed: %r' % (o,))
            self.assertLess(o[1] - o[0], 3.0 * SLOW, 'a failure took long (a hang?): %r' % (o,))
        self.assertGreater(len(fails), 0, 'the fault cost nothing? (did it happen?)')
        return fault_at

    def check_follows(self, t, master_pid, workers, old, new):
        """No restart, the switch logged, and a new swarm stored on the new primary and read by
        the CLI (tyto swarm: the sentinels, ROLE, then the read)."""
        self.assertTrue(t.running())
        self.assertEqual(t.proc.pid, master_pid)
        self.assertEqual(children(master_pid), workers, 'a worker was replaced')
        # The sentinels promoted the replica (and closed its clients on the way: CLIENT KILL
        # TYPE normal is part of a promotion, hence a connection opened only now).
        rep = Redis(new.path)
        try:
            self.assertEqual(rep.cmd('ROLE')[0], b'master')
            self.assertIn("is now at 127.0.0.1:%d (was 127.0.0.1:%d)" % (new.tcp_port, old.tcp_port), t.log())
            info_hash, peer = rand_hash(), Peer()
            for _ in range(4):         # both workers, whichever takes the connection
                t.announce(info_hash, peer, left=0)
            key = '%s{%s}:seeders' % (t.prefix, info_hash.hex())
            self.assertEqual(list(rep.zscores(key)), [b'127.0.0.1:%d' % peer.port])
        finally:
            rep.close()
        out = subprocess.run([tytotest.TYTO_BIN, '-c', t.config_path, 'swarm', info_hash.hex()],
                             capture_output=True, timeout=30 * SLOW, env=t.env)
        self.assertEqual(out.returncode, 0, out.stderr.decode(errors='replace'))
        self.assertIn(b'127.0.0.1:%d' % peer.port, out.stdout)
        self.wait_master_metric(t, new)

    def test_failover_under_load(self):
        """The primary dies (SIGKILL): connections close, the sentinels promote the replica. The
        sentinels ask for a password (requirepass): tyto gives redis.sentinel_password at every
        lookup, the first and the ones after the failover; a tyto with a wrong one says so in its
        log and answers a storage failure."""
        primary, replica, t, master_pid, workers = self.topology(password='sentinel pass')
        bad = Tyto(config={'redis': {'sentinels': ['127.0.0.1:%d' % s.port for s in self.sentinels],
                                     'master_name': MASTER_NAME, 'sentinel_password': 'wrong'}},
                   redis_url='redis://127.0.0.1:1')
        self.tytos.append(bad)
        bad.start(expect_status=None)
        d = bad.announce(rand_hash(), Peer(), left=1, expect_ok=False)
        self.assertIn(d.get(b'failure reason'), STORAGE_REASONS, d)
        self.assertIn('AUTH (redis.sentinel_password): WRONGPASS', bad.log())
        self.assertNotIn('wrong', bad.log().replace('WRONGPASS', ''))    # the password is never logged
        bad.stop()

        def kill():
            primary.proc.kill()        # SIGKILL, our own child
            primary.proc.wait(5)
        self.run_fault(t, kill, 'failover')
        self.check_follows(t, master_pid, workers, primary, replica)
        t.stop()

    def test_demoted_master(self):
        """The primary turns replica while tyto stays connected to it (REPLICAOF by hand, as a
        partitioned old master is turned around): writes get READONLY, the workers drop the
        connection, the sentinels still name it for a while and ROLE refuses it, until they call
        it down (a master that reports itself as a replica) and promote the replica."""
        primary, replica, t, master_pid, workers = self.topology()
        other = self.start_redis('other')
        # Sentinel judges a master reporting "slave" after down-after + 2 INFO periods (10 s
        # each by default): 1 s INFO periods for a short test (SENTINEL DEBUG, Redis 7).
        for s in self.sentinels:
            self.assertEqual(s.ask('SENTINEL', 'DEBUG', 'INFO-PERIOD', 1000), b'OK')

        def demote():
            r = Redis(primary.path)
            try:
                r.cmd('REPLICAOF', '127.0.0.1', other.tcp_port)
            finally:
                r.close()
        self.run_fault(t, demote, 'demoted master')
        log = t.log()
        self.assertIn('READONLY', log)
        self.assertIn('asking the sentinels again', log)
        self.check_follows(t, master_pid, workers, primary, replica)
        t.stop()


if __name__ == '__main__':
    tytotest.main()
