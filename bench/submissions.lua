-- wrk script for bench/submissions.py and bench/scaleout.py: varied popup submissions.
-- About 80% of the requests are a new shopper (a new email); the rest are a returning one with a new first
-- name. Shoppers are spread over the shops; each request carries its shop's form id, Origin and a client
-- address (X-Forwarded-For, read with PROXY_COUNT=1). --SHOPS-- is replaced by {domain, form id} pairs.
-- The run's tag (wrk ... -- TAG) goes into every email: each run's new shoppers are new to the database.

local shops = { --SHOPS-- }
local names = { "Ann", "Bo", "Cy", "Dee", "Eli", "Fay", "Gus", "Hal", "Ivy", "Jo", "Kai", "Lu" }
local started = 0

function setup(thread)
   thread:set("number", started)
   started = started + 1
end

function init(args)
   tag = args[1] or "run"
   sent = 0
   math.randomseed(1000 + number)
end

function request()
   sent = sent + 1
   local person = sent
   if sent > 20 and math.random() < 0.2 then
      person = math.random(sent - 1)
   end
   local shop = shops[(person % #shops) + 1]
   local body = string.format(
      '{"shop":"%s","form_id":"%d","email":"%s-%d-%d@example.com","first_name":"%s",'
         .. '"email_consent":%s,"email_consent_text":"Yes, email me offers.","page_url":"https://%s/products/tea"}',
      shop[1], shop[2], tag, number, person, names[(sent % #names) + 1],
      (person % 2 == 0) and "true" or "false", shop[1])
   local headers = {
      ["Content-Type"] = "application/json",
      ["Origin"] = "https://" .. shop[1],
      ["X-Forwarded-For"] = string.format("10.%d.%d.%d", number % 200, math.floor(person / 250) % 256,
         person % 250 + 1),
   }
   return wrk.format("POST", nil, headers, body)
end
