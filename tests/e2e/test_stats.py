"""End-to-end tests of the swarm statistics (README "Statistics"): known traffic through two real
tyto hosts on one real Redis, and every figure checked exactly in /stats, /stats?info_hash=,
/metrics, `tyto swarm`, `tyto swarms --anomalies`, the full scrape and the status page (rendered
in headless Chromium, with a screenshot kept as an artifact); each anomaly driven and flagged;
the aggregator's failover when the host holding its lease is killed.
Run by tests/run.sh, or alone: /usr/bin/python3 tests/e2e/test_stats.py"""

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tytotest as tt                       # noqa: E402
from tytotest import Peer, rand_hash        # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ARTIFACTS = os.environ.get('TYTO_TEST_ARTIFACTS', os.path.join(ROOT, 'build', 'test-artifacts'))

STATS = {'pass_s': 1, 'lease_ms': 1500, 'full_scrape': True, 'full_scrape_interval_s': 3600,
         'fast_announces': 3, 'peers_per_address': 6, 'stuck_leechers': 2, 'stuck_age_s': 600,
         'phantom_uploads': 2, 'spike_min': 50, 'spike_factor': 10}


def peer(client, n, port):
    """A peer whose peer_id is client's Azureus-style prefix (8 bytes) and 12 digits."""
    p = Peer(port)
    p.peer_id = (client + '%012d' % n).encode()
    return p


class TwoHosts(unittest.TestCase):
    """Two tyto hosts (two masters, two workers each) sharing one Redis and one key prefix."""

    def setUp(self):
        self.prefix = 't%s:' % secrets.token_hex(4)
        self.redis = tt.redis_client()
        self.hosts = [self.start_host(), self.start_host(full_scrape=False)]

    def tearDown(self):
        for t in self.hosts:
            t.kill()
        self.redis.close()

    def start_host(self, full_scrape=True, **over):
        stats = dict(STATS, full_scrape=full_scrape, **over)
        t = tt.Tyto(config={'workers': 2, 'redis': {'prefix': self.prefix}, 'stats': stats})
        t.start()
        return t

    def tracker(self, t):
        return tt.stats(t)['tracker']

    def swarm(self, t, h):
        r = t.admin_get('/stats?info_hash=' + h.hex())
        self.assertEqual(r.status, 200, r.body)
        return json.loads(r.body)

    def wait_pass(self, after=None):
        """Waits until host 0 shows a snapshot written after `after` (unix s; default a second
        from now: the workers write their announce counts into the stats hashes each second)."""
        after = time.time() + 1 if after is None else after
        return tt.wait_for(lambda: (lambda s: s if s.get('snapshot') and s['time'] > after else None)(
            self.tracker(self.hosts[0])), 15, 'an aggregator pass after %d' % after)

    def key(self, h, kind):
        return '%s{%s}:%s' % (self.prefix, h.hex(), kind)

    def tyto_cli(self, *args):
        r = subprocess.run(tt.tyto_command(self.hosts[0].dir, ['-c', self.hosts[0].config_path] + list(args)),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30, env=tt.clean_env())
        return r.returncode, r.stdout.decode()

    # -- the figures ---------------------------------------------------------------------------

    def drive_known_traffic(self):
        a, b = self.hosts
        ha, hb = rand_hash(), rand_hash()
        # Swarm A: 2 seeders (qBittorrent), 3 leechers (Transmission), one leecher on IPv6 if
        # the machine has ::1, announced through both hosts; one leecher completes.
        a.announce(ha, peer('-qB4650-', 1, 7001), left=0)
        b.announce(ha, peer('-qB4650-', 2, 7002), left=0)
        for i in range(3):
            (a if i % 2 else b).announce(ha, peer('-TR4040-', 10 + i, 7010 + i), left=100, event='started')
        v6 = a.ipv6
        if v6:
            a.announce(ha, peer('-LT2080-', 20, 7020), left=100, v6=True)
        done = peer('-TR4040-', 30, 7030)
        a.announce(ha, done, left=100, event='started')
        b.announce(ha, done, left=0, event='completed')
        # Swarm B: one seeder, announced once.
        b.announce(hb, peer('-DE2110-', 40, 7040), left=0)
        return ha, hb, v6

    def test_figures_exact_on_every_host(self):
        if time.time() % 60 > 45:      # all the traffic in one minute (the per-minute figure)
            time.sleep(60.5 - time.time() % 60)
        t0 = time.time()
        ha, hb, v6 = self.drive_known_traffic()
        snap = self.wait_pass()
        leechers_a = 3 + (1 if v6 else 0)
        for t in self.hosts:
            s = self.tracker(t)
            self.assertEqual((s['swarms'], s['seeders'], s['leechers']), (2, 4, leechers_a), s)
            self.assertEqual(s['peers'], 4 + leechers_a)
            self.assertEqual(s['ipv4'], {'seeders': 4, 'leechers': 3})
            self.assertEqual(s['ipv6'], {'seeders': 0, 'leechers': 1 if v6 else 0})
            self.assertEqual(s['downloaded'], 1)
            self.assertEqual(s['holder'], snap['holder'])
        # One swarm's figures, from either host.
        for t in self.hosts:
            sw = self.swarm(t, ha)
            self.assertEqual((sw['seeders'], sw['leechers'], sw['downloaded']), (3, leechers_a, 1), sw)
            self.assertEqual(sw['announces_last_interval'], 7 + (1 if v6 else 0))
            want_clients = {'qBittorrent': 2, 'Transmission': 4}    # peers, not announces
            if v6:
                want_clients['libtorrent (Rasterbar)'] = 1
            self.assertEqual(sw['clients'], want_clients)
            self.assertEqual((sw['seeders4'], sw['leechers4'], sw['seeders6'], sw['leechers6']),
                             (3, 3, 0, 1 if v6 else 0))
            self.assertTrue(t0 - 1 <= sw['first_seen'] <= time.time() + 1, sw)
            # Every test peer is 127.0.0.1: swarm A's six IPv4 peers reach peers_per_address (6).
            self.assertEqual(sw['anomalies'], {'crowded_address': 'address 127.0.0.1 holds 6 peers'})
        m = tt.metrics_values(self.hosts[1])
        self.assertEqual(m['tyto_swarms'], 2)
        self.assertEqual(m['tyto_peers{family="ipv4",role="seeder"}'], 4)
        self.assertEqual(m['tyto_peers{family="ipv4",role="leecher"}'], 3)
        self.assertEqual(m['tyto_peers{family="ipv6",role="leecher"}'], 1 if v6 else 0)
        self.assertEqual(m['tyto_anomalies{kind="crowded_address"}'], 1)
        self.assertEqual(m['tyto_anomalies{kind="fast_announce"}'], 0)
        self.assertEqual(m['tyto_downloads'], 1)
        # tyto swarm shows the same.
        rc, out = self.tyto_cli('swarm', ha.hex())
        self.assertEqual(rc, 0, out)
        self.assertIn('ipv4        3 seeders, 3 leechers', out)
        self.assertIn('Transmission (4)', out)
        self.assertIn('%d in the last interval' % (7 + (1 if v6 else 0)), out)
        # Announces in the last full minute reach the snapshot once that minute is over.
        minute = int(t0 // 60)
        if int(time.time() // 60) == minute:
            s = tt.wait_for(lambda: (lambda s: s if s['time'] // 60 >= minute + 1 else None)(
                self.tracker(self.hosts[0])), 75, 'a pass in the next minute')
            if s['time'] // 60 == minute + 1:      # (not when a slow run skipped the minute)
                self.assertEqual(s['announces_per_s'], round((8 + (1 if v6 else 0)) / 60, 2), s)

    def test_scrapes_and_completed_counted_per_minute(self):
        h = rand_hash()
        p = peer('-qB4650-', 1, 7100)
        self.hosts[0].announce(h, p, left=5, event='started')
        for i in range(7):
            self.hosts[i % 2].scrape([h])
        self.hosts[1].announce(h, p, left=0, event='completed')
        m = int(time.time() // 60)
        key = '%s{stats}:counts:%d' % (self.prefix, m)
        def counted():
            v = self.redis.cmd('HMGET', key, 'scrapes', 'completed')
            return v if v[0] == b'7' and v[1] == b'1' else None
        tt.wait_for(counted, 5, 'the workers to flush 7 scrapes and 1 completed into %s' % key)
        self.assertGreater(self.redis.cmd('TTL', key), 3000)

    # -- anomalies -----------------------------------------------------------------------------

    def flagged(self, h, kind):
        def check():
            sw = self.swarm(self.hosts[1], h)
            return sw if kind in sw['anomalies'] else None
        return tt.wait_for(check, 10, '%s flagged on %s' % (kind, h.hex()))

    def test_fast_announces_flagged(self):
        h, p = rand_hash(), peer('-qB4650-', 1, 7200)
        self.hosts[0].announce(h, p, left=5, event='started')
        for i in range(3):          # no event, right after: sooner than min interval (617 s)
            self.hosts[i % 2].announce(h, p, left=5)
        sw = self.flagged(h, 'fast_announce')
        self.assertEqual(sw['fast_announces'], 3)
        self.assertEqual(sw['anomalies']['fast_announce'],
                         '3 announces sooner than min interval in the last interval')
        # Events are exempt: a client may send started/completed/stopped whenever they happen.
        h2, q = rand_hash(), peer('-qB4650-', 2, 7201)
        self.hosts[0].announce(h2, q, left=5, event='started')
        self.hosts[1].announce(h2, q, left=0, event='completed')
        self.wait_pass()
        self.assertEqual(self.swarm(self.hosts[0], h2)['fast_announces'], 0)

    def test_crowded_address_flagged_and_listed(self):
        h = rand_hash()
        for i in range(6):
            self.hosts[i % 2].announce(h, peer('-TR4040-', i, 7300 + i), left=5)
        sw = self.flagged(h, 'crowded_address')
        self.assertEqual(sw['max_per_address'], 6)
        self.assertEqual(sw['anomalies']['crowded_address'], 'address 127.0.0.1 holds 6 peers')
        tt.wait_for(lambda: tt.metrics_values(self.hosts[0])['tyto_anomalies{kind="crowded_address"}'] >= 1, 10,
                    'tyto_anomalies{kind="crowded_address"}')
        rc, out = self.tyto_cli('swarms', '--anomalies')
        self.assertEqual(rc, 0, out)
        self.assertRegex(out, h.hex() + r'\s+0\s+6\s+crowded_address')
        self.assertIn('address 127.0.0.1 holds 6 peers', out)

    def test_stuck_leechers_flagged(self):
        h = rand_hash()
        for i in range(2):
            self.hosts[i].announce(h, peer('-TR4040-', i, 7400 + i), left=5)
        self.wait_pass()
        self.assertNotIn('stuck_leechers', self.swarm(self.hosts[0], h)['anomalies'])
        # The swarm was first seen an hour ago (stats.stuck_age_s is 600 here): still no download.
        self.redis.cmd('HSET', self.key(h, 'stats'), 'first', str(int(time.time()) - 3600))
        sw = self.flagged(h, 'stuck_leechers')
        self.assertEqual(sw['anomalies']['stuck_leechers'], '2 leechers, no completed download in 60 min')
        # One completes: the flag goes at the next pass.
        self.hosts[0].announce(h, peer('-TR4040-', 0, 7400), left=0, event='completed')
        tt.wait_for(lambda: 'stuck_leechers' not in self.swarm(self.hosts[0], h)['anomalies'], 10,
                    'the flag to clear')

    def test_phantom_upload_flagged(self):
        h, s = rand_hash(), peer('-qB4650-', 1, 7500)
        for i, up in enumerate((1 << 20, 2 << 20, 3 << 20)):   # upload grows, nobody to upload to
            self.hosts[i % 2].announce(h, s, left=0, uploaded=up)
        sw = self.flagged(h, 'phantom_upload')
        self.assertEqual(sw['phantom_uploads'], 2)
        # With a leecher in the swarm, upload is expected.
        h2, s2 = rand_hash(), peer('-qB4650-', 2, 7501)
        self.hosts[0].announce(h2, peer('-TR4040-', 3, 7502), left=9)
        for up in (1 << 20, 2 << 20, 3 << 20):
            self.hosts[1].announce(h2, s2, left=0, uploaded=up)
        self.wait_pass()
        self.assertEqual(self.swarm(self.hosts[0], h2)['phantom_uploads'], 0)

    def test_announce_spike_flagged(self):
        # The history below is written relative to this minute: keep the aggregator's pass in it
        # (a slow run near the end of a minute would judge the next one).
        if time.time() % 60 > 30:
            time.sleep(60.5 - time.time() % 60)
        h = rand_hash()
        self.hosts[0].announce(h, peer('-qB4650-', 1, 7600), left=5)
        # An hour of history, 2 announces a minute, written as the workers would have counted
        # it; then the last full minute had 100 (the spike: > 10 x 2, >= spike_min 50).
        now_m = int(time.time() // 60)
        fields = []
        for age in range(2, 40):
            fields += ['l:%d' % (now_m - age), '2']
        fields += ['l:%d' % (now_m - 1), '100', 'first', str(int(time.time()) - 3600)]
        self.redis.cmd('HSET', self.key(h, 'stats'), *fields)
        sw = self.flagged(h, 'announce_spike')
        self.assertIn('announces in the last minute', sw['anomalies']['announce_spike'])

    # -- full scrape ---------------------------------------------------------------------------

    def test_full_scrape_from_the_snapshot(self):
        ha, hb, v6 = self.drive_known_traffic()
        self.wait_pass(time.time() + 1)
        d = self.hosts[0].announce_raw('/scrape')
        files = d[b'files']
        self.assertEqual(sorted(files), sorted([ha, hb]))
        self.assertEqual(files[ha], {b'complete': 3, b'incomplete': 4 if v6 else 3, b'downloaded': 1})
        self.assertEqual(files[hb], {b'complete': 1, b'incomplete': 0, b'downloaded': 0})
        # Rate-limited per address, on every host together; off on a host that did not turn it on.
        self.hosts.append(self.start_host())
        again = self.hosts[2].announce_raw('/scrape')
        self.assertIn(b'one every 3600 s per address', again[b'failure reason'])
        off = self.hosts[1].announce_raw('/scrape')
        self.assertEqual(off[b'failure reason'], b'full scrape is not allowed; give info_hash')

    # -- the aggregator's failover --------------------------------------------------------------

    def test_aggregator_failover(self):
        h = rand_hash()
        self.hosts[0].announce(h, peer('-qB4650-', 1, 7700), left=0)
        first = self.wait_pass()
        holder = first['holder']
        pid = int(holder.rsplit(':', 1)[1])
        victim = next(t for t in self.hosts if pid in tt.children(t.proc.pid))
        survivor = self.hosts[1 - self.hosts.index(victim)]
        killed_at = time.monotonic()
        # The whole host dies at once (power cut): its workers first, so none drains and hands
        # the lease on (that is the graceful path, SIGTERM).
        for w in tt.children(victim.proc.pid):
            os.kill(w, signal.SIGKILL)
        victim.kill()
        self.hosts.remove(victim)
        self.hosts.insert(0, survivor)
        # Another worker (of the survivor) takes the lease within lease_ms (1.5 s) and writes.
        after = time.time()
        snap = tt.wait_for(lambda: (lambda s: s if s.get('snapshot') and s['holder'] != holder and
                                    s['time'] > after else None)(self.tracker(survivor)), 10, 'a new aggregator')
        took = time.monotonic() - killed_at
        tt.summary('STATS failover: lease %d ms, new aggregator %s wrote a snapshot %.2f s after the kill'
                   % (STATS['lease_ms'], snap['holder'], took))
        self.assertLess(took, (STATS['lease_ms'] / 1000 + 2 * STATS['pass_s'] + 1) * tt.SLOW)
        self.assertEqual((snap['swarms'], snap['seeders']), (1, 1))

    # -- the status page -------------------------------------------------------------------------

    def test_status_page_in_chromium(self):
        ha, hb, v6 = self.drive_known_traffic()
        snap = self.wait_pass(time.time() + 1)
        # A day of history as the aggregator would have written it, one point a minute (the
        # charts need two points; a test cannot wait a day).
        now_m = int(time.time() // 60) * 60
        args = []
        for i in range(1, 120):
            t = now_m - 60 * i
            args += [str(t), '%d %d %d 2 %d %d 5' % (t, 2 + i % 3, 8 + i % 5, 6 + i % 5, 60 + i)]
        self.redis.cmd('ZADD', '%s{stats}:minutes' % self.prefix, *args)
        r = self.hosts[1].admin_get('/')
        self.assertEqual(r.status, 200)
        self.assertTrue(r.header('Content-Type').startswith('text/html'), r.headers)
        html = r.body.decode()
        self.assertNotIn('<script', html.lower())
        self.assertIn(ha.hex(), html)                       # among the busiest
        self.assertGreaterEqual(html.count('<svg'), 3, 'the day charts')
        chromium = shutil.which('chromium')
        if not chromium:
            self.fail('chromium is not installed (scripts/install-deps.sh --test installs it)')
        os.makedirs(ARTIFACTS, exist_ok=True)
        url = 'http://127.0.0.1:%d/' % self.hosts[1].admin_port
        base = [chromium, '--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run',
                '--user-data-dir=' + tt.make_tmpdir('chromium')]
        dom = subprocess.run(base + ['--dump-dom', url], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             timeout=60 * tt.SLOW).stdout.decode()
        text = re.sub(r'<[^>]+>', ' ', dom)
        # The numbers shown are the ones /stats gives.
        s = self.tracker(self.hosts[1])
        for label, value in (('swarms', s['swarms']), ('peers', s['peers']), ('downloaded', s['downloaded'])):
            self.assertRegex(text, r'\b%d\b' % value, '%s = %d not on the page' % (label, value))
        for width, height, name in ((390, 844, 'phone'), (1440, 900, 'wide')):
            shot = os.path.join(ARTIFACTS, 'status-page-%s.png' % name)
            if os.path.exists(shot):
                os.unlink(shot)
            subprocess.run(base + ['--screenshot=' + shot, '--window-size=%d,%d' % (width, height),
                                   '--hide-scrollbars', url], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60 * tt.SLOW)
            self.assertTrue(os.path.exists(shot) and os.path.getsize(shot) > 5000, shot)
        tt.summary('STATS status page screenshots: %s/status-page-{phone,wide}.png (snapshot by %s)'
                   % (ARTIFACTS, snap['holder']))


class RedisOutage(unittest.TestCase):
    """Redis goes away: the routes that read it answer at once with a clear error, the cached
    snapshot still answers /stats, and everything reads again once Redis is back."""

    def test_routes_fail_fast_and_recover(self):
        d = tt.make_tmpdir('stats-outage')
        sock = os.path.join(d, 'redis.sock')
        server = tt.RedisServer(sock, d).start()
        t = tt.Tyto(redis_url='unix://' + sock,
                    config={'stats': dict(STATS), 'redis': {'timeout_ms': 300 * tt.SLOW}})
        try:
            t.start()
            h = rand_hash()
            t.announce(h, peer('-qB4650-', 1, 7800), left=0)
            tt.wait_for(lambda: tt.stats(t)['tracker'].get('swarms') == 1, 10, 'a snapshot')
            server.stop()
            for path, kind in (('/stats?info_hash=' + h.hex(), 'json'), ('/', 'html')):
                started = time.monotonic()
                r = t.admin_get(path)
                took = time.monotonic() - started
                self.assertEqual(r.status, 503, (path, r.body))
                self.assertLess(took, 2 * tt.SLOW, path)
                if kind == 'json':
                    self.assertIn(json.loads(r.body)['error'], ('storage unavailable', 'storage timeout'))
                else:
                    self.assertIn(b'The statistics cannot be read', r.body)
            full = t.announce_raw('/scrape')
            self.assertIn(full[b'failure reason'], (b'storage unavailable', b'storage timeout'))
            self.assertEqual(tt.stats(t)['tracker']['swarms'], 1)     # the copy in memory
            server = tt.RedisServer(sock, d).start()
            tt.wait_for(lambda: b'failure reason' not in t.announce(h, peer('-qB4650-', 1, 7800), left=0,
                                                                    expect_ok=False), 15, 'storage back')
            tt.wait_for(lambda: t.admin_get('/stats?info_hash=' + h.hex()).status == 200, 15, 'the route back')
            tt.wait_for(lambda: b'Busiest' in t.admin_get('/').body or t.admin_get('/').status == 200, 15,
                        'the status page back')
            t.stop()
        finally:
            t.kill()
            server.stop()


if __name__ == '__main__':
    tt.main()
