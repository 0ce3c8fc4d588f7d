local f = io.open("../shared/openrtb-2.6/jsonschema/examples/bid-requests/simple-banner.json", "rb")
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "application/json"
