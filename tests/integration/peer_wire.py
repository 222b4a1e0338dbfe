"""The peer wire format (src/cluster/peer_transport.h, src/raft/codec.cpp) for tests that speak
to a raft port themselves, checksummed with the same libxxhash the server links, and the
cluster-secret handshake's proofs (HMAC-SHA256, as handshake_proof computes them)."""

import ctypes
import ctypes.util
import hashlib
import hmac
import struct

_xxh = ctypes.CDLL(ctypes.util.find_library("xxhash") or "libxxhash.so.0")
_xxh.XXH3_64bits.restype = ctypes.c_uint64
_xxh.XXH3_64bits.argtypes = [ctypes.c_char_p, ctypes.c_size_t]

HELLO, MESSAGE, REFUSE, CHALLENGE, PROOF = 1, 2, 3, 4, 5


def xxh3(b):
    return _xxh.XXH3_64bits(b, len(b))


def frame(kind, payload):
    return struct.pack("<IB", 1 + len(payload), kind) + payload


def hello(cluster, node, raft_addr, target=0, nonce=None, incarnation=1):
    """A HELLO frame; with a 32-byte nonce it is version 3 (the sender has a cluster secret)."""
    b = b"TKDP" + struct.pack("<BQQQ", 3 if nonce else 2, cluster, node, incarnation)
    for a in (b"127.0.0.1:1", raft_addr.encode()):
        b += struct.pack("<H", len(a)) + a
    b += struct.pack("<Q", target)
    if nonce:
        b += nonce
    return frame(HELLO, b + struct.pack("<Q", xxh3(b)))


def cluster_key(secret):
    """The HMAC key from a --cluster-secret-file's secret (its first line)."""
    return hashlib.sha256(secret.encode()).digest()


def proof(key, listener, hello_frame, listener_id, listener_nonce):
    t = b"TKDP-AUTH-1" + (b"L" if listener else b"D")
    t += hashlib.sha256(hello_frame[5:]).digest() + struct.pack("<Q", listener_id) + listener_nonce
    return hmac.new(key, t, hashlib.sha256).digest()


def proof_frame(p):
    return frame(PROOF, b"TKDA" + p)


def read_frame(sock):
    """(kind, payload) of the next frame, or None once the peer closed."""
    buf = b""
    while len(buf) < 5:
        chunk = sock.recv(5 - len(buf))
        if not chunk:
            return None
        buf += chunk
    n, kind = struct.unpack("<IB", buf)
    payload = b""
    while len(payload) < n - 1:
        chunk = sock.recv(n - 1 - len(payload))
        if not chunk:
            return None
        payload += chunk
    return kind, payload


def parse_challenge(payload):
    """(listener id, nonce, proof) of a CHALLENGE payload."""
    assert payload[:4] == b"TKDC" and len(payload) == 76
    return struct.unpack("<Q", payload[4:12])[0], payload[12:44], payload[44:76]
