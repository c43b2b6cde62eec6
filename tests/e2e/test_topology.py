"""End-to-end test of the multi-host deployment: scripts/topology.sh starts two tyto hosts
(127.0.0.2, 127.0.0.3) sharing the test Redis behind haproxy with deploy/haproxy.cfg, the file
docker-compose.yml uses. Clients announce through haproxy from 127.0.0.10 and 127.0.0.11 (all of
127/8 is loopback on Linux); the tests check that both hosts serve, that they serve one swarm, and
that peers carry the clients' addresses, never haproxy's. The compose file and the haproxy file
are also checked by their own tools. Run by tests/run.sh, or alone:
/usr/bin/python3 tests/e2e/test_topology.py"""

import http.client
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tytotest as tt                       # noqa: E402
from tytotest import Peer, rand_hash        # noqa: E402

SCRIPT = os.path.join(tt.ROOT, 'scripts', 'topology.sh')
HAPROXY_CFG = os.path.join(tt.ROOT, 'deploy', 'haproxy.cfg')
HAPROXY = os.environ.get('HAPROXY', '/usr/sbin/haproxy')
CLIENT_A = '127.0.0.10'
CLIENT_B = '127.0.0.11'
PROXY = '127.0.0.1'                         # haproxy's source address towards the tyto hosts


def split_addr(text):
    host, _, port = text.rpartition(':')
    return host, int(port)


def peers_of(reply):
    out = tt.parse_peers4(reply.get(b'peers', b''))
    if b'peers6' in reply:
        out += tt.parse_peers6(reply[b'peers6'])
    return out


class Topology(unittest.TestCase):
    """One topology for every case (start-up costs a few seconds)."""

    @classmethod
    def setUpClass(cls):
        if not os.access(HAPROXY, os.X_OK):
            raise unittest.SkipTest('no haproxy at %s' % HAPROXY)
        cls.dir = tt.make_tmpdir('topology')
        cls.prefix = 'topo%s:' % os.urandom(4).hex()
        cls.env = dict(os.environ)
        cls.env.update({
            'TYTO_BIN': tt.TYTO_BIN,
            'TYTO_TOPOLOGY_DIR': cls.dir,
            'TYTO_TOPOLOGY_REDIS': tt.redis_socket(),
            'TYTO_TOPOLOGY_PREFIX': cls.prefix,
            'TYTO_TOPOLOGY_WORKERS': '2',
        })
        r = subprocess.run([SCRIPT, 'start'], env=cls.env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60 * tt.SLOW)
        out = r.stdout.decode(errors='replace')
        if r.returncode != 0:
            cls.stop_topology()
            raise AssertionError('topology.sh start failed (%d):\n%s\n%s'
                                 % (r.returncode, out, cls.logs()))
        cls.vars = dict(re.findall(r"^(\w+)='([^']*)'$", out, re.M))
        cls.front = split_addr(cls.vars['TYTO_FRONT'])
        cls.stats = split_addr(cls.vars['TYTO_STATS'])
        cls.hosts = [split_addr(cls.vars['TYTO_HOST_1']), split_addr(cls.vars['TYTO_HOST_2'])]
        # Each host's operator routes (/metrics) on its own admin listener.
        cls.admins = {cls.hosts[0]: split_addr(cls.vars['TYTO_ADMIN_1']),
                      cls.hosts[1]: split_addr(cls.vars['TYTO_ADMIN_2'])}
        cls.redis = tt.Redis(tt.redis_socket())

    @classmethod
    def stop_topology(cls):
        subprocess.run([SCRIPT, 'stop'], env=cls.env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60 * tt.SLOW)

    @classmethod
    def tearDownClass(cls):
        cls.redis.close()
        cls.stop_topology()
        text = cls.logs()
        for mark in tt.SANITIZER_MARKS:
            if mark in text:
                raise AssertionError('sanitizer report in a tyto log:\n%s' % text[-6000:])

    @classmethod
    def logs(cls):
        out = []
        for name in ('tyto1.log', 'tyto1.out', 'tyto2.log', 'tyto2.out', 'haproxy.log'):
            try:
                with open(os.path.join(cls.dir, name), errors='replace') as f:
                    out.append('----- %s -----\n%s' % (name, f.read()[-3000:]))
            except OSError:
                pass
        return '\n'.join(out)

    # -- UDP: connect to one host, announce to the other ----------------------------------------

    def udp(self, addr, pkt, source):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((source, 0))
            s.settimeout(3 * tt.SLOW)
            s.sendto(pkt, addr)
            return s.recv(65536)

    def test_udp_connect_to_one_host_announce_to_another(self):
        a, b = self.hosts
        reply = self.udp(a, struct.pack('>QII', 0x41727101980, 0, 1), CLIENT_A)
        action, _, cid = struct.unpack('>IIQ', reply)
        self.assertEqual(action, 0)
        ih = rand_hash()
        pkt = struct.pack('>QII20s20sQQQIIIiH', cid, 1, 2, ih, os.urandom(20), 0, 10, 0, 2, 0, 0, -1, 6001)
        reply = self.udp(b, pkt, CLIENT_A)          # another host, another source port
        self.assertEqual(struct.unpack('>I', reply[:4])[0], 1, reply)
        # the id is bound to CLIENT_A: from CLIENT_B the other host refuses it
        reply = self.udp(b, pkt, CLIENT_B)
        self.assertEqual(reply[8:], b'invalid connection id')
        # and the UDP peer, with the client's address, is in the swarm HTTP clients see
        status, body = self.get(self.front, tt.announce_path(ih, rand_hash(), 6002, left=10), CLIENT_B)
        self.assertEqual(status, 200)
        self.assertEqual(peers_of(tt.bdecode(body)), [(CLIENT_A, 6001)])

    # -- helpers -----------------------------------------------------------------------------

    def get(self, addr, path, source, headers=None):
        conn = http.client.HTTPConnection(addr[0], addr[1], timeout=10 * tt.SLOW,
                                          source_address=(source, 0))
        try:
            conn.request('GET', path, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def announce(self, addr, source, info_hash, peer, left=1, headers=None):
        path = tt.announce_path(info_hash, peer.peer_id, peer.port, left=left, numwant=50)
        status, body = self.get(addr, path, source, headers)
        self.assertEqual(status, 200, body[:300])
        d = tt.bdecode(body)
        self.assertNotIn(b'failure reason', d, d)
        return d

    def announce_count(self, host):
        self.assertEqual(self.get(host, '/metrics', '127.0.0.1')[0], 404, 'no /metrics on the tracker port')
        status, body = self.get(self.admins[host], '/metrics', '127.0.0.1')
        self.assertEqual(status, 200)
        m = re.search(rb'^tyto_requests_total\{route="announce"\} (\d+)$', body, re.M)
        self.assertIsNotNone(m, 'no announce counter in /metrics of %s:%d' % host)
        return int(m.group(1))

    def members(self, info_hash):
        key = '%s{%s}:' % (self.prefix, info_hash.hex())
        out = {}
        for kind in ('seeders', 'leechers'):
            out.update(self.redis.zscores(key + kind))
        return {m.decode() for m in out}

    # -- cases -------------------------------------------------------------------------------

    def test_topology_haproxy_sees_both_hosts_up(self):
        status, body = self.get(self.stats, '/stats;csv', '127.0.0.1')
        self.assertEqual(status, 200)
        up = [line for line in body.decode().splitlines()
              if line.startswith('tyto,') and ',BACKEND,' not in line and ',UP,' in line]
        self.assertEqual(len(up), 2, body.decode())

    def test_topology_both_hosts_serve_requests(self):
        before = [self.announce_count(h) for h in self.hosts]
        ih = rand_hash()
        for i in range(8):
            self.announce(self.front, (CLIENT_A, CLIENT_B)[i % 2], ih, Peer())
        after = [self.announce_count(h) for h in self.hosts]
        for h, b, a in zip(self.hosts, before, after):
            self.assertGreater(a, b, 'host %s:%d served no announce through haproxy' % h)
        self.assertEqual(sum(after) - sum(before), 8)

    def test_topology_hosts_share_one_swarm(self):
        ih = rand_hash()
        a, b = Peer(), Peer()
        # Straight to each host (not through haproxy): A announces on host 1 only...
        self.announce(self.hosts[0], CLIENT_A, ih, a)
        # ...and host 2 returns it to B.
        d = self.announce(self.hosts[1], CLIENT_B, ih, b)
        self.assertIn((CLIENT_A, a.port), peers_of(d))
        self.assertEqual(d[b'incomplete'], 2)
        d = self.announce(self.hosts[0], CLIENT_A, ih, a)
        self.assertEqual(peers_of(d), [(CLIENT_B, b.port)])

    def test_topology_peers_carry_client_addresses(self):
        ih = rand_hash()
        a, b, c = Peer(), Peer(), Peer()
        # Enough announces that both hosts take some (roundrobin).
        self.announce(self.front, CLIENT_A, ih, a)
        self.announce(self.front, CLIENT_B, ih, b)
        self.announce(self.front, CLIENT_A, ih, a)
        d = self.announce(self.front, CLIENT_B, ih, c)
        got = sorted(peers_of(d))
        self.assertNotIn(PROXY, {ip for ip, _ in got},
                         'tyto recorded haproxy\'s address, not the clients\' (X-Forwarded-For unused)')
        self.assertEqual(got, sorted([(CLIENT_A, a.port), (CLIENT_B, b.port)]))
        self.assertEqual(self.members(ih), {'%s:%d' % (CLIENT_A, a.port), '%s:%d' % (CLIENT_B, b.port),
                                            '%s:%d' % (CLIENT_B, c.port)})

    def test_topology_client_cannot_spoof_its_address(self):
        ih = rand_hash()
        a, b = Peer(), Peer()
        spoof = {'X-Forwarded-For': '6.6.6.6', 'X-Real-IP': '6.6.6.7'}
        # Through haproxy: the client's own headers are dropped, haproxy's is believed.
        self.announce(self.front, CLIENT_A, ih, a, headers=spoof)
        # Straight to a host: the client is not a trusted proxy, its headers are ignored.
        self.announce(self.hosts[1], CLIENT_B, ih, b, headers=spoof)
        members = self.members(ih)
        self.assertFalse([m for m in members if m.startswith('6.6.6.')], members)
        self.assertIn('%s:%d' % (CLIENT_B, b.port), members)
        self.assertIn('%s:%d' % (CLIENT_A, a.port), members,
                      'announce through haproxy not recorded under the client address')


class DeployFiles(unittest.TestCase):
    """The files docker-compose and haproxy read, checked by those tools (no Docker engine)."""

    def test_deploy_haproxy_cfg_valid_in_both_forms(self):
        if not os.access(HAPROXY, os.X_OK):
            self.skipTest('no haproxy at %s' % HAPROXY)
        clean = {k: v for k, v in os.environ.items() if not k.startswith('TYTO_')}
        loopback = dict(clean, TYTO_BACKEND_1='127.0.0.2:7000', TYTO_BACKEND_2='127.0.0.3:7000',
                        TYTO_FRONT_BIND='127.0.0.1:7001', TYTO_STATS_BIND='127.0.0.1:7002')
        for name, env in (('compose', clean), ('loopback', loopback)):
            r = subprocess.run([HAPROXY, '-c', '-f', HAPROXY_CFG], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=30)
            self.assertEqual(r.returncode, 0, '%s form: %s' % (name, r.stdout.decode(errors='replace')))

    def test_deploy_docker_compose_config_valid(self):
        exe = shutil.which('docker-compose')
        if exe is None:
            self.skipTest('docker-compose is not installed')
        r = subprocess.run([exe, '-f', 'docker-compose.yml', 'config', '-q'], cwd=tt.ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout.decode(errors='replace'))


if __name__ == '__main__':
    tt.main()
