-- Revokes ARGV[6..] until ARGV[1] (Unix seconds), all or none.
-- KEYS[1]: every revoked id; KEYS[2]: the ids this owner revoked (its quota).
-- ARGV: until, now, the owner's quota, the set's bound, the channel, ids...
local untl, now = ARGV[1], ARGV[2]
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. now)
local new = {}
for i = 6, #ARGV do
  if not redis.call('ZSCORE', KEYS[1], ARGV[i]) then table.insert(new, ARGV[i]) end
end
if #new > 0 and (redis.call('ZCARD', KEYS[2]) + #new > tonumber(ARGV[3])
    or redis.call('ZCARD', KEYS[1]) + #new > tonumber(ARGV[4])) then
  return 0
end
for i = 6, #ARGV do
  -- GT: an id revoked already keeps the later of the two expiries.
  redis.call('ZADD', KEYS[1], 'GT', untl, ARGV[i])
  redis.call('PUBLISH', ARGV[5], untl .. ' ' .. ARGV[i])
end
for _, id in ipairs(new) do
  redis.call('ZADD', KEYS[2], untl, id)
end
for _, k in ipairs(KEYS) do
  if redis.call('EXISTS', k) == 1 then
    -- GT leaves a key without an expiry alone; NX gives it one.
    redis.call('EXPIREAT', k, untl, 'GT')
    redis.call('EXPIREAT', k, untl, 'NX')
  end
end
return 1
