"""End-to-end test of the HTTPS front: haproxy with deploy/haproxy.cfg (the file docker-compose.yml
mounts), its TLS listener turned on by TYTO_TLS_CERT with a self-signed certificate made here
with openssl, in front of a real tyto on Redis. Private trackers need it: their announce URLs carry
passkeys, which must not cross the network in clear.

Checked: an announce over HTTPS (Python's ssl, the certificate as the only CA) gets tyto's
bencoded reply; tyto stores the client's address from haproxy's X-Forwarded-For, never
haproxy's and never one the client claims; the plain listener still serves; a client that does
not trust the certificate is refused; a real BitTorrent client (libtorrent) announces to an
https:// URL and a download completes through it; and the documented certificate rotation (new
PEM, reload) serves the new certificate while a broken PEM leaves the old one serving. In private
mode (users and torrents made with the `tyto user` / `tyto torrent` CLI): a /<passkey>/announce over
HTTPS is served and credits its user, the public URL and a wrong passkey are refused, haproxy's log
holds no passkey, and libtorrent downloads a private-flag torrent from https://…/<passkey>/announce
URLs, one user per client, with the snatch counted for the leecher's user.

Clients connect from 127.0.0.10 and up (all of 127/8 is loopback on Linux), haproxy reaches tyto
from 127.0.0.1, the only address in tyto's proxy.trusted. Run by tests/run.sh, or alone:
/usr/bin/python3 tests/e2e/test_tls.py"""

import hashlib
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tytotest as tt                       # noqa: E402
from tytotest import Peer, rand_hash        # noqa: E402

try:
    import libtorrent as lt
except ImportError as e:                    # a failure of that case, not a skip: a test dependency
    lt = None
    LT_ERROR = str(e)

HAPROXY_CFG = os.path.join(tt.ROOT, 'deploy', 'haproxy.cfg')
HAPROXY = os.environ.get('HAPROXY', '/usr/sbin/haproxy')
OPENSSL = os.environ.get('OPENSSL', '/usr/bin/openssl')
CLIENT_A = '127.0.0.10'
CLIENT_B = '127.0.0.11'
PROXY = '127.0.0.1'                         # haproxy's source address towards tyto
SEEDER_ADDR = '127.0.0.20'                  # the libtorrent clients' own addresses
LEECHER_ADDR = '127.0.0.21'
FILE_SIZE = 2 * 1024 * 1024
PIECE_SIZE = 64 * 1024


def missing_tools():
    """The reason this machine cannot run these cases, or None."""
    for exe in (HAPROXY, OPENSSL):
        if not os.access(exe, os.X_OK):
            return 'no %s (apt-get install %s)' % (exe, os.path.basename(exe))
    return None


def make_cert(directory, name):
    """A self-signed certificate for localhost and 127.0.0.1 (ECDSA P-256, valid 2 days), made
    with openssl as docs/operations.md says. Returns (haproxy PEM: cert + key, the cert alone)."""
    key, crt = os.path.join(directory, name + '.key'), os.path.join(directory, name + '.crt')
    r = subprocess.run([OPENSSL, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
                        '-nodes', '-keyout', key, '-out', crt, '-days', '2', '-subj', '/CN=localhost',
                        '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    if r.returncode != 0:
        raise AssertionError('openssl req failed: %s' % r.stdout.decode(errors='replace'))
    pem = os.path.join(directory, name + '.pem')
    with open(pem, 'wb') as out:
        for part in (crt, key):
            with open(part, 'rb') as f:
                out.write(f.read())
    os.chmod(pem, 0o600)
    return pem, crt


def served_cert_der(port):
    """The certificate haproxy presents on 127.0.0.1:port (DER), without verifying it."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(('127.0.0.1', port), timeout=5 * tt.SLOW) as s:
        with ctx.wrap_socket(s, server_hostname='localhost') as t:
            return t.getpeercert(binary_form=True)


def cert_der(crt):
    with open(crt) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


class Haproxy:
    """haproxy in master-worker mode (-W, as the Docker image runs it, so that SIGUSR2 reloads)
    with deploy/haproxy.cfg, its loopback form: one backend server (the tyto under test), every
    listener on 127.0.0.1 on a free port. Our child, stopped by its pid."""

    def __init__(self, directory, backend_port, pem):
        self.dir = directory
        self.front, self.stats, self.tls = tt.free_port(), tt.free_port(), tt.free_port()
        self.env = tt.clean_env()
        self.env.update({'TYTO_BACKEND_1': '127.0.0.1:%d' % backend_port,
                         'TYTO_FRONT_BIND': '127.0.0.1:%d' % self.front,
                         'TYTO_STATS_BIND': '127.0.0.1:%d' % self.stats,
                         'TYTO_TLS_BIND': '127.0.0.1:%d' % self.tls,
                         'TYTO_TLS_CERT': pem})
        self.log_path = os.path.join(directory, 'haproxy-%d.log' % self.tls)
        log = open(self.log_path, 'ab')
        self.proc = subprocess.Popen([HAPROXY, '-W', '-db', '-f', HAPROXY_CFG], env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        try:
            tt.wait_for(self.backend_up, 15, 'haproxy to see tyto UP (log: %s)' % self.log_text()[-2000:])
        except BaseException:
            self.stop()
            raise

    def backend_up(self):
        if self.proc.poll() is not None:
            raise AssertionError('haproxy exited (%s):\n%s' % (self.proc.returncode, self.log_text()[-3000:]))
        try:
            conn = http.client.HTTPConnection('127.0.0.1', self.stats, timeout=2)
            conn.request('GET', '/stats;csv')
            text = conn.getresponse().read().decode()
            conn.close()
        except OSError:
            return False
        return any(line.startswith('tyto,tyto1,') and ',UP,' in line for line in text.splitlines())

    def reload(self):
        """The documented reload (docker compose kill -s HUP haproxy does the same to the master)."""
        self.proc.send_signal(signal.SIGUSR2)

    def log_text(self):
        try:
            with open(self.log_path, errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


class TlsCase(unittest.TestCase):
    """One tyto (private mode when PRIVATE) and one haproxy in front of it for a class's cases."""

    PRIVATE = False

    @classmethod
    def setUpClass(cls):
        cls.missing = missing_tools()
        if cls.missing:
            return
        cls.dir = tt.make_tmpdir('tls')
        cls.pem, cls.crt = make_cert(cls.dir, 'tyto')
        cls.tyto = tt.Tyto(config={'listen': {'ipv4': '127.0.0.1', 'ipv6': ''},
                                   'proxy': {'trusted': [PROXY]},
                                   'private': {'enabled': cls.PRIVATE},
                                   'announce': {'interval_s': 60, 'min_interval_s': 30,
                                                'numwant_default': 50, 'numwant_max': 200}})
        cls.haproxy = None
        try:
            cls.tyto.start()
            cls.haproxy = Haproxy(cls.dir, cls.tyto.port, cls.pem)
        except BaseException:
            cls.tyto.kill()
            if cls.haproxy is not None:
                cls.haproxy.stop()
            raise
        cls.redis = tt.redis_client()

    @classmethod
    def tearDownClass(cls):
        if cls.missing:
            return
        cls.redis.close()
        cls.haproxy.stop()
        try:
            cls.tyto.stop()
        finally:
            cls.tyto.kill()

    def setUp(self):
        if self.missing:
            tt.skip_unsupported(self, self.missing)

    # -- helpers -----------------------------------------------------------------------------

    def https(self, path, source, port=None, cafile=None, headers=None):
        """One GET over TLS, verifying the certificate (cafile: the only CA) and the name."""
        ctx = ssl.create_default_context(cafile=cafile or self.crt)
        conn = http.client.HTTPSConnection('localhost', port or self.haproxy.tls, timeout=10 * tt.SLOW,
                                           source_address=(source, 0), context=ctx)
        try:
            conn.request('GET', path, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def announce(self, source, info_hash, peer, left=1, headers=None):
        path = tt.announce_path(info_hash, peer.peer_id, peer.port, left=left, numwant=50)
        status, body = self.https(path, source, headers=headers)
        self.assertEqual(status, 200, body[:300])
        d = tt.bdecode(body)
        self.assertNotIn(b'failure reason', d, d)
        return d

    def members(self, info_hash):
        key = '%s{%s}:' % (self.tyto.prefix, info_hash.hex())
        out = set()
        for kind in ('seeders', 'leechers'):
            out.update(m.decode() for m in self.redis.zscores(key + kind))
        return out

    def cli(self, *args):
        """`tyto -c <the server's config> ARGS...` (the management CLI) -> its standard output."""
        r = subprocess.run([tt.TYTO_BIN, '-c', self.tyto.config_path] + list(args), env=tt.clean_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30 * tt.SLOW)
        self.assertEqual(r.returncode, 0, 'tyto %s: %s' % (' '.join(args), r.stderr.decode(errors='replace')))
        return r.stdout.decode()

    def libtorrent_swarm(self, seeder_url, leecher_url, private=False, approve=None):
        """A seeder (on SEEDER_ADDR) and a leecher (on LEECHER_ADDR), libtorrent sessions, each
        announcing to its own tracker URL; asserts that the leecher downloads the payload and that
        tyto counts the completion. approve(info_hash) runs before the seeder starts. Returns the
        info_hash."""
        if lt is None:
            self.fail('cannot import libtorrent under %s: %s' % (sys.executable, LT_ERROR))
        work = tt.make_tmpdir('tls-lt')
        seed_dir = os.path.join(work, 'seed')
        os.mkdir(seed_dir)
        data = os.urandom(FILE_SIZE)
        with open(os.path.join(seed_dir, 'payload.bin'), 'wb') as f:
            f.write(data)
        fs = lt.file_storage()
        lt.add_files(fs, os.path.join(seed_dir, 'payload.bin'))
        ct = lt.create_torrent(fs, PIECE_SIZE, flags=lt.create_torrent.v1_only)
        # BEP 27: a private torrent's clients use no DHT, PEX or LSD, only the tracker.
        ct.set_priv(private)
        lt.set_piece_hashes(ct, seed_dir)
        ti = lt.torrent_info(lt.bencode(ct.generate()))
        ih = bytes.fromhex(str(ti.info_hashes().v1))
        if approve:
            approve(ih)

        def session(addr):
            return lt.session({
                'listen_interfaces': '%s:0' % addr, 'outgoing_interfaces': addr,
                'enable_dht': False, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
                'enable_outgoing_utp': False, 'enable_incoming_utp': False,
                # The tracker's certificate is self-signed: libtorrent (2.0) checks HTTPS trackers'
                # certificates against the system's CAs unless told not to. A real deployment
                # has a certificate from a CA (certbot) and keeps the default, true.
                'validate_https_trackers': False,
                'ssrf_mitigation': False, 'allow_multiple_connections_per_ip': True,
                'min_reconnect_time': 1, 'peer_connect_timeout': 3, 'tracker_receive_timeout': 5,
                'stop_tracker_timeout': 3,
                'alert_mask': lt.alert.category_t.error_notification | lt.alert.category_t.tracker_notification,
            }, 0)

        def add(ses, save_path, seed, url):
            atp = lt.add_torrent_params()
            atp.ti = ti
            atp.trackers = [url]
            atp.save_path = save_path
            flags = lt.torrent_flags.default_flags & ~lt.torrent_flags.auto_managed & ~lt.torrent_flags.paused
            flags |= lt.torrent_flags.disable_pex | lt.torrent_flags.disable_dht | lt.torrent_flags.disable_lsd
            if seed:
                flags |= lt.torrent_flags.seed_mode
            atp.flags = flags
            return ses.add_torrent(atp)

        replies, errors = {}, []

        def poll(name, ses):
            for a in ses.pop_alerts():
                if isinstance(a, lt.tracker_reply_alert):
                    replies[name] = replies.get(name, 0) + 1
                elif isinstance(a, (lt.tracker_error_alert, lt.tracker_warning_alert)):
                    errors.append('%s: %s' % (name, a.message()))

        seeder_ses = session(SEEDER_ADDR)
        leecher_ses = session(LEECHER_ADDR)
        try:
            seeder = add(seeder_ses, seed_dir, True, seeder_url)

            def seeder_announced():
                poll('seeder', seeder_ses)
                return replies.get('seeder', 0) > 0
            try:
                tt.wait_for(seeder_announced, 20, 'the seeder\'s HTTPS announce')
            except AssertionError as e:
                raise AssertionError('%s; tracker errors %r' % (e, errors[-5:]))
            # Stored under the client's own address: the leecher can reach the seeder only there
            # (it listens on SEEDER_ADDR alone), so the download below depends on X-Forwarded-For.
            port = seeder_ses.listen_port()
            self.assertIn('%s:%d' % (SEEDER_ADDR, port), self.members(ih))
            leech_dir = os.path.join(work, 'leech')
            os.mkdir(leech_dir)
            leecher = add(leecher_ses, leech_dir, False, leecher_url)

            def finished():
                poll('seeder', seeder_ses)
                poll('leecher', leecher_ses)
                return leecher.status().is_seeding
            try:
                tt.wait_for(finished, 90, 'the download through the HTTPS tracker')
            except AssertionError:
                s = leecher.status()
                raise AssertionError('leecher: progress %.3f peers %d, tracker replies %r, errors %r'
                                     % (s.progress, s.num_peers, replies, errors[-5:]))
            with open(os.path.join(leech_dir, 'payload.bin'), 'rb') as f:
                self.assertEqual(hashlib.sha256(f.read()).digest(), hashlib.sha256(data).digest())
            self.assertGreater(replies.get('leecher', 0), 0, 'the leecher never heard the tracker')
            # The finished leecher announces event=completed over HTTPS: tyto counts it.
            key = '%s{%s}:info' % (self.tyto.prefix, ih.hex())

            def counted():
                poll('leecher', leecher_ses)
                return self.redis.cmd('HGET', key, 'downloaded') == b'1'
            tt.wait_for(counted, 20, 'the completed download counted by tyto')
        finally:
            for ses in (seeder_ses, leecher_ses):
                ses.pause()
        return ih


class TlsFront(TlsCase):
    """Public mode behind the TLS listener (the rotation case starts its own haproxy)."""

    # -- cases -------------------------------------------------------------------------------

    def test_tls_announce_gets_tyto_reply_with_client_addresses(self):
        ih = rand_hash()
        a, b = Peer(), Peer()
        d = self.announce(CLIENT_A, ih, a)
        # tyto's own reply (the interval this test configured), through haproxy, over TLS.
        self.assertEqual((d[b'interval'], d[b'min interval'], d[b'incomplete']), (60, 30, 1), d)
        self.assertEqual(d[b'peers'], b'')
        d = self.announce(CLIENT_B, ih, b, left=0)
        # B is a seeder: it gets A, under A's own address (X-Forwarded-For), not haproxy's.
        self.assertEqual(tt.parse_peers4(d[b'peers']), [(CLIENT_A, a.port)])
        self.assertEqual((d[b'complete'], d[b'incomplete']), (1, 1))
        self.assertEqual(self.members(ih), {'%s:%d' % (CLIENT_A, a.port), '%s:%d' % (CLIENT_B, b.port)})

    def test_tls_client_cannot_spoof_its_address(self):
        ih = rand_hash()
        a = Peer()
        self.announce(CLIENT_A, ih, a, headers={'X-Forwarded-For': '6.6.6.6', 'X-Real-IP': '6.6.6.7'})
        self.assertEqual(self.members(ih), {'%s:%d' % (CLIENT_A, a.port)})

    def test_tls_plain_listener_still_serves_the_same_swarms(self):
        ih = rand_hash()
        a, b = Peer(), Peer()
        self.announce(CLIENT_A, ih, a)
        conn = http.client.HTTPConnection('127.0.0.1', self.haproxy.front, timeout=10 * tt.SLOW,
                                          source_address=(CLIENT_B, 0))
        try:
            conn.request('GET', tt.announce_path(ih, b.peer_id, b.port, left=0))
            r = conn.getresponse()
            d = tt.bdecode(r.read())
        finally:
            conn.close()
        self.assertEqual(tt.parse_peers4(d[b'peers']), [(CLIENT_A, a.port)], d)

    def test_tls_untrusted_certificate_is_refused(self):
        other_pem, other_crt = make_cert(self.dir, 'stranger')
        with self.assertRaises(ssl.SSLCertVerificationError):
            self.https('/healthz', CLIENT_A, cafile=other_crt)
        # and with the right CA, the same request is answered (by tyto's /healthz)
        self.assertEqual(self.https('/healthz', CLIENT_A), (200, b'ok\n'))

    def test_tls_certificate_rotation_by_reload(self):
        pem = os.path.join(self.dir, 'rotated.pem')
        first_pem, first_crt = make_cert(self.dir, 'first')
        second_pem, second_crt = make_cert(self.dir, 'second')
        os.replace(first_pem, pem)
        h = Haproxy(self.dir, self.tyto.port, pem)
        try:
            self.assertEqual(served_cert_der(h.tls), cert_der(first_crt))
            # The documented rotation: the new PEM in place (rename: never half a file), reload.
            os.replace(second_pem, pem)
            h.reload()
            tt.wait_for(lambda: served_cert_der(h.tls) == cert_der(second_crt), 15,
                        'haproxy to serve the new certificate after the reload')
            self.assertEqual(self.https('/healthz', CLIENT_A, port=h.tls, cafile=second_crt)[0], 200)
            # A broken PEM (key missing): the reload fails and the running worker keeps serving
            # the previous certificate.
            with open(second_crt, 'rb') as f, open(pem + '.new', 'wb') as out:
                out.write(f.read())
            os.replace(pem + '.new', pem)
            h.reload()
            tt.wait_for(lambda: 'Loading failure' in h.log_text(), 15, 'haproxy to refuse the broken PEM')
            self.assertEqual(served_cert_der(h.tls), cert_der(second_crt))
            self.assertEqual(self.https('/healthz', CLIENT_A, port=h.tls, cafile=second_crt)[0], 200)
            self.assertIsNone(h.proc.poll(), 'haproxy exited on a reload with a broken certificate')
        finally:
            h.stop()

    def test_tls_libtorrent_downloads_through_https_tracker(self):
        url = 'https://127.0.0.1:%d/announce' % self.haproxy.tls
        self.libtorrent_swarm(url, url)


class TlsPrivate(TlsCase):
    """Private mode (passkey URLs) behind the TLS listener: what the listener is for."""

    PRIVATE = True

    def user(self, name):
        """A user made with `tyto user add`: its passkey (the output's last line)."""
        passkey = self.cli('user', 'add', name).strip().splitlines()[-1]
        self.assertRegex(passkey, r'^[0-9A-Za-z]{32}$')
        return passkey

    def show(self, name):
        return json.loads(self.cli('user', 'show', name, '--json'))

    def get_dict(self, path, source=CLIENT_A):
        status, body = self.https(path, source)
        self.assertEqual(status, 200, body[:300])
        return tt.bdecode(body)

    def test_tls_private_passkey_announce_credits_the_user(self):
        name = 'tls%s' % os.urandom(3).hex()
        passkey = self.user(name)
        ih = rand_hash()
        self.cli('torrent', 'add', ih.hex())
        a = Peer()
        d = self.get_dict(tt.announce_path(ih, a.peer_id, a.port, left=1, event='started',
                                           path='/%s/announce' % passkey))
        self.assertNotIn(b'failure reason', d, d)
        self.assertEqual(self.members(ih), {'%s:%d' % (CLIENT_A, a.port)})
        d = self.get_dict(tt.announce_path(ih, a.peer_id, a.port, left=1, uploaded=5000, downloaded=3000,
                                           path='/%s/announce' % passkey))
        self.assertNotIn(b'failure reason', d, d)
        u = self.show(name)
        self.assertEqual((u['uploaded'], u['downloaded']), (5000, 3000), u)
        # The public URL and a wrong passkey are refused over HTTPS as over HTTP.
        d = self.get_dict(tt.announce_path(ih, a.peer_id, a.port, left=1))
        self.assertEqual(d[b'failure reason'],
                         b'this tracker is private: use your personal announce URL with its passkey')
        d = self.get_dict(tt.announce_path(ih, a.peer_id, a.port, left=1, path='/%s/announce' % ('x' * 32)))
        self.assertEqual(d[b'failure reason'], b'unknown passkey')
        # haproxy logs no request (the shipped configuration), so no passkey either.
        self.assertNotIn(passkey, self.haproxy.log_text())

    def test_tls_private_libtorrent_downloads_with_passkey_urls(self):
        seeder, leecher = 'seed%s' % os.urandom(3).hex(), 'leech%s' % os.urandom(3).hex()
        base = 'https://127.0.0.1:%d/%%s/announce' % self.haproxy.tls
        ih = self.libtorrent_swarm(base % self.user(seeder), base % self.user(leecher), private=True,
                                   approve=lambda h: self.cli('torrent', 'add', h.hex()))
        u = self.show(leecher)
        self.assertEqual(u['snatches'], 1, u)
        self.assertGreaterEqual(u['downloaded'], FILE_SIZE, u)
        self.assertEqual(self.show(seeder)['snatches'], 0)
        self.assertEqual(self.redis.cmd('HGET', '%s{%s}:info' % (self.tyto.prefix, ih.hex()), 'downloaded'), b'1')


if __name__ == '__main__':
    tt.main()
