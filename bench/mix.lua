-- The soaks' traffic (soak.sh, soak-store.sh): every 10th request fetches a token, the others
-- call the protected route with the token in the environment's TOKEN.
local bearer = "Bearer " .. os.getenv("TOKEN")
local n = 0
request = function()
  n = n + 1
  if n % 10 == 0 then
    return wrk.format("POST", "/token", {["Authorization"] = "Basic cHJvZHVjdC1zYS1jbGllbnQ6cGFzc3dvcmQ=",
      ["Content-Type"] = "application/x-www-form-urlencoded"}, "grant_type=client_credentials")
  end
  return wrk.format("GET", "/api/orders/1", {["Authorization"] = bearer})
end
