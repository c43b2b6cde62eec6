"""Real BitTorrent swarms through tyto's UDP tracker (BEP 15): Debian's python3-libtorrent, one
seeder and two leechers on 127.0.0.1 with DHT, LSD, UPnP, NAT-PMP and peer exchange off (the
session set-up of tests/e2e/test_libtorrent.py), so that the peers can only meet through the
tracker. First with only a udp:// tracker URL, over IPv4 and over IPv6; then a mixed swarm where the seeder and one leecher
use udp:// and the other leecher http:// on the same tyto, which must meet. Run by tests/run.sh
under /usr/bin/python3."""

import hashlib
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tytotest as tt           # noqa: E402
import test_libtorrent as tl    # noqa: E402

lt = tl.lt


class LibtorrentUdpTests(tl.LibtorrentClients, unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tyto = tt.Tyto(config={'workers': 2, 'udp': {'secret': 'lt-e2e'},
                                   'announce': {'interval_s': 60, 'min_interval_s': 30,
                                                'numwant_default': 50, 'numwant_max': 200}}, udp=True)
        try:
            cls.tyto.start()
        except BaseException:
            cls.tyto.kill()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.tyto.stop()
        finally:
            cls.tyto.kill()

    TMP_PREFIX = 'ltu'

    def udp_url(self):
        return 'udp://127.0.0.1:%d/announce' % self.tyto.udp_port

    def http_url(self):
        return 'http://127.0.0.1:%d/announce' % self.tyto.port

    def make_torrent(self, urls):
        """-> ({url: torrent_info with only that tracker}, seed_dir, digest): one info dict, so
        one info hash, whatever the tracker."""
        seed_dir = os.path.join(self.dir, 'seed')
        os.mkdir(seed_dir)
        path = os.path.join(seed_dir, 'payload.bin')
        data = os.urandom(tl.FILE_SIZE)
        with open(path, 'wb') as f:
            f.write(data)
        infos = {}
        for url in urls:
            fs = lt.file_storage()
            lt.add_files(fs, path)
            ct = lt.create_torrent(fs, tl.PIECE_SIZE, flags=lt.create_torrent.v1_only)
            ct.add_tracker(url)
            ct.set_creator('tyto e2e')
            lt.set_piece_hashes(ct, seed_dir)
            infos[url] = lt.torrent_info(lt.bencode(ct.generate()))
        hashes = {str(ti.info_hashes().v1) for ti in infos.values()}
        self.assertEqual(len(hashes), 1, 'one swarm whatever the tracker URL')
        return infos, seed_dir, hashlib.sha256(data).hexdigest()

    def swarm(self, seeder_url, leecher_urls):
        infos, seed_dir, digest = self.make_torrent(sorted({seeder_url, *leecher_urls}))
        ti = infos[seeder_url]
        info_hash = bytes.fromhex(str(ti.info_hashes().v1))
        seeder = tl.Client('seeder', ti, seed_dir, seed=True)
        self.clients.append(seeder)
        self.wait('seeder announced to tyto', lambda: seeder.tracker_replies > 0, 20)
        self.assertEqual(self.tyto.scrape([info_hash])[b'files'][info_hash][b'complete'], 1)
        leechers = []
        for i, url in enumerate(leecher_urls):
            d = os.path.join(self.dir, 'leech%d' % i)
            os.mkdir(d)
            c = tl.Client('leecher%d' % i, infos[url], d, seed=False)
            self.clients.append(c)
            leechers.append((c, d))
        self.wait('both leechers finished downloading', lambda: all(c.status().is_seeding for c, _ in leechers),
                  tl.DOWNLOAD_TIMEOUT)
        for c, d in leechers:
            with open(os.path.join(d, 'payload.bin'), 'rb') as f:
                self.assertEqual(hashlib.sha256(f.read()).hexdigest(), digest, '%s downloaded other bytes' % c.name)
        last = {}

        def counted():
            last.update(self.tyto.scrape([info_hash])[b'files'][info_hash])
            return last.get(b'complete') == 3 and last.get(b'incomplete') == 0
        self.wait('tyto counts 3 seeders (last scrape %r)' % last, counted, 20)
        self.assertEqual(last.get(b'downloaded'), 2)
        for c in self.clients:
            self.assertFalse(c.tracker_errors, '%s: tracker errors' % c.name)
        return leechers

    def test_udp_only_swarm(self):
        leechers = self.swarm(self.udp_url(), [self.udp_url(), self.udp_url()])
        # libtorrent's own UDP scrape
        c = leechers[0][0]
        c.handle.scrape_tracker()
        self.wait('libtorrent UDP scrape reply', lambda: c.scrapes or c.scrapes_failed, 15)
        self.assertFalse(c.scrapes_failed, 'libtorrent UDP scrape failed')
        self.assertEqual(c.scrapes[-1], (3, 0))
        m = tt.metrics_values(self.tyto)
        self.assertGreater(m['tyto_udp_requests_total{action="announce"}'], 0)

    def test_udp_only_swarm_ipv6(self):
        if not tt.ipv6_available():
            tt.skip_unsupported(self, 'no IPv6 on this machine')
        ipv4_settings = tl.session_settings

        def ipv6_settings():
            st = ipv4_settings()
            st['listen_interfaces'] = '[::1]:0'
            return st
        tl.session_settings = ipv6_settings
        try:
            url = 'udp://[::1]:%d/announce' % self.tyto.udp_port
            self.swarm(url, [url, url])
        finally:
            tl.session_settings = ipv4_settings

    def test_mixed_http_and_udp_swarm(self):
        self.swarm(self.udp_url(), [self.http_url(), self.udp_url()])


if __name__ == '__main__':
    tt.main()
