"""A tiny raw Kafka wire-protocol client for the tests that real clients cannot express.

Only the handful of requests the error tests need, all in non-flexible versions (classic
request header v1, response header v0), encoded and decoded with ``struct``:

  ApiVersions v0 (and v127, which must be answered in the v0 layout), Metadata v1,
  Produce v2/v3 with a hand-built RecordBatch v2, Fetch v4, ListOffsets v1, CreateTopics v2.

CRC32C (Castagnoli) is computed in pure Python from a 256-entry table.
"""

from __future__ import annotations

import itertools
import socket
import struct
import time
from dataclasses import dataclass, field

# Kafka API keys
PRODUCE = 0
FETCH = 1
LIST_OFFSETS = 2
METADATA = 3
API_VERSIONS = 18
OFFSET_FOR_LEADER_EPOCH = 23
CREATE_TOPICS = 19
DELETE_TOPICS = 20
DESCRIBE_CLUSTER = 60

# Kafka error codes used by the tests
NONE = 0
OFFSET_OUT_OF_RANGE = 1
CORRUPT_MESSAGE = 2
UNKNOWN_TOPIC_OR_PARTITION = 3
LEADER_NOT_AVAILABLE = 5
MESSAGE_TOO_LARGE = 10
INVALID_TOPIC_EXCEPTION = 17
UNSUPPORTED_VERSION = 35
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_REPLICATION_FACTOR = 38
FENCED_LEADER_EPOCH = 74
UNKNOWN_LEADER_EPOCH = 75

# ListOffsets special timestamps
LATEST = -1
EARLIEST = -2


# --------------------------------------------------------------------------- CRC32C

def _make_crc32c_table():
    poly = 0x82F63B78  # Castagnoli, reflected
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC32C_TABLE = _make_crc32c_table()


def crc32c(data: bytes, crc: int = 0) -> int:
    """CRC-32C (Castagnoli) as used by RecordBatch v2."""
    crc ^= 0xFFFFFFFF
    table = _CRC32C_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# --------------------------------------------------------------------------- primitives

def zigzag_varint(n: int) -> bytes:
    """Signed varint/varlong (zigzag) as used inside records."""
    z = (n << 1) ^ (n >> 63)
    z &= 0xFFFFFFFFFFFFFFFF
    out = bytearray()
    while True:
        b = z & 0x7F
        z >>= 7
        if z:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def uvarint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


class Writer:
    def __init__(self):
        self.buf = bytearray()

    def i8(self, v):
        self.buf += struct.pack(">b", v)
        return self

    def i16(self, v):
        self.buf += struct.pack(">h", v)
        return self

    def i32(self, v):
        self.buf += struct.pack(">i", v)
        return self

    def i64(self, v):
        self.buf += struct.pack(">q", v)
        return self

    def boolean(self, v):
        return self.i8(1 if v else 0)

    def string(self, s):
        """Nullable classic string (int16 length, -1 = null)."""
        if s is None:
            return self.i16(-1)
        b = s.encode() if isinstance(s, str) else bytes(s)
        self.i16(len(b))
        self.buf += b
        return self

    def compact_string(self, s):
        b = s.encode()
        self.buf += uvarint(len(b) + 1) + b
        return self

    def bytes_(self, b):
        """Nullable classic bytes (int32 length, -1 = null)."""
        if b is None:
            return self.i32(-1)
        self.i32(len(b))
        self.buf += b
        return self

    def array(self, items, fn):
        """Nullable classic array (int32 count, -1 = null); fn(writer, item) writes one item."""
        if items is None:
            return self.i32(-1)
        items = list(items)
        self.i32(len(items))
        for it in items:
            fn(self, it)
        return self

    def raw(self, b):
        self.buf += b
        return self

    def done(self) -> bytes:
        return bytes(self.buf)


class Reader:
    def __init__(self, data: bytes, pos: int = 0):
        self.data = data
        self.pos = pos

    def _take(self, fmt, size):
        if self.pos + size > len(self.data):
            raise ValueError(f"response truncated at byte {self.pos} (need {size}, have {len(self.data) - self.pos})")
        (v,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return v

    def i8(self):
        return self._take(">b", 1)

    def i16(self):
        return self._take(">h", 2)

    def i32(self):
        return self._take(">i", 4)

    def u32(self):
        return self._take(">I", 4)

    def i64(self):
        return self._take(">q", 8)

    def boolean(self):
        return self.i8() != 0

    def raw(self, n):
        if self.pos + n > len(self.data):
            raise ValueError(f"response truncated at byte {self.pos} (need {n}, have {len(self.data) - self.pos})")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def string(self):
        n = self.i16()
        return None if n < 0 else self.raw(n).decode()

    def bytes_(self):
        n = self.i32()
        return None if n < 0 else self.raw(n)

    def array(self, fn):
        n = self.i32()
        if n < 0:
            return None
        return [fn(self) for _ in range(n)]

    def varint(self):
        shift = 0
        z = 0
        while True:
            b = self.i8() & 0xFF
            z |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
        return (z >> 1) ^ -(z & 1)

    def remaining(self):
        return len(self.data) - self.pos


# --------------------------------------------------------------------------- record batches

@dataclass
class Record:
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list = field(default_factory=list)


def _encode_record(offset_delta, ts_delta, key, value, headers):
    body = bytearray()
    body.append(0)  # attributes
    body += zigzag_varint(ts_delta)
    body += zigzag_varint(offset_delta)
    if key is None:
        body += zigzag_varint(-1)
    else:
        body += zigzag_varint(len(key)) + key
    if value is None:
        body += zigzag_varint(-1)
    else:
        body += zigzag_varint(len(value)) + value
    body += zigzag_varint(len(headers))
    for hk, hv in headers:
        hk = hk.encode() if isinstance(hk, str) else hk
        body += zigzag_varint(len(hk)) + hk
        if hv is None:
            body += zigzag_varint(-1)
        else:
            body += zigzag_varint(len(hv)) + hv
    return zigzag_varint(len(body)) + bytes(body)


def record_batch(records, base_timestamp=None, base_offset=0, timestamp_step=0, corrupt_crc=False):
    """An uncompressed RecordBatch v2 (magic 2), no producer id, CreateTime timestamps.

    records: iterable of (key, value) or (key, value, headers) with bytes/None and
    headers a list of (str, bytes) pairs.
    """
    records = [r if len(r) == 3 else (r[0], r[1], []) for r in records]
    assert records, "a batch needs at least one record"
    if base_timestamp is None:
        base_timestamp = int(time.time() * 1000)
    encoded = b"".join(
        _encode_record(i, i * timestamp_step, k, v, h) for i, (k, v, h) in enumerate(records))
    after_crc = (Writer()
                 .i16(0)                                  # attributes: no compression, CreateTime
                 .i32(len(records) - 1)                   # lastOffsetDelta
                 .i64(base_timestamp)                     # baseTimestamp
                 .i64(base_timestamp + (len(records) - 1) * timestamp_step)  # maxTimestamp
                 .i64(-1)                                 # producerId
                 .i16(-1)                                 # producerEpoch
                 .i32(-1)                                 # baseSequence
                 .i32(len(records))
                 .raw(encoded)
                 .done())
    crc = crc32c(after_crc)
    if corrupt_crc:
        crc ^= 0x5A5A5A5A
    tail = Writer().i32(0).i8(2).raw(struct.pack(">I", crc)).raw(after_crc).done()  # leader epoch, magic, crc
    return Writer().i64(base_offset).i32(len(tail)).raw(tail).done()


def decode_batches(data: bytes, verify_crc=True):
    """Decodes uncompressed RecordBatch v2 data (as served by Fetch) into Records.

    A trailing partial batch (allowed in Fetch responses) is ignored. Raises ValueError on a CRC
    mismatch, a magic other than 2, or a compressed batch.
    """
    out = []
    pos = 0
    while len(data) - pos >= 12:
        r = Reader(data, pos)
        base_offset = r.i64()
        batch_len = r.i32()
        end = r.pos + batch_len
        if end > len(data):
            break  # partial batch at the end of a fetch response
        r.i32()  # partition leader epoch
        magic = r.i8()
        if magic != 2:
            raise ValueError(f"batch at offset {base_offset} has magic {magic}, expected 2")
        crc = r.u32()
        if verify_crc and crc32c(data[r.pos:end]) != crc:
            raise ValueError(f"batch at offset {base_offset}: CRC32C mismatch")
        attributes = r.i16()
        if attributes & 0x7:
            raise ValueError(f"batch at offset {base_offset} is compressed (attributes {attributes}); "
                             "kwire decodes only uncompressed batches")
        r.i32()  # last offset delta
        base_ts = r.i64()
        r.i64()  # max timestamp
        r.i64(), r.i16(), r.i32()  # producer id, epoch, base sequence
        count = r.i32()
        for _ in range(count):
            length = r.varint()
            rec_end = r.pos + length
            r.i8()  # attributes
            ts_delta = r.varint()
            off_delta = r.varint()
            kl = r.varint()
            key = None if kl < 0 else r.raw(kl)
            vl = r.varint()
            value = None if vl < 0 else r.raw(vl)
            headers = []
            for _ in range(r.varint()):
                hkl = r.varint()
                hk = r.raw(hkl).decode()
                hvl = r.varint()
                hv = None if hvl < 0 else r.raw(hvl)
                headers.append((hk, hv))
            if r.pos != rec_end:
                raise ValueError(f"record length mismatch in batch at offset {base_offset}")
            out.append(Record(base_offset + off_delta, base_ts + ts_delta, key, value, headers))
        if r.pos != end:
            raise ValueError(f"batch at offset {base_offset}: {end - r.pos} bytes left after {count} records")
        pos = end
    return out


def batch_spans(data: bytes):
    """[(base offset, last offset, raw batch bytes)] of the whole batches in `data`."""
    out = []
    pos = 0
    while len(data) - pos >= 12:
        base, length = struct.unpack_from(">qi", data, pos)
        end = pos + 12 + length
        if end > len(data):
            break
        (last_delta,) = struct.unpack_from(">i", data, pos + 23)
        out.append((base, base + last_delta, data[pos:end]))
        pos = end
    return out


# --------------------------------------------------------------------------- connection

class ConnectionClosed(Exception):
    pass


_correlation_ids = itertools.count(1)


def build_frame(api_key, version, body: bytes, correlation_id=1, client_id="sluice-kwire", flexible=False) -> bytes:
    """A length-prefixed request: header v1 (v2 with empty tagged fields if flexible) + body."""
    w = Writer().i16(api_key).i16(version).i32(correlation_id).string(client_id)
    if flexible:
        w.raw(b"\x00")
    payload = w.raw(body).done()
    return struct.pack(">i", len(payload)) + payload


class Connection:
    """One TCP connection speaking length-prefixed Kafka frames."""

    def __init__(self, host, port, timeout=15.0, client_id="sluice-kwire"):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client_id = client_id

    @classmethod
    def to(cls, bootstrap, **kw):
        host, port = bootstrap.rsplit(":", 1)
        return cls(host, int(port), **kw)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data: bytes):
        self.sock.sendall(data)

    def _recv_exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionClosed(f"connection closed by the broker after {len(buf)}/{n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_frame(self) -> bytes:
        (n,) = struct.unpack(">i", self._recv_exact(4))
        if n < 0:
            raise ValueError(f"negative response length {n}")
        return self._recv_exact(n)

    def frame(self, api_key, version, body: bytes, correlation_id=None, flexible=False) -> tuple[int, bytes]:
        cid = next(_correlation_ids) if correlation_id is None else correlation_id
        return cid, build_frame(api_key, version, body, cid, self.client_id, flexible)

    def request(self, api_key, version, body: bytes, flexible=False) -> Reader:
        """Sends one request and returns a Reader positioned after the response correlation id."""
        cid, data = self.frame(api_key, version, body, flexible=flexible)
        self.send_raw(data)
        resp = self.recv_frame()
        r = Reader(resp)
        got = r.i32()
        if got != cid:
            raise ValueError(f"correlation id mismatch: sent {cid}, got {got}")
        return r

    def wait_closed_by_peer(self, timeout=10.0) -> bool:
        """True once the broker has closed this connection (EOF or reset); False if it is still
        open after `timeout` seconds. Any bytes the broker sends first are read and dropped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError, ConnectionAbortedError):
                return True
            if not chunk:
                return True


# --------------------------------------------------------------------------- requests

def api_versions(conn: Connection, version=0):
    """ApiVersions in the v0 response layout. Returns (error_code, {api_key: (min, max)})."""
    if version == 0:
        r = conn.request(API_VERSIONS, 0, b"")
    else:
        # Versions >= 3 are flexible: request header v2 and a compact body. The broker must not
        # need the body to answer an unsupported version; the answer is in the v0 layout.
        body = Writer().compact_string("sluice-kwire").compact_string("0.1").raw(b"\x00").done()
        r = conn.request(API_VERSIONS, version, body, flexible=True)
    error = r.i16()
    apis = r.array(lambda r: (r.i16(), r.i16(), r.i16()))
    return error, {k: (lo, hi) for k, lo, hi in (apis or [])}


def metadata_v1(conn: Connection, topics=None):
    """Metadata v1. topics=None asks for all topics. Returns a dict."""
    body = Writer().array(topics, lambda w, t: w.string(t)).done()
    r = conn.request(METADATA, 1, body)
    brokers = r.array(lambda r: {"node_id": r.i32(), "host": r.string(), "port": r.i32(), "rack": r.string()})
    controller_id = r.i32()

    def partition(r):
        return {"error_code": r.i16(), "partition": r.i32(), "leader": r.i32(),
                "replicas": r.array(lambda r: r.i32()), "isr": r.array(lambda r: r.i32())}

    def topic(r):
        return {"error_code": r.i16(), "name": r.string(), "is_internal": r.boolean(),
                "partitions": r.array(partition)}

    topics_out = r.array(topic)
    return {"brokers": brokers, "controller_id": controller_id,
            "topics": {t["name"]: t for t in topics_out}}


def metadata_v8(conn: Connection, topics=None):
    """Metadata v8 (non-flexible, with leader epochs). topics=None asks for all topics."""
    body = (Writer().array(topics, lambda w, t: w.string(t))
            .boolean(False).boolean(False).boolean(False).done())
    r = conn.request(METADATA, 8, body)
    r.i32()  # throttle_time_ms
    brokers = r.array(lambda r: {"node_id": r.i32(), "host": r.string(), "port": r.i32(), "rack": r.string()})
    cluster_id = r.string()
    controller_id = r.i32()

    def partition(r):
        return {"error_code": r.i16(), "partition": r.i32(), "leader": r.i32(), "leader_epoch": r.i32(),
                "replicas": r.array(lambda r: r.i32()), "isr": r.array(lambda r: r.i32()),
                "offline": r.array(lambda r: r.i32())}

    def topic(r):
        t = {"error_code": r.i16(), "name": r.string(), "is_internal": r.boolean(),
             "partitions": r.array(partition)}
        r.i32()  # topic_authorized_operations
        return t

    topics_out = r.array(topic)
    return {"brokers": brokers, "cluster_id": cluster_id, "controller_id": controller_id,
            "topics": {t["name"]: t for t in topics_out}}


@dataclass
class ProducePartitionResult:
    topic: str
    partition: int
    error_code: int
    base_offset: int


def produce_body(topic, partition, batch: bytes, version=3, acks=-1, timeout_ms=15000) -> bytes:
    """The body of a Produce v2 or v3 of one batch to one partition."""
    assert version in (2, 3)
    w = Writer()
    if version >= 3:
        w.string(None)  # transactional id
    w.i16(acks).i32(timeout_ms)
    w.array([topic], lambda w, t: w.string(t).array(
        [partition], lambda w, p: w.i32(p).bytes_(batch)))
    return w.done()


def read_produce_response(r: Reader):
    """[ProducePartitionResult] from a Produce v2/v3 response after its correlation id."""
    out = []
    for name, parts in r.array(lambda r: (r.string(), r.array(
            lambda r: (r.i32(), r.i16(), r.i64(), r.i64())))):
        for (p, err, base, _log_append_time) in parts:
            out.append(ProducePartitionResult(name, p, err, base))
    r.i32()  # throttle time
    return out


def produce(conn: Connection, topic, partition, batch: bytes, version=3, acks=-1, timeout_ms=15000):
    """Produce v2 or v3 of one batch to one partition. Returns [ProducePartitionResult]."""
    r = conn.request(PRODUCE, version, produce_body(topic, partition, batch, version, acks, timeout_ms))
    return read_produce_response(r)


@dataclass
class FetchPartitionResult:
    topic: str
    partition: int
    error_code: int
    high_watermark: int
    last_stable_offset: int
    records: bytes | None


def fetch_v4(conn: Connection, topic, partition, offset, max_bytes=1 << 20, max_wait_ms=0, min_bytes=1,
             partition_max_bytes=None, replica_id=-1):
    """Fetch v4 of one partition from `offset` (replica_id -2: Kafka's debugging fetch, which
    any replica answers up to its log end). Returns FetchPartitionResult."""
    part_max = max_bytes if partition_max_bytes is None else partition_max_bytes
    body = (Writer().i32(replica_id).i32(max_wait_ms).i32(min_bytes).i32(max_bytes).i8(0)
            .array([topic], lambda w, t: w.string(t).array(
                [partition], lambda w, p: w.i32(p).i64(offset).i32(part_max)))
            .done())
    r = conn.request(FETCH, 4, body)
    r.i32()  # throttle time
    results = []
    for name, parts in r.array(lambda r: (r.string(), r.array(lambda r: (
            r.i32(), r.i16(), r.i64(), r.i64(),
            r.array(lambda r: (r.i64(), r.i64())),
            r.bytes_())))):
        for (p, err, hw, lso, _aborted, records) in parts:
            results.append(FetchPartitionResult(name, p, err, hw, lso, records))
    assert len(results) == 1, f"expected one partition in the fetch response, got {results}"
    return results[0]


def fetch_old(conn: Connection, topic, partition, offset, version, max_bytes=1 << 20):
    """Fetch v0..v3 (older than any broker of Kafka 4 serves). Returns [(topic, partition,
    error_code, high_watermark, records)]."""
    assert 0 <= version <= 3
    w = Writer().i32(-1).i32(0).i32(1)
    if version >= 3:
        w.i32(max_bytes)
    w.array([topic], lambda w, t: w.string(t).array(
        [partition], lambda w, p: w.i32(p).i64(offset).i32(max_bytes)))
    r = conn.request(FETCH, version, w.done())
    if version >= 1:
        r.i32()  # throttle time
    out = []
    for name, parts in r.array(lambda r: (r.string(), r.array(
            lambda r: (r.i32(), r.i16(), r.i64(), r.bytes_())))):
        for (p, err, hw, records) in parts:
            out.append((name, p, err, hw, records))
    assert r.remaining() == 0, f"{r.remaining()} bytes left after a Fetch v{version} answer"
    return out


def list_offsets_v1(conn: Connection, topic, partition, timestamp):
    """ListOffsets v1 for one partition. Returns (error_code, timestamp, offset)."""
    body = (Writer().i32(-1)
            .array([topic], lambda w, t: w.string(t).array(
                [partition], lambda w, p: w.i32(p).i64(timestamp)))
            .done())
    r = conn.request(LIST_OFFSETS, 1, body)
    results = []
    for _name, parts in r.array(lambda r: (r.string(), r.array(
            lambda r: (r.i32(), r.i16(), r.i64(), r.i64())))):
        for (_p, err, ts, off) in parts:
            results.append((err, ts, off))
    assert len(results) == 1, f"expected one partition in the list offsets response, got {results}"
    return results[0]


def offset_for_leader_epoch_v3(conn: Connection, topic, partition, leader_epoch, current_leader_epoch=-1,
                               replica_id=-1):
    """OffsetForLeaderEpoch v3 for one partition. Returns (error_code, leader_epoch, end_offset)."""
    body = (Writer().i32(replica_id)
            .array([topic], lambda w, t: w.string(t).array(
                [partition], lambda w, p: w.i32(p).i32(current_leader_epoch).i32(leader_epoch)))
            .done())
    r = conn.request(OFFSET_FOR_LEADER_EPOCH, 3, body)
    r.i32()  # throttle_time_ms
    results = []
    for _name, parts in r.array(lambda r: (r.string(), r.array(
            lambda r: (r.i16(), r.i32(), r.i32(), r.i64())))):
        for (err, _p, epoch, end) in parts:
            results.append((err, epoch, end))
    assert len(results) == 1, f"expected one partition in the answer, got {results}"
    return results[0]


def create_topics_v2(conn: Connection, topics, timeout_ms=15000, validate_only=False):
    """CreateTopics v2. topics: [(name, num_partitions, replication_factor, {config: value})].
    Returns [(name, error_code, error_message)] in response order."""
    def topic(w, t):
        name, parts, rf = t[0], t[1], t[2]
        configs = t[3] if len(t) > 3 else {}
        (w.string(name).i32(parts).i16(rf)
         .array([], lambda w, a: None)
         .array(configs.items(), lambda w, kv: w.string(kv[0]).string(kv[1])))

    body = Writer().array(topics, topic).i32(timeout_ms).boolean(validate_only).done()
    r = conn.request(CREATE_TOPICS, 2, body)
    r.i32()  # throttle time
    res = r.array(lambda r: (r.string(), r.i16(), r.string()))
    return [(name, err, msg) for name, err, msg in res]
