// Reports one exception from shop.mjs through a real JavaScript SDK, unmodified:
//   node report.mjs sentry AMOUNT DSN
//   node report.mjs airbrake AMOUNT HOST PROJECT_ID PROJECT_KEY
// Prints the SDK's answer (event id, or notice id and url) as one JSON line; exits 1 when it failed.
// Both SDKs report from the same call path, so their stacks differ only in how each SDK sends them.
import { run } from "./shop.mjs";

async function sentry(dsn) {
  const Sentry = await import("@sentry/node");
  Sentry.init({ dsn, environment: "production", release: "1.0", tracesSampleRate: 0 });
  Sentry.setUser({ id: "u42", email: "u42@example.com" });
  return {
    report: (err) => ({ id: Sentry.captureException(err) }),
    done: async () => {
      if (!(await Sentry.flush(10000))) throw new Error("flush timed out");
    },
  };
}

async function airbrake(host, projectId, projectKey) {
  const { Notifier } = await import("@airbrake/node");
  const notifier = new Notifier({
    host, projectId: Number(projectId), projectKey, environment: "production", remoteConfig: false,
  });
  return {
    report: async (err) => {
      const notice = await notifier.notify(err);
      if (notice.error) throw notice.error;
      return { id: notice.id, url: notice.url };
    },
    done: async () => {},
  };
}

const [sdk, amount, ...args] = process.argv.slice(2);
try {
  const client = sdk === "sentry" ? await sentry(...args) : await airbrake(...args);
  const answer = await run(Number(amount), client.report);
  await client.done();
  console.log(JSON.stringify(answer));
  process.exit(0);
} catch (err) {
  console.error(String(err));
  process.exit(1);
}
