// Drives the real @exceptionless/node client for the pytest end-to-end tests.
//
// Protocol: one JSON command per line on stdin, one JSON answer per line on stdout
// ({"ok": true, ...} or {"ok": false, "error": "..."}); the client's own log goes to stderr.
// Run it with a scratch working directory: the client keeps its settings in ./.exceptionless.
//
// Commands: start {serverUrl, apiKey} | exception {message} | log {source, message, level} |
// usage {feature} | notfound {resource} | describe {referenceId, email, description} |
// flush | state | stop

import { createInterface } from "node:readline";

// Record every HTTP exchange the client makes (installed before the client binds fetch).
const exchanges = [];
const realFetch = globalThis.fetch.bind(globalThis);
globalThis.fetch = async (url, init = {}) => {
  const response = await realFetch(url, init);
  const body = await response.clone().text();
  exchanges.push({
    method: init.method ?? "GET",
    url: String(url),
    status: response.status,
    body,
    configVersion: response.headers.get("x-exceptionless-configversion"),
  });
  return response;
};

const { NodeExceptionlessClient } = await import("@exceptionless/node");

const stderrLog = {
  trace: (m) => process.stderr.write(`trace ${m}\n`),
  info: (m) => process.stderr.write(`info ${m}\n`),
  warn: (m) => process.stderr.write(`warn ${m}\n`),
  error: (m) => process.stderr.write(`error ${m}\n`),
};

let client = null;

function queued() {
  // DefaultEventQueue keeps its items in a private array; its length is what the client still holds.
  return client.config.services.queue._queue?.length ?? null;
}

function state() {
  return {
    settingsVersion: client.config.settingsVersion,
    settings: client.config.settings,
    queued: queued(),
    lastReferenceId: client.getLastReferenceId(),
    exchanges,
  };
}

// A named function, so the stack trace has a frame of this file with a name.
function checkoutTotal(message) {
  throw new TypeError(message);
}

const commands = {
  async start({ serverUrl, apiKey }) {
    client = new NodeExceptionlessClient();
    await client.startup((c) => {
      c.apiKey = apiKey;
      c.serverUrl = serverUrl;
      c.services.log = stderrLog;
      c.usePersistedQueueStorage = false;
    });
    return state();
  },
  async exception({ message }) {
    try {
      checkoutTotal(message);
    } catch (error) {
      const context = await client.submitException(error);
      return { referenceId: context.event.reference_id, cancelled: context.cancelled };
    }
    throw new Error("unreachable");
  },
  async log({ source, message, level }) {
    const context = await client.submitLog(source, message, level);
    return { cancelled: context.cancelled };
  },
  async usage({ feature }) {
    const context = await client.submitFeatureUsage(feature);
    return { cancelled: context.cancelled };
  },
  async notfound({ resource }) {
    const context = await client.submitNotFound(resource);
    return { cancelled: context.cancelled };
  },
  async describe({ referenceId, email, description }) {
    await client.updateUserEmailAndDescription(referenceId, email, description);
    return {};
  },
  async flush() {
    await client.processQueue();
    return state();
  },
  async state() {
    return state();
  },
  async stop() {
    await client.suspend();
    return state();
  },
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let answer;
  try {
    const command = JSON.parse(line);
    const run = commands[command.cmd];
    if (!run) throw new Error(`unknown command ${command.cmd}`);
    answer = { ok: true, ...(await run(command)) };
  } catch (error) {
    answer = { ok: false, error: error instanceof Error ? error.stack : String(error) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
  if (JSON.parse(line).cmd === "stop") break;
}
process.exit(0);
