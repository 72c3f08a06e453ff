//! The Lua scripts. Each touches the keys of one hash tag only, so it runs atomically in one
//! Redis Cluster slot: the three hashes of one (app, channel), or one app's connection counts.

use redis::Script;

/// Adds `node/socket` to a channel. KEYS: sockets, users, info. ARGV: field, user id ("" for
/// none), user info. Returns {first_for_user, subscription_count, user_count}. Joining twice is
/// a no-op (restore may repeat a registration).
const JOIN: &str = r"
local first = 0
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  if ARGV[2] ~= '' then
    if redis.call('HINCRBY', KEYS[2], ARGV[2], 1) == 1 then
      first = 1
      redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])
    end
  end
end
return {first, redis.call('HLEN', KEYS[1]), redis.call('HLEN', KEYS[2])}
";

/// Removes `node/socket` from a channel. KEYS: sockets, users, info. ARGV: field. Returns
/// {found, last_for_user, subscription_count, user_count, user id or ""}. The user is read from
/// the sockets hash, so a repeated leave (two reapers, a retry) reports nothing twice.
const LEAVE: &str = r"
local user = redis.call('HGET', KEYS[1], ARGV[1])
local found = 0
local last = 0
if user then
  found = 1
  redis.call('HDEL', KEYS[1], ARGV[1])
  if user ~= '' then
    if redis.call('HINCRBY', KEYS[2], user, -1) <= 0 then
      redis.call('HDEL', KEYS[2], user)
      redis.call('HDEL', KEYS[3], user)
      last = 1
    end
  end
else
  user = ''
end
return {found, last, redis.call('HLEN', KEYS[1]), redis.call('HLEN', KEYS[2]), user}
";

/// Counts a new connection unless the app's cluster-wide total is at `max`. KEYS: the app's
/// connections hash. ARGV: node id, max (-1 for none). Returns 1 when counted, 0 when refused.
const CONNECTION_OPENED: &str = r"
local max = tonumber(ARGV[2])
if max >= 0 then
  local total = 0
  for _, count in ipairs(redis.call('HVALS', KEYS[1])) do
    total = total + tonumber(count)
  end
  if total >= max then
    return 0
  end
end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
";

/// Uncounts a connection, never below zero. KEYS: the app's connections hash. ARGV: node id.
const CONNECTION_CLOSED: &str = r"
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
";

/// Settles a pending removal: deletes it and returns 1 when it still holds the filer's token
/// (nothing came back, no later removal replaced it), else 0. KEYS: the removal. ARGV: token.
const SETTLE_REMOVAL: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// A user is online on this node. KEYS: the app's online hash, this node's user set. ARGV:
/// user id. Returns 1 when the user was online on no node before (watchers hear `online`).
/// Repeating it for one node changes nothing.
const USER_ONLINE: &str = r"
if redis.call('SADD', KEYS[2], ARGV[1]) == 1 then
  if redis.call('HINCRBY', KEYS[1], ARGV[1], 1) == 1 then
    return 1
  end
end
return 0
";

/// A user is no longer online on this node. KEYS, ARGV: as `USER_ONLINE`. Returns 1 when the
/// user is online on no node any more (watchers hear `offline`). Repeating it changes nothing.
const USER_OFFLINE: &str = r"
if redis.call('SREM', KEYS[2], ARGV[1]) == 1 then
  if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
    redis.call('HDEL', KEYS[1], ARGV[1])
    return 1
  end
end
return 0
";

/// Makes a node's online users exactly ARGV (restore; an empty ARGV for a dead or leaving
/// node). KEYS: the app's online hash, the node's user set. Returns {came online anywhere,
/// went offline everywhere}.
const SET_NODE_USERS: &str = r"
local wanted = {}
for _, user in ipairs(ARGV) do wanted[user] = true end
local online, offline = {}, {}
for _, user in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if not wanted[user] then
    redis.call('SREM', KEYS[2], user)
    if redis.call('HINCRBY', KEYS[1], user, -1) <= 0 then
      redis.call('HDEL', KEYS[1], user)
      table.insert(offline, user)
    end
  end
end
for _, user in ipairs(ARGV) do
  if redis.call('SADD', KEYS[2], user) == 1 then
    if redis.call('HINCRBY', KEYS[1], user, 1) == 1 then
      table.insert(online, user)
    end
  end
end
return {online, offline}
";

/// The scripts, hashed once (EVALSHA, falling back to EVAL after a Redis restart).
pub(crate) struct Scripts {
    pub(crate) join: Script,
    pub(crate) leave: Script,
    pub(crate) connection_opened: Script,
    pub(crate) connection_closed: Script,
    pub(crate) settle_removal: Script,
    pub(crate) user_online: Script,
    pub(crate) user_offline: Script,
    pub(crate) set_node_users: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            join: Script::new(JOIN),
            leave: Script::new(LEAVE),
            connection_opened: Script::new(CONNECTION_OPENED),
            connection_closed: Script::new(CONNECTION_CLOSED),
            settle_removal: Script::new(SETTLE_REMOVAL),
            user_online: Script::new(USER_ONLINE),
            user_offline: Script::new(USER_OFFLINE),
            set_node_users: Script::new(SET_NODE_USERS),
        }
    }
}
