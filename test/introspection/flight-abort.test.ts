// The cold path's cancellation end to end: Checks waiting on one flight, the
// endpoint client, undici's dispatch handler, and a real (hanging) server.
import t, { type Test } from 'tap';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { EventEmitter } from 'node:events';
import { buildConfig, type EndpointConfig } from '../../src/config/load.js';
import { IntrospectionCache } from '../../src/introspection/cache.js';
import { Cancellation, DEADLINE_REACHED } from '../../src/introspection/cancellation.js';
import { EndpointClient } from '../../src/introspection/endpoint-client.js';
import { Introspector } from '../../src/introspection/introspector.js';
import { CheckDeadline } from '../../src/server/check-deadline.js';

const ANSWER = JSON.stringify({ active: true, sub: 'alice', exp: Math.floor(Date.now() / 1000) + 3600 });

/** A server that holds every request until the test answers it; it tells when a connection closes. */
async function holdingServer(t: Test) {
  const held: Array<{ request: IncomingMessage; response: ServerResponse; body: string }> = [];
  const events = new EventEmitter();
  let closed = 0;
  const server = createServer((request, response) => {
    const entry = { request, response, body: '' };
    held.push(entry);
    request.setEncoding('utf8').on('data', (chunk: string) => (entry.body += chunk));
    request.on('end', () => events.emit('request'));
  });
  server.on('connection', (socket) =>
    socket.on('close', () => {
      closed += 1;
      events.emit('closed');
    }),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  const port = (server.address() as AddressInfo).port;
  /** Resolves once `check()` holds, or false after `ms`: bounded, never a fixed sleep. */
  const until = (check: () => boolean, ms = 2_000) =>
    new Promise<boolean>((resolve) => {
      if (check()) return resolve(true);
      const timer = setTimeout(() => done(false), ms);
      const onEvent = () => check() && done(true);
      const done = (ok: boolean) => {
        clearTimeout(timer);
        events.off('request', onEvent).off('closed', onEvent);
        resolve(ok);
      };
      events.on('request', onEvent).on('closed', onEvent);
    });
  return { url: `http://127.0.0.1:${port}/introspect`, held, closed: () => closed, until };
}

function endpointConfig(url: string, overrides: Partial<EndpointConfig> = {}): EndpointConfig {
  const raw = { name: 'main', url, clientId: 'authz-service', clientSecret: 's3cret', retries: 0 };
  const base = buildConfig({ endpoints: [raw] }, 'test', { env: {} }).endpoints[0]!;
  return { ...base, authenticationTimeout: 10_000, maxConnections: 1, ...overrides };
}

function setup(t: Test, config: EndpointConfig) {
  const client = new EndpointClient(config);
  t.teardown(() => client.destroy());
  const cache = new IntrospectionCache({ maxEntries: 100, ttlSeconds: 60 });
  return { client, introspector: new Introspector(cache) };
}

/** One turn of the event loop and its I/O: long enough for an abort to have been handed to undici. */
const turns = async (n: number) => {
  for (let i = 0; i < n; i += 1) await new Promise((resolve) => setImmediate(resolve));
};

t.test('a flight whose waiters all leave is aborted through the dispatch handler: the connection closes', async (t) => {
  const server = await holdingServer(t);
  const { client, introspector } = setup(t, endpointConfig(server.url));
  const first = new Cancellation();
  const second = new Cancellation();
  const answers = [introspector.introspect(client, 'tok', first), introspector.introspect(client, 'tok', second)];
  t.ok(await server.until(() => server.held.length === 1), 'one request for both Checks');

  first.abort(DEADLINE_REACHED);
  t.equal((await answers[0])!.result.outcome, 'timeout', 'the first Check is answered at once');
  await turns(5);
  t.equal(server.closed(), 0, 'the request goes on while a Check still waits');

  second.abort();
  t.equal((await answers[1])!.result.outcome, 'timeout', 'the last Check is answered at once too');
  t.ok(await server.until(() => server.closed() === 1), 'and the request is torn down: the endpoint sees its connection close');

  // The client is not left in a bad state: the next call gets a connection and its answer.
  const next = client.introspect('tok-2');
  t.ok(await server.until(() => server.held.length === 2), 'a later call reaches the endpoint');
  server.held[1]!.response.setHeader('content-type', 'application/json').end(ANSWER);
  t.equal((await next).outcome, 'active');
});

t.test('a call aborted while it is queued for a connection is never sent', async (t) => {
  const server = await holdingServer(t);
  // One connection: the second request waits in undici's queue behind the first.
  const { client } = setup(t, endpointConfig(server.url, { maxConnections: 1, maxInFlight: 8 }));
  const busy = client.introspect('busy');
  t.ok(await server.until(() => server.held.length === 1));
  const caller = new Cancellation();
  const queued = client.introspect('queued', caller);
  await turns(2);
  caller.abort();
  t.equal((await queued).outcome, 'timeout', 'the caller that left is answered at once');

  server.held[0]!.response.setHeader('content-type', 'application/json').end(ANSWER);
  t.equal((await busy).outcome, 'active');
  // The next request on the connection is a new call's, not the abandoned one's.
  const after = client.introspect('after');
  t.ok(await server.until(() => server.held.length >= 2), 'the next call is sent');
  await turns(5);
  t.same(
    server.held.map(({ body }) => /token=(\w+)/.exec(body)?.[1]),
    ['busy', 'after'],
    'and the aborted one never was',
  );
  server.held[1]!.response.setHeader('content-type', 'application/json').end(ANSWER);
  t.equal((await after).outcome, 'active');
});

t.test('a caller deadline earlier than authenticationTimeout ends the flight\'s wait for that caller only', async (t) => {
  const server = await holdingServer(t);
  const { client, introspector } = setup(t, endpointConfig(server.url, { authenticationTimeout: 10_000 }));
  const calls = [150, Infinity].map((ms) => {
    const emitter = new EventEmitter();
    return {
      cancelled: false,
      getDeadline: () => (ms === Infinity ? Infinity : Date.now() + ms),
      on: (event: 'cancelled', listener: () => void) => emitter.on(event, listener),
      removeListener: (event: 'cancelled', listener: () => void) => emitter.removeListener(event, listener),
    };
  });
  const [short, open] = calls.map((call) => new CheckDeadline(call));
  const started = Date.now();
  const early = introspector.introspect(client, 'tok', short!);
  const late = introspector.introspect(client, 'tok', open!);
  const first = await early;
  const waited = Date.now() - started;
  t.equal(first.result.outcome, 'timeout', 'the Check with the short deadline gets a timeout');
  t.ok(waited < 5_000, `at its deadline, long before authenticationTimeout (${waited} ms)`);
  t.equal(short!.reason, DEADLINE_REACHED);

  await turns(5);
  t.equal(server.closed(), 0, 'the flight goes on for the other Check');
  t.equal(server.held.length, 1);
  server.held[0]!.response.setHeader('content-type', 'application/json').end(ANSWER);
  const second = await late;
  t.equal(second.result.outcome, 'active', 'which gets the answer');
  t.equal(second.cache, 'coalesced');
  short!.dispose();
  open!.dispose();
});
