-- Compare-and-set of one AOR's encoded binding set.
-- KEYS[1]  the AOR key
-- ARGV[1]  the value the caller read ('' = key absent)
-- ARGV[2]  the new value ('' = delete the key)
-- ARGV[3]  absolute expiry of the key in unix milliseconds (PXAT)
-- Returns 1 when written, otherwise the current value ('' when absent) so
-- the caller can recompute without another round trip.
local cur = redis.call('GET', KEYS[1])
if not cur then cur = '' end
if cur ~= ARGV[1] then
  return {cur}
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
end
return 1
