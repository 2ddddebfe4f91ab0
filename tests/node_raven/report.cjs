// argv: DSN. Reports one exception through raven-node's own transport (legacy /store/ with a
// millisecond sentry_timestamp), then prints {"id": <event id>, "sent_ms": <when>} as JSON.
const Raven = require("raven");

Raven.config(process.argv[2], { environment: "production", release: "shop@2.0", autoBreadcrumbs: false });

function charge(amount) {
  throw new TypeError(`card declined for ${amount}`);
}

try {
  charge(42);
} catch (err) {
  const sentMs = Date.now();
  Raven.captureException(err, (sendErr, eventId) => {
    if (sendErr) {
      console.error(String(sendErr));
      process.exit(1);
    }
    console.log(JSON.stringify({ id: eventId, sent_ms: sentMs }));
    process.exit(0);
  });
}
