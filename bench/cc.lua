-- wrk script: POST a client_credentials grant with HTTP Basic client
-- authentication; run.sh passes base64(client_id:client_secret) in $BASIC.
local basic = os.getenv("BASIC") or error("BASIC is not set")
wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. basic
