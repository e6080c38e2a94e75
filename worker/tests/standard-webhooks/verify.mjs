// Verifies webhook deliveries with the Standard Webhooks reference
// library (npm `standardwebhooks`), as a receiver would.
//
// stdin:  [{"secret": "whsec_…", "headers": {"webhook-id": …, …},
//           "body": "<raw body>", "now": <unix seconds>}, …]
// stdout: one line per delivery, in order: "ok" or "fail: <why>".
// `now` stands in for the receiver's clock (the tests run on a fixed
// one), so the library's five-minute timestamp check applies to it.
import { Webhook } from "standardwebhooks";

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const deliveries = JSON.parse(Buffer.concat(chunks).toString("utf8"));

for (const { secret, headers, body, now } of deliveries) {
  Date.now = () => now * 1000;
  try {
    new Webhook(secret).verify(body, headers);
    console.log("ok");
  } catch (e) {
    console.log(`fail: ${String(e?.message ?? e).replace(/\n/g, " ")}`);
  }
}
