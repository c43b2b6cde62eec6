"""A real BitTorrent swarm through tyto: one seeder and two leechers, each a libtorrent session
(Debian's python3-libtorrent) on 127.0.0.1 with DHT, LSD, UPnP, NAT-PMP and peer exchange off, so
the peers can only find each other through the tracker. Both leechers must finish with the
original bytes, the tracker must then count them (scrape, ours and libtorrent's), and removing the
torrents (event=stopped) must empty the swarm. Run by tests/run.sh under /usr/bin/python3."""

import hashlib
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tytotest as tt           # noqa: E402

try:
    import libtorrent as lt
except ImportError as e:        # a failure, not a skip: the package is a test dependency
    lt = None
    LT_ERROR = str(e)

FILE_SIZE = 4 * 1024 * 1024
PIECE_SIZE = 64 * 1024
DOWNLOAD_TIMEOUT = 90.0


def session_settings():
    return {
        'listen_interfaces': '127.0.0.1:0',
        'outgoing_interfaces': '',
        'enable_dht': False,
        'enable_lsd': False,
        'enable_upnp': False,
        'enable_natpmp': False,
        # All three clients share 127.0.0.1; without this libtorrent keeps one peer per IP.
        'allow_multiple_connections_per_ip': True,
        # libtorrent refuses any localhost tracker URL whose path is not /announce, which blocks
        # its scrapes of /scrape.
        'ssrf_mitigation': False,
        'announce_to_all_tiers': True,
        'announce_to_all_trackers': True,
        # TCP only: uTP on loopback adds nothing here and slows the start.
        'enable_outgoing_utp': False,
        'enable_incoming_utp': False,
        'min_reconnect_time': 1,
        'peer_connect_timeout': 3,
        'tracker_completion_timeout': 10,
        'tracker_receive_timeout': 5,
        'stop_tracker_timeout': 3,
        'user_agent': 'tyto-e2e/libtorrent-%s' % lt.__version__,
        'alert_mask': (lt.alert.category_t.error_notification | lt.alert.category_t.status_notification
                       | lt.alert.category_t.tracker_notification | lt.alert.category_t.peer_notification),
    }


def new_session():
    # flags=0: no default plugins (so no ut_pex, ut_metadata, smart_ban) and no default features
    # (DHT, LSD, UPnP, NAT-PMP are not started).
    return lt.session(session_settings(), 0)


class Client:
    """One libtorrent session with one torrent, and the alerts seen so far."""

    seq = 0

    def __init__(self, name, ti, save_path, seed):
        self.name = name
        self.ses = new_session()
        atp = lt.add_torrent_params()
        atp.ti = ti
        atp.save_path = save_path
        flags = lt.torrent_flags.default_flags
        flags &= ~lt.torrent_flags.auto_managed
        flags &= ~lt.torrent_flags.paused
        flags |= lt.torrent_flags.disable_pex | lt.torrent_flags.disable_dht | lt.torrent_flags.disable_lsd
        if seed:
            flags |= lt.torrent_flags.seed_mode
        atp.flags = flags
        self.handle = self.ses.add_torrent(atp)
        self.events = []          # (time, text) of interesting alerts
        self.tracker_replies = 0
        self.tracker_errors = []
        self.scrapes = []
        self.scrapes_failed = []

    def poll(self):
        for a in self.ses.pop_alerts():
            if isinstance(a, lt.tracker_reply_alert):
                self.tracker_replies += 1
            elif isinstance(a, lt.tracker_error_alert):
                self.tracker_errors.append(a.message())
            elif isinstance(a, lt.scrape_reply_alert):
                self.scrapes.append((a.complete, a.incomplete))
            elif isinstance(a, lt.scrape_failed_alert):
                self.scrapes_failed.append('%s (%s)' % (a.error_message(), a.error.message()))
            if isinstance(a, (lt.tracker_reply_alert, lt.tracker_error_alert, lt.tracker_warning_alert,
                              lt.scrape_reply_alert, lt.scrape_failed_alert, lt.peer_connect_alert,
                              lt.torrent_finished_alert, lt.torrent_error_alert, lt.listen_failed_alert,
                              lt.peer_error_alert)):
                Client.seq += 1
                self.events.append((time.monotonic(), Client.seq, '%s: %s' % (self.name, a.message())))

    def status(self):
        return self.handle.status()

    def describe(self):
        s = self.status()
        return ('%s: state %s progress %.3f peers %d seeds %d listen %s tracker replies %d errors %r'
                % (self.name, s.state, s.progress, s.num_peers, s.num_seeds,
                   self.ses.listen_port(), self.tracker_replies, self.tracker_errors[-3:]))


class LibtorrentClients:
    """Mixed into a TestCase whose tests drive libtorrent Clients: self.dir (a temporary
    directory named after TMP_PREFIX), self.clients (paused after each test) and wait()."""

    TMP_PREFIX = 'lt'

    def setUp(self):
        if lt is None:
            self.fail('cannot import libtorrent under %s: %s' % (sys.executable, LT_ERROR))
        self.dir = tt.make_tmpdir(self.TMP_PREFIX)
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            try:
                c.ses.pause()
            except Exception:
                pass
        self.clients = []

    def wait(self, what, cond, timeout):
        deadline = time.monotonic() + timeout * tt.SLOW
        while time.monotonic() < deadline:
            for c in self.clients:
                c.poll()
            if cond():
                return
            time.sleep(0.1)
        self.fail('%s: not within %.0f s\n%s\nalerts:\n%s' % (
            what, timeout * tt.SLOW, '\n'.join(c.describe() for c in self.clients),
            '\n'.join('%.2f %s' % (e[0], e[2]) for e in sorted(e for c in self.clients for e in c.events)[-60:])))


class LibtorrentSwarm(LibtorrentClients):
    """Mixed into a ServerTestCase (BACKEND redis or memory)."""

    CONFIG = {'announce': {'interval_s': 60, 'min_interval_s': 30, 'numwant_default': 50,
                           'numwant_max': 200}}

    def make_torrent(self):
        seed_dir = os.path.join(self.dir, 'seed')
        os.mkdir(seed_dir)
        path = os.path.join(seed_dir, 'payload.bin')
        data = os.urandom(FILE_SIZE)
        with open(path, 'wb') as f:
            f.write(data)
        fs = lt.file_storage()
        lt.add_files(fs, path)
        ct = lt.create_torrent(fs, PIECE_SIZE, flags=lt.create_torrent.v1_only)
        ct.add_tracker('http://127.0.0.1:%d/announce' % self.tyto.port)
        ct.set_creator('tyto e2e')
        lt.set_piece_hashes(ct, seed_dir)
        blob = lt.bencode(ct.generate())
        with open(os.path.join(self.dir, 'payload.torrent'), 'wb') as f:
            f.write(blob)
        ti = lt.torrent_info(blob)
        return ti, seed_dir, hashlib.sha256(data).hexdigest()

    def scrape_counts(self, info_hash):
        d = self.tyto.scrape([info_hash])
        return d[b'files'][info_hash]

    def test_two_leechers_download_through_tyto(self):
        ti, seed_dir, digest = self.make_torrent()
        info_hash = bytes.fromhex(str(ti.info_hashes().v1))

        seeder = Client('seeder', ti, seed_dir, seed=True)
        self.clients.append(seeder)
        self.wait('seeder announced to tyto', lambda: seeder.tracker_replies > 0, 20)
        self.assertEqual(self.scrape_counts(info_hash)[b'complete'], 1, 'seeder not counted')

        leechers = []
        for i in range(2):
            d = os.path.join(self.dir, 'leech%d' % i)
            os.mkdir(d)
            c = Client('leecher%d' % i, ti, d, seed=False)
            self.clients.append(c)
            leechers.append((c, d))

        def all_done():
            return all(c.status().is_seeding for c, _ in leechers)
        self.wait('both leechers finished downloading', all_done, DOWNLOAD_TIMEOUT)

        for c, d in leechers:
            with open(os.path.join(d, 'payload.bin'), 'rb') as f:
                got = hashlib.sha256(f.read()).hexdigest()
            self.assertEqual(got, digest, '%s downloaded different bytes' % c.name)

        # Each finished leecher announces event=completed (left=0): tyto must count 3 seeders and
        # exactly 2 downloads (the seeder never leeched; a repeated completed must not count).
        last = {}

        def counted():
            last.update(self.scrape_counts(info_hash))
            return last.get(b'complete') == 3 and last.get(b'incomplete') == 0
        self.wait('tyto counts 3 seeders, 0 leechers (last scrape %r)' % last, counted, 20)
        self.assertEqual(last.get(b'downloaded'), 2, 'downloads counted (last scrape %r)' % last)

        # libtorrent's own scrape (it derives /scrape from /announce).
        leechers[0][0].handle.scrape_tracker()
        self.wait('libtorrent scrape reply', lambda: leechers[0][0].scrapes or leechers[0][0].scrapes_failed, 15)
        self.assertFalse(leechers[0][0].scrapes_failed, 'libtorrent scrape failed')
        self.assertEqual(leechers[0][0].scrapes[-1], (3, 0), 'libtorrent scrape (complete, incomplete)')

        # Removing the torrents sends event=stopped: the swarm empties.
        for c in self.clients:
            c.ses.remove_torrent(c.handle)
        gone = {}

        def emptied():
            gone.update(self.scrape_counts(info_hash))
            return gone.get(b'complete') == 0 and gone.get(b'incomplete') == 0
        self.wait('swarm empty after the clients removed the torrent (event=stopped) (last %r)' % gone,
                  emptied, 20)
        # The count outlives the peers (swarm.downloaded_ttl_s 0: for ever), and stays exact.
        self.assertEqual(gone.get(b'downloaded'), 2, 'downloads after the swarm emptied (%r)' % gone)


class LibtorrentRedisTests(LibtorrentSwarm, tt.ServerTestCase):
    BACKEND = 'redis'
    CONFIG = LibtorrentSwarm.CONFIG


class LibtorrentMemoryTests(LibtorrentSwarm, tt.ServerTestCase):
    BACKEND = 'memory'
    CONFIG = LibtorrentSwarm.CONFIG


if __name__ == '__main__':
    tt.main()
