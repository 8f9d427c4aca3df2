"""Online values in Redis: a hash per (view, entity key) holding the event time and the values.

Newer-wins runs as a small Lua script, so the compare and the write are one atomic step on the
server even with many writers (a materialization and pushes from a stream).

>>> store = RedisOnlineStore("redis://127.0.0.1:6379/0")  # doctest: +SKIP
"""

from __future__ import annotations

import redis

from loopml.errors import Unavailable
from loopml.features.online import OnlineStore

# KEYS = the hashes; ARGV = (event_ts, created_ts, payload) per key. Stores each unless the stored
# event is newer and returns how many it stored. Timestamps are microseconds < 2**53, so Lua's
# doubles compare them exactly. One call per chunk of keys keeps a bulk write to few round trips.
_NEWER_WINS = """
local stored = 0
for i = 1, #KEYS do
  local j = (i - 1) * 3
  local nts, ncts = tonumber(ARGV[j + 1]), tonumber(ARGV[j + 2])
  local cur = redis.call('HMGET', KEYS[i], 'ts', 'cts')
  local ts, cts = tonumber(cur[1]), tonumber(cur[2])
  if not ts or nts > ts or (nts == ts and ncts >= cts) then
    redis.call('HSET', KEYS[i], 'ts', ARGV[j + 1], 'cts', ARGV[j + 2], 'v', ARGV[j + 3])
    stored = stored + 1
  end
end
return stored
"""
_CHUNK = 1000  # keys per script call

_PREFIX = "loopml:fv:"
_META = "loopml:features:meta"


class RedisOnlineStore(OnlineStore):
    """Online values in the Redis server at ``url`` (``redis://host:port/db``)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._client = redis.Redis.from_url(url)
        self._script = self._client.register_script(_NEWER_WINS)

    def _key(self, view_name: str, key: str) -> str:
        return f"{_PREFIX}{view_name}:{key}"

    def _unavailable(self, exc: Exception) -> Unavailable:
        return Unavailable(
            f"the Redis online store at {self._url} is unreachable ({exc}); start it or fix the URL",
            details={"field": "online_store", "url": self._url},
        )

    def _write(self, view_name: str, items: list[tuple[str, int, int, str]]) -> int:
        try:
            pipe = self._client.pipeline(transaction=False)
            for start in range(0, len(items), _CHUNK):
                chunk = items[start : start + _CHUNK]
                keys = [self._key(view_name, key) for key, _, _, _ in chunk]
                args = [
                    value
                    for _, event_ts, created_ts, payload in chunk
                    for value in (event_ts, created_ts, payload)
                ]
                self._script(keys=keys, args=args, client=pipe)
            return sum(int(x) for x in pipe.execute())
        except redis.ConnectionError as exc:
            raise self._unavailable(exc) from exc

    def _read(self, view_name: str, keys: list[str]) -> list[tuple[int, str] | None]:
        try:
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.hmget(self._key(view_name, key), "ts", "v")
            replies = pipe.execute()
        except redis.ConnectionError as exc:
            raise self._unavailable(exc) from exc
        return [None if ts is None else (int(ts), value.decode()) for ts, value in replies]

    def delete(self, view_name: str) -> None:
        pattern = f"{_PREFIX}{view_name}:*"
        batch: list[bytes] = []
        for key in self._client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                self._client.delete(*batch)
                batch = []
        if batch:
            self._client.delete(*batch)

    def get_meta(self, name: str) -> str | None:
        value = self._client.hget(_META, name)
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    def set_meta(self, name: str, value: str) -> None:
        self._client.hset(_META, name, value)

    def close(self) -> None:
        self._client.close()
