-- wrk script of `RAFT_WRITES_CLIENT=wrk cargo bench --bench raft_writes`: every request creates a
-- connector with a name of its own (a durable Raft write). Run wrk with one thread (-t1): the
-- counter is per thread. RAFT_WRK_PREFIX makes names unique across runs; RAFT_WRK_KEY is the
-- cluster API key.
local counter = 0
local prefix = os.getenv("RAFT_WRK_PREFIX") or "wrk"
local headers = {
  ["content-type"] = "application/json",
  ["x-api-key"] = os.getenv("RAFT_WRK_KEY") or "admin",
}

request = function()
  counter = counter + 1
  local body = '{"name":"' .. prefix .. '_' .. counter ..
    '","connector_type":"mqtt","params":{"host":"localhost","port":1883}}'
  return wrk.format("POST", nil, headers, body)
end
