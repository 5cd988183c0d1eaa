// The Check handler on its own, with a fake call: what it answers when the
// request cannot be read, when the pipeline fails, and when a decision
// cannot be encoded. Always an answer, always a deny on failure.
import t from 'tap';
import { EventEmitter } from 'node:events';
import type { AuthRequest } from '../../src/auth-request.js';
import type { Decision } from '../../src/decision.js';
import { UNDECODABLE, type CheckInput } from '../../src/envoy/protos.js';
import { createLogger } from '../../src/observability/logger.js';
import { Metrics } from '../../src/observability/metrics.js';
import { authorizationHandlers, type Runtime } from '../../src/server/authorization-service.js';
import { decodeCheckResponse, type CheckResponse } from '../support/wire.js';

const REQUEST: AuthRequest = {
  headers: new Map([['authorization', ['Bearer x']]]),
  contextExtensions: new Map(),
  method: 'GET',
  host: 'api.example.com',
  path: '/',
  requestId: 'req-1',
};

const ALLOW: Decision = {
  allow: true,
  reason: 'ok',
  policy: 'default',
  identity: 'alice',
  headers: [{ name: 'x-auth-subject', value: 'alice' }],
  removeHeaders: [],
  metadata: { identity: 'alice' },
  endpoint: 'as',
  cache: 'hit',
};

function run(check: (request: AuthRequest) => Promise<Decision>, input: CheckInput = REQUEST, brokenLog = false) {
  const lines: string[] = [];
  const logger = createLogger('info', {
    write: (line: string) => {
      if (brokenLog) throw new Error('the log destination is gone');
      lines.push(line);
    },
  });
  const metrics = new Metrics({ cacheEntries: () => 0 });
  const runtime = {
    authorizer: { check: (request: AuthRequest) => check(request) },
    log: { level: 'info', decisions: 'none', allowSampleRate: 1, identity: false },
  } as unknown as Runtime;
  const handlers = authorizationHandlers({ runtime: () => runtime, logger, metrics });
  const events = new EventEmitter();
  const call = {
    request: input,
    cancelled: false,
    getDeadline: () => new Date(Date.now() + 1_000),
    on: (event: string, listener: () => void) => events.on(event, listener),
    removeListener: (event: string, listener: () => void) => events.removeListener(event, listener),
  };
  return new Promise<{ response: CheckResponse; lines: string[]; metrics: Metrics; listeners: number }>((resolve, reject) => {
    (handlers.Check as Function)(call, (error: Error | null, bytes: Buffer) =>
      error ? reject(error) : setImmediate(() => resolve({ response: decodeCheckResponse(bytes), lines, metrics, listeners: events.listenerCount('cancelled') })),
    );
  });
}

async function decisionCount(metrics: Metrics): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const value of (await metrics.decisions.get()).values) out[`${value.labels.decision}:${value.labels.reason}`] = value.value;
  return out;
}

t.test('an allow is encoded and counted', async (t) => {
  const { response, metrics, listeners } = await run(async () => ALLOW);
  t.equal(response.status.code, 0);
  t.same(response.ok_response!.headers.map((h) => h.header.key), ['x-auth-subject']);
  t.same(await decisionCount(metrics), { 'allow:ok': 1 });
  t.equal(listeners, 0, 'no listener left on the call');
});

t.test('bytes that are not a CheckRequest: deny 500, logged without the request', async (t) => {
  let asked = false;
  const { response, lines } = await run(async () => {
    asked = true;
    return ALLOW;
  }, UNDECODABLE);
  t.notOk(asked, 'the pipeline is not run');
  t.equal(response.status.code, 13);
  t.equal(response.denied_response!.status.code, 500);
  t.match(lines.join(''), /could not be decoded/);
});

t.test('a pipeline that throws or rejects: deny 500', async (t) => {
  for (const check of [
    () => {
      throw new Error('boom');
    },
    () => Promise.reject(new Error('boom')),
  ]) {
    const { response, lines, metrics } = await run(check as () => Promise<Decision>);
    t.equal(response.status.code, 13);
    t.equal(response.denied_response!.status.code, 500);
    t.match(lines.join(''), /check failed; denying/);
    t.same(await decisionCount(metrics), { 'deny:policy_error': 1 });
  }
});

t.test('a pipeline that fails while the log cannot be written: still a deny 500, nothing left unhandled', async (t) => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  t.teardown(() => process.off('unhandledRejection', onUnhandled));
  let timer: NodeJS.Timeout | undefined;
  const unanswered = new Promise<'unanswered'>((resolve) => (timer = setTimeout(() => resolve('unanswered'), 2000)));
  const outcome = await Promise.race([run(() => Promise.reject(new Error('boom')), REQUEST, true), unanswered]);
  clearTimeout(timer);
  if (outcome === 'unanswered') t.fail('the Check was never answered');
  else t.equal(outcome.response.denied_response!.status.code, 500);
  await new Promise((resolve) => setImmediate(resolve));
  t.same(unhandled, []);
});

t.test('a decision that cannot be encoded: deny 500, and that is what is counted', async (t) => {
  const metadata = Object.defineProperty({}, 'broken', {
    enumerable: true,
    get() {
      throw new Error('unreadable claim');
    },
  });
  const { response, lines, metrics } = await run(async () => ({ ...ALLOW, metadata }) as Decision);
  t.equal(response.status.code, 13, 'never the allow');
  t.notOk(response.ok_response);
  t.match(lines.join(''), /could not encode the decision; denying/);
  t.same(await decisionCount(metrics), { 'deny:policy_error': 1 });
});
