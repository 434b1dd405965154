-- A token bucket shared by every replica: refills at ARGV[3] tokens a millisecond up to
-- ARGV[2], then gives up ARGV[1] tokens (taken already by a replica, so it may go below zero,
-- down to minus the burst). Returns the tokens left, as a string (Lua numbers become integers).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local taken, burst, rate = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1]) or burst
local at = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate) - taken
if tokens < -burst then tokens = -burst end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
-- Gone once it would be full again anyway.
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate) + 1000)
return tostring(tokens)
