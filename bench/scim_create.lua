-- wrk script: POST /scim/v2/Users, each request a new person of the org: userName
-- $SCIM_PREFIX-<thread>-<n>@$SCIM_DOMAIN (the prefix is new for each run, so no run
-- clashes with another's people), bearer token $SCIM_TOKEN. Written by bench/scim_bench.py.
local token = os.getenv("SCIM_TOKEN") or error("SCIM_TOKEN is not set")
local domain = os.getenv("SCIM_DOMAIN") or error("SCIM_DOMAIN is not set")
local prefix = os.getenv("SCIM_PREFIX") or error("SCIM_PREFIX is not set")
local body = '{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"%s@%s",'
          .. '"name":{"givenName":"New","familyName":"%d"},"externalId":"%s"}'

local threads = 0
function setup(thread)
  thread:set("index", threads)
  threads = threads + 1
end

local sent = 0
function request()
  sent = sent + 1
  local name = string.format("%s-%d-%d", prefix, index, sent)
  -- A fresh header table each time: wrk.format writes Content-Length into the one it gets.
  local headers = {["Content-Type"] = "application/scim+json", ["Authorization"] = "Bearer " .. token}
  return wrk.format("POST", "/scim/v2/Users", headers, string.format(body, name, domain, sent, name))
end
