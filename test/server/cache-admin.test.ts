// The admin route DELETE /cache on its own listener (server.admin), through
// HTTP: off unless an admin token is configured, 401 without it, and with it a
// revoked token is denied at once instead of when its cache entry ends. The
// ops port, which Prometheus reaches, never serves it.
import t, { type Test } from 'tap';
import { request } from 'undici';
import { startApp, type App } from '../../src/app.js';
import { buildConfig, type Config } from '../../src/config/load.js';
import { createLogger } from '../../src/observability/logger.js';
import { connectEnvoy, summarize, type EnvoyClient } from '../support/envoy.js';
import { startFakeAuthorizationServer, type FakeAuthorizationServer } from '../support/fake-authorization-server.js';

const ADMIN = 'admin-token-Zx81-please-rotate';
const ALICE = 'tokenAliceAAAAAAAAAAAAAAAAAAAAAA';
const BOB = 'tokenBobBBBBBBBBBBBBBBBBBBBBBBBB';
const BAD = 'tokenBadCCCCCCCCCCCCCCCCCCCCCCCC';

interface Harness {
  app: App;
  envoy: EnvoyClient;
  fake: FakeAuthorizationServer;
  /** Tokens the fake says are active (a test revokes one by deleting it). */
  active: Set<string>;
  logs: string[];
  ops: string;
  /** The admin listener; null when started without an admin token. */
  admin: string | null;
  config(admin: Record<string, unknown> | null): Config;
}

async function start(t: Test, admin: Record<string, unknown> | null = { token: ADMIN }): Promise<Harness> {
  const active = new Set([ALICE, BOB]);
  const fake = await startFakeAuthorizationServer((req) => {
    const token = req.body.get('token') ?? '';
    return { json: active.has(token) ? { active: true, sub: token.slice(5, 10) } : { active: false } };
  });
  t.teardown(() => fake.close());
  const config = (adminSection: Record<string, unknown> | null) =>
    buildConfig(
      {
        server: { grpc: { host: '127.0.0.1', port: 0 }, ops: { host: '127.0.0.1', port: 0 }, admin: { host: '127.0.0.1', port: 0 } },
        ...(adminSection ? { admin: adminSection } : {}),
        endpoints: [
          { name: 'one', url: fake.url, authMethod: 'none' },
          { name: 'two', url: `${fake.url}?second`, authMethod: 'none' },
        ],
        policies: [
          { name: 'a', endpoint: 'one' },
          { name: 'b', endpoint: 'two' },
        ],
        defaultPolicy: 'a',
      },
      'test',
      { env: {} },
    );
  const logs: string[] = [];
  const app = await startApp(config(admin), createLogger('info', { write: (line: string) => logs.push(line) }));
  t.teardown(() => app.stop());
  const envoy = connectEnvoy(`127.0.0.1:${app.grpc.port}`);
  t.teardown(() => envoy.close());
  const adminUrl = app.admin ? `http://127.0.0.1:${app.admin.port}` : null;
  return { app, envoy, fake, active, logs, ops: `http://127.0.0.1:${app.ops.port}`, admin: adminUrl, config };
}

const check = (h: Harness, token: string, policy = 'a') =>
  h.envoy.check({ headers: { authorization: `Bearer ${token}` }, contextExtensions: { policy } }).then(summarize);

async function evict(
  h: Harness,
  options: { query?: string; body?: string; type?: string; authorization?: string | null; method?: 'DELETE' | 'GET' | 'POST'; at?: string } = {},
): Promise<{ status: number; body: string; headers: Record<string, unknown> }> {
  const headers: Record<string, string> = {};
  const authorization = options.authorization === undefined ? `Bearer ${ADMIN}` : options.authorization;
  if (authorization !== null) headers.authorization = authorization;
  if (options.type) headers['content-type'] = options.type;
  const response = await request(`${options.at ?? h.admin ?? h.ops}/cache${options.query ?? ''}`, {
    method: options.method ?? 'DELETE',
    headers,
    body: options.body,
  });
  return { status: response.statusCode, body: await response.body.text(), headers: response.headers };
}

const json = (token: string) => ({ type: 'application/json', body: JSON.stringify({ token }) });

async function metric(h: Harness, name: string): Promise<number | undefined> {
  const text = await (await request(`${h.ops}/metrics`)).body.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

t.test('a revoked token is denied at once after the admin eviction', async (t) => {
  const h = await start(t);
  t.equal((await check(h, ALICE)).allowed, true, 'alice allowed, and cached');
  h.active.delete(ALICE); // revoked at the authorization server
  t.equal((await check(h, ALICE)).allowed, true, 'still allowed from the cache: the revocation is not seen yet');
  t.equal(h.fake.requests.length, 1);

  const answer = await evict(h, json(ALICE));
  t.equal(answer.status, 200);
  t.same(JSON.parse(answer.body), { evicted: 1 }, 'one endpoint held an answer for the token');
  t.equal(answer.headers['cache-control'], 'no-store');

  const denied = await check(h, ALICE);
  t.equal(denied.allowed, false, 'denied at once');
  t.equal(denied.httpStatus, 401);
  t.equal(h.fake.requests.length, 2, 're-introspected');
  t.equal(await metric(h, 'authz_cache_admin_evictions_total{scope="token"}'), 1);
});

t.test('one token is dropped at every endpoint, active and inactive answers alike; others stay', async (t) => {
  const h = await start(t);
  await check(h, ALICE, 'a');
  await check(h, ALICE, 'b');
  await check(h, BOB, 'a');
  await check(h, BAD, 'a');
  t.equal((await check(h, BAD, 'a')).allowed, false);
  t.equal(h.fake.requests.length, 4, 'the bad token was asked once: its inactive answer is cached');

  const form = await evict(h, { type: 'application/x-www-form-urlencoded', body: `token=${ALICE}` });
  t.same(JSON.parse(form.body), { evicted: 2 }, 'both endpoints held alice');
  t.same(JSON.parse((await evict(h, json(BAD))).body), { evicted: 1 }, 'the negative entry too');
  t.same(JSON.parse((await evict(h, json('never-seen-token'))).body), { evicted: 0 });

  await check(h, BOB, 'a');
  t.equal(h.fake.requests.length, 4, 'bob is still cached');
  await check(h, ALICE, 'a');
  await check(h, ALICE, 'b');
  await check(h, BAD, 'a');
  t.equal(h.fake.requests.length, 7, 'alice at both endpoints and the bad token were asked again');
});

t.test('DELETE /cache?all=true drops everything', async (t) => {
  const h = await start(t);
  for (const token of [ALICE, BOB, BAD]) await check(h, token);
  t.equal(h.app.authorizer.cache.size, 2);
  t.equal(h.app.authorizer.cache.negativeSize, 1);
  const answer = await evict(h, { query: '?all=true' });
  t.equal(answer.status, 200);
  t.same(JSON.parse(answer.body), { evicted: 3 });
  t.equal(h.app.authorizer.cache.size + h.app.authorizer.cache.negativeSize, 0);
  for (const token of [ALICE, BOB, BAD]) await check(h, token);
  t.equal(h.fake.requests.length, 6, 'every token asked again');
  t.equal(await metric(h, 'authz_cache_admin_evictions_total{scope="all"}'), 1);
});

t.test('without the admin credential: 401, nothing dropped', async (t) => {
  const h = await start(t);
  await check(h, ALICE);
  for (const [name, authorization] of [
    ['no Authorization', null],
    ['a wrong token', 'Bearer admin-token-Zx81-please-rotatE'],
    ['a prefix of it', `Bearer ${ADMIN.slice(0, -1)}`],
    ['the token with more', `Bearer ${ADMIN}x`],
    ['Basic', `Basic ${Buffer.from(`admin:${ADMIN}`).toString('base64')}`],
    ['the bare token', ADMIN],
    ['Bearer without a token', 'Bearer '],
  ] as const) {
    const answer = await evict(h, { ...json(ALICE), authorization });
    t.equal(answer.status, 401, name);
    t.equal(answer.headers['www-authenticate'], 'Bearer realm="admin"', `${name}: challenge`);
  }
  const all = await evict(h, { query: '?all=true', authorization: 'Bearer nope' });
  t.equal(all.status, 401);
  t.equal(h.app.authorizer.cache.size, 1, 'alice still cached');
  t.equal((await evict(h, { ...json(ALICE), authorization: `bearer  ${ADMIN}` })).status, 200, 'the scheme is case-insensitive');
  t.equal(await metric(h, 'authz_cache_admin_evictions_total{scope="token"}'), 1, 'refusals are not counted as evictions');
});

t.test('requests the route does not take', async (t) => {
  const h = await start(t);
  const cases: Array<[string, Parameters<typeof evict>[1], number]> = [
    ['GET', { method: 'GET' }, 405],
    ['POST', { method: 'POST', ...json(ALICE) }, 405],
    ['no body', {}, 415],
    ['text/plain', { type: 'text/plain', body: ALICE }, 415],
    ['invalid JSON', { type: 'application/json', body: '{"token":' }, 400],
    ['JSON without token', { type: 'application/json', body: '{"tok":"x"}' }, 400],
    ['JSON null', { type: 'application/json', body: 'null' }, 400],
    ['token not a string', { type: 'application/json', body: '{"token":1}' }, 400],
    ['empty token', json(''), 400],
    ['form without token', { type: 'application/x-www-form-urlencoded', body: 'x=1' }, 400],
    ['too large', { type: 'application/json', body: `{"token":"${'a'.repeat(3 * 1024 * 1024)}"}` }, 413],
  ];
  for (const [name, options, status] of cases) {
    const answer = await evict(h, options);
    t.equal(answer.status, status, name);
    t.equal(answer.headers['content-type'], 'application/json', `${name}: a JSON error`);
  }
  t.equal((await evict(h, { method: 'GET' })).headers.allow, 'DELETE');
  t.equal((await evict(h, json(ALICE))).status, 200, 'the server still answers');
});

t.test('no admin token configured: no admin listener, and the ops port has no such route (404)', async (t) => {
  const h = await start(t, null);
  t.equal(h.app.admin, null, 'nothing listens for admin requests');
  // The ops port takes GET and HEAD only: a DELETE is 405 there, a GET of /cache 404.
  t.equal((await evict(h, json(ALICE))).status, 405);
  t.equal((await evict(h, { query: '?all=true' })).status, 405);
  t.equal((await evict(h, { method: 'GET', authorization: null })).status, 404);
  // The listener starts with the service: a token set by a reload waits for a restart, and says so.
  t.same(h.app.reload(h.config({ token: ADMIN })), ['admin.token'], 'a reload that sets the token reports the restart it needs');
  t.equal((await evict(h, json(ALICE))).status, 405, 'and the ops port still does not serve it');
});

t.test('the two listeners: admin on its own port, nothing else there; the ops port never serves it', async (t) => {
  const h = await start(t);
  await check(h, ALICE);
  t.equal((await evict(h, { ...json(ALICE), at: h.ops })).status, 405, 'DELETE /cache on the ops port: 405, even with the admin token');
  t.equal((await evict(h, { method: 'GET', at: h.ops })).status, 404, 'GET /cache there: 404');
  t.equal((await request(`${h.admin}/metrics`)).statusCode, 404, 'the admin port serves no metrics');
  t.equal((await request(`${h.admin}/readyz`)).statusCode, 404, 'nor probes');
  t.equal((await request(`${h.ops}/metrics`)).statusCode, 200, 'the ops port does');
  t.same(JSON.parse((await evict(h, json(ALICE))).body), { evicted: 1 }, 'the admin port evicts');
});

t.test('rotation and removal of the admin token by reload', async (t) => {
  const h = await start(t);
  await check(h, ALICE);
  t.same(h.app.reload(h.config({ token: 'another-admin-token-1234' })), [], 'a changed token needs no restart');
  t.equal((await evict(h, json(ALICE))).status, 401, 'the old token is refused after rotation');
  t.equal((await evict(h, { ...json(ALICE), authorization: 'Bearer another-admin-token-1234' })).status, 200);
  h.app.reload(h.config(null));
  t.equal((await evict(h, json(ALICE))).status, 404, 'off again');
});

t.test('log lines: evictions and refusals, never a token', async (t) => {
  const h = await start(t);
  await check(h, ALICE);
  await evict(h, json(ALICE));
  await evict(h, { query: '?all=true' });
  await evict(h, { ...json(BOB), authorization: `Bearer ${BOB}` });
  const lines = h.logs.map((line) => JSON.parse(line) as Record<string, unknown>);
  const evictions = lines.filter((l) => l.msg === 'cache eviction');
  t.same(
    evictions.map((l) => [l.scope, l.endpoints ?? l.entries]),
    [
      ['token', 1],
      ['all', 0],
    ],
  );
  t.equal(lines.filter((l) => l.msg === 'admin request refused: missing or wrong admin token').length, 1);
  const all = h.logs.join('\n');
  for (const secret of [ALICE, BOB, ADMIN]) t.notOk(all.includes(secret), 'no token or admin token in the logs');
});
