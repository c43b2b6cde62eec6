"""Peer expiry runs on Redis's clock, not each host's (issue 9). Two tytos share one Redis and one
key prefix; one runs under libfaketime (Debian package faketime) with its clock an hour ahead,
the other with the real clock. Before the fix the skewed one wrote scores and reaped
(ZREMRANGEBYSCORE -inf now) by its own clock, so one announce through it deleted every peer the
other host had written (peer_ttl_s 3000 < 3600 s of skew), and its scrape window hid them.

Run alone: TYTO_BIN=build/tyto /usr/bin/python3 tests/e2e/test_clock.py"""

import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tytotest                                                      # noqa: E402
from tytotest import Peer, Tyto, rand_hash, wait_for  # noqa: E402

LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1'
SKEW_S = 3600
PEER_TTL_S = 3000


class ClockTest(unittest.TestCase):

    def setUp(self):
        self.tytos = []
        self.redis = tytotest.redis_client()

    def tearDown(self):
        self.redis.close()
        for t in self.tytos:
            t.kill()

    def redis_now(self):
        sec, usec = self.redis.cmd('TIME')
        return int(sec) + int(usec) / 1e6

    def test_skewed_host_keeps_redis_time(self):
        if not os.path.exists(LIBFAKETIME):
            self.skipTest('%s missing: apt-get install faketime' % LIBFAKETIME)
        fake = {'LD_PRELOAD': LIBFAKETIME, 'FAKETIME': '+%d' % SKEW_S, 'FAKETIME_NO_CACHE': '1',
                # an ASan build wants its runtime first in the library list; libfaketime is
                # preloaded before it (harmless for other builds)
                'ASAN_OPTIONS': ':'.join(filter(None, [os.environ.get('ASAN_OPTIONS'),
                                                       'verify_asan_link_order=0']))}
        # libfaketime does move this host's clock for a child: check, or the test proves nothing.
        env = dict(os.environ, **fake)
        skewed_now = int(subprocess.check_output(['date', '+%s'], env=env))
        self.assertGreater(skewed_now - time.time(), SKEW_S - 60, 'libfaketime had no effect')

        cfg = {'announce': {'peer_ttl_s': PEER_TTL_S, 'numwant_default': 8}}
        normal = Tyto(config=cfg)
        self.tytos.append(normal)
        normal.start()
        skewed = Tyto(config=dict(cfg, redis={'prefix': normal.prefix}), env=fake)
        self.tytos.append(skewed)
        skewed.start()
        prefix = normal.prefix

        ih = rand_hash()
        leechers = '%s{%s}:leechers' % (prefix, ih.hex())
        p1, p2, p3 = Peer(port=7001), Peer(port=7002), Peer(port=7003)
        normal.announce(ih, p1, left=1)
        t0 = self.redis_now()
        d = skewed.announce(ih, p2, left=1)
        t1 = self.redis_now()
        self.assertEqual(d[b'incomplete'], 2, 'the skewed host reaped the other host\'s peer: %r' % d)
        self.assertIn(('127.0.0.1', 7001), tytotest.parse_peers4(d.get(b'peers', b'')))
        scores = self.redis.zscores(leechers)
        self.assertEqual(len(scores), 2, scores)
        # Both scores are Redis's time + peer_ttl_s (whole seconds, taken between t0 and t1;
        # a second of slack for the rounding and the TIME round trip).
        for member, score in scores.items():
            self.assertGreaterEqual(score, int(t0) - 1 + PEER_TTL_S, (member, score, t0))
            self.assertLessEqual(score, t1 + 1 + PEER_TTL_S, (member, score, t1))

        # Its scrape window is Redis's time too: both leechers count.
        f = skewed.scrape([ih])[b'files'][ih]
        self.assertEqual(f[b'incomplete'], 2, f)
        # And the normal host still sees them after the skewed host's reap.
        self.assertEqual(normal.announce(ih, p3, left=1)[b'incomplete'], 3)

        # The skewed host says loudly that its clock is off; the normal one does not.
        wait_for(lambda: "clock is" in skewed.log(), 5, 'the clock warning')
        self.assertRegex(skewed.log(), r"warn: redis .*this host's clock is 3[56]\d\d\.\d s ahead of Redis's")
        self.assertNotIn("this host's clock is", normal.log())
        skewed.stop()
        normal.stop()


if __name__ == '__main__':
    tytotest.main()
